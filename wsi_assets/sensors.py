"""``slide_sensor``: notices new slides, and input files that changed under stored tables.

Every tick lists the slide root once (a paginated LIST on S3). Slides are spread over
``BUCKETS`` buckets by key, and the cursor keeps one digest per bucket of its slides' keys
and file versions (and a digest of the settings that decide what the files are), so an
unchanged root costs the listing and nothing else, and a change costs only its buckets.
For the slides of changed buckets, at most ``SLIDES_PER_TICK`` per tick (the rest follow on
the next ticks), the sensor

1. registers slides that are new to the output root (:mod:`wsi_assets.pipeline.registry`)
   and adds their ``slides`` partitions: declarative automation builds their tables;
2. compares each slide's files with the versions last recorded for them (by the run that
   read them, or by an earlier tick) and reports a materialization of ``slide_file``,
   ``annotation_file`` or ``overlay_file`` for every file whose version differs (an absent
   companion file has the version ``missing``): declarative automation then rebuilds exactly
   the tables that read it (:mod:`wsi_assets.sources`).

New slides cost no event: no run has read their files yet. Tables built by another engine
(no version recorded in Dagster) are compared with their files by the sweep instead. The
sensor requests no run itself. A slide that disappears keeps its partition and tables;
nothing is reported for it, and the sweep leaves it alone.
"""

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import dagster as dg

from wsi_assets.partitions import PARTITIONS_NAME, SLIDES
from wsi_assets.pipeline.keys import slide_key
from wsi_assets.pipeline.settings import Settings
from wsi_assets.pipeline.slides import KINDS, SLIDE, SlideFiles
from wsi_assets.pipeline.steps import Pipeline
from wsi_assets.sources import SOURCE_ASSETS, recorded_versions, source_event

BUCKETS = 128
#: Slides registered and compared per tick (one registration write each when new, a few
#: footer reads each when their tables are stored).
SLIDES_PER_TICK = 1000
MINIMUM_INTERVAL_SECONDS = 30
#: Files not taken for slides that a tick names in its log (the rest are counted).
SKIPPED_SHOWN = 20


def bucket_of(key: str) -> int:
    """The bucket of a slide key (stable across processes and machines)."""
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % BUCKETS


def setting_digest(settings: Settings) -> str:
    """A digest of the settings that decide which files are slides and companions, and where
    registrations go: when it changes, every bucket is looked at again."""
    text = json.dumps(
        [
            settings.slide_root,
            settings.output_root,
            settings.slide_extensions,
            settings.annotation_templates,
            settings.overlay_templates,
        ]
    )
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def bucket_digest(files: Iterable[SlideFiles]) -> str:
    """A digest of a bucket's slides and their file versions ("" for an empty bucket)."""
    lines = sorted(
        f"{f.slide.key}\t{f.slide.relpath}\t" + "\t".join(f.version(kind) for kind in KINDS)
        for f in files
    )
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:8] if lines else ""


@dataclass(frozen=True)
class Cursor:
    """The sensor's state: the settings digest, one digest per bucket, and the new slides
    seen once (relative path -> version), registered when the next look finds them the same."""

    settings: str = ""
    buckets: tuple[str, ...] = ("",) * BUCKETS
    pending: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str | None) -> "Cursor":
        if not text:
            return cls()
        document = json.loads(text)
        digests = tuple(document["buckets"].split(","))
        return cls(
            document["settings"],
            digests if len(digests) == BUCKETS else cls().buckets,
            dict(document.get("pending", {})),
        )

    def dump(self) -> str:
        document = {"settings": self.settings, "buckets": ",".join(self.buckets)}
        return json.dumps({**document, "pending": dict(self.pending)} if self.pending else document)


def changed_files(
    instance: dg.DagsterInstance, files: Sequence[SlideFiles]
) -> list[dg.AssetMaterialization]:
    """A materialization of each of the slides' input files whose version differs from the
    one recorded last (files of slides with nothing recorded are left alone)."""
    keys = [f.slide.key for f in files]
    events = []
    for kind in SOURCE_ASSETS:
        recorded = recorded_versions(instance, kind, keys)
        for slide_files in files:
            last = recorded.get(slide_files.slide.key)
            if last is not None and last != slide_files.version(kind):
                present = slide_files.files.get(kind) is not None
                events.append(
                    source_event(
                        kind, slide_files, f"{kind} file {'changed' if present else 'removed'}"
                    )
                )
    return events


def evaluate(
    context: dg.SensorEvaluationContext,
    settings: Settings,
    budget: int | None = SLIDES_PER_TICK,
    settle: bool = True,
) -> dg.SensorResult | dg.SkipReason:
    """One tick (see the module docstring); ``budget`` None handles every changed bucket.

    With ``settle``, a new slide is registered only when a second look finds its size and
    modification time (or ETag) unchanged: a slide still being copied is not picked up
    half-written. ``make run`` and tests, which look once, pass ``settle=False``.
    """
    pipeline = Pipeline(settings)
    listing = pipeline.slides.listing()
    slides, skipped = pipeline.slides.survey(listing)
    by_bucket: dict[int, list[SlideFiles]] = {}
    for slide in slides:
        by_bucket.setdefault(bucket_of(slide.key), []).append(pipeline.slides.files(slide, listing))
    previous = Cursor.parse(context.cursor)
    current = setting_digest(settings)
    digests = [bucket_digest(by_bucket.get(b, [])) for b in range(BUCKETS)]
    old = previous.buckets if previous.settings == current else Cursor().buckets
    changed = [b for b in range(BUCKETS) if digests[b] != old[b]]
    if not changed:
        return dg.SkipReason(f"no change under {settings.slide_root}")
    _log_skipped(context, skipped)
    taken = _within_budget(changed, by_bucket, budget)
    files = [f for b in taken for f in by_bucket.get(b, [])]
    registered = pipeline.registry.registered()
    ready, pending = _settled(files, registered, previous, settle)
    new_partitions, events = _register_and_compare(context, pipeline, ready, registered)
    unsettled = {bucket_of(slide_key(relpath)) for relpath in pending}
    buckets = tuple(
        digests[b] if b in taken and b not in unsettled else old[b] for b in range(BUCKETS)
    )
    context.log.info(
        f"{len(slides)} slides listed; {len(files)} looked at in {len(taken)} of "
        f"{len(changed)} changed buckets; {len(new_partitions)} new; {len(pending)} waiting "
        f"for a second look; {len(events)} file versions reported"
    )
    return dg.SensorResult(
        dynamic_partitions_requests=[SLIDES.build_add_request(new_partitions)]
        if new_partitions
        else [],
        asset_events=events,
        cursor=Cursor(current, buckets, pending).dump(),
    )


