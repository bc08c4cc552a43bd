"""Materialize the tables through Dagster for real (synthetic) slides: values equal direct
wsi_core calls, metadata says what the UI needs, failures stay in their own partition."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import dagster as dg
import duckdb
import fsspec
import numpy as np
import pyarrow.dataset as ds
import pytest
from shapely.geometry import box
from wsi_assets_support import TILE, Harness, failure_messages, make_settings

from wsi_assets.pipeline import demo
from wsi_assets.pipeline.keys import slide_key
from wsi_assets.sources import recorded_versions
from wsi_core.parsers import open_annotations
from wsi_core.slide import open_slide
from wsi_core.tables import ANNOTATION_COVERAGE, OVERLAY_OVERLAP, SLIDE_METADATA, TABLES, TILE_GRID
from wsi_core.tiling import annotation_coverage, grid_tile_array, tile_overlay_overlap


def latest_metadata(harness: Harness, table: str, key: str) -> dict:
    """Metadata of the latest materialization of one slide's table (what the UI shows)."""
    records = harness.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(table), asset_partitions=[key]), limit=1
    ).records
    assert records
    event = records[0].asset_materialization
    assert event is not None
    return dict(event.metadata)


@pytest.mark.parametrize("slide", demo.DEMO_SLIDES, ids=lambda s: s.annotation_format)
def test_tables_match_direct_kernel_calls(
    harness: Harness, slide_root: Path, slide: demo.DemoSlide
) -> None:
    harness.discover()
    key = slide_key(slide.name)
    result = harness.materialize(key)
    assert result.success
    checks = result.get_asset_check_evaluations()
    assert len(checks) == 6 and all(check.passed for check in checks)

    slide_path = str(slide_root / slide.name)
    meta = harness.table(SLIDE_METADATA, key).to_pylist()[0]
    with open_slide(slide_path) as reader:
        level = reader.closest_level(1.0)
        assert meta["level"] == level == 1
        assert (meta["mpp_x"], meta["mpp_y"]) == reader.slide_resolution(level)
        assert (meta["extent_x"], meta["extent_y"]) == reader.level_dimensions[level]
        assert meta["level_count"] == reader.level_count
    assert meta["uri"] == slide_path and meta["slide_key"] == key

    grid = harness.table(TILE_GRID, key)
    origins = grid_tile_array((meta["extent_x"], meta["extent_y"]), TILE, TILE, "keep")
    assert np.array_equal(
        np.column_stack([grid["tile_x"].to_numpy(), grid["tile_y"].to_numpy()]), origins
    )
    assert np.array_equal(grid["x0"].to_numpy(), np.floor(origins[:, 0] * meta["downsample"] + 0.5))

    roi = box(0, 0, TILE, TILE)
    parser = open_annotations(str(slide_root / slide.annotation_name()))
    coverage = harness.table(ANNOTATION_COVERAGE, key)
    for name, pattern in harness.settings.label_classes.items():
        expected = annotation_coverage(
            parser.get_class_polygons(pattern), roi, origins, meta["downsample"]
        )
        assert np.array_equal(coverage[f"coverage_{name}"].to_numpy(), expected)
    assert coverage["coverage_tumor"].to_numpy().max() > 0.1

    overlap = harness.table(OVERLAY_OVERLAP, key)
    expected_overlap = tile_overlay_overlap(
        roi,
        str(slide_root / slide.mask_name()),
        origins[:, 0],
        origins[:, 1],
        meta["mpp_x"],
        meta["mpp_y"],
    )
    assert [None if r is None else dict(r) for r in overlap["fractions"].to_pylist()] == (
        expected_overlap
    )
    tissue = overlap["tissue_fraction"].to_numpy()
    assert tissue.min() == 0.0 and tissue.max() > 0.9


