"""The seed documents' code examples run against this project.

Each example is cut out of the seed file itself (so an edit to the seed is tested as written),
``ratiopath`` is replaced by ``wsi_core`` and the paths point at real data.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from wsi_core.openslide import OpenSlide
from wsi_core.slide import open_slide
from wsi_core.tiling import grid_tiles

SEEDS = Path(__file__).resolve().parents[1].parent / "shared" / "seeds"


def seed_example(name: str, first_line: str, last_line: str) -> str:
    """The code of a seed example, from ``first_line`` to ``last_line`` inclusive."""
    path = SEEDS / name
    if not path.is_file():
        pytest.skip(f"seed document {path} not found (a user's clone has no ../shared)")
    text = path.read_text()
    start = text.index(first_line)
    end = text.index(last_line, start) + len(last_line)
    return text[start:end].replace("ratiopath", "wsi_core")


def test_local_tile_extraction_writes_the_expected_pngs(shared_data, tmp_path, monkeypatch):
    slide_path = shared_data / "slides" / "CMU-1-Small-Region.svs"
    code = seed_example(
        "local-tile-extraction.txt", "from pathlib import Path", "            break"
    )
    code = code.replace('"slide.svs"', repr(str(slide_path)))
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "local-tile-extraction.txt", "exec"), {})

    written = sorted((tmp_path / "local_tiles").glob("tile_*.png"))
    # Expected from first principles: level 0 (0.499 um/px is closest to 0.5), 2220 x 2967
    # tiled by 512 with last="shift" gives 5 x 6 origins; tiles with std <= 8 are skipped.
    with OpenSlide(slide_path) as slide:
        assert slide.closest_level(0.5) == 0
        origins = list(grid_tiles((2220, 2967), (512, 512), (512, 512), last="shift"))
        assert len(origins) == 30 and origins[-1].tolist() == [2220 - 512, 2967 - 512]
        expected = {}
        for i, (x, y) in enumerate(origins):
            tile = slide.read_tile(x=x, y=y, extent_x=512, extent_y=512, level=0)
            if tile.std() > 8:
                expected[f"tile_{i:05d}.png"] = tile
    assert 0 < len(expected) <= 30
    assert [p.name for p in written] == sorted(expected)
    for path in written:
        image = np.asarray(Image.open(path))
        assert image.shape == (512, 512, 3) and image.dtype == np.uint8
        assert np.array_equal(image, expected[path.name])


ASAP_XML = """<?xml version="1.0"?>
<ASAP_Annotations>
  <Annotations>
    <Annotation Name="Tumor 1" Type="Polygon" PartOfGroup="Tumor" Color="#F4FA58">
      <Coordinates>
        <Coordinate Order="0" X="100" Y="100" />
        <Coordinate Order="1" X="1700" Y="300" />
        <Coordinate Order="2" X="900" Y="1500" />
      </Coordinates>
    </Annotation>
    <Annotation Name="Stroma" Type="Polygon" PartOfGroup="Stroma" Color="#64FE2E">
      <Coordinates>
        <Coordinate Order="0" X="0" Y="0" />
        <Coordinate Order="1" X="2000" Y="0" />
        <Coordinate Order="2" X="2000" Y="2000" />
        <Coordinate Order="3" X="0" Y="2000" />
      </Coordinates>
    </Annotation>
  </Annotations>
