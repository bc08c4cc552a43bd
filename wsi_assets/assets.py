"""The asset graph: three observed input files, the four per-slide tables and the tissue
mask, and the tile dataset of all slides (:mod:`wsi_assets.dataset`).

The four tables and the tissue mask are one subsettable multi-asset, so a run builds the
selected tables of its slides in one step, upstream first, with
:func:`wsi_assets.pipeline.batch.build_slide` (stores in, builder, store out, per table). A run
of one slide (the sensor's, automation's, a click in the UI) builds in-process. A run of many
slides, which is what a backfill becomes under
``BackfillPolicy.multi_run(WSI_BACKFILL_BATCH)``, builds them in parallel on Ray
(:func:`~wsi_assets.pipeline.batch.build_on_ray`) and reports each slide's tables as they
finish: one materialization per slide and table, with that table's own metadata and checks.

A table that cannot be built fails alone: the tables not below it are still built and
reported, and the step fails at the end, naming every file and problem, so exactly the failed
partitions show as failed. Input files are external assets: ``slide_sensor`` reports a
materialization of a slide's ``annotation_file`` when that file changes, which is how Dagster
knows that only ``annotation_coverage`` must follow.
"""

import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import dagster as dg

from wsi_assets.automation import table_condition
from wsi_assets.dataset import dataset_asset
from wsi_assets.metadata import materialize_result, table_metadata
from wsi_assets.partitions import SLIDES
from wsi_assets.pipeline.batch import SlideOutcome, build_on_ray, build_slide
from wsi_assets.pipeline.settings import Settings
from wsi_assets.pipeline.steps import SOURCE_OF, Built
from wsi_assets.ray_resource import SlideRay
from wsi_assets.sources import source_event, source_specs
from wsi_core.progress import progress_logger
from wsi_core.tables import ANNOTATION_COVERAGE, OVERLAY_OVERLAP, SLIDE_METADATA, TILE_GRID
from wsi_core.tables import checks as rules
from wsi_core.tissue import TISSUE_MASK

GROUP = "tiles"
#: Input files and upstream tables of each table.
#: In build order (``wsi_assets.pipeline.outputs.SLIDE_OUTPUTS``). ``overlay_overlap`` reads
#: the tissue mask only when the slide has no overlay file, but Dagster's graph has no
#: conditional edges: a new mask makes every slide's overlay_overlap stale in the UI (a
#: rebuild from the user's file gives the same table), while the plans and the sweep,
#: which read the provenance, ask only for those that read it.
DEPS = {
    SLIDE_METADATA: ["slide_file"],
    TILE_GRID: [SLIDE_METADATA],
    TISSUE_MASK: ["slide_file"],
    ANNOTATION_COVERAGE: [TILE_GRID, "annotation_file"],
    OVERLAY_OVERLAP: [TILE_GRID, TISSUE_MASK, "overlay_file"],
}
DESCRIPTIONS = {
    SLIDE_METADATA: "One row per slide: pyramid levels, base mpp, and the level closest to the "
    "target mpp (the one tile_grid tiles).",
    TILE_GRID: "One row per tile of the chosen level: origin in level pixels and at level 0, "
    "extent, stride, mpp and downsample.",
    ANNOTATION_COVERAGE: "Per tile: fraction of the ROI covered by each configured label class "
    "(coverage_<class>); null where the slide has no annotation file.",
    TISSUE_MASK: "The slide's tissue mask (0/255 pyramidal TIFF with its resolution, about "
    "8 um/px, WSI_TISSUE), detected on a low-resolution level; overlay_overlap reads it when "
    "the slide has no overlay file of its own.",
    OVERLAY_OVERLAP: "Per tile: fraction of the ROI's overlay pixels per overlay value (map), "
    "and tissue_fraction (value != 0), from the slide's overlay file, else its tissue_mask "
    "(overlay_source says which).",
}
#: Storage errors (``OSError``) of a one-slide run are retried; a bad input file fails at
#: once, never retried. (A run of many slides retries storage errors per slide, on Ray.)
RETRY = dg.RetryPolicy(max_retries=2, delay=2.0, backoff=dg.Backoff.EXPONENTIAL)


@dataclass(frozen=True)
class Check:
    """One check of a table: what it says, its rule on the built table (and its upstream
    table and facts), how serious a failure is."""

    description: str
    rule: Callable[[Built], rules.Verdict]
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR


