"""Tissue masks: seconds per slide for ``detect_tissue`` (open, read the low level, classify),
against one plain decode of the same level (the floor: the pixels must be read once).

Slides: the two real ones in ``../shared/data`` (``WSI_SHARED_DATA`` elsewhere; skipped when
absent); a large synthetic pyramid, the PERFORMANCE.md slide (40000 x 30000 at 0.25 um/px,
seven levels down to 16 um/px, of which the 8 um/px level is read); and a one-level slide of
12000 x 9000 at 0.5 um/px without any coarse level, which is read whole in bands and reduced
16 times. Levels the kernel never reads are stored blank to keep the set-up short: they cost
nothing at read time either way. Each time is the best of three runs, as the machine is
shared; the figures are noisy.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from benchmarks.tissue_pictures import Disc, he_picture
from wsi_core.slide import open_slide
from wsi_core.synthetic import pyramid_level
from wsi_core.tissue import TissueParameters, detect_tissue, read_low_resolution

SHARED_DATA = Path(
    os.environ.get("WSI_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared/data")
)
REAL_SLIDES = {  # file -> level-0 mpp to assume (None: the file's own)
    "CMU-1-Small-Region.svs": None,
    "tcga-cr-7395-01a-01-ts1.svs": 0.5,
}
TILE = 512


def _picture(shape: tuple[int, int], seed: int) -> np.ndarray:
    """A tissue picture with a dozen discs of stained tissue on white."""
    rng = np.random.default_rng(seed)
    height, width = shape
    discs = [
        Disc(rng.uniform(0, width), rng.uniform(0, height), rng.uniform(0.03, 0.15) * width)
        for _ in range(12)
    ]
    return he_picture(shape, discs, seed=seed)


def _tiles(level: np.ndarray | None, shape: tuple[int, int]) -> Iterator[np.ndarray]:
    """The TILE x TILE tiles of ``level`` in row-major order (edge tiles padded), or blank
    white tiles for a level of ``shape`` when ``level`` is None."""
    blank = np.full((TILE, TILE, 3), 255, np.uint8)
    for y in range(0, shape[0], TILE):
        for x in range(0, shape[1], TILE):
            if level is None:
                yield blank
                continue
            tile = blank.copy()
            part = level[y : y + TILE, x : x + TILE]
            tile[: part.shape[0], : part.shape[1]] = part
            yield tile


def write_large_pyramid(path: Path) -> Path:
    """40000 x 30000 at 0.25 um/px, levels 1/2 ... 1/64 as SubIFDs, JPEG tiles; the picture
    lives in levels 3 to 6 (2 to 16 um/px), the finer levels are blank."""
    shape0, mpp, count = (30000, 40000), 0.25, 7
    level3 = _picture((shape0[0] >> 3, shape0[1] >> 3), seed=7)
    with tifffile.TiffWriter(path, bigtiff=True) as writer:
        for i in range(count):
            shape = (shape0[0] >> i, shape0[1] >> i)
            level = None if i < 3 else pyramid_level(level3, i - 3)
            pixels_per_cm = 10_000 / (mpp * 2**i)
            writer.write(
                _tiles(level, shape),
                shape=(*shape, 3),
                dtype=np.uint8,
                tile=(TILE, TILE),
                photometric="rgb",
                compression="jpeg",
                resolution=(pixels_per_cm, pixels_per_cm),
                resolutionunit="CENTIMETER",
                subifds=count - 1 if i == 0 else None,
                subfiletype=1 if i else 0,
                metadata=None,
            )
    return path


def write_one_level(path: Path) -> Path:
    """12000 x 9000 at 0.5 um/px, one level, JPEG tiles: a picture made at 4 um/px and
    enlarged 8 times (nearest), so the pixels are not blank."""
    small = _picture((9000 // 8, 12000 // 8), seed=8)
    level = np.repeat(np.repeat(small, 8, axis=0), 8, axis=1)
    tifffile.imwrite(
        path,
        level,
        tile=(TILE, TILE),
        photometric="rgb",
        compression="jpeg",
        resolution=(10_000 / 0.5, 10_000 / 0.5),
        resolutionunit="CENTIMETER",
        metadata=None,
    )
    return path


def best_of(fn: Callable[[], Any], repeat: int = 3) -> tuple[float, Any]:
    """Best wall time of ``repeat`` calls, and the last result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def measure(name: str, path: Path, base_mpp: float | None) -> list[dict]:
    """``detect_tissue`` on one slide against one decode of the level it reads."""
    parameters = TissueParameters()

    def detect() -> Any:
        with open_slide(path) as slide:
            return detect_tissue(slide, parameters, base_mpp=base_mpp)

    def decode() -> Any:
        with open_slide(path) as slide:
            return read_low_resolution(slide, parameters.target_mpp, base_mpp=base_mpp)

    detect_s, found = best_of(detect)
    decode_s, picture = best_of(decode)
    with open_slide(path) as slide:
        width, height = slide.level_dimensions[found.level]
    note = (
        f"level {found.level} ({width} x {height}) / {found.factor} -> mask "
        f"{found.mask.shape[1]} x {found.mask.shape[0]} at {found.mpp[0]:.2f} um/px, "
        f"tissue {found.tissue_fraction:.1%}"
    )
    return [
        {"name": f"tissue: {name}: detect_tissue", "seconds": detect_s, "note": note},
        {
            "name": f"tissue: {name}: read + reduce the level (floor)",
            "seconds": decode_s,
            "note": f"detect_tissue = {detect_s / decode_s:.2f}x the floor; picture "
            f"{picture.rgb.shape[1]} x {picture.rgb.shape[0]}",
        },
    ]


def run() -> list[dict]:
    rows: list[dict] = []
    for file, base_mpp in REAL_SLIDES.items():
        path = SHARED_DATA / "slides" / file
        if not path.exists():
            rows.append({"name": f"tissue: {file}", "seconds": 0.0, "note": f"{path} absent"})
            continue
        rows.extend(measure(file, path, base_mpp))
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        large = write_large_pyramid(Path(folder) / "large.tiff")
        flat = write_one_level(Path(folder) / "flat.tiff")
        rows.append(
            {
                "name": "tissue: writing the synthetic slides (set-up)",
                "seconds": time.perf_counter() - start,
                "note": f"{large.stat().st_size / 2**20:.0f} MiB + "
                f"{flat.stat().st_size / 2**20:.0f} MiB",
            }
        )
        rows.extend(measure("40000 x 30000 pyramid", large, None))
        rows.extend(measure("12000 x 9000, one level", flat, None))
    return rows
