"""Automation ticks at 10,000 slides, on the SQLite default instance and on PostgreSQL.

Every tick the daemon runs for this project is timed as it runs there, on a slide root of
10,000 slides in 20 folders (each with its annotation and tissue mask: 30,000 files) and an
instance whose ``slides`` partitions are all registered:

* ``slide_sensor``: the first tick (registers ``SLIDES_PER_TICK`` slides; the evaluation
  and the daemon's writing of its result are timed apart), a tick over an unchanged root,
  and a tick after one annotation file changed (its bucket compared with the versions the
  runs recorded);
* ``table_automation``: declarative automation over 4 x 10,000 slide partitions with no
  table materialized (first and next tick) and with all 40,000 materialized;
* ``table_sweep``: one page of ``SWEEP_PAGE`` slides with nothing stored, and with every
  table stored (each footer read).

Dagster evaluates sensors in the code server with a 60 s limit per tick. The automation
sensor is evaluated in the daemon; here the same condition is evaluated through a twin
definition evaluated in process (``use_user_code_server=True``), the same evaluation code.
Seeding 40,000 materializations uses Dagster's event-log batch write (an internal API, used
here only to build the state to measure; SQLite takes minutes for it).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg

from wsi_assets import sensors
from wsi_assets.automation import SWEEP_PAGE, TABLE_KEYS, sweep
from wsi_assets.definitions import build_defs
from wsi_assets.partitions import PARTITIONS_NAME
from wsi_assets.pipeline import demo
from wsi_assets.pipeline.outputs import SLIDE_OUTPUTS
from wsi_assets.pipeline.settings import Settings
from wsi_assets.pipeline.slides import SlideFiles
from wsi_assets.pipeline.steps import Pipeline
from wsi_assets.sources import SOURCE_ASSETS, source_event
from wsi_core.tissue import TISSUE_MASK

SLIDES = int(os.environ.get("WSI_BENCH_SLIDES", "10000"))
FOLDERS = 20
Row = dict[str, Any]


def slide_root(folder: Path, count: int) -> Path:
    """``count`` slides (hard links of one small demo slide, annotation and mask)."""
    source = folder / "source"
    demo.generate(source, demo.scaled(demo.DEMO_SLIDES[:1], 0.125))
    slide = demo.DEMO_SLIDES[0]
    root = folder / "slides"
    for i in range(count):
        place = root / f"site_{i % FOLDERS:02d}"
        place.mkdir(parents=True, exist_ok=True)
        stem = f"slide_{i:05d}"
        os.link(source / slide.name, place / f"{stem}.tiff")
        os.link(source / slide.annotation_name(), place / f"{stem}.xml")
        os.link(source / slide.mask_name(), place / f"{stem}_tissue_mask.tiff")
    return root


def timed(function: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def sensor_tick(
    instance: dg.DagsterInstance, settings: Settings, cursor: str | None
) -> tuple[float, float, dg.SensorResult | dg.SkipReason]:
    """Seconds to evaluate one slide_sensor tick, seconds to apply its result, the result."""
    with dg.build_sensor_context(instance=instance, cursor=cursor) as context:
        evaluate, result = timed(lambda: sensors.evaluate(context, settings))
    apply, _ = timed(lambda: sensors.apply(instance, result))
    return evaluate, apply, result


def register_all(instance: dg.DagsterInstance, pipeline: Pipeline) -> list[SlideFiles]:
    """Every slide registered and partitioned, as after the first ticks (no events)."""
    listing = pipeline.slides.listing()
    slides = pipeline.slides.scan(listing)
    pipeline.registry.register([slide.relpath for slide in slides])
    instance.add_dynamic_partitions(PARTITIONS_NAME, [slide.key for slide in slides])
    return [pipeline.slides.files(slide, listing) for slide in slides]


def store_materializations(
    instance: dg.DagsterInstance, events: list[dg.AssetMaterialization]
) -> None:
    """Runless materializations written in batches (benchmark set-up only)."""
    from dagster._core.events import (  # noqa: TID251 - set-up of a measured state, not product code
        DagsterEvent,
        DagsterEventType,
        StepMaterializationData,
    )
    from dagster._core.events.log import EventLogEntry  # noqa: TID251
    from dagster._core.instance.utils import RUNLESS_JOB_NAME, RUNLESS_RUN_ID  # noqa: TID251

    now = time.time()
    entries = [
        EventLogEntry(
            user_message="",
            level=20,
            job_name=RUNLESS_JOB_NAME,
            run_id=RUNLESS_RUN_ID,
            error_info=None,
            timestamp=now,
            step_key=None,
            dagster_event=DagsterEvent(
                event_type_value=DagsterEventType.ASSET_MATERIALIZATION.value,
                job_name=RUNLESS_JOB_NAME,
                event_specific_data=StepMaterializationData(event),
            ),
        )
        for event in events
    ]
    for start in range(0, len(entries), 1000):
        instance.event_log_storage.store_event_batch(entries[start : start + 1000])


def automation_twin(defs: dg.Definitions) -> tuple[dg.Definitions, dg.SensorDefinition]:
    """The definitions with the automation sensor evaluated in process (same conditions)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        twin = dg.AutomationConditionSensorDefinition(
            "table_automation_in_process",
            target=dg.AssetSelection.assets(*TABLE_KEYS),
            use_user_code_server=True,
        )
    merged = dg.Definitions(
        assets=defs.assets, sensors=[twin], resources=defs.resources, jobs=defs.jobs
    )
    return merged, twin


