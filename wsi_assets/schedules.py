"""The sweep schedule: re-run every slide whose tables are missing or stale.

``build_schedule_from_partitioned_job`` does not accept dynamic partitions, so the sweep is
written out: for every ``slides`` partition, ask Dagster's own stale-status resolver (the one
behind the UI's "stale" badges) which of the four tables are missing or stale, and request
one run per slide for exactly those tables. Slides with a run already queued or in progress
are skipped, and so are slides whose file has disappeared (observed version ``missing``).

Stale causes are those the UI shows: a new data version of the slide, annotation or overlay
file (recorded by the slide sensor or "Observe sources"), a new code version (code or
settings changed), or a stale upstream table.
"""

from dagster import (
    AssetKey,
    DagsterInstance,
    DagsterRunStatus,
    DataVersion,
    DefaultScheduleStatus,
    RunRequest,
    RunsFilter,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SkipReason,
    schedule,
)
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
from dagster._core.loader import LoadingContext

from .keys import SLIDE_FILE, SLIDE_JOB, TABLE_KEYS
from .partitions import PARTITIONS_NAME
from .storage import MISSING

CRON = "*/15 * * * *"
UNFINISHED = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.CANCELING,
]
PARTITION_TAG = "dagster/partition"


class _Loading(LoadingContext):
    """The request-scoped loading context the stale-status resolver needs."""

    def __init__(self, instance: DagsterInstance) -> None:
        self._instance = instance
        self._loaders: dict = {}

    @property
    def instance(self) -> DagsterInstance:
        return self._instance

    @property
    def loaders(self) -> dict:
        return self._loaders


def busy_partitions(instance: DagsterInstance) -> set[str]:
    """Slides with a run that is queued or in progress."""
    records = instance.get_run_records(RunsFilter(statuses=UNFINISHED))
    return {
        record.dagster_run.tags[PARTITION_TAG]
        for record in records
        if PARTITION_TAG in record.dagster_run.tags
    }


def sweep(instance: DagsterInstance, asset_graph: object, tick: str = "now") -> list[RunRequest]:
    """One run request per slide with missing or stale tables, selecting just those tables.

    ``tick`` (the schedule's time) goes into the run keys: unique per slide within a tick.
    """
    resolver = CachingStaleStatusResolver(instance, asset_graph, _Loading(instance))  # type: ignore[arg-type]
    busy = busy_partitions(instance)
    requests = []
    for key in sorted(instance.get_dynamic_partitions(PARTITIONS_NAME)):
        if key in busy or _vanished(resolver, key):
            continue
        todo = _with_dependants(asset_graph, _outdated(resolver, key))
        if todo:
            requests.append(
                RunRequest(
                    run_key=f"sweep:{tick}:{key}",
                    partition_key=key,
                    asset_selection=todo,
                    tags={"wsi_tiles/trigger": "sweep"},
                )
            )
    return requests


def _vanished(resolver: CachingStaleStatusResolver, key: str) -> bool:
    """True when the slide file was last observed as missing."""
    return resolver.get_current_data_version(SLIDE_FILE, key) == DataVersion(MISSING)


def _outdated(resolver: CachingStaleStatusResolver, key: str) -> set[AssetKey]:
    """The slide's tables that are missing or stale."""
    outdated = (StaleStatus.MISSING, StaleStatus.STALE)
    return {asset for asset in TABLE_KEYS if resolver.get_status(asset, key) in outdated}


def _with_dependants(asset_graph: object, keys: set[AssetKey]) -> list[AssetKey]:
    """``keys`` plus the tables downstream of them, in table order.

    Dagster marks a table stale only once its upstream has a new data version, so a table
    whose upstream is itself stale (e.g. a new tile size) would need a second sweep; running
    the dependants in the same run settles it at once.
    """
    wanted = set(keys)
    for key in TABLE_KEYS:  # upstream first
        if wanted & set(asset_graph.get(key).parent_keys):  # type: ignore[attr-defined]
            wanted.add(key)
    return [key for key in TABLE_KEYS if key in wanted]


def build(job_name: str = SLIDE_JOB) -> ScheduleDefinition:
    """The sweep schedule (running by default, every 15 minutes)."""

    @schedule(
        name="stale_sweep",
        cron_schedule=CRON,
        job_name=job_name,
        default_status=DefaultScheduleStatus.RUNNING,
        description="Every 15 minutes: one run per slide whose tables are missing or stale "
        "(only those tables).",
    )
    def stale_sweep(context: ScheduleEvaluationContext):
        tick = context.scheduled_execution_time.isoformat()
        requests = sweep(context.instance, context.repository_def.asset_graph, tick)
        if not requests:
            return SkipReason("every slide's tables are materialized and fresh")
        return requests

    return stale_sweep
