"""Flat figures and preview order of the per-tile tables, on tables whose answers are known."""

from __future__ import annotations

import pyarrow as pa

from wsi_core.tables.figures import ranked, table_figures
from wsi_core.tables.overlay_overlap import overlap_table

KEYS = {"slide_key": ["s"] * 5, "tile_x": [0, 1, 2, 3, 4], "tile_y": [0] * 5, "level": [0] * 5}
COVERAGE = pa.table(
    {
        **KEYS,
        "coverage_tumor": [0.0, 0.6, None, 1.0, 0.6],
        "coverage_stroma": [0.2, 0.0, 0.9, 0.0, 0.0],
    }
)


def test_coverage_rows_by_highest_class_then_tile_order() -> None:
    rows, order = ranked("annotation_coverage", COVERAGE, ["tumor", "stroma"])
    assert rows["tile_x"].to_pylist() == [3, 2, 1, 4, 0]  # 1.0, 0.9, 0.6, 0.6 (tie), 0.2
    assert order == "highest coverage of any class first"


def test_coverage_figures() -> None:
    figures = table_figures("annotation_coverage", COVERAGE, ["tumor", "stroma"])
    assert figures == {
        "tile_count": 5,
        "mean_coverage_tumor": (0.0 + 0.6 + 1.0 + 0.6) / 4,  # the null is not a 0
        "tiles_over_half_tumor": 3,
        "mean_coverage_stroma": 1.1 / 5,
        "tiles_over_half_stroma": 1,
    }
    unmeasured = COVERAGE.set_column(4, "coverage_tumor", pa.nulls(5, pa.float64()))
    assert "mean_coverage_tumor" not in table_figures("annotation_coverage", unmeasured, ["tumor"])


def test_overlap_rows_and_figures() -> None:
    grid = pa.table(KEYS)
    fractions = [{"0": 1.0}, {"0": 0.5, "255": 0.5}, None, {"255": 1.0}, {"0": 0.75, "255": 0.25}]
    table = overlap_table(grid, fractions)
    rows, _ = ranked("overlay_overlap", table)
    assert rows["tile_x"].to_pylist() == [3, 1, 4, 0, 2]  # null last
    assert table_figures("overlay_overlap", table) == {
        "tile_count": 5,
        "mean_tissue_fraction": 1.75 / 4,
        "tiles_with_tissue": 3,
        "tiles_without_overlay_pixels": 1,
    }
    assert ranked("tile_grid", grid)[0] is grid
