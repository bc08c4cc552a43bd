"""Staleness as the UI shows it, and the sweep schedule that acts on it."""

from datetime import datetime, timezone
from pathlib import Path

from dagster import AssetKey, build_schedule_context
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
from wsi_assets_support import Pipeline

from wsi_assets.keys import ANNOTATION_COVERAGE, OVERLAY_OVERLAP, TABLE_KEYS, TILE_GRID
from wsi_assets.schedules import _Loading, sweep


def statuses(pipeline: Pipeline) -> dict[tuple[str, str], StaleStatus]:
    """(asset, slide) -> stale status, from Dagster's own resolver (what the UI shows)."""
    graph = pipeline.defs.get_repository_def().asset_graph
    resolver = CachingStaleStatusResolver(pipeline.instance, graph, _Loading(pipeline.instance))
    return {
        (asset.to_user_string(), key): resolver.get_status(asset, key)
        for key in pipeline.instance.get_dynamic_partitions("slides")
        for asset in TABLE_KEYS
    }


def requested(pipeline: Pipeline) -> dict[str, list[str]]:
    """What the sweep schedule asks for: slide -> tables."""
    schedule = pipeline.defs.get_repository_def().get_schedule_def("stale_sweep")
    context = build_schedule_context(
        instance=pipeline.instance,
        repository_def=pipeline.defs.get_repository_def(),
        scheduled_execution_time=datetime.now(timezone.utc),
    )
    result = schedule.evaluate_tick(context)
    direct = {
        r.partition_key: [k.to_user_string() for k in r.asset_selection]
        for r in result.run_requests or []
    }
    swept = sweep(pipeline.instance, pipeline.defs.get_repository_def().asset_graph)
    assert direct == {
        r.partition_key: [k.to_user_string() for k in r.asset_selection] for r in swept
    }
    return direct


def test_changed_annotation_makes_only_its_own_table_stale(
    pipeline: Pipeline, slide_root: Path
) -> None:
    pipeline.discover()
    keys = sorted(pipeline.instance.get_dynamic_partitions("slides"))
    assert requested(pipeline) == {
        key: [k.to_user_string() for k in TABLE_KEYS] for key in keys
    }  # all missing
    for key in keys[:2]:
        pipeline.materialize(key)
    # exactly the missing partition is requested
    assert requested(pipeline) == {keys[2]: [k.to_user_string() for k in TABLE_KEYS]}
    pipeline.materialize(keys[2])
    assert set(statuses(pipeline).values()) == {StaleStatus.FRESH}
    assert requested(pipeline) == {}

    annotation = slide_root / "demo_slide_01.xml"
    annotation.write_text(annotation.read_text().replace('Order="0"', 'Order="0" ', 1))
    pipeline.discover()  # the sensor records the new version of the annotation file
    stale = {cell for cell, status in statuses(pipeline).items() if status != StaleStatus.FRESH}
    assert stale == {(ANNOTATION_COVERAGE, "demo_slide_01")}
    assert requested(pipeline) == {"demo_slide_01": [ANNOTATION_COVERAGE]}

    pipeline.materialize("demo_slide_01", [ANNOTATION_COVERAGE])
    assert set(statuses(pipeline).values()) == {StaleStatus.FRESH}


def test_overlay_and_settings_changes(pipeline: Pipeline, slide_root: Path) -> None:
    pipeline.discover()
    keys = sorted(pipeline.instance.get_dynamic_partitions("slides"))
    for key in keys:
        pipeline.materialize(key)
    (slide_root / "demo_slide_02_tissue_mask.tiff").unlink()  # an overlay disappears
    pipeline.discover()
    assert requested(pipeline) == {"demo_slide_02": [OVERLAY_OVERLAP]}

    # New tiling settings: a new code version for tile_grid; its dependants follow.
    bigger = pipeline.rebuild(tile_extent=256, stride=256)
    expected = [TILE_GRID, ANNOTATION_COVERAGE, OVERLAY_OVERLAP]
    assert requested(bigger) == dict.fromkeys(keys, expected)
    stale = statuses(bigger)
    assert all(stale[("slide_metadata", key)] == StaleStatus.FRESH for key in keys)


def test_busy_and_vanished_slides_are_not_swept(pipeline: Pipeline, slide_root: Path) -> None:
    pipeline.discover()
    (slide_root / "demo_slide_02.tiff").unlink()
    pipeline.discover()  # records "missing" for that slide file
    assert "demo_slide_02" not in requested(pipeline)
    graph = pipeline.defs.get_repository_def().asset_graph
    assert graph.get(AssetKey(TILE_GRID)).partitions_def is not None


def test_observing_sources_by_hand_records_the_sensors_versions(
    pipeline: Pipeline, slide_root: Path
) -> None:
    """ "Observe sources" in the UI (an observation run) records the same data versions as the
    sensor, so either one keeps staleness right."""
    from dagster import AssetSelection, Definitions, define_asset_job

    from wsi_assets.keys import SOURCE_KEYS
    from wsi_assets.sensors import observed_versions

    first = pipeline.discover()
    by_sensor = {key: observed_versions(pipeline.instance, key) for key in SOURCE_KEYS}
    assert all(len(versions) == 3 for versions in by_sensor.values())
    (slide_root / "demo_slide_01.xml").write_text("<ASAP_Annotations/>")
    job = define_asset_job("observe_sources", selection=AssetSelection.assets(*SOURCE_KEYS))
    defs = Definitions.merge(pipeline.defs, Definitions(jobs=[job]))
    result = defs.resolve_job_def("observe_sources").execute_in_process(instance=pipeline.instance)
    assert result.success
    by_hand = {key: observed_versions(pipeline.instance, key) for key in SOURCE_KEYS}
    changed = {
        (k.to_user_string(), p)
        for k in SOURCE_KEYS
        for p in by_hand[k]
        if by_hand[k][p] != by_sensor[k][p]
    }
    assert changed == {("annotation_file", "demo_slide_01")}
    assert first is not None
