"""Why a slide's tables are built: the one module that answers it.

1. **Declarative automation** (:func:`table_condition` on every table, evaluated by the
   ``table_automation`` sensor, on by default) reacts at once to what Dagster sees happen:
   a slide partition added (all four tables and the tissue mask), a new version of an input
   file recorded by ``slide_sensor`` (the tables that read it and those below), an upstream table
   materialized (the tables below). Slides registered before its first evaluation are
   requested at that evaluation. It never retries a failure by itself.

2. **The sweep** (``table_sweep``, on by default; it waits while a backfill runs) compares, page
   by page of slide partitions, the tables in the current output root with what they would be if
   built now (:mod:`wsi_assets.pipeline.plans`): a table that is missing there (deleted, another
   output root, a run killed before it wrote) or out of date (settings or code changed, an input
   file changed) is requested. It leaves alone the slides the first path is handling (files or
   registrations newer than ``GRACE_SECONDS``, runs in progress), and retries a slide whose last run
   failed only after an increasing back-off (:func:`retry_after`).

Dead runs (a worker killed hard) are marked failed by run monitoring (``dagster.yaml``), and
then count as failures here.
"""

import hashlib
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import dagster as dg

from wsi_assets.partitions import PARTITION_TAG, PARTITIONS_NAME, SLIDES
from wsi_assets.pipeline.locations import Info, modified
from wsi_assets.pipeline.outputs import SLIDE_OUTPUTS
from wsi_assets.pipeline.plans import SlidePlan, plan
from wsi_assets.pipeline.settings import Settings
from wsi_assets.pipeline.slides import Slide
from wsi_assets.pipeline.steps import Pipeline
from wsi_assets.sources import SOURCE_KEYS
from wsi_core.tables.tile_dataset import TILE_DATASET

#: The per-slide assets: the four tables and the tissue mask.
TABLE_KEYS = tuple(dg.AssetKey(table) for table in SLIDE_OUTPUTS)
#: The table of labelled tiles of every slide (not partitioned).
DATASET_KEY = dg.AssetKey(TILE_DATASET)

SWEEP_INTERVAL_SECONDS = 300
#: Slides looked at per sweep tick: 10,000 slides are covered in 20 ticks.
SWEEP_PAGE = 500
#: Input files and registrations younger than this are left to declarative automation.
GRACE_SECONDS = 600
#: First retry of a failed slide after this long, then twice as long each time, at most
#: ``MAX_BACKOFF_SECONDS``: a file that keeps failing costs about 8 runs on its first day and
#: one a day after that, and is always shown as failed with its error in between.
BACKOFF_SECONDS = 900
MAX_BACKOFF_SECONDS = 86_400
#: Runs of a slide read to count its consecutive failures.
RUN_HISTORY = 20
#: The tag Dagster gives every run of a backfill, and the run states that count as running.
BACKFILL_TAG = "dagster/backfill"
IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]
#: Newest queued or running runs looked at for a backfill's (the run queue's limits keep far
#: fewer than this in flight; queued sweep runs are the most there can be, one page).
RUN_SCAN = 1000
TRIGGER_TAG = "wsi_tiles/trigger"
REASON_TAG = "wsi_tiles/reason"

A = dg.AutomationCondition


def table_condition() -> dg.AutomationCondition:
    """When declarative automation requests a table of a slide (see the module docstring).

    ``eager()`` with two changes: a table missing at the sensor's first evaluation is
    requested (``eager`` only reacts to partitions that become missing later, which would
    forget slides registered before), and input files without a recorded version do not
    block (an absent annotation file is a fact, not a missing dependency).
    """
    pending = (A.newly_missing() | A.any_deps_updated()).since_last_handled()
    at_first_evaluation = (A.missing() & A.initial_evaluation()).with_label(
        "missing at the first evaluation"
    )
    blocked = (
        A.any_deps_missing().ignore(dg.AssetSelection.assets(*SOURCE_KEYS))
        | A.any_deps_in_progress()
        | A.in_progress()
    )
    return ((pending | at_first_evaluation) & ~blocked).with_label(
        "tables of new or changed slides"
    )


