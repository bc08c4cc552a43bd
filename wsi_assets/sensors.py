"""The slide sensor: notices new and changed slides (and their annotation and overlay files).

Every tick lists the slide root once (one recursive listing; on S3 a paginated LIST). The
cursor is a digest of that listing (slides plus companion files; plus the versions of
companion files outside the root, when a template points there), so an unchanged folder
costs no more than the listing and yields nothing. When something changed, the sensor

1. registers new slides (key -> URI, in the registry under the output root) and adds their
   ``slides`` partitions;
2. records an observation (data version) for every slide, annotation and overlay file whose
   version differs from the last one recorded in the instance: the UI then shows exactly the
   affected tables as stale;
3. requests one run per new or changed slide (all four tables), run key
   ``{key}:{slide version}``; and one run per changed annotation (``annotation_coverage``)
   or overlay (``overlay_overlap``) file of an already known slide.

A removed slide is recorded as version ``missing`` (the sweep then leaves it alone); its
partition and tables stay until someone deletes them.
"""

import hashlib
from collections.abc import Mapping, Sequence

from dagster import (
    AssetKey,
    AssetObservation,
    DagsterInstance,
    DefaultSensorStatus,
    Definitions,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    build_sensor_context,
    sensor,
)
from dagster._core.definitions.data_version import DATA_VERSION_TAG
from dagster._core.events import DagsterEventType

from . import storage
from .config import WSISettings
from .discovery import ANNOTATION, OVERLAY, SLIDE, is_absolute, scan_slides, source_versions
from .keys import (
    ANNOTATION_COVERAGE,
    ANNOTATION_FILE,
    OVERLAY_FILE,
    OVERLAY_OVERLAP,
    SLIDE_FILE,
    SLIDE_JOB,
    TABLE_KEYS,
)
from .partitions import PARTITIONS_NAME, slides_partitions
from .registry import SlideRegistry

SOURCE_BY_KIND = {SLIDE: SLIDE_FILE, ANNOTATION: ANNOTATION_FILE, OVERLAY: OVERLAY_FILE}
#: What a change of each kind of file makes worth recomputing.
TABLES_BY_KIND = {
    SLIDE: list(TABLE_KEYS),
    ANNOTATION: [AssetKey(ANNOTATION_COVERAGE)],
    OVERLAY: [AssetKey(OVERLAY_OVERLAP)],
}
MINIMUM_INTERVAL_SECONDS = 30


def listing_digest(settings: WSISettings, listing: Mapping[str, Mapping]) -> str:
    """The sensor's cursor: a digest of the slide-root listing (URIs and versions), and of the
    versions of companion files outside the slide root when a template points outside it."""
    parts = sorted(
        f"{uri}\t{storage.version_from_info(uri, info)}" for uri, info in listing.items()
    )
    if any(is_absolute(t) for t in [*settings.annotation_templates, *settings.overlay_templates]):
        slides = {
            key: entry.uri for key, entry in SlideRegistry(settings.output_root).load().items()
        }
        versions = source_versions(settings, slides, listing, settings.slide_root)
        parts += sorted(
            f"{kind}\t{key}\t{v}"
            for kind in (ANNOTATION, OVERLAY)
            for key, v in versions[kind].items()
        )
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:24]


def observed_versions(instance: DagsterInstance, asset_key: AssetKey) -> dict[str, str]:
    """Latest recorded data version per partition of a source asset (one query)."""
    tags = instance.event_log_storage.get_latest_tags_by_partition(
        asset_key, DagsterEventType.ASSET_OBSERVATION, [DATA_VERSION_TAG]
    )
    return {
        key: values[DATA_VERSION_TAG] for key, values in tags.items() if DATA_VERSION_TAG in values
    }


def observation(asset_key: AssetKey, partition: str, version: str) -> AssetObservation:
    """An observation that records ``version`` as the data version of one source partition."""
    return AssetObservation(
        asset_key=asset_key, partition=partition, tags={DATA_VERSION_TAG: version}
    )