ROWS_MATCH = Check(
    "One row per tile of tile_grid, same tiles, same order.",
    lambda b: rules.rows_match_grid(b.data, b.upstream),
)
CHECKS: dict[str, dict[str, Check]] = {
    TILE_GRID: {
        "tiles_inside_slide": Check(
            "Every tile origin lies inside the chosen level.",
            lambda b: rules.tiles_inside_slide(b.data, b.upstream),
        ),
    },
    ANNOTATION_COVERAGE: {
        "coverage_in_unit_interval": Check(
            "Every coverage value is in [0, 1] (or null).",
            lambda b: rules.coverage_in_unit_interval(b.data),
        ),
        "rows_match_tile_grid": ROWS_MATCH,
        "labels_match_classes": Check(
            "Every labelled polygon of the annotation file counts for a class column (a "
            "warning: labels no class matches usually mean class settings that miss the file).",
            lambda b: rules.labels_match_classes(b.facts.get("labels_matching_no_class")),
            dg.AssetCheckSeverity.WARN,
        ),
    },
    OVERLAY_OVERLAP: {
        "fractions_sum_to_one": Check(
            "Per tile, overlay fractions sum to 1 (or the tile is null).",
            lambda b: rules.fractions_sum_to_one(b.data),
        ),
        "rows_match_tile_grid": ROWS_MATCH,
    },
}


def check_specs() -> list[dg.AssetCheckSpec]:
    """The checks of every table, one per slide partition. Partitioned checks are a Dagster
    preview feature: its warning, and only that one, is silenced where the specs are made."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore",
            message="Specifying a partitions_def on an AssetCheckSpec",
            category=dg.PreviewWarning,
        )
        return [
            dg.AssetCheckSpec(
                name, asset=table, description=check.description, partitions_def=SLIDES
            )
            for table, checks in CHECKS.items()
            for name, check in checks.items()
        ]


def verdicts(built: Built) -> Iterator[tuple[str, Check, rules.Verdict]]:
    """The checks of ``built``'s table applied to it (no read: it is in memory)."""
    for name, check in CHECKS.get(built.table, {}).items():
        yield name, check, check.rule(built)


def check_results(built: Built) -> list[dg.AssetCheckResult]:
    """The checks of ``built`` as results of a one-slide step."""
    return [
        dg.AssetCheckResult(
            asset_key=built.table,
            check_name=name,
            passed=verdict.passed,
            description=verdict.description,
            metadata=verdict.metadata,
            severity=check.severity,
        )
        for name, check, verdict in verdicts(built)
    ]


def check_evaluations(built: Built) -> list[dg.AssetCheckEvaluation]:
    """The checks of ``built`` as events of its own slide partition (a many-slide step)."""
    return [
        dg.AssetCheckEvaluation(
            asset_key=dg.AssetKey(built.table),
            check_name=name,
            passed=verdict.passed,
            description=verdict.description,
            metadata=verdict.metadata,
            severity=check.severity,
            partition=built.key,
        )
        for name, check, verdict in verdicts(built)
    ]


def log_inputs(context: dg.AssetExecutionContext, outcome: SlideOutcome) -> None:
    """Record the version of each input file the slide's tables read (first, so that a table
    materialized in the same run is not seen as older than its input, and so that
    ``slide_sensor`` notices a change even when the build failed)."""
    if outcome.files is None:
        return
    attempted = [b.table for b in outcome.built] + [f.table for f in outcome.failed]
    readers: dict[str, list[str]] = {}  # file kind -> tables that read it (once per kind)
    for table in attempted:
        # The tissue mask reads the slide file too, but slide_metadata is the one that
        # records its version: a new version recorded by a mask-only run (new tissue
        # settings) would make slide_metadata, which did not read it, look stale.
        if table in SOURCE_OF and table != TISSUE_MASK:
            readers.setdefault(SOURCE_OF[table], []).append(table)
    for kind, tables in readers.items():
        why = f"read by {', '.join(tables)}"
        context.log_event(source_event(kind, outcome.files, why))


def log_built(context: dg.AssetExecutionContext, built: Built) -> None:
    """What a one-slide step built, and its warnings."""
    if built.table == TISSUE_MASK:
        what = f"{built.facts['tissue_fraction']:.1%} tissue"
    else:
        what = f"{built.data.num_rows} rows"
    context.log.info(f"{built.stored.uri}: {what}")
    log_warnings(context, built)


def log_warnings(context: dg.AssetExecutionContext, built: Built) -> None:
    for warning in built.facts.get("warnings", []):
        context.log.warning(f"{built.stored.uri}: {warning}")