def dataset_condition() -> dg.AutomationCondition:
    """When declarative automation requests ``tile_dataset``: a slide's table was
    materialized, or the dataset's rules changed (its code version), since it was last
    requested; never while it or a table it reads is being built (what happens meanwhile is
    remembered: a batch of slides gives one run once the batch is done).

    Not at the first evaluation: the tables requested in that tick are not built yet, and
    the dataset follows them when they are. A dataset that is missing while every table is
    built (a deployment that had the tables before the dataset existed) is built by the next
    table that changes, or at once with **Materialize** on ``tile_dataset``."""
    rules_changed: dg.AutomationCondition = A.code_version_changed()
    pending = (A.newly_missing() | A.any_deps_updated() | rules_changed).since_last_handled()
    blocked = A.any_deps_in_progress() | A.in_progress()
    return (pending & ~blocked).with_label("tile_dataset after slides' tables change")


def automation_sensor() -> dg.AutomationConditionSensorDefinition:
    """Evaluates :func:`table_condition` every 30 seconds (in the daemon); many slides at once
    become one backfill."""
    return dg.AutomationConditionSensorDefinition(
        "table_automation",
        target=dg.AssetSelection.assets(*TABLE_KEYS, DATASET_KEY),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=30,
        run_tags={TRIGGER_TAG: "automation"},
        description="Requests the tables of new slides and of slides whose files changed.",
    )


# The sweep --------------------------------------------------------------------------------


def retry_after(failures: int, last_failure: float) -> float:
    """When a slide whose last ``failures`` runs failed (the last one ending at
    ``last_failure``, seconds since the epoch) may be tried again."""
    delay = min(BACKOFF_SECONDS * 2 ** max(failures - 1, 0), MAX_BACKOFF_SECONDS)
    return last_failure + delay


@dataclass(frozen=True)
class FailureHistory:
    """Consecutive failed runs of a slide (newest first), and when the last one ended."""

    failures: int
    last_failure: float


def failure_history(instance: dg.DagsterInstance, key: str) -> FailureHistory:
    """The slide's consecutive failures up to its latest run (0 if that one did not fail)."""
    records = instance.get_run_records(dg.RunsFilter(tags={PARTITION_TAG: key}), limit=RUN_HISTORY)
    failures, last = 0, 0.0
    for record in records:  # newest first
        status = record.dagster_run.status
        if status in (dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED):
            continue
        if status != dg.DagsterRunStatus.FAILURE:
            break
        failures += 1
        ended = record.end_time or record.update_timestamp.timestamp()
        last = max(last, ended)
    return FailureHistory(failures, last)


def busy_and_failed(instance: dg.DagsterInstance, keys: Sequence[str]) -> tuple[set[str], set[str]]:
    """Among ``keys``: slides with a table in progress, and slides whose latest attempt at
    some table failed (one status query per table)."""
    busy: set[str] = set()
    failed: set[str] = set()
    for asset_key in TABLE_KEYS:
        statuses = instance.get_status_by_partition(asset_key, list(keys), SLIDES) or {}
        for key, status in statuses.items():
            if status == dg.AssetPartitionStatus.IN_PROGRESS:
                busy.add(key)
            elif status == dg.AssetPartitionStatus.FAILED:
                failed.add(key)
    return busy, failed


def page_of(keys: Sequence[str], after: str | None, size: int) -> tuple[list[str], str | None]:
    """The next ``size`` keys after ``after`` (sorted, wrapping around), and the new cursor."""
    ordered = sorted(keys)
    if not ordered:
        return [], None
    start = 0 if after is None else next((i for i, k in enumerate(ordered) if k > after), 0)
    page = ordered[start : start + size]
    return page, page[-1] if start + size < len(ordered) else None


def young(
    slide_plan: SlidePlan,
    listing: Mapping[str, Info],
    registered: Mapping[str, float | None],
    now: float,
) -> bool:
    """True when the slide was registered, or one of its listed files changed, less than
    ``GRACE_SECONDS`` ago: declarative automation is still handling it."""
    times = [registered.get(slide_plan.slide.key)]
    if slide_plan.files is not None:
        for found in slide_plan.files.files.values():
            info = None if found is None else listing.get(found.uri)
            times.append(None if info is None else modified(info))
    return any(t is not None and now - t < GRACE_SECONDS for t in times)


