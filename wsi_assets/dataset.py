"""``tile_dataset``: one table of the labelled tiles of every slide (not partitioned).

The asset only wires :func:`wsi_assets.pipeline.tile_dataset.build_tile_dataset` into
Dagster: it depends on the per-slide tables it joins, declarative automation
(:func:`wsi_assets.automation.dataset_condition`) runs it when any slide's tables change, and
each run rebuilds only the fragments of slides whose tables changed. Its metadata counts the
tiles per label and split and the slides per split.
"""

import dagster as dg

from wsi_assets.automation import dataset_condition
from wsi_assets.metadata import column_schema, markdown_preview
from wsi_assets.pipeline.settings import Settings
from wsi_assets.pipeline.steps import Pipeline
from wsi_assets.pipeline.tile_dataset import FRAGMENT_INPUTS, build_tile_dataset, summarize
from wsi_core.tables.tile_dataset import TILE_DATASET

#: The dataset's checks, evaluated on the stored rows at every materialization.
ONE_SET = "one_split_per_slide"
UNIQUE_IDS = "unique_row_hash"
DESCRIPTION = (
    "The labelled tiles of every slide in one table (a Parquet fragment per slide, read as "
    "one table): tiles with at least WSI_DATASET's min_tissue_fraction of tissue, labelled "
    "by per-class coverage thresholds, with the slide's path, tile origin and extent, "
    "coverage, tissue fraction, row_hash and a train/validation/test split per slide."
)


def dataset_asset(settings: Settings, group: str) -> dg.AssetsDefinition:
    """The ``tile_dataset`` asset; its code version follows the rules and label classes."""

    @dg.asset(
        name=TILE_DATASET,
        deps=list(FRAGMENT_INPUTS),
        group_name=group,
        kinds={"parquet"},
        code_version=settings.code_version(TILE_DATASET),
        check_specs=[
            dg.AssetCheckSpec(
                ONE_SET, asset=TILE_DATASET, description="Every slide's tiles are in one set."
            ),
            dg.AssetCheckSpec(
                UNIQUE_IDS, asset=TILE_DATASET, description="No two rows share a row_hash."
            ),
        ],
        automation_condition=dataset_condition(),
        description=DESCRIPTION,
    )
    def tile_dataset(
        context: dg.AssetExecutionContext, settings: dg.ResourceParam[Settings]
    ) -> dg.MaterializeResult:
        pipeline = Pipeline(settings)
        outcome = build_tile_dataset(pipeline)
        for key, why in outcome.waiting.items():
            context.log.info(f"{key}: not joined now: {why}")
        summary = summarize(pipeline, outcome.slides)
        folder = pipeline.tables.folder(TILE_DATASET)
        metadata: dict[str, dg.RawMetadataValue] = {
            "dagster/row_count": summary.tiles,
            "dagster/uri": dg.MetadataValue.path(str(folder)),
            "slides": len(outcome.slides),
            "tiles_per_label_and_split": dg.MetadataValue.json(summary.tiles_per_label_and_split),
            "slides_per_split": dg.MetadataValue.json(summary.slides_per_split),
            "fragments_rebuilt": dg.MetadataValue.json(outcome.rebuilt),
            "fragments_reused": len(outcome.reused),
            "fragments_removed": dg.MetadataValue.json(outcome.removed),
            "slides_waiting": dg.MetadataValue.json(outcome.waiting),
            "rules": dg.MetadataValue.json(settings.table_params(TILE_DATASET)),
        }
        for split, count in summary.slides_per_split.items():
            metadata[f"slides_{split}"] = count
        if outcome.slides:
            sample, _ = pipeline.tables.read(TILE_DATASET, outcome.slides[0])
            metadata["dagster/column_schema"] = dg.MetadataValue.table_schema(
                column_schema(sample.schema, {})
            )
            metadata["preview"] = dg.MetadataValue.md(markdown_preview(sample))
        checks = [
            dg.AssetCheckResult(
                check_name=ONE_SET,
                passed=not summary.slides_in_two_splits,
                metadata={"slides_in_two_splits": summary.slides_in_two_splits},
            ),
            dg.AssetCheckResult(
                check_name=UNIQUE_IDS,
                passed=summary.repeated_row_hashes == 0,
                metadata={"repeated_row_hashes": summary.repeated_row_hashes},
            ),
        ]
        return dg.MaterializeResult(metadata=metadata, check_results=checks)

    return tile_dataset
