"""Synthetic demo slides: tissue-like pyramidal TIFFs with annotations and tissue masks.

Three slides at 0.5 micrometres per pixel (about 6k x 4k pixels), each with

* tissue: a few smooth blobs with wobbly outlines, pink stroma with purple, nucleus-like
  texture, on a white background;
* an annotation file in one of three formats (ASAP XML, QuPath-style GeoJSON, V7 Darwin
  JSON 2.0) with "Tumor" and "Stroma" polygons over the tissue, in level-0 pixels;
* a tissue mask overlay (``{stem}_tissue_mask.tiff``): uint8 0/255 at 8 micrometres per pixel.

Everything is derived from one seed, so the files are the same on every machine. Existing
files are never overwritten (the generator only fills in what is missing). Files are written
under a temporary name and renamed, so a reader never sees half a slide.
"""

from __future__ import annotations

import json
import math
import os
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np
import shapely
from shapely.geometry import Polygon

SLIDE_MPP = 0.5  # micrometres per level-0 pixel
MASK_MPP = 8.0  # micrometres per tissue-mask pixel
MASK_FACTOR = int(MASK_MPP / SLIDE_MPP)  # level-0 pixels per mask pixel
SEED = 20240611


@dataclass(frozen=True)
class DemoSlide:
    """One demo slide: file name, level-0 size (pixels), annotation format."""

    name: str
    width: int
    height: int
    annotation_format: str  # "asap", "geojson" or "darwin"

    @property
    def stem(self) -> str:
        return self.name.rsplit(".", 1)[0]

    def annotation_name(self) -> str:
        suffix = {"asap": ".xml", "geojson": ".geojson", "darwin": ".json"}[self.annotation_format]
        return self.stem + suffix

    def mask_name(self) -> str:
        return f"{self.stem}_tissue_mask.tiff"


#: The demo set. The third name shows how a file name with spaces and brackets becomes a
#: UI-safe partition key (with a hash suffix).
DEMO_SLIDES = (
    DemoSlide("demo_slide_01.tiff", 6144, 4096, "asap"),
    DemoSlide("demo_slide_02.tiff", 5120, 4608, "geojson"),
    DemoSlide("case 03 (HE).tiff", 4096, 6144, "darwin"),
)


# ----------------------------------------------------------------------------- geometry
def _blob(
    rng: np.random.Generator, cx: float, cy: float, rx: float, ry: float, n: int = 72
) -> Polygon:
    """A smooth, wobbly closed outline around (cx, cy) with radii (rx, ry), level-0 pixels."""
    angles = np.linspace(0, 2 * math.pi, n, endpoint=False)
    wobble = np.ones(n)
    for harmonic in (2, 3, 5):
        wobble += rng.uniform(0.03, 0.09) * np.cos(harmonic * angles + rng.uniform(0, 2 * math.pi))
    rotation = rng.uniform(0, math.pi)
    x = rx * wobble * np.cos(angles)
    y = ry * wobble * np.sin(angles)
    xr = cx + x * math.cos(rotation) - y * math.sin(rotation)
    yr = cy + x * math.sin(rotation) + y * math.cos(rotation)
    return shapely.make_valid(Polygon(np.column_stack([xr, yr]).round(1)))


def layout(
    slide: DemoSlide, rng: np.random.Generator
) -> tuple[list[Polygon], list[Polygon], list[Polygon]]:
    """Tissue blobs, tumour regions (inside tissue) and stroma regions (inside tissue)."""
    w, h = slide.width, slide.height
    tissue = []
    for cx, cy in ((0.32, 0.38), (0.68, 0.62), (0.3, 0.75)):
        tissue.append(
            _blob(rng, cx * w, cy * h, rng.uniform(0.17, 0.22) * w, rng.uniform(0.16, 0.21) * h)
        )
    tumor = [
        _blob(rng, p.centroid.x, p.centroid.y, 0.07 * w, 0.06 * h).intersection(p)
        for p in tissue[:2]
    ]
    stroma = [
        _blob(
            rng, p.centroid.x + 0.08 * w, p.centroid.y - 0.05 * h, 0.06 * w, 0.05 * h
        ).intersection(p)
        for p in tissue[:2]
    ]
    stroma = [s.difference(shapely.union_all(tumor)) for s in stroma]
    return tissue, [_largest(t) for t in tumor], [_largest(s) for s in stroma]


def _largest(geometry: shapely.Geometry) -> Polygon:
    """The largest polygon of a (multi)polygon (annotations are simple polygons here)."""
    parts = getattr(geometry, "geoms", [geometry])
    return max((p for p in parts if isinstance(p, Polygon)), key=lambda p: p.area)


