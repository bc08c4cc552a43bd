"""Materialize every table in process for real (synthetic) slides and compare the Parquet
files with direct wsi_core calls."""

import hashlib
from pathlib import Path

import duckdb
import numpy as np
import pyarrow.dataset as ds
import pytest
from dagster import AssetKey, AssetRecordsFilter
from shapely.geometry import box
from wsi_assets_support import TILE, Pipeline

from wsi_assets import demo
from wsi_assets.keys import ANNOTATION_COVERAGE, OVERLAY_OVERLAP, SLIDE_METADATA, TABLES, TILE_GRID
from wsi_assets.registry import SlideRegistry
from wsi_assets.tables import part_uri
from wsi_core.parsers import open_annotations
from wsi_core.slide import open_slide
from wsi_core.tiling import annotation_coverage, grid_tile_array, tile_overlay_overlap


def keys_by_name(pipeline: Pipeline) -> dict[str, str]:
    """Slide file name -> partition key, from the registry."""
    entries = SlideRegistry(pipeline.settings.output_root).load()
    return {Path(entry.uri).name: key for key, entry in entries.items()}


def latest_metadata(pipeline: Pipeline, asset: str, key: str) -> dict:
    """Metadata of the latest materialization of one slide's table (what the UI shows)."""
    records = pipeline.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(asset), asset_partitions=[key]), limit=1
    ).records
    assert records
    return records[0].asset_materialization.metadata


@pytest.mark.parametrize("slide", demo.DEMO_SLIDES, ids=lambda s: s.annotation_format)
def test_tables_match_direct_kernel_calls(
    pipeline: Pipeline, slide_root: Path, slide: demo.DemoSlide
) -> None:
    pipeline.discover()
    key = keys_by_name(pipeline)[slide.name]
    result = pipeline.materialize(key)
    assert result.success
    assert all(evaluation.passed for evaluation in result.get_asset_check_evaluations())
    assert len(result.get_asset_check_evaluations()) == 5

    slide_path = str(slide_root / slide.name)
    meta = pipeline.table(SLIDE_METADATA, key).to_pylist()[0]
    with open_slide(slide_path) as reader:
        level = reader.closest_level(1.0)
        assert meta["level"] == level == 1
        assert (meta["mpp_x"], meta["mpp_y"]) == reader.slide_resolution(level)
        assert (meta["extent_x"], meta["extent_y"]) == reader.level_dimensions[level]
        assert meta["level_count"] == reader.level_count
    assert meta["uri"] == slide_path and meta["slide_key"] == key

    grid = pipeline.table(TILE_GRID, key)
    origins = grid_tile_array((meta["extent_x"], meta["extent_y"]), TILE, TILE, "keep")
    assert np.array_equal(
        np.column_stack([grid["tile_x"].to_numpy(), grid["tile_y"].to_numpy()]), origins
    )
    assert set(grid["downsample"].to_pylist()) == {meta["downsample"]}
    assert np.array_equal(grid["x0"].to_numpy(), np.floor(origins[:, 0] * meta["downsample"] + 0.5))

    roi = box(0, 0, TILE, TILE)
    parser = open_annotations(str(slide_root / slide.annotation_name()))
    coverage = pipeline.table(ANNOTATION_COVERAGE, key)
    for name, pattern in pipeline.settings.label_classes.items():
        expected = annotation_coverage(
            parser.get_class_polygons(pattern), roi, origins, meta["downsample"]
        )
        assert np.array_equal(coverage[f"coverage_{name}"].to_numpy(), expected)
    assert coverage["coverage_tumor"].to_numpy().max() > 0.1  # the tumour lies over tiles
    assert coverage["coverage_stroma"].to_numpy().max() > 0

    overlap = pipeline.table(OVERLAY_OVERLAP, key)
    expected = tile_overlay_overlap(
        roi,
        str(slide_root / slide.mask_name()),
        origins[:, 0],
        origins[:, 1],
        meta["mpp_x"],
        meta["mpp_y"],
    )
    assert [
        None if row is None else dict(row) for row in overlap["fractions"].to_pylist()
    ] == expected
    tissue = overlap["tissue_fraction"].to_numpy()
    assert tissue.min() == 0.0 and tissue.max() > 0.9  # background tiles and tissue tiles


