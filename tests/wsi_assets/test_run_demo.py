"""``make run`` (``python -m wsi_assets.run_demo``) in a temporary DAGSTER_HOME with the
project's dagster.yaml: every table built, a second run builds nothing, and a run killed
hard never makes a slide look done while its tables are missing."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from wsi_core.tables import TABLES

PROJECT = Path(__file__).resolve().parents[2]


def environment(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WSI_")}
    env.update(DAGSTER_HOME=str(home), DAGSTER_DISABLE_TELEMETRY="1", PYTHONPATH=str(PROJECT))
    return env


def run_demo(home: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "wsi_assets.run_demo", "--scale", "0.25"],
        cwd=home,
        env=environment(home),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def stored(home: Path, table: str) -> int:
    return len(list((home / "data" / "output" / table).glob("slide=*/part-0.parquet")))


@pytest.mark.timeout(600)
def test_make_run_builds_everything_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copy(PROJECT / "dagster.yaml", tmp_path / "dagster.yaml")
    first = run_demo(tmp_path)
    assert "3 slide partitions; 3 runs succeeded, 0 failed" in first
    assert "demo_slide_01: annotation_coverage (not stored in the output root)" in first
    assert "coverage_tumor" in first and "tissue_fraction" in first
    assert (tmp_path / ".dagster" / "storage").is_dir()  # the instance of dagster.yaml
    monkeypatch.chdir(tmp_path)  # dagster.yaml's storage paths are relative to the root
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        keys = set(instance.get_dynamic_partitions("slides"))
        assert len(keys) == 3
        for table in TABLES:
            assert stored(tmp_path, table) == 3
            status = instance.get_status_by_partition(
                dg.AssetKey(table), sorted(keys), dg.DynamicPartitionsDefinition(name="slides")
            )
            assert set((status or {}).values()) == {dg.AssetPartitionStatus.MATERIALIZED}
    again = run_demo(tmp_path)
    assert "0 runs succeeded, 0 failed (every table in the output root is current)" in again

    (tmp_path / "data" / "output" / "tile_grid" / "slide=demo_slide_02" / "part-0.parquet").unlink()
    rebuilt = run_demo(tmp_path)
    assert "demo_slide_02: tile_grid (not stored in the output root)" in rebuilt
    assert "1 runs succeeded, 0 failed" in rebuilt and stored(tmp_path, "tile_grid") == 3


def kill_while_running(home: Path) -> dg.DagsterRun:
    """Start ``make run`` in ``home`` and SIGKILL it (as the kernel's OOM killer would) while
    one of its runs is STARTED; return that run. The instance is created first, so that it
    can be watched from the moment the process starts."""
    with dg.DagsterInstance.from_config(str(home)) as instance:
        process = subprocess.Popen(
            [sys.executable, "-m", "wsi_assets.run_demo", "--scale", "0.25"],
            cwd=home,
            env=environment(home),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            started = dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])
            deadline = time.time() + 240
            while time.time() < deadline and process.poll() is None:
                records = instance.get_run_records(started, limit=1)
                if records:
                    return records[0].dagster_run
                time.sleep(0.005)
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
    raise AssertionError("make run ended before one of its runs was seen running")


@pytest.mark.timeout(600)
def test_a_run_killed_hard_does_not_make_its_slide_look_done(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copy(PROJECT / "dagster.yaml", tmp_path / "dagster.yaml")
    monkeypatch.chdir(tmp_path)
    started = kill_while_running(tmp_path)
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        zombie = instance.get_run_by_id(started.run_id)
        assert zombie is not None and zombie.status == dg.DagsterRunStatus.STARTED  # for ever
    missing = sum(3 - stored(tmp_path, table) for table in TABLES)
    assert missing > 0

    after = run_demo(tmp_path)
    assert "every table in the output root is current" not in after
    assert f"{started.tags['dagster/partition']}: " in after
    assert all(stored(tmp_path, table) == 3 for table in TABLES)
    assert "every table in the output root is current" in run_demo(tmp_path)
