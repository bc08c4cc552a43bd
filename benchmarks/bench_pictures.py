"""Pictures and progress: what the UI's picture of a slide costs, and what reporting progress
costs the coverage kernel.

Rows:

* the thumbnail of CMU-1-Small-Region (one level, 2220 x 2967, read whole and scaled to 800 px;
  skipped without ``../shared/data``), and the picture of its ``slide_metadata``, with its
  PNG size;
* the picture of ``annotation_coverage`` and of ``overlay_overlap`` on a grid of about 1.2
  million tiles (40000 x 30000 level pixels, 32 px tiles) over a synthetic thumbnail: the
  drawing is per picture pixel, so the tile count hardly matters;
* coverage of that grid by the PERFORMANCE.md stars (300 polygons), in the kernel's default
  chunks of at most 32,768 tiles with a progress callback, against one chunk for all tiles and
  no callback (the kernel before progress); ``ratio_vs_baseline`` is one-chunk seconds over
  chunked seconds (1.0: progress is free).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from shapely.geometry import box

from benchmarks.bench_coverage import star_polygons
from wsi_core.pictures import Thumbnail, read_thumbnail, table_picture
from wsi_core.slide import open_slide
from wsi_core.tables import build_slide_metadata
from wsi_core.tables.overlay_overlap import overlap_table
from wsi_core.tiling import annotation_coverage, grid_tile_array, rect_coverage

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
EXTENT = (40000, 30000)  # level pixels, level 0
TILE = 32


def _timed(work: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    result = work()
    return time.perf_counter() - start, result


def _real_slide() -> list[dict[str, Any]]:
    path = SHARED / "slides" / "CMU-1-Small-Region.svs"
    if not path.is_file():
        return [{"name": "picture: CMU-1-Small-Region", "seconds": 0.0, "note": "no shared data"}]

    def thumbnail() -> Thumbnail:
        with open_slide(str(path)) as reader:
            return read_thumbnail(reader)

    read, thumb = _timed(thumbnail)
    meta, _ = build_slide_metadata(
        str(path), slide_key="c", uri=str(path), relpath=path.name, file_size=1, target_mpp=0.5
    )
    drawn, picture = _timed(lambda: table_picture("slide_metadata", thumb, meta))
    return [
        {
            "name": "picture: CMU-1-Small-Region thumbnail (6.6 Mpx read)",
            "seconds": read,
            "note": f"{thumb.size[0]}x{thumb.size[1]} from level {thumb.level}",
        },
        {
            "name": "picture: CMU-1-Small-Region slide_metadata",
            "seconds": drawn,
            "note": f"{len(picture.png) / 1024:.0f} KiB PNG, {picture.size[0]}x{picture.size[1]}",
        },
    ]


def _grid() -> pa.Table:
    origins = grid_tile_array(EXTENT, TILE, TILE, "keep")
    n = len(origins)
    return pa.table(
        {
            "slide_key": pa.array(["b"] * n),
            "tile_x": origins[:, 0],
            "tile_y": origins[:, 1],
            "level": pa.array(np.zeros(n, dtype=np.int32)),
            "tile_extent_x": np.full(n, TILE),
            "tile_extent_y": np.full(n, TILE),
            "mpp_x": np.full(n, 0.25),
            "downsample": np.full(n, 1.0),
        }
    )


def _big_pictures(grid: pa.Table, coverage: np.ndarray) -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)
    image = rng.integers(150, 250, (600, 800, 3), dtype=np.uint8)
    thumb = Thumbnail(image, EXTENT, 2)
    keys = grid.select(["slide_key", "tile_x", "tile_y", "level"])
    covered = keys.append_column("coverage_tumor", pa.array(coverage))
    tissue = np.clip(coverage * 1.3, 0, 1)
    fractions = [{"0": 1.0 - t, "255": t} for t in tissue.tolist()]
    overlap = overlap_table(keys, fractions)
    rows = []
    for table, data in (("annotation_coverage", covered), ("overlay_overlap", overlap)):
        seconds, picture = _timed(
            lambda t=table, d=data: table_picture(t, thumb, d, grid=grid, classes=["tumor"])
        )
        rows.append(
            {
                "name": f"picture: {table}, {grid.num_rows:,} tiles",
                "seconds": seconds,
                "note": f"{len(picture.png) / 1024:.0f} KiB PNG (random-noise thumbnail)",
            }
        )
    return rows


def _coverage_rows(origins: np.ndarray) -> tuple[list[dict[str, Any]], np.ndarray]:
    polygons = star_polygons()
    roi = box(0, 0, TILE, TILE)
    heard: list[tuple[int, int]] = []

    def chunked() -> np.ndarray:
        return annotation_coverage(
            polygons, roi, origins, 1.0, progress=lambda d, t: heard.append((d, t))
        )

    def whole() -> np.ndarray:
        default = rect_coverage._CHUNK_PIECES
        rect_coverage._CHUNK_PIECES = 1 << 62  # one chunk: no progress
        try:
            return annotation_coverage(polygons, roi, origins, 1.0)
        finally:
            rect_coverage._CHUNK_PIECES = default

    one, expected = min((_timed(whole) for _ in range(2)), key=lambda pair: pair[0])
    many, got = min((_timed(chunked) for _ in range(2)), key=lambda pair: pair[0])
    if not np.array_equal(got, expected):
        raise AssertionError("coverage in chunks differs from coverage in one chunk")
    n = len(origins)
    rows = [
        {
            "name": f"coverage {n:,} tiles, one chunk, no progress",
            "seconds": one,
            "tiles_per_s": n / one,
            "ratio_vs_baseline": 1.0,
        },
        {
            "name": f"coverage {n:,} tiles, chunks + progress ({len(heard) // 2} reports)",
            "seconds": many,
            "tiles_per_s": n / many,
            "ratio_vs_baseline": one / many,
        },
    ]
    return rows, got


def run() -> list[dict[str, Any]]:
    rows = _real_slide()
    grid = _grid()
    origins = np.column_stack([grid["tile_x"].to_numpy(), grid["tile_y"].to_numpy()])
    coverage_rows, coverage = _coverage_rows(origins)
    return [*rows, *_big_pictures(grid, coverage), *coverage_rows]
