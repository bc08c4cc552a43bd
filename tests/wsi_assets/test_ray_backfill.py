"""Runs of many slides: the run a backfill launches under ``BackfillPolicy.multi_run`` (a
partition range), built on the session's local Ray, against one-slide runs in-process.

Every slide of a batch must get its own materialization of every table, with its own row
count, URI and checks; a damaged slide fails alone, with its file named, and shows as the one
failed partition.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
import ray_support
from table_fingerprint import fingerprint
from test_assets import latest_metadata
from wsi_assets_support import DEMO_KEYS, Harness, failure_messages, make_settings

from wsi_assets import sensors
from wsi_assets.assets import CHECKS
from wsi_assets.definitions import SLIDE_JOB
from wsi_assets.partitions import PARTITIONS_NAME, SLIDES
from wsi_assets.pipeline.locations import uri_of
from wsi_assets.pipeline.steps import Pipeline
from wsi_core.tables import TABLES
from wsi_core.tissue import TISSUE_MASK, read_tissue_mask

#: The tags the backfill daemon gives a run of a partition range.
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


@pytest.fixture(scope="module", autouse=True)
def local_ray(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The session's local Ray: the run's resource finds it and leaves it running."""
    ray_support.start_ray(tmp_path_factory.mktemp("ray"))
    yield
    ray_support.stop_ray()


def run_range(harness: Harness) -> dg.ExecuteInProcessResult:
    """One run of every registered slide, as the backfill daemon launches a batch."""
    keys = harness.instance.get_dynamic_partitions(PARTITIONS_NAME)
    job = harness.defs.resolve_job_def(SLIDE_JOB)
    return job.execute_in_process(
        instance=harness.instance,
        tags={RANGE_START: keys[0], RANGE_END: keys[-1]},
        raise_on_error=False,
    )


def statuses(harness: Harness, table: str) -> dict[str, dg.AssetPartitionStatus]:
    keys = harness.instance.get_dynamic_partitions(PARTITIONS_NAME)
    found = harness.instance.get_status_by_partition(dg.AssetKey(table), keys, SLIDES)
    return dict(found or {})


def test_batched_run_equals_one_slide_runs(harness: Harness, slide_root: Path, tmp_path: Path):
    harness.discover()
    assert sorted(harness.instance.get_dynamic_partitions(PARTITIONS_NAME)) == sorted(DEMO_KEYS)
    result = run_range(harness)
    assert result.success, failure_messages(result)

    for key in DEMO_KEYS:
        for table in TABLES:
            # The event of this slide's table speaks of this slide's table only.
            metadata = latest_metadata(harness, table, key)
            rows = harness.table(table, key).num_rows
            assert metadata["dagster/row_count"].value == rows
            assert metadata["dagster/uri"].value == uri_of(harness.pipeline.tables.path(table, key))
            assert metadata["ray_node"].value  # built by a Ray worker
            assert statuses(harness, table)[key] == dg.AssetPartitionStatus.MATERIALIZED
        # the tissue mask too, on its own partition, by a Ray worker
        mask_said = latest_metadata(harness, TISSUE_MASK, key)
        assert mask_said["dagster/uri"].value == uri_of(harness.pipeline.masks.path(key))
        assert mask_said["ray_node"].value
        assert statuses(harness, TISSUE_MASK)[key] == dg.AssetPartitionStatus.MATERIALIZED

    with dg.instance_for_test() as elsewhere:  # the same slides, one run per slide
        apart = Harness(make_settings(slide_root, tmp_path / "apart"), elsewhere)
        apart.discover()
        for key in DEMO_KEYS:
            assert apart.materialize(key).success
            for table in TABLES:
                batched, alone = harness.table(table, key), apart.table(table, key)
                assert fingerprint(batched) == fingerprint(alone), (table, key)
            mask, mpp = read_tissue_mask(harness.pipeline.masks.path(key).path)
            alone_mask, alone_mpp = read_tissue_mask(apart.pipeline.masks.path(key).path)
            np.testing.assert_array_equal(mask, alone_mask)
            assert mpp == alone_mpp
            assert harness.pipeline.masks.provenance(key) == apart.pipeline.masks.provenance(key)
    # Each slide's checks are evaluated on its own partition and pass.
    checks = [
        e.asset_check_evaluation_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    ]
    per_partition = {(c.asset_key.to_user_string(), c.check_name, c.partition) for c in checks}
    per_slide = sum(len(checks) for checks in CHECKS.values())
    assert len(per_partition) == len(checks) == per_slide * len(DEMO_KEYS)
    assert all(c.passed for c in checks)