def test_materialization_metadata_in_the_ui(harness: Harness) -> None:
    harness.discover()
    key = "demo_slide_01"
    harness.materialize(key)
    for table in TABLES:
        metadata = latest_metadata(harness, table, key)
        stored = harness.table(table, key)
        assert metadata["dagster/row_count"].value == stored.num_rows
        assert metadata["dagster/uri"].value == harness.pipeline.tables.path(table, key).path
        names = [column.name for column in metadata["dagster/column_schema"].schema.columns]
        assert names == stored.column_names
        assert metadata["preview"].value.startswith("| slide_key")
        assert metadata["parameters"].value == harness.settings.table_params(table)
        origin = harness.pipeline.tables.read(table, key)[1]
        assert origin is not None and metadata["provenance"].value == origin.id
    lineage = latest_metadata(harness, TILE_GRID, key)["dagster/column_lineage"].value
    assert lineage.deps_by_column["level"][0].asset_key == dg.AssetKey(SLIDE_METADATA)
    coverage = latest_metadata(harness, ANNOTATION_COVERAGE, key)
    assert coverage["measured"].value is True
    assert coverage["labels_in_file"].value == ["Stroma", "Tumor"]
    assert coverage["annotation_file"].value == str(
        Path(harness.settings.slide_root) / "demo_slide_01.xml"
    )
    record = harness.instance.get_latest_materialization_event(dg.AssetKey(TILE_GRID))
    assert record is not None
    assert record.tags["dagster/code_version"] == harness.settings.code_version(TILE_GRID)


def test_whole_table_reads_as_one(harness: Harness) -> None:
    harness.discover()
    keys = ["case_03_HE-3101e499", "demo_slide_01"]
    for key in keys:
        harness.materialize(key)
    root = Path(harness.settings.output_root)
    counts = duckdb.sql(
        f"select slide, count(*) from read_parquet('{root}/tile_grid/*/*.parquet', "
        "hive_partitioning=true) group by slide order by slide"
    ).fetchall()
    assert counts == [(key, harness.table(TILE_GRID, key).num_rows) for key in keys]
    overlap = ds.dataset(root / "overlay_overlap", format="parquet", partitioning="hive").to_table()
    assert set(overlap["slide"].to_pylist()) == set(keys)
    assert not list(root.rglob("*.tmp")) and not list(root.rglob(".*"))


def test_missing_annotation_and_overlay_give_nulls_not_zeros(
    harness: Harness, slide_root: Path
) -> None:
    (slide_root / "demo_slide_02.geojson").unlink()
    (slide_root / "demo_slide_02_tissue_mask.tiff").unlink()
    harness.discover()
    key = "demo_slide_02"
    result = harness.materialize(key, TABLES)  # the tables alone: no tissue mask to read
    assert result.success
    rows = harness.table(TILE_GRID, key).num_rows
    coverage = harness.table(ANNOTATION_COVERAGE, key)
    overlap = harness.table(OVERLAY_OVERLAP, key)
    assert coverage.num_rows == overlap.num_rows == rows
    assert coverage["coverage_tumor"].null_count == rows
    assert overlap["fractions"].null_count == overlap["tissue_fraction"].null_count == rows
    for table, entry, template in (
        (ANNOTATION_COVERAGE, "annotation_file", "demo_slide_02.xml"),
        (OVERLAY_OVERLAP, "overlay_file", "demo_slide_02_tissue_mask.tiff"),
    ):
        metadata = latest_metadata(harness, table, key)
        assert metadata["measured"].value is False
        assert metadata[entry].value.startswith("none found; looked for: ")
        assert str(slide_root / template) in metadata[entry].value
    assert all(check.passed for check in result.get_asset_check_evaluations())
    # with its tissue mask built, overlay_overlap measures that instead (and says so)
    assert harness.materialize(key).success
    overlap = harness.table(OVERLAY_OVERLAP, key)
    assert overlap["tissue_fraction"].null_count < rows
    assert latest_metadata(harness, OVERLAY_OVERLAP, key)["overlay_source"].value == "tissue_mask"