</ASAP_Annotations>
"""


def test_annotation_coverage_example_matches_shapely(tmp_path):
    code = seed_example(
        "annotation-and-overlay-signals.txt",
        "from typing import Any",
        "Under the hood for annotation coverage",
    )
    code = code.removesuffix("Under the hood for annotation coverage")
    namespace: dict = {}
    exec(compile(code, "annotation-and-overlay-signals.txt", "exec"), namespace)
    annotation_path = tmp_path / "slide.xml"
    annotation_path.write_text(ASAP_XML)
    row = {
        "path": "slide.tiff",
        "annotation_path": str(annotation_path),
        "extent_x": 1000,
        "extent_y": 800,
        "tile_extent_x": 256,
        "tile_extent_y": 256,
        "stride_x": 256,
        "stride_y": 256,
        "downsample": 2.0,
    }
    rows = namespace["tiles_with_annotation_coverage"](row)

    from shapely.geometry import Polygon, box

    tumour = Polygon([(100, 100), (1700, 300), (900, 1500)])  # level 0; "Stroma" is filtered out
    origins = [(x, y) for y in (0, 256, 512, 768) for x in (0, 256, 512, 768)]
    assert [(r["tile_x"], r["tile_y"]) for r in rows] == origins
    for r in rows:
        x, y = r["tile_x"], r["tile_y"]
        level0_tile = box(x * 2, y * 2, (x + 256) * 2, (y + 256) * 2)
        want = tumour.intersection(level0_tile).area / level0_tile.area
        assert r["annotation_coverage"] == pytest.approx(want, abs=1e-12)
    assert max(r["annotation_coverage"] for r in rows) > 0.5


# The Ray examples ---------------------------------------------------------------------------
#
# Each runs as written on one local Ray per session, with ``ratiopath`` replaced by
# ``wsi_core`` and the paths changed, on a real slide (CMU-1-Small-Region with the LUNA mask,
# rewritten with the slide's resolution, which the original file does not record) and on
# synthetic ones; every row is compared with the in-process kernels. What a seed leaves out
# or gets wrong against Ray 2.60 is adapted where the test says so, and only there.

SEED_SLIDE_TILE = 512


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory):
    """The session's local Ray (shared with test_ray.py through ray_support)."""
    import ray_support

    log = ray_support.start_ray(tmp_path_factory.mktemp("ray"))
    yield log
    ray_support.stop_ray()


@pytest.fixture(scope="module")
def seed_folders(shared_data, tmp_path_factory) -> dict[str, dict]:
    """Slides for the Ray seeds, real and synthetic, each with an ASAP file (``{stem}.xml``)
    and a tissue mask (``{stem}_tissue_mask.tiff``) beside it.

    * ``real``: CMU-1-Small-Region.svs (2220 x 2967 at 0.499 um/px), the ASAP triangle of
      ``ASAP_XML`` on its grid, and LUNA's mask_full_res.tif (0/1, same grid).
    * ``synthetic``: the demo generator's first slide at half size (3072 x 2048 at 0.5 um/px,
      its own ASAP file, a 0/255 mask at 8 um/px) and a 3-level pyramid, 4096 x 3072 at
      0.125 um/px (tiled at 0.25 um/px: level 1, downsample 2) with ``ASAP_XML`` and a 0/255
      mask at 4 um/px. Every tile's centre box meets its mask: attaching-overlay-data.md's
      post-processing reads the overlap of every tile as a dict, and a tile whose ROI misses
      the overlay has a null overlap (SEMANTICS.md), not a dict.

    ``annotated`` is a second folder with the slides and their ASAP files only: the
    annotation seed reads a whole folder, and a mask there would be read as one more slide.
    """
    import tifffile

    from wsi_assets.pipeline import demo
    from wsi_core.synthetic import write_pyramid_tiff

    real = tmp_path_factory.mktemp("real")
    cmu = real / "CMU-1-Small-Region.svs"
    shutil.copy(shared_data / "slides" / cmu.name, cmu)
    (real / "CMU-1-Small-Region.xml").write_text(ASAP_XML)
    mask = tifffile.imread(shared_data / "masks" / "mask_full_res.tif")
    write_pyramid_tiff(
        real / "CMU-1-Small-Region_tissue_mask.tiff", mask, 0.499, 1, resample="nearest"
    )

    synthetic = tmp_path_factory.mktemp("synthetic")
    demo.generate(synthetic, demo.scaled(demo.DEMO_SLIDES[:1], 0.5))
    rng = np.random.default_rng(11)
    image = rng.integers(90, 250, (3072, 4096, 3), dtype=np.uint8)
    fine = write_pyramid_tiff(synthetic / "fine.tiff", image, 0.125, 3, compression="jpeg")
    (synthetic / "fine.xml").write_text(ASAP_XML)
    labels = np.zeros((96, 128), dtype=np.uint8)  # 512 x 384 um at 4 um/px, as the slide
    labels[20:90, 10:100] = 255
    write_pyramid_tiff(synthetic / "fine_tissue_mask.tiff", labels, 4.0, 1, resample="nearest")

    folders = {
        "real": {"slides": [cmu], "extension": ".svs"},
        "synthetic": {
            "slides": sorted([synthetic / "demo_slide_01.tiff", fine]),
            "extension": ".tiff",
        },
    }
    for kind, data in folders.items():
        annotated = tmp_path_factory.mktemp(f"{kind}_annotated")
        for slide in data["slides"]:
            shutil.copy(slide, annotated / slide.name)
            shutil.copy(slide.with_suffix(".xml"), annotated / f"{slide.stem}.xml")
        data["annotated"] = annotated
    return folders