def failed_step(outcomes: Sequence[SlideOutcome], slides: int) -> dg.Failure:
    """The step's failure, naming every table that failed (slide, file and problem) and the
    tables left unbuilt below it."""
    failures = [(o.key, f) for o in outcomes for f in o.failed]
    if slides == 1:  # the first failure's message (it names the file), then any others
        _, failure = failures[0]
        others = [f"- {f.table}: {f.message}" for _, f in failures[1:]]
        also = "\nalso failed:\n" + "\n".join(others) if others else ""
        return dg.Failure(
            description=failure.message + also,
            metadata={
                "file": dg.MetadataValue.path(failure.file or ""),
                "problem": failure.problem or failure.kind,
            },
            allow_retries=False,
        )
    lines = []
    for outcome in outcomes:
        below = f" (not built: {', '.join(outcome.skipped)})" if outcome.skipped else ""
        lines += [f"- {f.table} of {outcome.key}: {f.message}{below}" for f in outcome.failed]
    keys = sorted(o.key for o in outcomes)
    return dg.Failure(
        description=f"{len(keys)} of {slides} slides failed:\n" + "\n".join(lines),
        metadata={
            "failed slides": dg.MetadataValue.json(keys),
            "failures": dg.MetadataValue.json(
                [
                    {"slide": key, "table": f.table, "file": f.file, "problem": f.problem}
                    for key, f in failures
                ]
            ),
        },
        allow_retries=False,
    )


def one_slide(
    context: dg.AssetExecutionContext, settings: Settings, key: str, tables: list[str]
) -> Iterator[dg.MaterializeResult]:
    """Build the selected tables of one slide in-process and yield their results; the long
    steps log "tiles done of total" as they go."""
    outcome = build_slide(
        settings,
        key,
        tables,
        progress=lambda table: progress_logger(context.log.info, f"{table} of {key}"),
    )
    log_inputs(context, outcome)
    for built in outcome.built:
        log_built(context, built)
        yield materialize_result(built, settings, check_results(built))
    storage = [f for f in outcome.failed if f.storage]
    if storage:  # raised as an OSError so that RETRY tries the step again
        raise OSError(storage[0].message)
    if outcome.failed:
        raise failed_step([outcome], 1)


def many_slides(
    context: dg.AssetExecutionContext,
    settings: Settings,
    ray: SlideRay,
    keys: Sequence[str],
    tables: list[str],
) -> None:
    """Build the selected tables of many slides on Ray, reporting each slide as it finishes."""
    context.log.info(f"{len(keys)} slides on {ray.start(context)}")
    failed: list[SlideOutcome] = []
    for done, outcome in enumerate(build_on_ray(settings, keys, tables), start=1):
        log_inputs(context, outcome)
        for built in outcome.built:
            # One log line a slide, not one a table: each line is an event-log write, and
            # writing events is what bounds a batch's speed (see bench_backfill).
            log_warnings(context, built)
            metadata = {**table_metadata(built, settings), "ray_node": outcome.node}
            context.log_event(
                dg.AssetMaterialization(
                    asset_key=built.table, partition=built.key, metadata=metadata
                )
            )
            for evaluation in check_evaluations(built):
                context.log_event(evaluation)
        if outcome.failed:
            failed.append(outcome)
        names = ", ".join(b.table for b in outcome.built) or "nothing"
        context.log.info(
            f"{outcome.key}: {names} built on Ray node {outcome.node[:12]} "
            f"({done} of {len(keys)} slides)"
        )
    if failed:
        raise failed_step(failed, len(keys))


def table_specs(settings: Settings) -> list[dg.AssetSpec]:
    """The four tables and the tissue mask; their code versions follow the settings each
    depends on. Skippable:
    a table that fails is not reported while the others of the step are."""
    return [
        dg.AssetSpec(
            table,
            deps=DEPS[table],
            description=DESCRIPTIONS[table],
            group_name=GROUP,
            kinds={"tiff"} if table == TISSUE_MASK else {"parquet"},
            code_version=settings.code_version(table),
            automation_condition=table_condition(),
            partitions_def=SLIDES,
            skippable=True,
        )
        for table in DEPS
    ]


def tables_asset(settings: Settings) -> dg.AssetsDefinition:
    """The per-slide assets as one subsettable multi-asset (see the module docstring)."""

    @dg.multi_asset(
        name="tables",
        specs=table_specs(settings),
        check_specs=check_specs(),
        can_subset=True,
        partitions_def=SLIDES,
        retry_policy=RETRY,
        backfill_policy=dg.BackfillPolicy.multi_run(settings.backfill_batch),
    )
    def compute(
        context: dg.AssetExecutionContext, settings: dg.ResourceParam[Settings], ray: SlideRay
    ) -> Iterator[dg.MaterializeResult]:
        tables = [t for t in DEPS if dg.AssetKey(t) in context.selected_asset_keys]
        keys = context.partition_keys
        if len(keys) == 1:
            yield from one_slide(context, settings, keys[0], tables)
        else:
            many_slides(context, settings, ray, keys, tables)

    return compute


def build_assets(settings: Settings) -> list[dg.AssetSpec | dg.AssetsDefinition]:
    """Input files, tables and the tile dataset, their code versions bound to ``settings``."""
    return [*source_specs(), tables_asset(settings), dataset_asset(settings, GROUP)]
