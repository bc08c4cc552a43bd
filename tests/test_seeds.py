"""The seed documents' code examples run against this project.

Each example is cut out of the seed file itself (so an edit to the seed is tested as written),
``ratiopath`` is replaced by ``wsi_core`` and the paths point at real data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from wsi_core.openslide import OpenSlide
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
