"""``annotation_coverage``: per tile, the fraction of the ROI covered by each label class.

One column ``coverage_<class>`` per configured class (name -> regular expression matched in
full against the annotation's class label), computed by
:func:`wsi_core.tiling.annotation_coverage` from ``parser.get_class_polygons(regex)``.

No annotation file means nothing was measured: the table still has one row per tile and
every coverage is null (never 0.0). A file with no polygon of a class gives real zeros.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
from shapely.geometry.base import BaseGeometry

from wsi_core.parsers import open_annotations
from wsi_core.tables.schemas import TILE_KEY_COLUMNS, coverage_column, coverage_schema
from wsi_core.tiling import annotation_coverage


@dataclass(frozen=True)
class CoverageFacts:
    """What the annotation file held: every class label in it, polygons per configured class."""

    labels_in_file: list[str] = field(default_factory=list)
    polygons_per_class: dict[str, int] = field(default_factory=dict)


def measure_coverage(
    grid: pa.Table,
    annotation: str,
    classes: Mapping[str, str],
    roi: BaseGeometry,
    storage_options: Mapping[str, Any] | None = None,
) -> tuple[dict[str, np.ndarray], CoverageFacts]:
    """Coverage per class for every tile of ``grid`` (a ``tile_grid`` table) from the
    annotation file at ``annotation`` (a local path or fsspec URL). ``roi`` is in
    tile-relative level pixels."""
    parser = open_annotations(annotation, storage_options=storage_options)
    origins = np.column_stack([grid["tile_x"].to_numpy(), grid["tile_y"].to_numpy()])
    origins = origins.astype(np.int64)
    downsample = float(grid["downsample"][0].as_py()) if grid.num_rows else 1.0
    coverage: dict[str, np.ndarray] = {}
    polygons: dict[str, int] = {}
    for name, pattern in classes.items():
        shapes = parser.get_class_polygons(pattern)
        polygons[name] = len(shapes)
        coverage[name] = np.asarray(
            annotation_coverage(shapes, roi, origins, downsample), dtype=np.float64
        )
    return coverage, CoverageFacts(parser.class_labels(), polygons)


def coverage_table(
    grid: pa.Table, classes: Mapping[str, str], coverage: Mapping[str, np.ndarray] | None
) -> pa.Table:
    """The ``annotation_coverage`` table; ``coverage=None`` (no annotation file) gives nulls."""
    columns: dict[str, Any] = {name: grid[name] for name in TILE_KEY_COLUMNS}
    for name in classes:
        columns[coverage_column(name)] = (
            pa.nulls(grid.num_rows, pa.float64())
            if coverage is None
            else pa.array(coverage[name], pa.float64())
        )
    return pa.table(columns, schema=coverage_schema(classes))


def build_annotation_coverage(
    grid: pa.Table,
    annotation: str | None,
    classes: Mapping[str, str],
    roi: BaseGeometry,
    storage_options: Mapping[str, Any] | None = None,
) -> tuple[pa.Table, CoverageFacts | None]:
    """The ``annotation_coverage`` table of one slide, and what its annotation file held
    (None when ``annotation`` is None: the slide has no annotation file)."""
    if annotation is None:
        return coverage_table(grid, classes, None), None
    coverage, facts = measure_coverage(grid, annotation, classes, roi, storage_options)
    return coverage_table(grid, classes, coverage), facts


def coverage_summary(table: pa.Table, classes: Mapping[str, str]) -> dict[str, Any]:
    """Per class: mean coverage over the tiles and number of tiles with any coverage."""
    result: dict[str, Any] = {}
    for name in classes:
        values = table[coverage_column(name)].to_numpy(zero_copy_only=False).astype(np.float64)
        measured = values[~np.isnan(values)]
        result[name] = {
            "mean": float(measured.mean()) if len(measured) else None,
            "tiles_with_coverage": int((measured > 0).sum()),
        }
    return result