def _settled(
    files: Sequence[SlideFiles],
    registered: Mapping[str, float | None],
    previous: Cursor,
    settle: bool,
) -> tuple[list[SlideFiles], dict[str, str]]:
    """The slides that may be registered or compared now, and the new slides to look at
    again (relative path -> slide version): those seen for the first time, or changed since."""
    ready, pending = [], {}
    for slide_files in files:
        slide, version = slide_files.slide, slide_files.version(SLIDE)
        if slide.key in registered or not settle or previous.pending.get(slide.relpath) == version:
            ready.append(slide_files)
        else:
            pending[slide.relpath] = version
    return ready, pending


def _log_skipped(context: dg.SensorEvaluationContext, skipped: Sequence[tuple[str, str]]) -> None:
    """Say which files with a slide's extension are not taken for slides, and why."""
    if skipped:
        shown = "; ".join(f"{uri} ({reason})" for uri, reason in skipped[:SKIPPED_SHOWN])
        more = f"; and {len(skipped) - SKIPPED_SHOWN} more" if len(skipped) > SKIPPED_SHOWN else ""
        context.log.info(f"{len(skipped)} files are not slides: {shown}{more}")


def _within_budget(
    changed: Sequence[int], by_bucket: Mapping[int, list[SlideFiles]], budget: int | None
) -> list[int]:
    """The changed buckets to handle this tick: whole buckets, at least one, until their
    slides would exceed ``budget`` (all of them when ``budget`` is None)."""
    taken: list[int] = []
    slides = 0
    for b in changed:
        slides += len(by_bucket.get(b, []))
        if taken and budget is not None and slides > budget:
            break
        taken.append(b)
    return taken


def _register_and_compare(
    context: dg.SensorEvaluationContext,
    pipeline: Pipeline,
    files: Sequence[SlideFiles],
    registered: Mapping[str, float | None],
) -> tuple[list[str], list[dg.AssetMaterialization]]:
    """Register the slides of ``files`` that are not in ``registered`` yet; return the keys
    without a partition yet and the file versions to report. A slide whose key is held by
    another file is left out, with an error in the tick's log that names both."""
    registry = pipeline.registry
    held, clashes = registry.register(
        [f.slide.relpath for f in files if f.slide.key not in registered]
    )
    usable = []
    for slide_files in files:
        slide = slide_files.slide
        holder = held.get(slide.key) or registry.lookup(slide.key)
        if holder is not None and holder.relpath == slide.relpath:
            usable.append(slide_files)
        elif holder is not None and slide.key in registered:
            clashes.append(
                f"{slide.relpath}: partition key {slide.key!r} belongs to {holder.relpath}; "
                "rename one of them or move it into a folder"
            )
    for message in clashes:
        context.log.error(message)
    partitions = set(context.instance.get_dynamic_partitions(PARTITIONS_NAME))
    new = sorted({f.slide.key for f in usable} - partitions)
    return new, changed_files(context.instance, usable)


def apply(instance: dg.DagsterInstance, result: dg.SensorResult | dg.SkipReason) -> None:
    """Persist what a tick asks for (new partitions, reported file versions) as the daemon
    would; for ``make run``, which evaluates the sensor without a daemon."""
    if not isinstance(result, dg.SensorResult):
        return
    for request in result.dynamic_partitions_requests or []:
        if isinstance(request, dg.AddDynamicPartitionsRequest):
            instance.add_dynamic_partitions(
                request.partitions_def_name, list(request.partition_keys)
            )
    for event in result.asset_events or []:
        instance.report_runless_asset_event(event)


def tick(
    instance: dg.DagsterInstance,
    settings: Settings,
    cursor: str | None = None,
    budget: int | None = None,
) -> dg.SensorResult | dg.SkipReason:
    """Evaluate the sensor once outside the daemon, looking once (no settling), and apply
    its result."""
    with dg.build_sensor_context(instance=instance, cursor=cursor) as context:
        result = evaluate(context, settings, budget, settle=False)
    apply(instance, result)
    return result


def slide_sensor() -> dg.SensorDefinition:
    """The slide sensor (running by default, every ``MINIMUM_INTERVAL_SECONDS``)."""

    @dg.sensor(
        name="slide_sensor",
        minimum_interval_seconds=MINIMUM_INTERVAL_SECONDS,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Lists the slide root; registers new slides and records new versions of "
        "slide, annotation and overlay files.",
    )
    def sensor(
        context: dg.SensorEvaluationContext, settings: dg.ResourceParam[Settings]
    ) -> dg.SensorResult | dg.SkipReason:
        return evaluate(context, settings)

    return sensor