def test_a_damaged_slide_fails_alone(harness: Harness, slide_root: Path):
    harness.discover()
    bad = DEMO_KEYS[1]
    slide = harness.pipeline.slide(bad)
    path = slide_root / slide.relpath
    path.write_bytes(b"II*\x00" + b"\x00" * 64)  # a TIFF header, then nothing readable

    result = run_range(harness)
    assert not result.success
    message = failure_messages(result)
    assert f"1 of {len(DEMO_KEYS)} slides failed" in message
    assert str(path) in message and bad in message

    for table in TABLES:
        status = statuses(harness, table)
        for key in DEMO_KEYS:
            if key == bad:
                assert status.get(key) == dg.AssetPartitionStatus.FAILED, (table, key)
            else:
                assert status.get(key) == dg.AssetPartitionStatus.MATERIALIZED, (table, key)
                rows = harness.table(table, key).num_rows
                assert latest_metadata(harness, table, key)["dagster/row_count"].value == rows
    assert not harness.pipeline.tables.path(TABLES[0], bad).exists()


#: A driver on the cluster: registers the slides found under ``WSI_SLIDE_ROOT`` and runs
#: one batch of all of them, as the backfill daemon's run would (``RAY_ADDRESS`` and
#: ``DAGSTER_HOME`` come from the environment).
CLUSTER_DRIVER = f"""
import json
import dagster as dg
from wsi_assets import sensors
from wsi_assets.definitions import SLIDE_JOB, build_defs
from wsi_assets.partitions import PARTITIONS_NAME
from wsi_assets.pipeline.settings import Settings

settings = Settings.load()
with dg.DagsterInstance.get() as instance:
    sensors.tick(instance, settings)
    keys = instance.get_dynamic_partitions(PARTITIONS_NAME)
    job = build_defs(settings).resolve_job_def(SLIDE_JOB)
    tags = {{{RANGE_START!r}: keys[0], {RANGE_END!r}: keys[-1]}}
    result = job.execute_in_process(instance=instance, tags=tags, raise_on_error=False)
    print(json.dumps({{"success": result.success, "keys": keys}}))
"""


def test_batch_on_a_two_node_cluster(two_node_ray_cluster, slide_root: Path, tmp_path: Path):
    """The project pointed at an existing cluster with ``RAY_ADDRESS``: one batch of every
    slide runs on both nodes, and its tables equal the in-process engine's, row for row."""
    cluster = two_node_ray_cluster
    home, output = tmp_path / "dagster-home", tmp_path / "cluster-output"
    home.mkdir()
    environment = {
        "DAGSTER_HOME": str(home),
        "WSI_SLIDE_ROOT": str(slide_root),
        "WSI_OUTPUT_ROOT": str(output),
        "WSI_TILE_EXTENT": "128",
        "WSI_STRIDE": "128",
        "WSI_MPP": "1.0",
    }
    report = json.loads(cluster.run_driver(CLUSTER_DRIVER, env=environment, timeout=600))
    assert report["success"] and sorted(report["keys"]) == sorted(DEMO_KEYS)

    on_cluster = Pipeline(make_settings(slide_root, output))
    nodes = set()
    with dg.DagsterInstance.from_config(str(home)) as instance, dg.instance_for_test() as local:
        remote = Harness(make_settings(slide_root, output), instance)
        alone = Harness(make_settings(slide_root, tmp_path / "in-process"), local)
        alone.discover()
        for key in DEMO_KEYS:
            assert alone.materialize(key).success
            for table in TABLES:
                built = on_cluster.tables.read(table, key)[0]
                assert fingerprint(built) == fingerprint(alone.table(table, key)), (table, key)
                metadata = latest_metadata(remote, table, key)
                assert metadata["dagster/row_count"].value == built.num_rows
                nodes.add(metadata["ray_node"].value)
    assert nodes == set(cluster.node_ids.values())  # both nodes built slides


