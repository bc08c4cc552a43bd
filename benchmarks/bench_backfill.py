"""A backfill of 200 small slides: one Dagster run per slide against batched runs on Ray.

Both modes run as the daemon's run launcher runs them, one new process per run
(``dagster api execute_run`` costs the same start-up: Python, Dagster and this project
imported, the definitions loaded), against one SQLite instance with every slide registered:

* one run per slide, the way a backfill ran before ``BackfillPolicy.multi_run`` (and what a
  sensor launches): ``PER_SLIDE_SAMPLE`` runs are timed and the rate extrapolated, since 200
  of them would take minutes and cost the same each;
* batched: the runs the backfill daemon makes of all 200 slides under
  ``BackfillPolicy.multi_run(WSI_BACKFILL_BATCH)``, each run a partition range, each starting
  its own local Ray (no ``RAY_ADDRESS``) and building its slides in parallel on it.

The slides are hard links of one small demo slide (its annotation and tissue mask too), so
the figure is the cost of runs and of the per-slide work, not of the disk. The daemon also
submits backfill runs at about one per second, which bounds one-run-per-slide further; that
is not counted here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg

from benchmarks.bench_automation import slide_root
from wsi_assets import sensors
from wsi_assets.partitions import PARTITIONS_NAME
from wsi_assets.pipeline.settings import Settings

SLIDES = int(os.environ.get("WSI_BENCH_BACKFILL_SLIDES", "200"))
BACKENDS = os.environ.get("WSI_BENCH_BACKFILL_BACKENDS", "sqlite,postgres").split(",")
BATCH = 50
PER_SLIDE_SAMPLE = 6
Row = dict[str, Any]

#: One run in a new process, as the run launcher starts it: a partition, or a range.
RUN = textwrap.dedent(
    """
    import sys
    import dagster as dg
    from wsi_assets.definitions import SLIDE_JOB, build_defs
    from wsi_assets.pipeline.settings import Settings

    start, end = sys.argv[1], sys.argv[2]
    one = {"partition_key": start}
    batch = {"tags": {"dagster/asset_partition_range_start": start,
                      "dagster/asset_partition_range_end": end}}
    job = build_defs(Settings.load()).resolve_job_def(SLIDE_JOB)
    with dg.DagsterInstance.get() as instance:
        result = job.execute_in_process(
            instance=instance, raise_on_error=False, **(one if start == end else batch)
        )
    sys.exit(0 if result.success else 1)
    """
)


def _environment(home: Path, slides: Path, output: Path) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("WSI_", "RAY_"))}
    return environment | {
        "DAGSTER_HOME": str(home),
        "WSI_SLIDE_ROOT": str(slides),
        "WSI_OUTPUT_ROOT": str(output),
        "WSI_TILE_EXTENT": "128",
        "WSI_STRIDE": "128",
        "WSI_MPP": "1.0",
        "WSI_BACKFILL_BATCH": str(BATCH),
        "RAY_USAGE_STATS_ENABLED": "0",
        "DAGSTER_DISABLE_TELEMETRY": "1",
    }


def _run(environment: dict[str, str], start: str, end: str) -> float:
    """Seconds for one run process, start to exit; raises if the run failed."""
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", RUN, start, end],
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(
            f"run {start}..{end} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        )
    return time.perf_counter() - began


def _registered(home: Path, environment: dict[str, str]) -> list[str]:
    """Register every slide (one sensor tick) and return the partition keys in order."""
    saved = dict(os.environ)
    os.environ.update(environment)
    try:
        settings = Settings.load()
        with dg.DagsterInstance.get() as instance:
            sensors.tick(instance, settings)
            return list(instance.get_dynamic_partitions(PARTITIONS_NAME))
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextmanager
def _instance_home(folder: Path, backend: str) -> Iterator[Path | None]:
    """A DAGSTER_HOME whose dagster.yaml keeps runs and events in SQLite (the default) or in
    a throwaway PostgreSQL server on loopback (None where there is none)."""
    home = folder / f"home-{backend}"
    home.mkdir()
    settings: dict[str, Any] = {"telemetry": {"enabled": False}}
    if backend == "sqlite":
        (home / "dagster.yaml").write_text(json.dumps(settings))
        yield home
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from pg_server import PostgresUnavailable, database, postgres_server

    try:
        with postgres_server() as url, database(url) as db:
            settings["storage"] = {"postgres": {"postgres_url": db}}
            (home / "dagster.yaml").write_text(json.dumps(settings))  # JSON is YAML
            yield home
    except PostgresUnavailable as error:
        print(f"(PostgreSQL backfill skipped: {error})")
        yield None


def run() -> Iterator[Row]:
    with tempfile.TemporaryDirectory(prefix="bench-backfill-") as scratch:
        folder = Path(scratch)
        slides = slide_root(folder, SLIDES)
        for backend in BACKENDS:
            with _instance_home(folder, backend) as home:
                if home is not None:
                    yield from _measure(backend, home, slides, folder / backend)


def _measure(backend: str, home: Path, slides: Path, folder: Path) -> Iterator[Row]:
    """Both modes on one instance: one run per slide (a sample), then batched runs."""
    apart = _environment(home, slides, folder / "per-slide")
    keys = _registered(home, apart)
    assert len(keys) == SLIDES, (len(keys), SLIDES)
    per_slide = [_run(apart, key, key) for key in keys[:PER_SLIDE_SAMPLE]]
    mean = sum(per_slide) / len(per_slide)
    per_minute = 60.0 / mean
    yield {
        "name": f"backfill, {backend}: one run per slide ({PER_SLIDE_SAMPLE} of {SLIDES})",
        "seconds": mean,
        "note": f"s per slide; {per_minute:.1f} slides/min (baseline)",
    }

    batched = _environment(home, slides, folder / "batched")
    _registered(home, batched)  # this output root's slide registry too
    runs = [keys[i : i + BATCH] for i in range(0, len(keys), BATCH)]
    began = time.perf_counter()
    for batch in runs:
        _run(batched, batch[0], batch[-1])
    seconds = time.perf_counter() - began
    rate = SLIDES * 60.0 / seconds
    yield {
        "name": f"backfill, {backend}: {len(runs)} runs of {BATCH} slides on local Ray",
        "seconds": seconds,
        "note": f"s for {SLIDES} slides; {rate:.1f} slides/min, "
        f"{rate / per_minute:.1f}x one run per slide",
    }
