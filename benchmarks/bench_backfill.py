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

import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import dagster as dg

from benchmarks.bench_automation import slide_root
from wsi_assets import sensors
from wsi_assets.partitions import PARTITIONS_NAME
from wsi_assets.pipeline.settings import Settings

SLIDES = int(os.environ.get("WSI_BENCH_BACKFILL_SLIDES", "200"))
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


def run() -> list[Row]:
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-backfill-") as scratch:
        folder = Path(scratch)
        slides = slide_root(folder, SLIDES)
        home = folder / "home"
        home.mkdir()
        apart = _environment(home, slides, folder / "per-slide")
        keys = _registered(home, apart)
        assert len(keys) == SLIDES, (len(keys), SLIDES)

        per_slide = [_run(apart, key, key) for key in keys[:PER_SLIDE_SAMPLE]]
        mean = sum(per_slide) / len(per_slide)
        per_minute = 60.0 / mean
        rows.append(
            {
                "name": f"backfill: one run per slide ({PER_SLIDE_SAMPLE} of {SLIDES} timed)",
                "seconds": mean,
                "note": f"s per slide; {per_minute:.1f} slides/min (baseline)",
            }
        )

        batched = _environment(home, slides, folder / "batched")
        began = time.perf_counter()
        runs = [keys[i : i + BATCH] for i in range(0, len(keys), BATCH)]
        for batch in runs:
            _run(batched, batch[0], batch[-1])
        seconds = time.perf_counter() - began
        rate = SLIDES * 60.0 / seconds
        rows.append(
            {
                "name": f"backfill: {len(runs)} runs of {BATCH} slides on a local Ray",
                "seconds": seconds,
                "note": f"s for {SLIDES} slides; {rate:.1f} slides/min, "
                f"{rate / per_minute:.1f}x one run per slide",
            }
        )
    return rows
