"""A run whose worker is killed hard stays STARTED; the real Dagster daemon's run monitoring
(configured as in the project's dagster.yaml, with a short run time limit) marks it failed,
and the sweep then requests its slide again once the back-off has passed."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
import yaml
from test_run_demo import environment, kill_while_running

from wsi_assets.automation import BACKOFF_SECONDS, GRACE_SECONDS, sweep
from wsi_assets.pipeline.plans import plan
from wsi_assets.pipeline.settings import Settings
from wsi_assets.pipeline.steps import Pipeline
from wsi_core.tables import TABLES

MONITORING = {
    "storage": {"sqlite": {"base_dir": ".dagster/storage"}},
    "telemetry": {"enabled": False},
    "run_monitoring": {"enabled": True, "max_runtime_seconds": 2, "poll_interval_seconds": 1},
}


def daemon(home: Path) -> subprocess.Popen[bytes]:
    """``dagster-daemon run`` on the instance under ``home``, with a code location of no
    assets: only the instance's daemons matter here (the sensors stay out of the way)."""
    (home / "empty_defs.py").write_text("import dagster as dg\n\ndefs = dg.Definitions()\n")
    workspace = {"load_from": [{"python_file": {"relative_path": "empty_defs.py"}}]}
    (home / "workspace.yaml").write_text(yaml.safe_dump(workspace))
    command = [str(Path(sys.executable).with_name("dagster-daemon")), "run", "-w", "workspace.yaml"]
    return subprocess.Popen(
        command,
        cwd=home,
        env=environment(home),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_monitoring_fails_a_dead_run_and_the_sweep_retries_its_slide(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(MONITORING))
    monkeypatch.chdir(tmp_path)  # the storage paths in dagster.yaml are relative
    zombie = kill_while_running(tmp_path)
    key = zombie.tags["dagster/partition"]
    watcher = daemon(tmp_path)
    try:
        deadline = time.time() + 300
        status = dg.DagsterRunStatus.STARTED
        while status == dg.DagsterRunStatus.STARTED and time.time() < deadline:
            time.sleep(1)
            with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
                run = instance.get_run_by_id(zombie.run_id)
                status = run.status if run else status
    finally:
        watcher.send_signal(signal.SIGINT)
        watcher.wait(timeout=60)
    assert status == dg.DagsterRunStatus.FAILURE

    settings = Settings.load(  # what make run used: the defaults
        slide_root=str(tmp_path / "data" / "demo"), output_root=str(tmp_path / "data" / "output")
    )
    pipeline = Pipeline(settings)
    plans = {p.slide.key: p for p in plan(pipeline, pipeline.slides.scan())}
    if not plans[key].todo:  # killed after its last write: its output is lost all the same
        Path(pipeline.tables.path(TABLES[-1], key).path).unlink()
    failed_at = time.time()
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        with dg.build_sensor_context(instance=instance) as context:
            waiting = sweep(context, settings, now=failed_at + GRACE_SECONDS + 1)
        with dg.build_sensor_context(instance=instance) as context:
            retried = sweep(context, settings, now=failed_at + BACKOFF_SECONDS + 1)
    assert isinstance(waiting, dg.SensorResult) and isinstance(retried, dg.SensorResult)
    assert key not in {r.partition_key for r in waiting.run_requests or []}
    assert key in {r.partition_key for r in retried.run_requests or []}