def read_slide_row(path: Path, mpp: float) -> dict:
    """The read_slides row of ``path`` at ``mpp``, tiles of 512, from the reader itself."""
    with open_slide(path) as slide:
        level = slide.closest_level(mpp)
        mpp_x, mpp_y = slide.slide_resolution(level)
        return {
            "path": str(path),
            "extent_x": slide.level_dimensions[level][0],
            "extent_y": slide.level_dimensions[level][1],
            "tile_extent_x": SEED_SLIDE_TILE,
            "tile_extent_y": SEED_SLIDE_TILE,
            "stride_x": SEED_SLIDE_TILE,
            "stride_y": SEED_SLIDE_TILE,
            "mpp_x": mpp_x,
            "mpp_y": mpp_y,
            "level": level,
            "downsample": float(slide.level_downsamples[level]),
            "level_count": slide.level_count,
            "base_mpp_x": slide.mpp[0],
            "base_mpp_y": slide.mpp[1],
            "vendor": slide.vendor,
        }


@pytest.mark.parametrize("kind", ["real", "synthetic"])
# The seed filters with a lambda, as Ray 2.60 still allows (with this warning).
@pytest.mark.filterwarnings("ignore:Use 'expr' instead of 'fn':UserWarning")
def test_annotation_aware_tile_dataset_runs_on_ray(ray_cluster, seed_folders, kind):
    from shapely.geometry import box

    from wsi_core.parsers import ASAPParser
    from wsi_core.tiling import grid_tile_array, tile_annotations
    from wsi_core.tiling.utils import row_hash

    data = seed_folders[kind]
    code = seed_example(
        "annotation-aware-tile-dataset.txt",
        "from typing import Any",
        'positive_tiles = tiles.filter(lambda row: row["annotation_coverage"] >= 0.5)',
    )
    # Paths: the folder, and the slides' own extension where the seed has MIRAX's.
    code = code.replace('read_slides("data"', f"read_slides({str(data['annotated'])!r}")
    code = code.replace('.replace(".mrxs", ".xml")', f'.replace({data["extension"]!r}, ".xml")')
    namespace: dict = {}
    exec(compile(code, "annotation-aware-tile-dataset.txt", "exec"), namespace)
    rows = namespace["tiles"].take_all()
    positive = namespace["positive_tiles"].take_all()

    want = {}
    for slide in (data["annotated"] / s.name for s in data["slides"]):
        meta = read_slide_row(slide, 0.25)
        annotations = list(ASAPParser(slide.with_suffix(".xml")).get_polygons(name="Tumor.*"))
        roi = box(0, 0, SEED_SLIDE_TILE, SEED_SLIDE_TILE)
        origins = grid_tile_array(
            (meta["extent_x"], meta["extent_y"]), SEED_SLIDE_TILE, SEED_SLIDE_TILE, last="keep"
        )
        geometries = tile_annotations(annotations, roi, origins, meta["downsample"])
        slide_id = row_hash(meta)["id"]
        for (x, y), geometry in zip(origins.tolist(), geometries, strict=True):
            want[(str(slide), x, y)] = (slide_id, geometry.area / roi.area)
    got = {
        (r["path"], r["tile_x"], r["tile_y"]): (r["slide_id"], r["annotation_coverage"])
        for r in rows
    }
    assert got == want
    assert sorted((r["path"], r["tile_x"], r["tile_y"]) for r in positive) == sorted(
        key for key, (_, coverage) in want.items() if coverage >= 0.5
    )
    assert any(coverage >= 0.5 for _, coverage in want.values())
    assert any(0 < coverage < 0.5 for _, coverage in want.values())


