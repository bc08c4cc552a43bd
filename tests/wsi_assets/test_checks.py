"""Asset checks pass on real tables and fail on corrupted ones (pure rules and Dagster checks)."""

import pyarrow as pa
import pyarrow.compute as pc
from dagster import AssetSelection, Definitions, define_asset_job
from wsi_assets_support import Pipeline

from wsi_assets import checks
from wsi_assets.keys import ANNOTATION_COVERAGE, OVERLAY_OVERLAP, SLIDE_METADATA, TILE_GRID
from wsi_assets.tables import write_table

KEY = "demo_slide_01"


def _materialized(pipeline: Pipeline) -> dict[str, pa.Table]:
    pipeline.discover()
    pipeline.materialize(KEY)
    return {
        name: pipeline.table(name, KEY)
        for name in (SLIDE_METADATA, TILE_GRID, ANNOTATION_COVERAGE, OVERLAY_OVERLAP)
    }


def _replace(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), table.schema.field(name), values)


def test_rules_on_good_and_corrupted_tables(pipeline: Pipeline) -> None:
    tables = _materialized(pipeline)
    coverage, overlap, grid, meta = (
        tables[n] for n in (ANNOTATION_COVERAGE, OVERLAY_OVERLAP, TILE_GRID, SLIDE_METADATA)
    )
    assert checks.coverage_in_unit_interval(coverage).passed
    assert checks.fractions_sum_to_one(overlap).passed
    assert checks.tiles_inside_slide(grid, meta).passed
    assert (
        checks.rows_match_grid(coverage, grid).passed
        and checks.rows_match_grid(overlap, grid).passed
    )

    too_much = _replace(coverage, "coverage_tumor", pc.add(coverage["coverage_tumor"], 1.5))
    verdict = checks.coverage_in_unit_interval(too_much)
    assert (
        not verdict.passed
        and verdict.metadata["tiles_outside"]["coverage_tumor"] == coverage.num_rows
    )

    halved = pa.array(
        [
            None if row is None else [(k, v / 2) for k, v in row]
            for row in overlap["fractions"].to_pylist()
        ],
        overlap.schema.field("fractions").type,
    )
    verdict = checks.fractions_sum_to_one(_replace(overlap, "fractions", halved))
    assert (
        not verdict.passed
        and verdict.metadata["tiles_not_summing_to_1"]
        == overlap["fractions"].length() - overlap["fractions"].null_count
    )

    shifted = _replace(grid, "tile_x", pc.add(grid["tile_x"], meta["extent_x"][0].as_py()))
    assert not checks.tiles_inside_slide(shifted, meta).passed
    assert not checks.rows_match_grid(coverage.slice(1), grid).passed
    assert not checks.rows_match_grid(
        _replace(coverage, "tile_y", pc.add(coverage["tile_y"], 1)), grid
    ).passed


def test_dagster_checks_fail_on_a_corrupted_file(pipeline: Pipeline) -> None:
    tables = _materialized(pipeline)
    coverage = tables[ANNOTATION_COVERAGE]
    corrupted = _replace(
        coverage, "coverage_stroma", pa.array([-0.5] * coverage.num_rows, pa.float64())
    )
    write_table(pipeline.settings.output_root, ANNOTATION_COVERAGE, KEY, corrupted.slice(2))

    # Dagster 1.13 cannot run a job of partitioned checks alone (it finds no partitions
    # definition), so the job also re-materializes tile_grid, which leaves it unchanged.
    job = define_asset_job(
        "checks_only",
        selection=AssetSelection.assets(TILE_GRID)
        | AssetSelection.checks_for_assets(ANNOTATION_COVERAGE),
    )
    defs = Definitions.merge(pipeline.defs, Definitions(jobs=[job]))
    result = defs.resolve_job_def("checks_only").execute_in_process(
        instance=pipeline.instance, partition_key=KEY
    )
    verdicts = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert set(verdicts) == {
        "coverage_in_unit_interval",
        "rows_match_tile_grid",
        "tiles_inside_slide",
    }
    assert verdicts["tiles_inside_slide"].passed
    assert not verdicts["coverage_in_unit_interval"].passed
    assert not verdicts["rows_match_tile_grid"].passed
    assert all(e.partition == KEY for e in verdicts.values())
    assert (
        pipeline.table(ANNOTATION_COVERAGE, KEY).num_rows == coverage.num_rows - 2
    )  # not rewritten
