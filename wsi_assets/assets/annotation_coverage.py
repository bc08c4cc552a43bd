"""``annotation_coverage``: per tile, the fraction of the ROI covered by each label class.

One column ``coverage_<class>`` per configured class (``WSISettings.label_classes``), computed
by ``wsi_core.tiling.annotation_coverage`` from ``parser.get_class_polygons(regex)``.

No annotation file for a slide means nothing was measured: the table still has one row per
tile, every coverage is null (never 0.0), and the materialization says
``annotation_file: none found`` and ``measured: false``. A file with no polygon of a class
gives real zeros for that class.
"""

from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    MaterializeResult,
    MetadataValue,
    asset,
)
from shapely.geometry.base import BaseGeometry

from ..config import WSISettings
from ..keys import ANNOTATION_COVERAGE, ANNOTATION_FILE, TILE_GRID
from ..partitions import slides_partitions
from ..tables import materialize_result
from ._common import (
    GROUP,
    KEY_COLUMNS,
    RETRY,
    TILE_KEY_DESCRIPTIONS,
    TILE_KEY_FIELDS,
    about_file,
    code_version,
    companion,
    load,
    roi_polygon,
    save,
    slide_entry,
)

REVISION = "1"


def coverage_column(name: str) -> str:
    """The column that holds class ``name``'s coverage."""
    return f"coverage_{name}"


def coverage_schema(classes: Mapping[str, str]) -> pa.Schema:
    """Key columns, then one float64 coverage column per class."""
    return pa.schema(
        [
            *TILE_KEY_FIELDS,
            *[(coverage_column(name), pa.float64()) for name in classes],
        ]
    )


def measure(
    grid: pa.Table, annotation_path: str, classes: Mapping[str, str], roi: BaseGeometry
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Coverage per class for every tile of ``grid``, and facts about the file.

    ``annotation_path`` is a local path or fsspec URL; ``classes`` maps name -> regex.
    """
    from wsi_core.parsers import open_annotations
    from wsi_core.tiling import annotation_coverage

    parser = open_annotations(annotation_path)
    coordinates = np.column_stack([grid["tile_x"].to_numpy(), grid["tile_y"].to_numpy()]).astype(
        np.int64
    )
    downsample = float(grid["downsample"][0].as_py()) if grid.num_rows else 1.0
    coverage: dict[str, np.ndarray] = {}
    polygons: dict[str, int] = {}
    for name, pattern in classes.items():
        shapes = parser.get_class_polygons(pattern)
        polygons[name] = len(shapes)
        coverage[name] = np.asarray(
            annotation_coverage(shapes, roi, coordinates, downsample), dtype=np.float64
        )
    return coverage, {"labels_in_file": parser.class_labels(), "polygons_per_class": polygons}


def coverage_table(
    grid: pa.Table, classes: Mapping[str, str], coverage: Mapping[str, np.ndarray] | None
) -> pa.Table:
    """The output table; ``coverage=None`` (no annotation file) gives null coverages."""
    columns: dict[str, Any] = {name: grid[name] for name in KEY_COLUMNS}
    for name in classes:
        values = None if coverage is None else coverage[name]
        columns[coverage_column(name)] = (
            pa.nulls(grid.num_rows, pa.float64())
            if values is None
            else pa.array(values, pa.float64())
        )
    return pa.table(columns, schema=coverage_schema(classes))


def summary(table: pa.Table, classes: Mapping[str, str]) -> dict[str, Any]:
    """Per class: mean coverage and number of tiles with any coverage (UI metadata)."""
    result: dict[str, Any] = {}
    for name in classes:
        values = table[coverage_column(name)].to_numpy(zero_copy_only=False)
        measured = values[~np.isnan(values.astype(np.float64))] if len(values) else values
        result[name] = {
            "mean": float(measured.mean()) if len(measured) else None,
            "tiles_with_coverage": int((measured > 0).sum()),
        }
    return result


def _descriptions(classes: Mapping[str, str]) -> dict[str, str]:
    base = dict(TILE_KEY_DESCRIPTIONS)
    for name, pattern in classes.items():
        base[coverage_column(name)] = (
            f"area of ROI covered by polygons whose class fullmatches {pattern!r} / ROI area, "
            "in [0, 1]; null when the slide has no annotation file"
        )
    return base


def _lineage(classes: Mapping[str, str]) -> dict[str, list[tuple[str, str]]]:
    lineage = {name: [(TILE_GRID, name)] for name in KEY_COLUMNS}
    inputs = ["tile_x", "tile_y", "downsample", "tile_extent_x", "tile_extent_y"]
    for name in classes:
        lineage[coverage_column(name)] = [(TILE_GRID, column) for column in inputs]
    return lineage


def build(settings: WSISettings) -> AssetsDefinition:
    """The ``annotation_coverage`` asset; its code version follows classes, ROI and templates."""

    @asset(
        name=ANNOTATION_COVERAGE,
        partitions_def=slides_partitions,
        deps=[AssetKey(TILE_GRID), ANNOTATION_FILE],
        group_name=GROUP,
        kinds={"parquet"},
        retry_policy=RETRY,
        code_version=code_version(REVISION, settings.annotation_params()),
        description="Per tile: fraction of the ROI covered by each configured label class "
        "(coverage_<class>); null where the slide has no annotation file.",
    )
    def annotation_coverage(
        context: AssetExecutionContext, settings: WSISettings
    ) -> MaterializeResult:
        key = context.partition_key
        entry = slide_entry(settings, key)
        grid = load(settings, TILE_GRID, key)
        classes = dict(settings.label_classes)
        found, facts = companion(context, settings.annotation_templates, entry, key, "annotation")
        coverage = None
        if found is not None:
            with about_file(found, "annotation"):
                coverage, found_facts = measure(grid, found, classes, roi_polygon(settings))
            facts["labels_in_file"] = MetadataValue.json(found_facts["labels_in_file"])
            facts["polygons_per_class"] = MetadataValue.json(found_facts["polygons_per_class"])
        table = coverage_table(grid, classes, coverage)
        uri, digest = save(settings, ANNOTATION_COVERAGE, key, table)
        facts["measured"] = MetadataValue.bool(found is not None)
        facts["coverage_summary"] = MetadataValue.json(summary(table, classes))
        return materialize_result(
            table=table,
            uri=uri,
            content_hash=digest,
            descriptions=_descriptions(classes),
            lineage=_lineage(classes),
            params={**settings.annotation_params(), "tile_extent": settings.tile_extent},
            extra=facts,
        )

    return annotation_coverage