PROJECT = Path(__file__).resolve().parents[2]
DAEMON = str(Path(sys.executable).with_name("dagster-daemon"))


def stop_group(process: subprocess.Popen[bytes], grace: float = 30.0) -> None:
    """Ctrl-C to the daemon's process group (it stops its code server and sensors), then
    SIGKILL to whatever is left."""
    with contextlib.suppress(ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def all_built(instance: dg.DagsterInstance, keys: list[str]) -> bool:
    for table in TABLES:
        found = instance.get_status_by_partition(dg.AssetKey(table), keys, SLIDES) or {}
        if any(found.get(key) != dg.AssetPartitionStatus.MATERIALIZED for key in keys):
            return False
    return True


def backfill_runs_ended(instance: dg.DagsterInstance) -> bool:
    """Every backfill run has ended (its last table is materialized a moment before)."""
    runs = [r for r in instance.get_runs() if "dagster/backfill" in r.tags]
    return bool(runs) and all(r.is_finished for r in runs)


def test_new_slides_become_batched_runs_on_the_cluster(
    two_node_ray_cluster, slide_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The real daemon with the project's dagster.yaml, pointed at the cluster: slides
    registered before it starts are requested by declarative automation's first evaluation
    as one backfill, which ``BackfillPolicy.multi_run(2)`` splits into a run of two slides
    (built on the cluster) and a run of one (built in-process)."""
    cluster = two_node_ray_cluster
    home, output = tmp_path / "home", tmp_path / "output"
    home.mkdir()
    for name in ("dagster.yaml", "workspace.yaml"):
        shutil.copy(PROJECT / name, home / name)
    settings = make_settings(slide_root, output, backfill_batch=2)
    environment = cluster.env() | {
        "DAGSTER_HOME": str(home),
        "DAGSTER_DISABLE_TELEMETRY": "1",
        "WSI_SLIDE_ROOT": str(slide_root),
        "WSI_OUTPUT_ROOT": str(output),
        "WSI_TILE_EXTENT": "128",
        "WSI_STRIDE": "128",
        "WSI_MPP": "1.0",
        "WSI_BACKFILL_BATCH": "2",
    }
    monkeypatch.chdir(home)  # dagster.yaml's storage paths are relative to where Dagster runs
    with dg.DagsterInstance.from_config(str(home)) as instance:
        sensors.tick(instance, settings)
        keys = list(instance.get_dynamic_partitions(PARTITIONS_NAME))
        log = tmp_path / "daemon.log"
        with log.open("wb") as output_file:
            daemon = subprocess.Popen(
                [DAEMON, "run"],
                cwd=home,
                env=environment,
                stdout=output_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            deadline = time.monotonic() + 420
            while not all_built(instance, keys) or not backfill_runs_ended(instance):
                assert daemon.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(2)
        finally:
            stop_group(daemon)

        runs = [r for r in instance.get_runs() if "dagster/backfill" in r.tags]
        ranges = sorted(
            (r.tags.get(RANGE_START), r.tags.get(RANGE_END)) for r in runs if RANGE_START in r.tags
        )
        assert len(runs) == 2 and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
        assert ranges == sorted([(keys[0], keys[1]), (keys[2], keys[2])])
        harness = Harness(settings, instance)
        nodes = set()
        for key in keys:
            for table in TABLES:
                metadata = latest_metadata(harness, table, key)
                assert metadata["dagster/row_count"].value == harness.table(table, key).num_rows
                if key == keys[2]:
                    assert "ray_node" not in metadata  # a run of one slide stays in-process
                else:
                    nodes.add(metadata["ray_node"].value)
    assert nodes and nodes <= set(cluster.node_ids.values())