def markdown_blocks(name: str) -> list[str]:
    """The code blocks (fenced with three or four backticks) of a seed document, in order,
    with ``ratiopath`` replaced by ``wsi_core``."""
    path = SEEDS / name
    if not path.is_file():
        pytest.skip(f"seed document {path} not found (a user's clone has no ../shared)")
    blocks = re.findall(r"^(`{3,4})python\n(.*?)^\1$", path.read_text(), re.M | re.S)
    return [code.replace("ratiopath", "wsi_core") for _, code in blocks]


def assert_overlay_rows(
    overlap_rows,
    overlay_rows,
    overlay_column,
    overlap_column,
    overlay_name,
    roi_overlap,
    roi_overlay,
):
    """Rows of the seeds' overlap and patch datasets equal the in-process kernels."""
    from ray_support import assert_same_fractions, by_tile, in_process

    from wsi_core.tiling import tile_overlay, tile_overlay_overlap

    want = in_process(overlap_rows, tile_overlay_overlap, overlay_column, roi=roi_overlap)
    for key, row in by_tile(overlap_rows).items():
        assert_same_fractions(row[overlap_column], want[key])
    patches = in_process(overlay_rows, tile_overlay, overlay_column, roi=roi_overlay)
    for key, row in by_tile(overlay_rows).items():
        for name in ("data", "mask"):
            assert np.array_equal(row[overlay_name][name], getattr(patches[key], name))
    assert len(overlap_rows) == len(overlay_rows) > 0


@pytest.mark.parametrize("kind", ["real", "synthetic"])
def test_overlay_signals_run_on_ray(ray_cluster, seed_folders, kind):
    """annotation-and-overlay-signals.txt, options 2 and 3, in one namespace (option 3 reuses
    option 2's tiles)."""
    from shapely.geometry import box

    data = seed_folders[kind]
    name = "annotation-and-overlay-signals.txt"
    option_2 = seed_example(
        name,
        "from typing import Any\n\nfrom ray.data.expressions import col",
        "memory=4 * 1024**3,\n)",
    )
    option_3 = seed_example(
        name,
        "from ray.data.expressions import col\nfrom shapely.geometry import box\n\n"
        "from ratiopath.tiling import tile_overlay\n",
        "memory=4 * 1024**3,\n)",
    )
    # Paths: the slides themselves rather than their folder (their masks lie beside them and
    # would be read as slides too), and the slides' own extension.
    slides = [str(p) for p in data["slides"]]
    option_2 = option_2.replace('read_slides("data"', f"read_slides({slides!r}")
    option_2 = option_2.replace('.replace(".svs",', f".replace({data['extension']!r},")
    masks = [p.replace(data["extension"], "_tissue_mask.tiff") for p in slides]
    before = ray_cluster.opens(*masks)
    namespace: dict = {}
    exec(compile(option_2, name, "exec"), namespace)
    overlap_rows = namespace["tiles_with_overlap"].take_all()
    opened = ray_cluster.opens(*masks)
    exec(compile(option_3, name, "exec"), namespace)
    overlay_rows = namespace["tiles_with_overlay"].take_all()

    assert_overlay_rows(
        overlap_rows,
        overlay_rows,
        "overlay_path",
        "tissue_overlap",
        "tissue_overlay",
        box(0, 0, 512, 512),
        box(128, 128, 384, 384),
    )
    tiles_per_slide = {p: sum(r["path"] == p for r in overlap_rows) for p in slides}
    for slide, mask in zip(slides, masks, strict=True):
        # The overlay is opened per block of tiles (once here), never per tile.
        assert 1 <= opened[mask] - before[mask] < tiles_per_slide[slide]