def test_bad_files_fail_their_own_partition_naming_the_file(
    harness: Harness, slide_root: Path
) -> None:
    (slide_root / "broken.tiff").write_bytes(b"II*\x00 this is not a tiff")
    (slide_root / "demo_slide_01.xml").write_text("<ASAP_Annotations><Annotations><Annot")
    harness.discover()
    broken = harness.materialize("broken", raise_on_error=False)
    assert not broken.success
    assert str(slide_root / "broken.tiff") + ": " in failure_messages(broken)
    assert not harness.pipeline.tables.path(SLIDE_METADATA, "broken").exists()
    steps = [e for e in broken.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert steps == []  # a bad file is not retried

    bad_xml = harness.materialize("demo_slide_01", raise_on_error=False)
    assert not bad_xml.success
    assert str(slide_root / "demo_slide_01.xml") + ": " in failure_messages(bad_xml)
    built = {e.asset_key.to_user_string() for e in bad_xml.get_asset_materialization_events()}
    assert built & set(TABLES) == {SLIDE_METADATA, TILE_GRID, OVERLAY_OVERLAP}
    read = recorded_versions(harness.instance, "annotation", ["demo_slide_01"])
    assert read["demo_slide_01"].startswith(f"{(slide_root / 'demo_slide_01.xml').stat().st_size}-")
    assert not harness.pipeline.tables.path(ANNOTATION_COVERAGE, "demo_slide_01").exists()
    assert harness.materialize("demo_slide_02").success  # other slides go on
    assert not list(Path(harness.settings.output_root).rglob("*.tmp"))


def test_rerun_is_idempotent_and_never_overwrites_foreign_files(harness: Harness) -> None:
    harness.discover()
    key = "demo_slide_01"
    harness.materialize(key)
    paths = [Path(harness.pipeline.tables.path(t, key).path) for t in TABLES]
    before = [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]

    def versions() -> list[str]:
        events = [harness.instance.get_latest_materialization_event(dg.AssetKey(t)) for t in TABLES]
        return [e.tags["dagster/data_version"] for e in events if e is not None]

    first = versions()
    assert harness.materialize(key).success
    assert [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths] == before
    assert versions() == first

    foreign = Path(harness.pipeline.tables.path(SLIDE_METADATA, "demo_slide_02").path)
    foreign.parent.mkdir(parents=True)
    foreign.write_bytes(b"a user's own file")
    result = harness.materialize("demo_slide_02", raise_on_error=False)
    assert not result.success and "not written by wsi_tiles" in failure_messages(result)
    assert foreign.read_bytes() == b"a user's own file"


def test_object_store_roots(demo_source: Path, instance: dg.DagsterInstance) -> None:
    """Slide root and output root as fsspec URLs (memory:// stands in for s3://)."""
    bucket = f"memory://wsi-{uuid.uuid4().hex}"
    fs = fsspec.filesystem("memory")
    slide = demo.DEMO_SLIDES[1]
    for name in (slide.name, slide.annotation_name(), slide.mask_name()):
        fs.pipe_file(f"{bucket}/slides/{name}", (demo_source / name).read_bytes())
    harness = Harness(make_settings(f"{bucket}/slides", f"{bucket}/out"), instance)
    harness.discover()
    key = slide_key(slide.name)
    assert instance.get_dynamic_partitions("slides") == [key]
    assert harness.materialize(key).success
    assert harness.table(ANNOTATION_COVERAGE, key)["coverage_tumor"].to_numpy().max() > 0
    uri = f"{bucket}/out/overlay_overlap/slide={key}/part-0.parquet"
    assert fs.exists(uri)
    assert latest_metadata(harness, ANNOTATION_COVERAGE, key)["annotation_file"].value == (
        f"{bucket}/slides/{slide.annotation_name()}"
    )


def test_long_steps_log_tiles_done_of_total(harness: Harness) -> None:
    """The run page moves: coverage and overlap say how many tiles of the slide are done."""
    harness.discover()
    key = "demo_slide_01"
    result = harness.materialize(key)
    assert result.success
    tiles = harness.table("tile_grid", key).num_rows
    logs = [
        record.user_message
        for record in harness.instance.all_logs(result.run_id)
        if record.user_message
    ]
    for table in ("annotation_coverage", "overlay_overlap"):
        done = f"{table} of {key}: {tiles:,} of {tiles:,} tiles (100 %)"
        assert any(done in line for line in logs), (table, logs[-20:])
