"""``python -m wsi_assets.run_demo``: the ``make run`` entry point.

1. With no ``WSI_SLIDE_ROOT`` set, writes the synthetic demo slides into ``./data/demo``
   (missing files only).
2. Evaluates ``slide_sensor`` once against the persistent Dagster instance (``DAGSTER_HOME``)
   and applies its result as the daemon would: registers the slides, adds their partitions,
   reports the versions of their files.
3. Builds, in process and in that instance (so the runs show in ``dagster dev``), every table
   that is missing from the output root or out of date, one run per slide, and says why
   (:mod:`wsi_assets.pipeline.plans`: the same rule as the ``table_sweep`` sensor).
4. Prints a summary and where the Parquet files are.

Exit status 1 when a slide failed (its error names the file), 2 for unusable settings.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import dagster as dg

from wsi_assets import sensors
from wsi_assets.automation import TRIGGER_TAG
from wsi_assets.definitions import SLIDE_JOB, build_defs
from wsi_assets.pipeline import demo
from wsi_assets.pipeline.plans import SlidePlan, plan
from wsi_assets.pipeline.settings import Settings, SettingsError
from wsi_assets.pipeline.steps import Pipeline
from wsi_assets.pipeline.summary import format_table, summary_rows
from wsi_core.tables.tile_dataset import TILE_DATASET

#: The runs' console output (their full logs are in the instance, see ``make dev``).
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def build_outstanding(
    instance: dg.DagsterInstance, defs: dg.Definitions, plans: Sequence[SlidePlan]
) -> dict[str, bool]:
    """Run, in process, every slide with tables to build; slide key -> success."""
    job = defs.resolve_job_def(SLIDE_JOB)
    outcome: dict[str, bool] = {}
    for slide_plan in plans:
        key = slide_plan.slide.key
        for table, reason in slide_plan.reasons().items():
            print(f"  {key}: {table} ({reason})")
        result = job.execute_in_process(
            instance=instance,
            partition_key=key,
            asset_selection=[dg.AssetKey(table) for table in slide_plan.todo],
            raise_on_error=False,
            tags={TRIGGER_TAG: "make run"},
            run_config=QUIET,
        )
        outcome[key] = result.success
        for event in result.all_events:
            if event.is_step_failure and event.step_failure_data.error is not None:
                cause = event.step_failure_data.user_failure_data
                message = cause.description if cause else event.step_failure_data.error.message
                print(f"    FAILED {event.step_key}: {(message or '').strip()}")
    return outcome


def build_dataset(instance: dg.DagsterInstance, defs: dg.Definitions) -> None:
    """Bring ``tile_dataset`` up to date (only the fragments of changed slides are rebuilt)
    and say what it holds."""
    job = defs.resolve_implicit_job_def_def_for_assets([dg.AssetKey(TILE_DATASET)])
    assert job is not None
    result = job.execute_in_process(
        instance=instance,
        asset_selection=[dg.AssetKey(TILE_DATASET)],
        raise_on_error=False,
        tags={TRIGGER_TAG: "make run"},
        run_config=QUIET,
    )
    event = instance.get_latest_materialization_event(dg.AssetKey(TILE_DATASET))
    if not result.success or event is None or event.asset_materialization is None:
        print("  tile_dataset: FAILED (see its run in make dev)")
        return
    said = event.asset_materialization.metadata
    print(
        f"  tile_dataset: {said['dagster/row_count'].value} tiles of {said['slides'].value} "
        f"slides, slides per split {said['slides_per_split'].value}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """See the module docstring."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--scale", type=float, default=1.0, help="demo slide size factor (tests use < 1)"
    )
    args = parser.parse_args(argv)
    try:
        settings = Settings.load()
    except SettingsError as error:
        print(error, file=sys.stderr)
        return 2
    if not os.environ.get("WSI_SLIDE_ROOT"):
        written = demo.generate(settings.slide_root, demo.scaled(demo.DEMO_SLIDES, args.scale))
        print(f"demo slides in {settings.slide_root} ({len(written)} files written)")
    defs = build_defs(settings)
    pipeline = Pipeline(settings)
    with dg.DagsterInstance.get() as instance:
        sensors.tick(instance, settings)
        plans = [p for p in plan(pipeline, pipeline.slides.scan()) if p.todo]
        outcome = build_outstanding(instance, defs, plans)
        if plans or not pipeline.tables.listing(TILE_DATASET):
            build_dataset(instance, defs)
        partitions = instance.get_dynamic_partitions("slides")
    succeeded = sum(outcome.values())
    current = " (every table in the output root is current)" if not plans else ""
    print(
        f"\n{len(partitions)} slide partitions; {succeeded} runs succeeded, "
        f"{len(outcome) - succeeded} failed{current}\n"
    )
    print(format_table(summary_rows(pipeline.tables)))
    print(
        "\nParquet tables (hive layout, one folder per table): "
        f"{settings.output_root}/<table>/slide=<key>/part-0.parquet"
    )
    print(f"Dagster instance: {os.environ.get('DAGSTER_HOME')} (browse it: make dev)")
    return 0 if all(outcome.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
