"""The tables' consistency rules pass on built tables and fail on corrupted ones."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from shapely.geometry import box

from wsi_core.synthetic import write_pyramid_tiff
from wsi_core.tables import (
    build_annotation_coverage,
    build_overlay_overlap,
    build_slide_metadata,
    build_tile_grid,
)
from wsi_core.tables import checks as rules


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pa.Table]:
    """The four tables of a small synthetic slide with a half-set mask."""
    import numpy as np

    folder = tmp_path_factory.mktemp("checks")
    image = np.full((512, 768, 3), 230, np.uint8)
    write_pyramid_tiff(folder / "s.tiff", image, 0.5, 2)
    mask = np.zeros((64, 96), np.uint8)
    mask[:, :48] = 255
    write_pyramid_tiff(folder / "m.tiff", mask, 4.0, 1)
    (folder / "a.geojson").write_text(
        '{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": '
        '{"classification": {"name": "Tumor"}}, "geometry": {"type": "Polygon", '
        '"coordinates": [[[0, 0], [300, 0], [300, 200], [0, 200], [0, 0]]]}}]}'
    )
    meta, _ = build_slide_metadata(
        str(folder / "s.tiff"),
        slide_key="s",
        uri="s.tiff",
        relpath="s.tiff",
        file_size=1,
        target_mpp=1.0,
    )
    grid = build_tile_grid(meta, 128, 128, "keep")
    roi = box(0, 0, 128, 128)
    coverage, _ = build_annotation_coverage(
        grid, str(folder / "a.geojson"), {"tumor": "Tumor"}, roi
    )
    overlap, _ = build_overlay_overlap(grid, str(folder / "m.tiff"), roi)
    return {"meta": meta, "grid": grid, "coverage": coverage, "overlap": overlap}


def _replace(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    index = table.schema.get_field_index(name)
    return table.set_column(index, table.schema.field(name), values)


def test_rules_pass_on_built_tables(tables: dict[str, pa.Table]) -> None:
    grid, meta = tables["grid"], tables["meta"]
    assert rules.coverage_in_unit_interval(tables["coverage"]).passed
    assert rules.fractions_sum_to_one(tables["overlap"]).passed
    assert rules.tiles_inside_slide(grid, meta).passed
    assert rules.rows_match_grid(tables["coverage"], grid).passed
    assert rules.rows_match_grid(tables["overlap"], grid).passed
    # the polygon (level 0: 300 x 200) covers 256 x 200 of the first 256 x 256 tile
    assert pc.max(tables["coverage"]["coverage_tumor"]).as_py() == 200 / 256


def test_rules_fail_on_corrupted_tables(tables: dict[str, pa.Table]) -> None:
    coverage, overlap, grid, meta = (tables[n] for n in ("coverage", "overlap", "grid", "meta"))
    too_much = _replace(coverage, "coverage_tumor", pc.add(coverage["coverage_tumor"], 1.5))
    verdict = rules.coverage_in_unit_interval(too_much)
    assert not verdict.passed
    assert verdict.metadata["tiles_outside"]["coverage_tumor"] == coverage.num_rows

    halved = pa.array(
        [
            None if r is None else [(k, v / 2) for k, v in r]
            for r in overlap["fractions"].to_pylist()
        ],
        overlap.schema.field("fractions").type,
    )
    verdict = rules.fractions_sum_to_one(_replace(overlap, "fractions", halved))
    measured = overlap["fractions"].length() - overlap["fractions"].null_count
    assert not verdict.passed and verdict.metadata["tiles_not_summing_to_1"] == measured

    shifted = _replace(grid, "tile_x", pc.add(grid["tile_x"], meta["extent_x"][0].as_py()))
    assert not rules.tiles_inside_slide(shifted, meta).passed
    assert not rules.rows_match_grid(coverage.slice(1), grid).passed
    moved = _replace(coverage, "tile_y", pc.add(coverage["tile_y"], 1))
    assert not rules.rows_match_grid(moved, grid).passed