def evaluate(context: SensorEvaluationContext, settings: WSISettings) -> SensorResult | SkipReason:
    """One tick (see the module docstring)."""
    listing = storage.list_files(settings.slide_root)
    digest = listing_digest(settings, listing)
    if context.cursor == digest:
        return SkipReason(f"no change under {settings.slide_root}")
    slides = scan_slides(settings, listing)
    if not slides:
        return SensorResult(skip_reason=f"no slides under {settings.slide_root}", cursor=digest)
    registry = SlideRegistry(settings.output_root)
    keys = registry.register({slide.uri: slide.relpath for slide in slides})
    uris = {keys[slide.uri]: slide.uri for slide in slides}
    known = set(context.instance.get_dynamic_partitions(PARTITIONS_NAME))
    new = sorted(key for key in uris if key not in known)
    # every slide partition, listed or not: one that vanished is recorded as "missing"
    every = {
        key: entry.uri for key, entry in registry.load().items() if key in known or key in uris
    }
    current = source_versions(settings, every, listing, settings.slide_root)
    events, requests = _changes(context.instance, current, new)
    context.log.info(f"{len(slides)} slides, {len(new)} new, {len(requests)} runs requested")
    return SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[slides_partitions.build_add_request(new)] if new else [],
        asset_events=events,
        cursor=listing_digest(settings, listing) if new else digest,  # new slides' companions count
    )


def _changes(
    instance: DagsterInstance, current: Mapping[str, Mapping[str, str]], new: Sequence[str]
) -> tuple[list[AssetObservation], list[RunRequest]]:
    """Observations for every changed file version, and the runs they call for."""
    events: list[AssetObservation] = []
    wanted: dict[str, dict[str, str]] = {}  # key -> {kind: version} of changed files
    for kind, versions in current.items():
        recorded = observed_versions(instance, SOURCE_BY_KIND[kind])
        for key, version in versions.items():
            if recorded.get(key) != version:
                events.append(observation(SOURCE_BY_KIND[kind], key, version))
                wanted.setdefault(key, {})[kind] = version
    keys = sorted(set(wanted) | set(new))
    requests = [_request(key, wanted.get(key, {}), key in new, current[SLIDE][key]) for key in keys]
    return events, [request for request in requests if request is not None]


def _request(
    key: str, changed: Mapping[str, str], is_new: bool, slide_version: str
) -> RunRequest | None:
    """The run for one slide whose files changed (None if its slide file is missing)."""
    if slide_version == storage.MISSING:
        return None
    if is_new or SLIDE in changed:
        return RunRequest(
            partition_key=key, run_key=f"{key}:{slide_version}", asset_selection=list(TABLE_KEYS)
        )
    selection = [
        asset for kind in (ANNOTATION, OVERLAY) if kind in changed for asset in TABLES_BY_KIND[kind]
    ]
    versions = ":".join(f"{kind}={changed[kind]}" for kind in sorted(changed))
    return RunRequest(partition_key=key, run_key=f"{key}:{versions}", asset_selection=selection)


def apply_sensor_tick(instance: DagsterInstance, defs: Definitions) -> SensorResult | None:
    """Evaluate ``slide_sensor`` once, outside the daemon, and persist what it asks for:
    new partitions and observations (as the daemon does). Its run requests are returned, not
    launched (``wsi_assets.run_demo`` runs whatever is missing or stale instead)."""
    sensor_def = defs.get_repository_def().get_sensor_def("slide_sensor")
    with build_sensor_context(
        instance=instance, definitions=defs, resources=dict(defs.resources or {})
    ) as context:
        result = sensor_def(context)
    if not isinstance(result, SensorResult):
        return None
    for request in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(
            request.partitions_def_name, list(request.partition_keys or [])
        )
    for event in result.asset_events or []:
        instance.report_runless_asset_event(event)
    return result


def build(job_name: str = SLIDE_JOB) -> SensorDefinition:
    """The slide sensor (running by default, every ``MINIMUM_INTERVAL_SECONDS``)."""

    @sensor(
        name="slide_sensor",
        job_name=job_name,
        minimum_interval_seconds=MINIMUM_INTERVAL_SECONDS,
        default_status=DefaultSensorStatus.RUNNING,
        description="Lists the slide root; registers new slides, records file versions, and "
        "requests runs for new and changed slides, annotations and overlays.",
    )
    def slide_sensor(
        context: SensorEvaluationContext, settings: WSISettings
    ) -> SensorResult | SkipReason:
        return evaluate(context, settings)

    return slide_sensor
