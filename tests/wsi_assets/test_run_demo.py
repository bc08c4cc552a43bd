"""`make run` on a fresh clone: the demo entry point, in a temporary DAGSTER_HOME that uses the
project's dagster.yaml, ends with every partition of every table materialized."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance

from wsi_assets.keys import TABLES

PROJECT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(120)
def test_run_demo_materializes_every_partition(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copy(PROJECT / "dagster.yaml", tmp_path / "dagster.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WSI_")}
    env.update(DAGSTER_HOME=str(tmp_path), DAGSTER_DISABLE_TELEMETRY="1", PYTHONPATH=str(PROJECT))

    def run() -> str:
        done = subprocess.run(
            [sys.executable, "-m", "wsi_assets.run_demo", "--scale", "0.25"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=110,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    first = run()
    assert "3 slide partitions; 3 runs succeeded, 0 failed" in first
    assert "demo_slide_01" in first and "coverage_tumor" in first and "tissue_fraction" in first
    assert (tmp_path / ".dagster" / "storage").is_dir()  # the persistent instance of dagster.yaml

    monkeypatch.chdir(tmp_path)  # dagster.yaml's storage paths are relative to the project root
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        keys = set(instance.get_dynamic_partitions("slides"))
        assert len(keys) == 3
        for table in TABLES:
            assert instance.get_materialized_partitions(AssetKey(table)) == keys
    for table in TABLES:
        assert len(list((tmp_path / "data" / "output" / table).glob("slide=*/part-0.parquet"))) == 3

    again = run()  # idempotent: nothing missing or stale, nothing re-run
    assert "0 runs succeeded, 0 failed" in again