# ----------------------------------------------------------------------------- pixels
def tissue_mask(slide: DemoSlide, tissue: Sequence[Polygon]) -> np.ndarray:
    """uint8 0/255 mask at MASK_MPP: 255 where the mask pixel's centre lies in tissue."""
    mh, mw = slide.height // MASK_FACTOR, slide.width // MASK_FACTOR
    ys, xs = np.mgrid[0:mh, 0:mw]
    cx = (xs + 0.5) * MASK_FACTOR
    cy = (ys + 0.5) * MASK_FACTOR
    inside = shapely.contains_xy(shapely.union_all(tissue), cx, cy)
    return np.where(inside, 255, 0).astype(np.uint8)


def _smooth_upsample(image: np.ndarray, factor: int, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling of a small float image by ``factor``, cropped to ``shape``."""
    h, w = image.shape
    ys = (np.arange(shape[0]) + 0.5) / factor - 0.5
    xs = (np.arange(shape[1]) + 0.5) / factor - 0.5
    y0 = np.clip(np.floor(ys).astype(int), 0, h - 1)
    x0 = np.clip(np.floor(xs).astype(int), 0, w - 1)
    y1 = np.clip(y0 + 1, 0, h - 1)
    x1 = np.clip(x0 + 1, 0, w - 1)
    fy = np.clip(ys - y0, 0, 1)[:, None].astype(np.float32)
    fx = np.clip(xs - x0, 0, 1)[None, :].astype(np.float32)
    top = image[y0][:, x0] * (1 - fx) + image[y0][:, x1] * fx
    bottom = image[y1][:, x0] * (1 - fx) + image[y1][:, x1] * fx
    return top * (1 - fy) + bottom * fy


def _blur(image: np.ndarray, passes: int = 2) -> np.ndarray:
    """Cheap separable 3x3 box blur, repeated."""
    out: np.ndarray = image.astype(np.float32)
    for _ in range(passes):
        padded = np.pad(out, 1, mode="edge")
        out = (padded[:-2] + padded[1:-1] + padded[2:]) / 3
        out = (out[:, :-2] + out[:, 1:-1] + out[:, 2:]) / 3
    return out


def render(
    slide: DemoSlide, mask: np.ndarray, tumor: Sequence[Polygon], rng: np.random.Generator
) -> np.ndarray:
    """RGB uint8 (H, W, 3) level-0 image: white background, pink tissue, purple texture."""
    shape = (slide.height, slide.width)
    tissue = _smooth_upsample(_blur(mask / 255.0), MASK_FACTOR, shape)
    tumor_mask = tissue_mask(slide, tumor) / 255.0
    dense = _smooth_upsample(_blur(tumor_mask), MASK_FACTOR, shape)
    # Nucleus-like texture: random dots at 1/4 resolution, denser in tumour.
    small = (slide.height // 4 + 1, slide.width // 4 + 1)
    dots = rng.random(small, dtype=np.float32)
    dots = np.repeat(np.repeat(dots, 4, axis=0), 4, axis=1)[: shape[0], : shape[1]]
    nuclei = (dots > (0.93 - 0.12 * dense)).astype(np.float32) * tissue
    grain = rng.normal(0.0, 6.0, size=small).astype(np.float32)
    grain = np.repeat(np.repeat(grain, 4, axis=0), 4, axis=1)[: shape[0], : shape[1]]
    white = np.array([244, 242, 246], np.float32)
    pink = np.array([226, 150, 190], np.float32)
    purple = np.array([112, 62, 150], np.float32)
    rgb = white + tissue[..., None] * (pink - white)
    rgb += nuclei[..., None] * (purple - pink) * 0.85
    rgb += (grain * tissue)[..., None]
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- annotations
def _ring(polygon: Polygon) -> list[tuple[float, float]]:
    return [(round(x, 1), round(y, 1)) for x, y in list(polygon.exterior.coords)[:-1]]


def asap_xml(regions: Sequence[tuple[str, Polygon]]) -> str:
    """ASAP XML with one Polygon annotation per region (class in PartOfGroup)."""
    lines = ['<?xml version="1.0"?>', "<ASAP_Annotations>", "\t<Annotations>"]
    for i, (label, polygon) in enumerate(regions):
        lines.append(
            f'\t\t<Annotation Name={quoteattr(f"Annotation {i}")} Type="Polygon" '
            f'PartOfGroup={quoteattr(label)} Color="#F4FA58">'
        )
        lines.append("\t\t\t<Coordinates>")
        for order, (x, y) in enumerate(_ring(polygon)):
            lines.append(f'\t\t\t\t<Coordinate Order="{order}" X="{x}" Y="{y}" />')
        lines += ["\t\t\t</Coordinates>", "\t\t</Annotation>"]
    lines += ["\t</Annotations>", "\t<AnnotationGroups>"]
    for label in sorted({label for label, _ in regions}):
        lines.append(
            f'\t\t<Group Name={quoteattr(label)} PartOfGroup="None" Color="#64FE2E">'
            "<Attributes /></Group>"
        )
    lines += ["\t</AnnotationGroups>", "</ASAP_Annotations>", ""]
    return "\n".join(lines)


def geojson(regions: Sequence[tuple[str, Polygon]]) -> str:
    """QuPath-style GeoJSON FeatureCollection (class in properties.classification.name)."""
    features = []
    for i, (label, polygon) in enumerate(regions):
        ring = [list(point) for point in _ring(polygon)]
        features.append(
            {
                "type": "Feature",
                "id": str(uuid.UUID(int=i + 1)),
                "geometry": {"type": "Polygon", "coordinates": [[*ring, ring[0]]]},
                "properties": {"objectType": "annotation", "classification": {"name": label}},
            }
        )
    return json.dumps({"type": "FeatureCollection", "features": features}, indent=1)


def darwin_json(slide: DemoSlide, regions: Sequence[tuple[str, Polygon]]) -> str:
    """V7 Darwin JSON 2.0 with one polygon annotation per region (class in name)."""
    annotations = []
    for i, (label, polygon) in enumerate(regions):
        path = [{"x": x, "y": y} for x, y in _ring(polygon)]
        minx, miny, maxx, maxy = polygon.bounds
        annotations.append(
            {
                "id": str(uuid.UUID(int=100 + i)),
                "name": label,
                "bounding_box": {"x": minx, "y": miny, "w": maxx - minx, "h": maxy - miny},
                "polygon": {"paths": [path]},
                "slot_names": ["0"],
            }
        )
    document = {
        "version": "2.0",
        "schema_ref": "https://darwin-public.s3.eu-west-1.amazonaws.com/darwin_json/2.0/schema.json",
        "item": {
            "name": slide.name,
            "path": "/",
            "slots": [
                {
                    "type": "image",
                    "slot_name": "0",
                    "width": slide.width,
                    "height": slide.height,
                    "source_files": [{"file_name": slide.name}],
                }
            ],
        },
        "annotations": annotations,
    }
    return json.dumps(document, indent=1)


# ----------------------------------------------------------------------------- writing
def _write_new(path: Path, write: Callable[[Path], object]) -> bool:
    """Run ``write(temp_path)`` and rename the result to ``path``; skip if ``path`` exists."""
    if path.exists():
        return False
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        write(temp)
        os.replace(temp, path)
    finally:
        if temp.exists():
            temp.unlink()
    return True


def _levels(width: int, height: int, smallest: int = 512) -> int:
    """Pyramid levels (each half the previous) until the smaller side drops under ``smallest``."""
    levels = 1
    while min(width, height) >> levels >= smallest:
        levels += 1
    return levels


def generate_slide(folder: Path, slide: DemoSlide, seed: int = SEED) -> list[Path]:
    """Write one demo slide, its annotation file and its tissue mask (missing files only)."""
    from wsi_core.synthetic import write_pyramid_tiff

    rng = np.random.default_rng([seed, sum(map(ord, slide.name))])
    tissue, tumor, stroma = layout(slide, rng)
    mask = tissue_mask(slide, tissue)
    regions = [("Tumor", p) for p in tumor] + [("Stroma", p) for p in stroma]
    written = []
    slide_path = folder / slide.name
    if not slide_path.exists():
        image = render(slide, mask, tumor, rng)
        _write_new(
            slide_path,
            lambda p: write_pyramid_tiff(
                p,
                image,
                SLIDE_MPP,
                _levels(slide.width, slide.height),
                subifds=False,
                compression="jpeg",
            ),
        )
        written.append(slide_path)
    mask_path = folder / slide.mask_name()
    if _write_new(
        mask_path,
        lambda p: write_pyramid_tiff(
            p, mask, MASK_MPP, 2, subifds=False, resample="nearest", tile=(128, 128)
        ),
    ):
        written.append(mask_path)
    text = {
        "asap": lambda: asap_xml(regions),
        "geojson": lambda: geojson(regions),
        "darwin": lambda: darwin_json(slide, regions),
    }[slide.annotation_format]()
    annotation_path = folder / slide.annotation_name()
    if _write_new(annotation_path, lambda p: p.write_text(text, encoding="utf-8")):
        written.append(annotation_path)
    return written


def generate(
    folder: str | os.PathLike[str], slides: Sequence[DemoSlide] = DEMO_SLIDES, seed: int = SEED
) -> list[Path]:
    """Write the demo set into ``folder`` (created if needed); returns the files written."""
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for slide in slides:
        written += generate_slide(root, slide, seed)
    return written


def scaled(slides: Sequence[DemoSlide], factor: float) -> list[DemoSlide]:
    """The same slides, ``factor`` times as wide and high (for quick tests), multiples of 64."""
    return [
        DemoSlide(
            s.name,
            max(64, int(s.width * factor) // 64 * 64),
            max(64, int(s.height * factor) // 64 * 64),
            s.annotation_format,
        )
        for s in slides
    ]
