"""``annotation_coverage``: per tile, the fraction of the ROI covered by each label class.

One column ``coverage_<class>`` per configured class (name -> regular expression matched in
full against the annotation's class label), computed by
:func:`wsi_core.tiling.annotation_coverage` from ``parser.get_class_polygons(regex)``.

No annotation file means nothing was measured: the table still has one row per tile and
every coverage is null (never 0.0). A file with no polygon of a class gives real zeros.
Polygons are clipped to the slide before coverage: a tile that reaches past the slide's edge
(``last="keep"``) is not covered by annotation drawn beyond it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import shapely
from shapely.geometry.base import BaseGeometry

from wsi_core.geometry import polygonal_part
from wsi_core.parsers import open_annotations
from wsi_core.progress import Progress
from wsi_core.tables.schemas import TILE_KEY_COLUMNS, coverage_column, coverage_schema
from wsi_core.tiling import annotation_coverage


@dataclass(frozen=True)
class CoverageFacts:
    """What the annotation file held: every class label in it, polygons per configured
    class, polygons per label that no class matches (``None``: polygons without a label),
    and how many polygons reached past the slide and were clipped to it."""

    labels_in_file: list[str] = field(default_factory=list)
    polygons_per_class: dict[str, int] = field(default_factory=dict)
    unmatched: dict[str | None, int] = field(default_factory=dict)
    clipped_to_slide: int = 0


def unmatched_labels(
    counts: Mapping[str | None, int], classes: Mapping[str, str]
) -> dict[str | None, int]:
    """Polygons per label that fullmatches no class pattern (None: polygons with no label)."""
    patterns = [re.compile(pattern) for pattern in classes.values()]
    return {
        label: count
        for label, count in counts.items()
        if label is None or not any(p.fullmatch(label) for p in patterns)
    }


def clip_to_slide(
    polygons: Sequence[BaseGeometry], extent0: tuple[int, int] | None
) -> tuple[list[BaseGeometry], int]:
    """``polygons`` (level-0 pixels) clipped to the slide's level-0 ``extent0`` (width,
    height); and how many reached past it. None: no clipping."""
    if extent0 is None or not polygons:
        return list(polygons), 0
    width, height = extent0
    shapes = np.asarray(polygons, dtype=object)
    bounds = shapely.bounds(shapes)
    beyond = (
        (bounds[:, 0] < 0) | (bounds[:, 1] < 0) | (bounds[:, 2] > width) | (bounds[:, 3] > height)
    )
    if not beyond.any():
        return list(polygons), 0
    clipped = shapes.copy()
    clipped[beyond] = [
        polygonal_part(shapely.clip_by_rect(s, 0, 0, width, height)) for s in shapes[beyond]
    ]
    return [shape for shape in clipped if not shape.is_empty], int(beyond.sum())


def measure_coverage(
    grid: pa.Table,
    annotation: str,
    classes: Mapping[str, str],
    roi: BaseGeometry,
    *,
    extent0: tuple[int, int] | None = None,
    label_property: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
) -> tuple[dict[str, np.ndarray], CoverageFacts]:
    """Coverage per class for every tile of ``grid`` (a ``tile_grid`` table) from the
    annotation file at ``annotation`` (a local path or fsspec URL). ``roi`` is in
    tile-relative level pixels; ``extent0`` is the slide's level-0 (width, height), the
    polygons are clipped to; ``label_property`` says where the class label is.
    ``progress(done, total)`` hears of the work done in tiles: with k classes, each tile
    measured for one class counts 1/k."""
    parser = open_annotations(
        annotation, label_property=label_property, storage_options=storage_options
    )
    origins = np.column_stack([grid["tile_x"].to_numpy(), grid["tile_y"].to_numpy()])
    origins = origins.astype(np.int64)
    downsample = float(grid["downsample"][0].as_py()) if grid.num_rows else 1.0
    coverage: dict[str, np.ndarray] = {}
    polygons: dict[str, int] = {}
    clipped = 0
    overall = _ClassProgress(progress, len(origins), len(classes))
    for index, (name, pattern) in enumerate(classes.items()):
        shapes, beyond = clip_to_slide(parser.get_class_polygons(pattern), extent0)
        polygons[name] = len(shapes)
        clipped += beyond
        coverage[name] = np.asarray(
            annotation_coverage(shapes, roi, origins, downsample, progress=overall.of(index)),
            dtype=np.float64,
        )
    unmatched = unmatched_labels(parser.label_counts(), classes)
    return coverage, CoverageFacts(parser.class_labels(), polygons, unmatched, clipped)


class _ClassProgress:
    """One slide's progress over its classes' kernel calls: class ``index`` having measured
    ``done`` of ``tiles`` tiles is ``(index * tiles + done) / classes`` tiles of work done.
    Reports only growing counts; nothing without a ``progress``."""

    def __init__(self, progress: Progress | None, tiles: int, classes: int) -> None:
        self.progress, self.tiles, self.classes = progress, tiles, max(classes, 1)
        self.reported = -1

    def of(self, index: int) -> Progress | None:
        if self.progress is None:
            return None

        def report(done: int, _total: int) -> None:
            overall = (index * self.tiles + done) // self.classes
            if overall > self.reported and self.progress is not None:
                self.reported = overall
                self.progress(overall, self.tiles)

        return report


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
    *,
    extent0: tuple[int, int] | None = None,
    label_property: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
) -> tuple[pa.Table, CoverageFacts | None]:
    """The ``annotation_coverage`` table of one slide, and what its annotation file held
    (None when ``annotation`` is None: the slide has no annotation file). See
    :func:`measure_coverage` for the arguments (``progress`` included)."""
    if annotation is None:
        return coverage_table(grid, classes, None), None
    coverage, facts = measure_coverage(
        grid,
        annotation,
        classes,
        roi,
        extent0=extent0,
        label_property=label_property,
        storage_options=storage_options,
        progress=progress,
    )
    return coverage_table(grid, classes, coverage), facts


def coverage_summary(table: pa.Table, classes: Mapping[str, str]) -> dict[str, Any]:
    """Per class: mean coverage over the tiles (None when nothing was measured), the number
    of tiles with any coverage and of tiles more than half covered."""
    result: dict[str, Any] = {}
    for name in classes:
        values = table[coverage_column(name)].to_numpy(zero_copy_only=False).astype(np.float64)
        measured = values[~np.isnan(values)]
        result[name] = {
            "mean": float(measured.mean()) if len(measured) else None,
            "tiles_with_coverage": int((measured > 0).sum()),
            "tiles_over_half": int((measured > 0.5).sum()),
        }
    return result