def automation_tick(
    instance: dg.DagsterInstance, defs: dg.Definitions, sensor: Any, cursor: str | None
) -> tuple[float, int, str | None]:
    """Seconds of one declarative-automation tick, partitions requested, the new cursor."""
    with dg.build_sensor_context(instance=instance, definitions=defs, cursor=cursor) as context:
        seconds, result = timed(lambda: sensor.evaluate_tick(context))
    requested = 0
    for request in result.run_requests or []:
        subset = getattr(request, "asset_graph_subset", None)
        if subset is not None:
            requested += sum(1 for _ in subset.iterate_asset_partitions())
        else:
            requested += len(request.asset_selection or [])
    return seconds, requested, result.cursor


def sweep_tick(instance: dg.DagsterInstance, settings: Settings) -> tuple[float, int]:
    with dg.build_sensor_context(instance=instance) as context:
        seconds, result = timed(lambda: sweep(context, settings, now=time.time() + 10**6))
    return seconds, len(getattr(result, "run_requests", None) or [])


def _stored_path(pipeline: Pipeline, output: str, key: str) -> Path:
    """Where ``output`` of slide ``key`` is stored (the tissue mask has a store of its own)."""
    if output == TISSUE_MASK:
        return Path(pipeline.masks.path(key).path)
    return Path(pipeline.tables.path(output, key).path)


def store_tables(pipeline: Pipeline, files: list[SlideFiles]) -> None:
    """Every output (tables and tissue mask) of the first sweep page built for real; the other
    slides' files are links to them (their footers are not read on that tick, only listed)."""
    page = sorted(files, key=lambda f: f.slide.key)[:SWEEP_PAGE]
    for slide_files in page:
        for output in SLIDE_OUTPUTS:
            pipeline.build(output, slide_files.slide.key)
    template = {o: _stored_path(pipeline, o, page[0].slide.key) for o in SLIDE_OUTPUTS}
    built = {f.slide.key for f in page}
    for slide_files in files:
        if slide_files.slide.key in built:
            continue
        for output in SLIDE_OUTPUTS:
            target = _stored_path(pipeline, output, slide_files.slide.key)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(template[output], target)


def row(name: str, seconds: float, note: str) -> Row:
    """One printed line: what was timed, its seconds, what it did."""
    return {"name": name, "seconds": seconds, "note": note}