def test_materialization_metadata_in_the_ui(pipeline: Pipeline) -> None:
    pipeline.discover()
    key = keys_by_name(pipeline)["demo_slide_01.tiff"]
    pipeline.materialize(key)
    for asset in TABLES:
        metadata = latest_metadata(pipeline, asset, key)
        rows = pipeline.table(asset, key).num_rows
        assert metadata["dagster/row_count"].value == rows
        assert metadata["dagster/uri"].value == part_uri(pipeline.settings.output_root, asset, key)
        names = [column.name for column in metadata["dagster/column_schema"].schema.columns]
        assert names == pipeline.table(asset, key).column_names
        assert "dagster/column_lineage" in metadata
        assert metadata["preview"].value.startswith("| slide_key")
        assert "parameters" in metadata
    lineage = latest_metadata(pipeline, TILE_GRID, key)["dagster/column_lineage"].value
    assert lineage.deps_by_column["level"][0].asset_key == AssetKey(SLIDE_METADATA)
    coverage = latest_metadata(pipeline, ANNOTATION_COVERAGE, key)
    assert coverage["measured"].value is True
    assert coverage["labels_in_file"].value == ["Stroma", "Tumor"]
    graph = pipeline.defs.get_repository_def().asset_graph
    record = pipeline.instance.get_latest_materialization_event(AssetKey(TILE_GRID))
    assert record.tags["dagster/code_version"] == graph.get(AssetKey(TILE_GRID)).code_version


def test_whole_asset_reads_as_one_table(pipeline: Pipeline) -> None:
    pipeline.discover()
    keys = sorted(keys_by_name(pipeline).values())
    for key in keys[:2]:
        pipeline.materialize(key)
    root = Path(pipeline.settings.output_root)
    files = f"{root}/tile_grid/*/*.parquet"
    counts = duckdb.sql(
        f"select slide, count(*) from read_parquet('{files}', hive_partitioning=true) "
        "group by slide order by slide"
    ).fetchall()
    assert counts == [(key, pipeline.table(TILE_GRID, key).num_rows) for key in keys[:2]]
    overlap = ds.dataset(root / "overlay_overlap", format="parquet", partitioning="hive").to_table()
    assert set(overlap["slide"].to_pylist()) == set(keys[:2])
    assert not list(root.rglob("*.tmp")) and not list(root.rglob(".*"))


def test_missing_annotation_and_overlay_give_nulls_not_zeros(
    pipeline: Pipeline, slide_root: Path
) -> None:
    (slide_root / "demo_slide_02.geojson").unlink()
    (slide_root / "demo_slide_02_tissue_mask.tiff").unlink()
    pipeline.discover()
    key = keys_by_name(pipeline)["demo_slide_02.tiff"]
    result = pipeline.materialize(key)
    assert result.success
    grid_rows = pipeline.table(TILE_GRID, key).num_rows
    coverage = pipeline.table(ANNOTATION_COVERAGE, key)
    overlap = pipeline.table(OVERLAY_OVERLAP, key)
    assert coverage.num_rows == overlap.num_rows == grid_rows
    assert coverage["coverage_tumor"].null_count == grid_rows
    assert overlap["fractions"].null_count == overlap["tissue_fraction"].null_count == grid_rows
    for asset, entry in (
        (ANNOTATION_COVERAGE, "annotation_file"),
        (OVERLAY_OVERLAP, "overlay_file"),
    ):
        metadata = latest_metadata(pipeline, asset, key)
        assert metadata["measured"].value is False
        assert metadata[entry].value.startswith("none found; looked for:")
    assert all(evaluation.passed for evaluation in result.get_asset_check_evaluations())