def sweep_requests(
    plans: Iterable[SlidePlan],
    instance: dg.DagsterInstance,
    *,
    now: float,
    busy: set[str],
    failed: set[str],
) -> list[dg.RunRequest]:
    """One run per slide with tables to build, unless it is busy or still in back-off."""
    requests = []
    for slide_plan in plans:
        key = slide_plan.slide.key
        if not slide_plan.todo or key in busy:
            continue
        if key in failed:
            history = failure_history(instance, key)
            if now < retry_after(history.failures, history.last_failure):
                continue
        requests.append(run_request(slide_plan, now))
    return requests


def run_request(slide_plan: SlidePlan, now: float) -> dg.RunRequest:
    """The run that builds a slide's outstanding tables; its tags say why. Its run key names
    what it builds and when it was asked for (a run already queued or running keeps the slide
    busy, so it is not asked for twice)."""
    reasons = slide_plan.reasons()
    need = hashlib.sha256(repr(sorted(reasons.items())).encode()).hexdigest()[:12]
    why = "; ".join(f"{table}: {reason}" for table, reason in reasons.items())
    return dg.RunRequest(
        run_key=f"sweep:{slide_plan.slide.key}:{need}:{int(now)}",
        partition_key=slide_plan.slide.key,
        asset_selection=[dg.AssetKey(table) for table in slide_plan.todo],
        tags={TRIGGER_TAG: "sweep", REASON_TAG: why[:250]},
    )


def backfill_running(instance: dg.DagsterInstance) -> bool:
    """True while a run of a backfill is queued or in progress. A backfill submits its runs a
    few at a time, so the slides it has not reached yet are neither built nor busy: a sweep
    then would ask for them a second time, one run each."""
    records = instance.get_run_records(dg.RunsFilter(statuses=IN_FLIGHT), limit=RUN_SCAN)
    return any(BACKFILL_TAG in record.dagster_run.tags for record in records)


def sweep(
    context: dg.SensorEvaluationContext, settings: Settings, now: float | None = None
) -> dg.SensorResult | dg.SkipReason:
    """One sweep tick over the next page of slide partitions (at ``now``, seconds since the
    epoch; default: the current time). It waits while a backfill runs."""
    if backfill_running(context.instance):
        return dg.SkipReason("a backfill is running: the sweep waits until it has finished")
    keys = context.instance.get_dynamic_partitions(PARTITIONS_NAME)
    page, cursor = page_of(keys, context.cursor or None, SWEEP_PAGE)
    if not page:
        return dg.SkipReason("no slide partitions yet")
    pipeline = Pipeline(settings)
    listing = pipeline.slides.listing()
    listed = {slide.key: slide for slide in pipeline.slides.scan(listing)}
    slides: list[Slide] = [listed[key] for key in page if key in listed]
    plans = plan(pipeline, slides, listing)
    now = time.time() if now is None else now
    registered = pipeline.registry.registered()
    settled = [p for p in plans if p.todo and not young(p, listing, registered, now)]
    busy, failed = busy_and_failed(context.instance, [p.slide.key for p in settled])
    requests = sweep_requests(settled, context.instance, now=now, busy=busy, failed=failed)
    context.log.info(
        f"{len(page)} slides looked at ({len(page) - len(slides)} no longer listed), "
        f"{sum(bool(p.todo) for p in plans)} with tables to build, {len(requests)} requested"
    )
    return dg.SensorResult(run_requests=requests, cursor=cursor or "")


def sweep_sensor(job_name: str) -> dg.SensorDefinition:
    """The sweep (running by default, every ``SWEEP_INTERVAL_SECONDS``)."""

    @dg.sensor(
        name="table_sweep",
        job_name=job_name,
        minimum_interval_seconds=SWEEP_INTERVAL_SECONDS,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Pages through the slides; requests tables that are missing from the "
        "output root or out of date, and retries failed slides after a back-off.",
    )
    def table_sweep(
        context: dg.SensorEvaluationContext, settings: dg.ResourceParam[Settings]
    ) -> dg.SensorResult | dg.SkipReason:
        return sweep(context, settings)

    return table_sweep
