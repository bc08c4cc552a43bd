"""Why tables are built, in a real (temporary, SQLite) Dagster instance: declarative automation
for new slides and changed files, the sweep for what automation cannot see, and back-off for
failures."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path

import dagster as dg
import pytest
from wsi_assets_support import DEMO_KEYS, Harness, make_settings

from wsi_assets.automation import (
    BACKFILL_TAG,
    BACKOFF_SECONDS,
    GRACE_SECONDS,
    MAX_BACKOFF_SECONDS,
    REASON_TAG,
    TABLE_KEYS,
    retry_after,
    sweep,
    table_condition,
)
from wsi_assets.definitions import SLIDE_JOB
from wsi_assets.partitions import SLIDES
from wsi_assets.pipeline.keys import slide_key
from wsi_assets.pipeline.outputs import SLIDE_OUTPUTS
from wsi_core.tables import ANNOTATION_COVERAGE, OVERLAY_OVERLAP, TILE_GRID

Requested = dict[str, set[str]]


class Automation:
    """Ticks of declarative automation against the harness's instance, cursor kept."""

    def __init__(self, harness: Harness) -> None:
        self.harness = harness
        self.cursor = None

    def tick(self) -> Requested:
        result = dg.evaluate_automation_conditions(
            defs=self.harness.defs, instance=self.harness.instance, cursor=self.cursor
        )
        self.cursor = result.cursor
        return {
            key.to_user_string(): {str(p) for p in result.get_requested_partitions(key)}
            for key in TABLE_KEYS
            if result.get_requested_partitions(key)
        }


def run_requested(harness: Harness, requested: Requested) -> None:
    """Launch what automation asked for, one run per slide (as the daemon would)."""
    by_slide: dict[str, list[str]] = {}
    for table, keys in requested.items():
        for key in keys:
            by_slide.setdefault(key, []).append(table)
    for key, tables in sorted(by_slide.items()):
        harness.materialize(key, sorted(tables, key=SLIDE_OUTPUTS.index), raise_on_error=False)


def every(keys: tuple[str, ...] | list[str], tables: tuple[str, ...] = SLIDE_OUTPUTS) -> Requested:
    return {table: set(keys) for table in tables}


def touch(path: Path, seconds: float = 1.0) -> None:
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + int(seconds * 1e9)))


def sweep_tick(harness: Harness, now: float, cursor: str = "") -> dg.SensorResult:
    """One sweep tick as if it ran at ``now`` (seconds since the epoch)."""
    with dg.build_sensor_context(instance=harness.instance, cursor=cursor) as context:
        result = sweep(context, harness.settings, now=now)
    assert isinstance(result, dg.SensorResult)
    return result


def swept(result: dg.SensorResult) -> Mapping[str, list[str]]:
    return {
        str(r.partition_key): [k.to_user_string() for k in r.asset_selection or []]
        for r in result.run_requests or []
    }


def test_new_slides_get_all_four_tables_once(harness: Harness, slide_root: Path) -> None:
    automation = Automation(harness)
    assert automation.tick() == {}  # nothing registered yet
    harness.discover()
    first = automation.tick()
    assert first == every(DEMO_KEYS)
    assert automation.tick() == {}  # requested once, not again while it runs
    run_requested(harness, first)
    assert automation.tick() == {}

    shutil.copy(slide_root / "demo_slide_01.tiff", slide_root / "late arrival.tiff")
    harness.discover()
    assert automation.tick() == every([slide_key("late arrival.tiff")])


def test_slides_registered_before_the_first_evaluation_are_not_forgotten(
    harness: Harness,
) -> None:
    harness.discover()  # e.g. by make run, before dagster dev ever evaluated anything
    eager = dg.Definitions(
        assets=dg.map_asset_specs(
            lambda spec: (
                spec.replace_attributes(automation_condition=dg.AutomationCondition.eager())
                if spec.key in TABLE_KEYS
                else spec
            ),
            list(harness.defs.assets or []),
        ),
        resources=harness.defs.resources,
    )
    plain = dg.evaluate_automation_conditions(defs=eager, instance=harness.instance)
    assert plain.total_requested == 0  # the trap: eager() alone forgets them
    assert Automation(harness).tick() == every(DEMO_KEYS)


def test_an_edited_annotation_rebuilds_only_its_own_coverage(
    harness: Harness, slide_root: Path
) -> None:
    automation = Automation(harness)
    harness.discover()
    run_requested(harness, automation.tick())
    assert automation.tick() == {}
    touch(slide_root / "demo_slide_01.xml")
    touch(slide_root / "demo_slide_02_tissue_mask.tiff")
    harness.discover()
    requested = automation.tick()
    assert requested == {
        ANNOTATION_COVERAGE: {"demo_slide_01"},
        OVERLAY_OVERLAP: {"demo_slide_02"},
    }
    run_requested(harness, requested)
    assert automation.tick() == {}
    touch(slide_root / "case 03 (HE).tiff")
    harness.discover()
    assert automation.tick() == every(["case_03_HE-3101e499"])  # the chain, in one run


