"""What a stored table says at a glance: flat figures to chart across materializations, and
its rows in the order worth showing first. Pure functions over the ``pyarrow.Table``; an
engine turns them into its own metadata (the Dagster floor: :mod:`wsi_assets.metadata`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from wsi_core.tables.annotation_coverage import coverage_summary
from wsi_core.tables.overlay_overlap import overlap_summary
from wsi_core.tables.schemas import (
    ANNOTATION_COVERAGE,
    OVERLAY_OVERLAP,
    SLIDE_METADATA,
    coverage_column,
)

Figure = int | float


def table_figures(table: str, data: pa.Table, classes: Sequence[str] = ()) -> dict[str, Figure]:
    """Flat numbers of one slide's ``table``: ``tile_count`` for the per-tile tables; per class
    ``mean_coverage_<class>`` and ``tiles_over_half_<class>`` (coverage above 0.5);
    ``mean_tissue_fraction``, ``tiles_with_tissue`` and ``tiles_without_overlay_pixels``; for
    ``slide_metadata`` the level-0 size (pixels), level count, tiled level and its resolution
    (micrometres per pixel). A figure that was not measured (no annotation or overlay file) is
    left out rather than given as 0."""
    if table == SLIDE_METADATA:
        row = data.to_pylist()[0]
        return {
            "width_level0": int(row["level_width"][0]),
            "height_level0": int(row["level_height"][0]),
            "level_count": int(row["level_count"]),
            "level": int(row["level"]),
            "mpp_x": float(row["mpp_x"]),
            "mpp_y": float(row["mpp_y"]),
        }
    figures: dict[str, Figure] = {"tile_count": data.num_rows}
    if table == ANNOTATION_COVERAGE:
        summary = coverage_summary(data, dict.fromkeys(classes, ""))
        for name in classes:
            if summary[name]["mean"] is not None:
                figures[f"mean_coverage_{name}"] = summary[name]["mean"]
                figures[f"tiles_over_half_{name}"] = summary[name]["tiles_over_half"]
    elif table == OVERLAY_OVERLAP:
        summary = overlap_summary(data)
        if summary["mean_tissue_fraction"] is not None:
            figures["mean_tissue_fraction"] = summary["mean_tissue_fraction"]
            figures["tiles_with_tissue"] = summary["tiles_with_tissue"]
        figures["tiles_without_overlay_pixels"] = summary["tiles_without_overlay_pixels"]
    return figures


def ranked(table: str, data: pa.Table, classes: Sequence[str] = ()) -> tuple[pa.Table, str]:
    """``data`` with the rows worth seeing first on top, and how they are ordered.

    ``annotation_coverage``: highest coverage of any class first; ``overlay_overlap``:
    highest tissue fraction first; ties and the rest in tile order, nulls last. The top rows
    are the ones a user checks against the picture (does the tumour tile lie where the
    annotation is?); the first rows in tile order are the slide's top-left corner, background
    almost always. The figures and the picture show the distribution, so no sample is taken
    here. Other tables keep their order."""
    if data.num_rows == 0 or table not in (ANNOTATION_COVERAGE, OVERLAY_OVERLAP):
        return data, "tile order"
    if table == ANNOTATION_COVERAGE:
        columns = [
            coverage_column(name) for name in classes if coverage_column(name) in data.column_names
        ]
        if not columns:
            return data, "tile order"
        score = pc.max_element_wise(*[data[c] for c in columns], skip_nulls=True)
        what = "highest coverage of any class first"
    else:
        score = data["tissue_fraction"]
        what = "highest tissue fraction first"
    values = np.nan_to_num(score.to_numpy(zero_copy_only=False).astype(np.float64), nan=-1.0)
    order = np.lexsort((np.arange(data.num_rows), -values))  # stable: ties in tile order
    return data.take(pa.array(order)), what
