"""The asset graph: three observed input files and the four per-slide tables.

Each table asset is the same few lines: build the table with
:meth:`wsi_assets.pipeline.steps.Pipeline.build` (stores in, builder, store out), apply the
table's checks to what it built, return a ``MaterializeResult``. Input files are external
assets: ``slide_sensor`` reports a materialization of a slide's ``annotation_file`` when that
file changes, which is how Dagster knows that only ``annotation_coverage`` must follow.
"""

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import dagster as dg

from wsi_assets.automation import table_condition
from wsi_assets.metadata import materialize_result
from wsi_assets.partitions import SLIDES
from wsi_assets.pipeline.settings import Settings
from wsi_assets.pipeline.steps import SOURCE_OF, Built, Pipeline
from wsi_assets.sources import source_event, source_specs
from wsi_core.errors import WSIError
from wsi_core.tables import ANNOTATION_COVERAGE, OVERLAY_OVERLAP, SLIDE_METADATA, TILE_GRID
from wsi_core.tables import checks as rules

GROUP = "tiles"
#: Input files and upstream tables of each table.
DEPS = {
    SLIDE_METADATA: ["slide_file"],
    TILE_GRID: [SLIDE_METADATA],
    ANNOTATION_COVERAGE: [TILE_GRID, "annotation_file"],
    OVERLAY_OVERLAP: [TILE_GRID, "overlay_file"],
}
DESCRIPTIONS = {
    SLIDE_METADATA: "One row per slide: pyramid levels, base mpp, and the level closest to the "
    "target mpp (the one tile_grid tiles).",
    TILE_GRID: "One row per tile of the chosen level: origin in level pixels and at level 0, "
    "extent, stride, mpp and downsample.",
    ANNOTATION_COVERAGE: "Per tile: fraction of the ROI covered by each configured label class "
    "(coverage_<class>); null where the slide has no annotation file.",
    OVERLAY_OVERLAP: "Per tile: fraction of the ROI's overlay pixels per overlay value (map), "
    "and tissue_fraction (value != 0); null where the slide has no overlay.",
}
#: Storage errors (``OSError``) are retried; a bad input file fails at once, never retried.
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


def check_specs(table: str) -> list[dg.AssetCheckSpec]:
    """One check per slide partition. Partitioned checks are a Dagster preview feature: its
    warning, and only that one, is silenced where the specs are made."""
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
            for name, check in CHECKS.get(table, {}).items()
        ]


def check_results(built: Built) -> list[dg.AssetCheckResult]:
    """The checks of ``built``'s table applied to it (no read: it is in memory)."""
    results = []
    for name, check in CHECKS.get(built.table, {}).items():
        verdict = check.rule(built)
        results.append(
            dg.AssetCheckResult(
                check_name=name,
                passed=verdict.passed,
                description=verdict.description,
                metadata=verdict.metadata,
                severity=check.severity,
            )
        )
    return results


def build(context: dg.AssetExecutionContext, settings: Settings, table: str) -> Built:
    """Build ``table`` of the run's slide, first recording the version of the input file it
    reads (so that ``slide_sensor`` notices when the file changes, even if this build fails).

    A storage error (``OSError``) is raised as is and retried by ``RETRY``; anything else
    fails the partition at once, never retried: an unusable input with a message that starts
    with the file, an unexpected error with its type."""
    key = context.partition_key
    pipeline = Pipeline(settings)
    try:
        files = None
        if table in SOURCE_OF:
            files = pipeline.inputs(key)
            context.log_event(source_event(SOURCE_OF[table], files, f"read by {table}"))
        return pipeline.build(table, key, files)
    except OSError:
        raise
    except WSIError as error:
        raise dg.Failure(
            description=str(error),
            metadata={"file": dg.MetadataValue.path(error.path or ""), "problem": error.problem},
            allow_retries=False,
        ) from error
    except Exception as error:
        raise dg.Failure(
            description=f"{table} of {key}: {type(error).__name__}: {error}", allow_retries=False
        ) from error


def table_asset(table: str, settings: Settings) -> dg.AssetsDefinition:
    """The asset of ``table``; its code version follows the settings it depends on."""

    @dg.asset(
        name=table,
        partitions_def=SLIDES,
        deps=DEPS[table],
        group_name=GROUP,
        kinds={"parquet"},
        retry_policy=RETRY,
        code_version=settings.code_version(table),
        automation_condition=table_condition(),
        check_specs=check_specs(table),
        description=DESCRIPTIONS[table],
    )
    def compute(
        context: dg.AssetExecutionContext, settings: dg.ResourceParam[Settings]
    ) -> dg.MaterializeResult:
        built = build(context, settings, table)
        context.log.info(f"{built.stored.uri}: {built.data.num_rows} rows")
        for warning in built.facts.get("warnings", []):
            context.log.warning(f"{built.stored.uri}: {warning}")
        return materialize_result(built, settings, check_results(built))

    return compute


def build_assets(settings: Settings) -> list[dg.AssetSpec | dg.AssetsDefinition]:
    """Input files and tables, the tables' code versions bound to ``settings``."""
    tables = [table_asset(table, settings) for table in DEPS]
    return [*source_specs(), *tables]