def test_a_changed_setting_rebuilds_what_it_affects(harness: Harness) -> None:
    harness.discover()
    run_requested(harness, Automation(harness).tick())
    later = time.time() + 2 * GRACE_SECONDS
    assert swept(sweep_tick(harness, later)) == {}
    wider = harness.rebuild(tile_extent=256, stride=256)
    result = sweep_tick(wider, later)
    assert swept(result) == {
        key: [TILE_GRID, ANNOTATION_COVERAGE, OVERLAY_OVERLAP] for key in DEMO_KEYS
    }
    request = (result.run_requests or [])[0]
    assert request.tags[REASON_TAG].startswith("tile_grid: settings or code changed")
    classes = harness.rebuild(label_classes={"tumor": "Tumor"})
    assert swept(sweep_tick(classes, later)) == {key: [ANNOTATION_COVERAGE] for key in DEMO_KEYS}


def test_the_sweep_sees_the_output_root_and_leaves_young_changes_to_automation(
    harness: Harness, slide_root: Path, tmp_path: Path
) -> None:
    harness.discover()
    run_requested(harness, Automation(harness).tick())
    later = time.time() + 2 * GRACE_SECONDS
    Path(harness.pipeline.tables.path(OVERLAY_OVERLAP, "demo_slide_02").path).unlink()
    assert swept(sweep_tick(harness, later)) == {"demo_slide_02": [OVERLAY_OVERLAP]}
    touch(slide_root / "demo_slide_01.xml")
    assert "demo_slide_01" not in swept(sweep_tick(harness, time.time()))  # automation's turn
    assert "demo_slide_01" in swept(sweep_tick(harness, later))

    moved = Harness(make_settings(slide_root, tmp_path / "new"), harness.instance)
    moved.discover()
    assert swept(sweep_tick(moved, later)) == {key: list(SLIDE_OUTPUTS) for key in DEMO_KEYS}


def test_the_sweep_pages_through_the_slides(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("wsi_assets.automation.SWEEP_PAGE", 2)
    harness.discover()
    later = time.time() + 2 * GRACE_SECONDS
    first = sweep_tick(harness, later)
    assert list(swept(first)) == sorted(DEMO_KEYS)[:2] and first.cursor == sorted(DEMO_KEYS)[1]
    second = sweep_tick(harness, later, first.cursor or "")
    assert list(swept(second)) == sorted(DEMO_KEYS)[2:] and second.cursor == ""


def test_a_failing_slide_is_retried_after_a_growing_back_off(
    harness: Harness, slide_root: Path
) -> None:
    (slide_root / "broken.tiff").write_bytes(b"II*\x00 not a slide")
    automation = Automation(harness)
    harness.discover()
    requested = automation.tick()
    assert requested == every([*DEMO_KEYS, "broken"])
    run_requested(harness, requested)
    assert automation.tick() == {}  # a failure is not retried by automation
    failed_at = time.time()
    assert "broken" not in swept(sweep_tick(harness, failed_at + GRACE_SECONDS + 1))
    retry = swept(sweep_tick(harness, failed_at + BACKOFF_SECONDS + 1))
    assert retry == {"broken": list(SLIDE_OUTPUTS)}
    harness.materialize("broken", raise_on_error=False)  # fails again: the wait doubles
    again = time.time()
    assert "broken" not in swept(sweep_tick(harness, again + BACKOFF_SECONDS + 1))
    assert "broken" in swept(sweep_tick(harness, again + 2 * BACKOFF_SECONDS + 1))
    status = harness.instance.get_status_by_partition(
        dg.AssetKey("slide_metadata"), ["broken"], SLIDES
    )
    assert status == {"broken": dg.AssetPartitionStatus.FAILED}  # shown as failed meanwhile

    touch(slide_root / "broken.tiff")  # a new version is tried at once
    harness.discover()
    assert automation.tick() == every(["broken"])


def test_back_off_grows_to_a_day() -> None:
    waits = [retry_after(n, 0.0) for n in range(1, 10)]
    assert waits[:4] == [
        BACKOFF_SECONDS,
        2 * BACKOFF_SECONDS,
        4 * BACKOFF_SECONDS,
        8 * BACKOFF_SECONDS,
    ]
    assert waits[-1] == MAX_BACKOFF_SECONDS
    first_day = sum(1 for _ in _attempts_within(86_400))
    assert first_day <= 8


def _attempts_within(seconds: float):
    clock, failures = 0.0, 0
    while True:
        failures += 1
        clock = retry_after(failures, clock)
        if clock > seconds:
            return
        yield clock


def test_every_table_carries_the_condition(harness: Harness) -> None:
    graph = harness.defs.resolve_asset_graph()
    for key in TABLE_KEYS:
        assert graph.get(key).automation_condition == table_condition()
    sensors = {s.name: s for s in harness.defs.sensors or []}
    assert set(sensors) == {"slide_sensor", "table_automation", "table_sweep"}
    assert all(s.default_status == dg.DefaultSensorStatus.RUNNING for s in sensors.values())


def test_the_sweep_waits_while_a_backfill_runs(harness: Harness) -> None:
    """Slides a backfill has not reached yet are not asked for again, one run each."""
    harness.discover()
    later = time.time() + 2 * GRACE_SECONDS
    job = harness.defs.resolve_job_def(SLIDE_JOB)
    pending = harness.instance.create_run_for_job(
        job, tags={BACKFILL_TAG: "bf1"}, status=dg.DagsterRunStatus.NOT_STARTED
    )
    waiting = sweep(dg.build_sensor_context(instance=harness.instance), harness.settings, now=later)
    assert isinstance(waiting, dg.SkipReason)
    harness.instance.report_run_canceled(pending)
    assert swept(sweep_tick(harness, later)) == {key: list(SLIDE_OUTPUTS) for key in DEMO_KEYS}
