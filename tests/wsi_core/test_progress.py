"""Progress of the per-tile builders: reports that grow to the total, and coverage measured in
chunks (so that it can report) equal, bit for bit, to one kernel call over the whole grid."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import shapely
from shapely.geometry import Point, box

from benchmarks.bench_coverage import cell_polygons, square_polygons, star_polygons
from wsi_core import progress
from wsi_core.progress import Throttled, progress_logger
from wsi_core.synthetic import write_pyramid_tiff
from wsi_core.tables import build_overlay_overlap, build_slide_metadata, build_tile_grid
from wsi_core.tables.annotation_coverage import measure_coverage
from wsi_core.tiling import (
    annotation_coverage,
    grid_tile_array,
    rect_coverage,
    tile_overlay_overlap,
)
from wsi_core.tiling import overlay as overlay_module


class Recorder:
    """A progress callback that keeps what it heard."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def __call__(self, done: int, total: int) -> None:
        self.calls.append((done, total))

    def check(self, total: int) -> None:
        """Counts start at 0, never decrease, end at the total; the total never changes."""
        assert self.calls[0] == (0, total) and self.calls[-1] == (total, total)
        done = [d for d, _ in self.calls]
        assert done == sorted(done) and len(set(done)) == len(done)
        assert {t for _, t in self.calls} == {total}


def test_throttled_reports_every_n_tiles_and_the_end() -> None:
    heard = Recorder()
    reporter = Throttled(heard, 1000, every_tiles=300, every_seconds=3600)
    for _ in range(11):
        reporter.add(90)  # 90, 180, ... 990
    reporter.finish()
    assert heard.calls == [(0, 1000), (360, 1000), (720, 1000), (1000, 1000)]
    reporter.finish()  # nothing new to say
    assert len(heard.calls) == 4
    Throttled(None, 10).add(10)  # no callback, no error


def test_progress_logger_message() -> None:
    lines: list[str] = []
    progress_logger(lines.append, "annotation_coverage of s1")(12_000, 48_000)
    assert lines == ["annotation_coverage of s1: 12,000 of 48,000 tiles (25 %)"]


def _write_geojson(path: Path, classes: dict[str, list]) -> Path:
    features = [
        {
            "type": "Feature",
            "geometry": shape.__geo_interface__,
            "properties": {"classification": {"name": name}},
        }
        for name, shapes in classes.items()
        for shape in shapes
    ]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


def _grid(extent: tuple[int, int], tile: int, downsample: float) -> pa.Table:
    origins = grid_tile_array(extent, tile, tile, "keep")
    return pa.table(
        {
            "tile_x": origins[:, 0],
            "tile_y": origins[:, 1],
            "downsample": np.full(len(origins), downsample),
        }
    )


def _tessellation(extent: float, n: int) -> list:
    """Cells that share every edge with a neighbour (the kernel's GEOS route)."""
    rng = np.random.default_rng(3)
    points = shapely.multipoints(rng.uniform(0, extent, (n, 2)))
    region = box(0, 0, extent, extent)
    return list(shapely.intersection(shapely.get_parts(shapely.voronoi_polygons(points)), region))


CASES = {
    # the PERFORMANCE.md slide: 300 large overlapping stars, 4661 tiles of 512 px, level 0
    "stars": ((40000, 30000), 512, 1.0, box(0, 0, 512, 512)),
    # dense cells, squares and a tessellation at downsample 2; a tile box, then a disc (GEOS)
    "dense": ((2048, 2048), 32, 2.0, box(0, 0, 32, 32)),
    "dense-disc": ((2048, 2048), 32, 2.0, Point(16, 16).buffer(14, 8)),
}


def _shapes(case: str) -> dict[str, list]:
    extent, _, downsample, _ = CASES[case]
    if case == "stars":
        return {"tumor": star_polygons()}
    level0 = extent[0] * downsample
    return {
        "cells": list(cell_polygons(3000, level0)),
        "squares": list(square_polygons(6000, level0)),
        "tiles": _tessellation(level0, 400),
    }


@pytest.mark.parametrize("case", ["stars", "dense"])
def test_small_chunks_give_the_same_coverage_bit_for_bit(
    case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks of 97 boundary pieces (dozens of progress reports) against the default chunks."""
    extent, tile, downsample, roi = CASES[case]
    grid = _grid(extent, tile, downsample)
    origins = np.column_stack([grid["tile_x"].to_numpy(), grid["tile_y"].to_numpy()])
    for name, polygons in _shapes(case).items():
        whole = annotation_coverage(polygons, roi, origins, downsample)
        monkeypatch.setattr(rect_coverage, "_CHUNK_PIECES", 97)
        heard = Recorder()
        chunked = annotation_coverage(polygons, roi, origins, downsample, progress=heard)
        monkeypatch.undo()
        assert np.array_equal(chunked, whole), name
        assert (whole > 0).sum() > 100  # the chunks meet polygons, not only background
        heard.check(len(origins))


@pytest.mark.parametrize("case", list(CASES))
def test_coverage_builder_reports_tiles_over_all_classes(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    extent, tile, downsample, roi = CASES[case]
    shapes = _shapes(case)
    annotation = _write_geojson(tmp_path / "a.geojson", shapes)
    grid = _grid(extent, tile, downsample)
    monkeypatch.setattr(rect_coverage, "_CHUNK_PIECES", 500)
    monkeypatch.setattr(progress, "EVERY_TILES", 500)
    heard = Recorder()
    classes = {name: name for name in shapes}
    measured, _ = measure_coverage(grid, str(annotation), classes, roi, progress=heard)
    heard.check(grid.num_rows)
    assert len(heard.calls) >= 3
    origins = np.column_stack([grid["tile_x"].to_numpy(), grid["tile_y"].to_numpy()])
    for name, polygons in shapes.items():  # the GeoJSON round trip keeps every coordinate
        assert np.array_equal(
            measured[name],
            annotation_coverage(polygons, roi, origins, 2.0 if case != "stars" else 1.0),
        )


def test_overlap_reports_every_tile_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 0/255 mask over a 2048 x 1536 slide at 1 um/px; 3072 tiles of 32 px, a mask read
    budget small enough for many reads."""
    monkeypatch.setattr(overlay_module, "READ_BUDGET_PIXELS", 64 * 2048)  # two tile rows
    monkeypatch.setattr(progress, "EVERY_TILES", 256)
    slide_image = np.full((1536, 2048, 3), 220, dtype=np.uint8)
    slide = write_pyramid_tiff(tmp_path / "s.tiff", slide_image, 1.0, 1)
    mask = np.zeros((1536, 2048), dtype=np.uint8)
    mask[200:900, 300:1500] = 255
    overlay = write_pyramid_tiff(tmp_path / "m.tiff", mask, 1.0, 1, resample="nearest")
    meta, _ = build_slide_metadata(
        str(slide), slide_key="s", uri=str(slide), relpath="s.tiff", file_size=1, target_mpp=1.0
    )
    grid = build_tile_grid(meta, 32, 32, "keep")
    roi = box(0, 0, 32, 32)
    heard = Recorder()
    table, _ = build_overlay_overlap(grid, str(overlay), roi, progress=heard)
    heard.check(grid.num_rows)
    assert len(heard.calls) >= 10
    expected = tile_overlay_overlap(
        roi, str(overlay), grid["tile_x"].to_numpy(), grid["tile_y"].to_numpy(), 1.0, 1.0
    )
    assert table["fractions"].to_pylist() == [
        None if row is None else list(row.items()) for row in expected
    ]
    assert sum(table["tissue_fraction"].to_pylist()) * 32 * 32 == 700 * 1200
