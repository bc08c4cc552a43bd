"""The slide sensor: direct evaluations with build_sensor_context, and full daemon ticks."""

import importlib
import logging
import os
import shutil
import time
from pathlib import Path

import pytest
from dagster import (
    AssetKey,
    DagsterInstance,
    DagsterRunStatus,
    RunsFilter,
    SensorResult,
    SkipReason,
    build_sensor_context,
    instance_for_test,
)
from dagster._core.test_utils import create_test_daemon_workspace_context, freeze_time
from dagster._core.workspace.load_target import ModuleTarget
from dagster._daemon.sensor import execute_sensor_iteration
from wsi_assets_support import Pipeline

import wsi_assets.definitions
from wsi_assets.definitions import build_defs
from wsi_assets.keys import ANNOTATION_COVERAGE, ANNOTATION_FILE, SLIDE_FILE, TABLE_KEYS
from wsi_assets.partitions import PARTITIONS_NAME
from wsi_assets.registry import SlideRegistry

PROJECT = Path(__file__).resolve().parents[2]


def evaluate(pipeline: Pipeline, cursor: str | None) -> SensorResult | SkipReason:
    sensor_def = pipeline.defs.get_repository_def().get_sensor_def("slide_sensor")
    with build_sensor_context(
        instance=pipeline.instance, cursor=cursor, resources={"settings": pipeline.settings}
    ) as context:
        return sensor_def(context)


def apply(pipeline: Pipeline, result: SensorResult) -> None:
    """What the daemon does with a tick's partitions and observations."""
    for request in result.dynamic_partitions_requests:
        pipeline.instance.add_dynamic_partitions(
            request.partitions_def_name, list(request.partition_keys)
        )
    for event in result.asset_events:
        pipeline.instance.report_runless_asset_event(event)


def test_new_unchanged_and_changed_files(pipeline: Pipeline, slide_root: Path) -> None:
    first = evaluate(pipeline, cursor=None)
    keys = sorted(SlideRegistry(pipeline.settings.output_root).load())
    assert len(keys) == 3 and "case_03_HE-3101e499" in keys
    assert sorted(first.dynamic_partitions_requests[0].partition_keys) == keys
    assert sorted(request.partition_key for request in first.run_requests) == keys
    assert all(set(request.asset_selection) == set(TABLE_KEYS) for request in first.run_requests)
    assert len(first.asset_events) == 9  # slide, annotation and overlay of three slides
    apply(pipeline, first)

    unchanged = evaluate(pipeline, cursor=first.cursor)
    assert isinstance(unchanged, SkipReason)
    # Even without the cursor (a reset sensor), nothing already recorded is requested again.
    reset = evaluate(pipeline, cursor=None)
    assert (
        not reset.run_requests and not reset.asset_events and not reset.dynamic_partitions_requests
    )

    # A new slide: partition added, run requested; the others are left alone.
    shutil.copy(slide_root / "demo_slide_01.tiff", slide_root / "new slide.tiff")
    added = evaluate(pipeline, cursor=first.cursor)
    (new_key,) = added.dynamic_partitions_requests[0].partition_keys
    assert new_key.startswith("new_slide-")
    assert [request.partition_key for request in added.run_requests] == [new_key]
    apply(pipeline, added)

    # The slide file changes: a new run key for that slide.
    old_keys = {request.partition_key: request.run_key for request in first.run_requests}
    target = slide_root / "demo_slide_02.tiff"
    target.write_bytes(target.read_bytes() + b"\0")
    changed = evaluate(pipeline, cursor=added.cursor)
    (request,) = changed.run_requests
    assert request.partition_key == "demo_slide_02"
    assert request.run_key != old_keys["demo_slide_02"] and request.run_key.startswith(
        "demo_slide_02:"
    )
    assert [event.asset_key for event in changed.asset_events] == [SLIDE_FILE]
    assert not changed.dynamic_partitions_requests
    apply(pipeline, changed)

    # An annotation changes: an observation for it, and a run of annotation_coverage only.
    (slide_root / "demo_slide_01.xml").write_text(
        (slide_root / "demo_slide_01.xml").read_text() + "\n"
    )
    edited = evaluate(pipeline, cursor=changed.cursor)
    assert [(e.asset_key, e.partition) for e in edited.asset_events] == [
        (ANNOTATION_FILE, "demo_slide_01")
    ]
    (request,) = edited.run_requests
    assert request.asset_selection == [AssetKey(ANNOTATION_COVERAGE)]
    assert "annotation=" in request.run_key