def test_bad_files_fail_their_own_partition_naming_the_file(
    pipeline: Pipeline, slide_root: Path
) -> None:
    (slide_root / "broken.tiff").write_bytes(b"II*\x00 this is not a tiff")
    (slide_root / "demo_slide_01.xml").write_text("<ASAP_Annotations><Annotations><Annot")
    pipeline.discover()
    keys = keys_by_name(pipeline)

    broken = pipeline.materialize(keys["broken.tiff"], raise_on_error=False)
    assert not broken.success
    message = _failure_messages(broken)
    assert str(slide_root / "broken.tiff") in message
    assert not Path(
        part_uri(pipeline.settings.output_root, SLIDE_METADATA, keys["broken.tiff"])
    ).exists()

    bad_xml = pipeline.materialize(keys["demo_slide_01.tiff"], raise_on_error=False)
    assert not bad_xml.success
    assert str(slide_root / "demo_slide_01.xml") in _failure_messages(bad_xml)
    materialized = {
        event.asset_key.to_user_string() for event in bad_xml.get_asset_materialization_events()
    }
    assert materialized == {SLIDE_METADATA, TILE_GRID, OVERLAY_OVERLAP}
    assert not Path(
        part_uri(pipeline.settings.output_root, ANNOTATION_COVERAGE, keys["demo_slide_01.tiff"])
    ).exists()

    assert pipeline.materialize(keys["demo_slide_02.tiff"]).success  # other slides go on
    assert not list(Path(pipeline.settings.output_root).rglob("*.tmp"))


def _failure_messages(result) -> str:
    return "\n".join(
        event.step_failure_data.error.message
        for event in result.all_events
        if event.is_step_failure
    )


def test_rerun_is_idempotent_and_never_overwrites_foreign_files(pipeline: Pipeline) -> None:
    pipeline.discover()
    key = keys_by_name(pipeline)["demo_slide_01.tiff"]
    pipeline.materialize(key)
    paths = [Path(part_uri(pipeline.settings.output_root, asset, key)) for asset in TABLES]
    before = [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]
    versions = [
        pipeline.instance.get_latest_materialization_event(AssetKey(a)).tags["dagster/data_version"]
        for a in TABLES
    ]
    assert pipeline.materialize(key).success
    assert [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths] == before
    assert [
        pipeline.instance.get_latest_materialization_event(AssetKey(a)).tags["dagster/data_version"]
        for a in TABLES
    ] == versions

    other = keys_by_name(pipeline)["demo_slide_02.tiff"]
    foreign = Path(part_uri(pipeline.settings.output_root, SLIDE_METADATA, other))
    foreign.parent.mkdir(parents=True)
    foreign.write_bytes(b"a user's own file")
    result = pipeline.materialize(other, raise_on_error=False)
    assert not result.success and "not written by wsi_tiles" in _failure_messages(result)
    assert foreign.read_bytes() == b"a user's own file"


def test_object_store_roots(demo_source: Path, instance, make_settings) -> None:
    """Slide root and output root as fsspec URLs (memory:// stands in for s3://): slides are
    fetched to a temporary local copy, tables are written with one put each."""
    import uuid

    import fsspec

    from wsi_assets.definitions import build_defs

    bucket = f"memory://wsi-{uuid.uuid4().hex}"
    fs = fsspec.filesystem("memory")
    slide = demo.DEMO_SLIDES[1]
    for name in (slide.name, slide.annotation_name(), slide.mask_name()):
        fs.pipe_file(f"{bucket}/slides/{name}", (demo_source / name).read_bytes())
    settings = make_settings(f"{bucket}/slides", f"{bucket}/out")
    pipeline = Pipeline(settings, build_defs(settings), instance)
    pipeline.discover()
    (key,) = SlideRegistry(settings.output_root).load()
    assert pipeline.materialize(key).success
    coverage = pipeline.table(ANNOTATION_COVERAGE, key)
    assert coverage["coverage_tumor"].to_numpy().max() > 0
    uri = part_uri(settings.output_root, OVERLAY_OVERLAP, key)
    assert uri == f"{bucket}/out/overlay_overlap/slide={key}/part-0.parquet" and fs.exists(uri)
    assert (
        latest_metadata(pipeline, ANNOTATION_COVERAGE, key)["annotation_file"].value
        == f"{bucket}/slides/{slide.annotation_name()}"
    )