@pytest.mark.parametrize("kind", ["real", "synthetic"])
# The seed filters with a lambda, as Ray 2.60 still allows (with this warning).
@pytest.mark.filterwarnings("ignore:Use 'expr' instead of 'fn':UserWarning")
def test_attaching_overlay_data_runs_on_ray(ray_cluster, seed_folders, kind):
    """attaching-overlay-data.md, its five blocks in one namespace."""
    from ray.data.expressions import col
    from shapely.geometry import box

    from wsi_core.ray import read_slides
    from wsi_core.tiling import grid_tiles

    data = seed_folders[kind]
    name = "attaching-overlay-data.md"
    blocks = markdown_blocks(name)
    assert len(blocks) == 5
    prepare, roi_block, overlay_block, overlap_block, post_block = blocks

    # 2.1 leaves the tiles to "the tutorial in Tiling Quick Start": here they are, as the
    # other seeds make them. Its batch function uses pandas' .str, so the batches are asked
    # for as pandas (Ray 2.60's default batch format is numpy). Paths: the slides' extension.
    def quick_start_tiles(row: dict) -> list[dict]:
        return [
            {
                "path": row["path"],
                "tile_x": int(x),
                "tile_y": int(y),
                "tile_extent_x": row["tile_extent_x"],
                "tile_extent_y": row["tile_extent_y"],
                "mpp_x": row["mpp_x"],
                "mpp_y": row["mpp_y"],
            }
            for x, y in grid_tiles(
                (row["extent_x"], row["extent_y"]),
                (row["tile_extent_x"], row["tile_extent_y"]),
                (row["stride_x"], row["stride_y"]),
                last="keep",
            )
        ]

    slides = [str(p) for p in data["slides"]]
    prepare = prepare.replace(
        "slides = ...\ntiles = ...\n",
        f"slides = read_slides({slides!r}, mpp=0.5, tile_extent=512, stride=512)\n"
        "tiles = slides.flat_map(quick_start_tiles)\n",
    )
    prepare = prepare.replace(
        "tiles.map_batches(add_overlay_path)",
        'tiles.map_batches(add_overlay_path, batch_format="pandas")',
    )
    prepare = prepare.replace('.replace(".mrxs",', f".replace({data['extension']!r},")
    # 3 post-processes "tiles_with_overlap" and its "tissue_mask_overlap" column, names the
    # document never defines: they are the dataset and column that block 3 just made.
    post_block = post_block.replace("tiles_with_overlap.map", "tissue_tiles.map")
    post_block = post_block.replace('tile["tissue_mask_overlap"]', 'tile["tissue_overlap"]')
    # The blocks use col without importing it (the Quick Start does).
    namespace: dict = {
        "col": col,
        "read_slides": read_slides,
        "quick_start_tiles": quick_start_tiles,
    }
    for number, code in enumerate([prepare, roi_block, overlay_block, overlap_block, post_block]):
        exec(compile(code, f"{name} block {number + 1}", "exec"), namespace)

    overlap_rows = namespace["tissue_tiles"].take_all()
    overlay_rows = namespace["tile_with_overlay"].take_all()
    assert_overlay_rows(
        overlap_rows,
        overlay_rows,
        "tissue_mask_path",
        "tissue_overlap",
        "tissue_overlay",
        box(128, 128, 384, 384),
        box(128, 128, 384, 384),
    )
    kept = namespace["tiles_with_tissue_coverage"].take_all()
    want = sorted(
        (r["path"], r["tile_x"], r["tile_y"])
        for r in overlap_rows
        if r["tissue_overlap"].get("255", 0.0) >= 0.5
    )
    assert sorted((r["path"], r["tile_x"], r["tile_y"]) for r in kept) == want
    assert all(r["tissue_coverage"] == r["tissue_overlap"].get("255", 0.0) for r in kept)
    if kind == "synthetic":  # the LUNA mask is 0/1 and nearly empty: no tile keeps 255
        assert want