def slide_sensor_ticks(
    name: str, instance: dg.DagsterInstance, settings: Settings, pipeline: Pipeline
) -> Iterator[Row]:
    """The first two ticks (a first look, then registration), then (every slide registered)
    an unchanged root and one change."""
    evaluate, _, first = sensor_tick(instance, settings, None)
    budget = f"{SLIDES} slides listed, {sensors.SLIDES_PER_TICK}-slide budget"
    yield row(f"{name}: slide_sensor first look", evaluate, budget)
    cursor = first.cursor if isinstance(first, dg.SensorResult) else None
    evaluate, apply, _ = sensor_tick(instance, settings, cursor)
    added = len(instance.get_dynamic_partitions("slides"))
    note = f"{added} slides registered and partitioned"
    yield row(f"{name}: slide_sensor second look, evaluate + apply", evaluate + apply, note)
    files = register_all(instance, pipeline)
    by_bucket: dict[int, list[SlideFiles]] = {}
    for slide_files in files:
        by_bucket.setdefault(sensors.bucket_of(slide_files.slide.key), []).append(slide_files)
    digests = tuple(sensors.bucket_digest(by_bucket.get(b, [])) for b in range(sensors.BUCKETS))
    cursor = sensors.Cursor(sensors.setting_digest(settings), digests).dump()
    evaluate, _, result = sensor_tick(instance, settings, cursor)
    assert isinstance(result, dg.SkipReason), result
    yield row(f"{name}: slide_sensor unchanged root", evaluate, "skip")

    changed = files[SLIDES // 2]
    bucket = by_bucket[sensors.bucket_of(changed.slide.key)]
    store_materializations(instance, _baseline(bucket))  # as the runs that read them would
    annotation = changed.files["annotation"]
    assert annotation is not None
    edited = Path(annotation.uri)
    shutil.copyfile(edited, edited.with_suffix(".new"))  # its own file, not a shared link
    os.replace(edited.with_suffix(".new"), edited)
    evaluate, apply, result = sensor_tick(instance, settings, cursor)
    reported = len(result.asset_events or []) if isinstance(result, dg.SensorResult) else 0
    note = f"{len(bucket)} slides compared, {reported} version reported"
    yield row(f"{name}: slide_sensor one annotation changed", evaluate + apply, note)


def measure(name: str, instance: dg.DagsterInstance, folder: Path) -> Iterator[Row]:
    """Every tick on one instance (``name`` says which storage)."""
    root = slide_root(folder, SLIDES)
    settings = Settings.load(slide_root=str(root), output_root=str(folder / "tables"))
    pipeline = Pipeline(settings)
    defs, twin = automation_twin(build_defs(settings))
    yield from slide_sensor_ticks(name, instance, settings, pipeline)

    seconds, requested, cursor = automation_tick(instance, defs, twin, None)
    note = f"{requested} table partitions requested"
    yield row(f"{name}: table_automation, none built, first tick", seconds, note)
    seconds, requested, cursor = automation_tick(instance, defs, twin, cursor)
    yield row(f"{name}: table_automation, none built, next tick", seconds, f"{requested} requested")
    seconds, requests = sweep_tick(instance, settings)
    note = f"{SWEEP_PAGE} slides, {requests} runs requested"
    yield row(f"{name}: table_sweep page, nothing stored", seconds, note)

    files = [pipeline.slides.files(slide) for slide in pipeline.slides.scan()]
    setup, _ = timed(lambda: store_materializations(instance, _all_tables(files)))
    store_tables(pipeline, files)
    seconds, requested, cursor = automation_tick(instance, defs, twin, cursor)
    seeded = len(SLIDE_OUTPUTS) * SLIDES
    note = f"{requested} requested ({seeded} materializations seeded in {setup:.0f} s)"
    yield row(f"{name}: table_automation, all built", seconds, note)
    seconds, requests = sweep_tick(instance, settings)
    note = f"{len(SLIDE_OUTPUTS) * SWEEP_PAGE} stored outputs read, {requests} runs requested"
    yield row(f"{name}: table_sweep page, all stored", seconds, note)


def _baseline(bucket: list[SlideFiles]) -> list[dg.AssetMaterialization]:
    return [source_event(kind, f, "read by a run") for f in bucket for kind in SOURCE_ASSETS]


def _all_tables(files: list[SlideFiles]) -> list[dg.AssetMaterialization]:
    return [
        dg.AssetMaterialization(output, partition=f.slide.key)
        for f in files
        for output in SLIDE_OUTPUTS
    ]


@contextmanager
def postgres_instance() -> Iterator[dg.DagsterInstance | None]:
    """A Dagster instance on a throwaway PostgreSQL server on loopback (None without one)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from pg_server import PostgresUnavailable, database, postgres_server

    try:
        with postgres_server() as url, database(url) as db:
            overrides = {"storage": {"postgres": {"postgres_url": db}}}
            with dg.instance_for_test(overrides=overrides) as instance:
                yield instance
    except PostgresUnavailable as error:
        print(f"(PostgreSQL ticks skipped: {error})")
        yield None


def run() -> Iterator[Row]:
    for name in ("sqlite", "postgres"):
        folder = Path(tempfile.mkdtemp(prefix="wsi-bench-"))
        try:
            if name == "sqlite":
                with dg.instance_for_test() as instance:
                    yield from measure(name, instance, folder)
            else:
                with postgres_instance() as pg:
                    if pg is not None:
                        yield from measure(name, pg, folder)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