def test_no_slide_root_yet(instance: DagsterInstance, tmp_path: Path, make_settings) -> None:
    settings = make_settings(tmp_path / "nothing-here", tmp_path / "out")
    result = evaluate(Pipeline(settings, build_defs(settings), instance), cursor=None)
    assert isinstance(result, SensorResult) and result.skip_reason and not result.run_requests


def _tick(context, when: float) -> None:
    with freeze_time(when):
        list(execute_sensor_iteration(context, logging.getLogger("test"), None, None))


@pytest.mark.timeout(180)
def test_full_daemon_ticks_add_partitions_and_launch_runs(
    slide_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real daemon path: code location in a gRPC server (settings from WSI_* variables),
    sensor ticks persisted, partitions added, runs launched and executed (synchronously)."""
    for name in list(slide_root.iterdir()):
        if not name.name.startswith("demo_slide_01"):
            name.unlink()  # one slide keeps the test quick
    monkeypatch.setenv("WSI_SLIDE_ROOT", str(slide_root))
    monkeypatch.setenv("WSI_OUTPUT_ROOT", str(tmp_path / "out"))
    monkeypatch.setenv("WSI_TILE_EXTENT", "128")
    monkeypatch.setenv("WSI_STRIDE", "128")
    overrides = {
        "run_launcher": {
            "module": "dagster._core.launcher.sync_in_memory_run_launcher",
            "class": "SyncInMemoryRunLauncher",
        },
        "run_coordinator": {
            "module": "dagster._core.run_coordinator",
            "class": "DefaultRunCoordinator",
        },
    }
    target = ModuleTarget(
        module_name="wsi_assets.definitions",
        attribute="defs",
        working_directory=str(PROJECT),
        location_name="wsi_tiles",
    )
    # Runs execute in this process and load `defs` from the module, which read the WSI_*
    # variables when first imported: re-import it with the test's variables (and restore it).
    importlib.reload(wsi_assets.definitions)
    try:
        _ticks(slide_root, target, overrides)
    finally:
        monkeypatch.undo()
        importlib.reload(wsi_assets.definitions)


def _ticks(slide_root: Path, target: ModuleTarget, overrides: dict) -> None:
    with (
        instance_for_test(overrides=overrides) as instance,
        create_test_daemon_workspace_context(target, instance) as context,
    ):
        now = time.time()
        _tick(context, now)
        assert instance.get_dynamic_partitions(PARTITIONS_NAME) == ["demo_slide_01"]
        runs = instance.get_runs(RunsFilter(tags={"dagster/sensor_name": "slide_sensor"}))
        assert [run.tags["dagster/partition"] for run in runs] == ["demo_slide_01"]
        assert runs[0].status == DagsterRunStatus.SUCCESS
        assert instance.get_latest_materialization_event(AssetKey(ANNOTATION_COVERAGE)) is not None

        _tick(context, now + 60)  # unchanged folder: no new run
        assert len(instance.get_runs()) == 1

        slide = slide_root / "demo_slide_01.tiff"
        slide.write_bytes(slide.read_bytes() + b"\0")
        os.utime(slide, (now + 100, now + 100))
        _tick(context, now + 120)  # changed slide: a second run, with another run key
        runs = instance.get_runs(RunsFilter(tags={"dagster/sensor_name": "slide_sensor"}))
        assert len(runs) == 2 and runs[0].tags["dagster/run_key"] != runs[1].tags["dagster/run_key"]
        assert all(run.status == DagsterRunStatus.SUCCESS for run in runs)


def test_annotations_outside_the_slide_root(
    instance: DagsterInstance, slide_root: Path, tmp_path: Path, make_settings
) -> None:
    """An absolute template (annotations in their own folder) is watched too."""
    elsewhere = tmp_path / "annotations"
    elsewhere.mkdir()
    shutil.move(slide_root / "demo_slide_01.xml", elsewhere / "demo_slide_01.xml")
    settings = make_settings(
        slide_root,
        tmp_path / "out",
        annotation_templates=[f"{elsewhere}/{{stem}}.xml", "{stem}.geojson", "{stem}.json"],
    )
    pipeline = Pipeline(settings, build_defs(settings), instance)
    first = evaluate(pipeline, cursor=None)
    apply(pipeline, first)
    assert isinstance(evaluate(pipeline, cursor=first.cursor), SkipReason)
    (elsewhere / "demo_slide_01.xml").write_text("<ASAP_Annotations/>")
    changed = evaluate(pipeline, cursor=first.cursor)
    assert [(e.asset_key, e.partition) for e in changed.asset_events] == [
        (ANNOTATION_FILE, "demo_slide_01")
    ]
    assert [r.asset_selection for r in changed.run_requests] == [[AssetKey(ANNOTATION_COVERAGE)]]
