"""``overlay_overlap``: per tile, the fraction of the ROI's overlay pixels holding each value.

Computed by :func:`wsi_core.tiling.tile_overlay_overlap` on the slide's overlay (a tissue
mask, a heatmap). Stored as

* ``fractions``: ``map<string, double>``, value -> fraction (``"0"``, ``"255"``; ``"r,g,b"``
  for colour overlays). The fractions of a tile sum to 1. A map keeps one schema for every
  slide, whatever values its overlay holds, so the whole asset reads as one table.
* ``tissue_fraction``: the fraction of pixels whose value is not 0 (not black): the tissue
  fraction of a 0/255 tissue mask.

Both are null where the tile's ROI has no overlay pixel (it lies off the overlay) or the slide
has no overlay at all. Nothing is ever a fake 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
from shapely.geometry.base import BaseGeometry

from wsi_core.tables.schemas import OVERLAY_OVERLAP_SCHEMA, TILE_KEY_COLUMNS
from wsi_core.tiling import tile_overlay_overlap

#: Overlay values that count as background (not tissue): black, grey or RGB.
BACKGROUND_VALUES = frozenset({"0", "0,0,0"})

Fractions = dict[str, float] | None


def measure_overlap(
    grid: pa.Table,
    overlay: str,
    roi: BaseGeometry,
    overlay_mpp: float | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> list[Fractions]:
    """Value fractions for every tile of ``grid`` (a ``tile_grid`` table) from the overlay at
    ``overlay`` (a local path, or a URL ``open_slide`` reads). ``roi`` is in tile-relative
    level pixels; ``overlay_mpp`` is the overlay's level-0 resolution to assume when it
    records none (micrometres per pixel)."""
    if grid.num_rows == 0:
        return []
    return tile_overlay_overlap(
        roi,
        overlay,
        grid["tile_x"].to_numpy(),
        grid["tile_y"].to_numpy(),
        float(grid["mpp_x"][0].as_py()),
        float(grid["mpp_y"][0].as_py()),
        overlay_mpp=overlay_mpp,
        storage_options=storage_options,
    )


def tissue_fraction(fractions: Fractions) -> float | None:
    """Sum of the fractions of every value that is not background (None stays None)."""
    if fractions is None:
        return None
    return float(sum(share for value, share in fractions.items() if value not in BACKGROUND_VALUES))


def overlap_table(grid: pa.Table, fractions: Sequence[Fractions] | None) -> pa.Table:
    """The ``overlay_overlap`` table; ``fractions=None`` (no overlay file) gives nulls."""
    rows: Sequence[Fractions] = [None] * grid.num_rows if fractions is None else fractions
    maps = [None if row is None else list(row.items()) for row in rows]
    columns: dict[str, Any] = {name: grid[name] for name in TILE_KEY_COLUMNS}
    columns["fractions"] = pa.array(maps, pa.map_(pa.string(), pa.float64()))
    columns["tissue_fraction"] = pa.array([tissue_fraction(row) for row in rows], pa.float64())
    return pa.table(columns, schema=OVERLAY_OVERLAP_SCHEMA)


def build_overlay_overlap(
    grid: pa.Table,
    overlay: str | None,
    roi: BaseGeometry,
    overlay_mpp: float | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> tuple[pa.Table, list[str] | None]:
    """The ``overlay_overlap`` table of one slide, and the overlay values seen in it (None
    when ``overlay`` is None: the slide has no overlay file)."""
    if overlay is None:
        return overlap_table(grid, None), None
    fractions = measure_overlap(grid, overlay, roi, overlay_mpp, storage_options)
    seen = sorted({value for row in fractions if row for value in row})
    return overlap_table(grid, fractions), seen


def overlap_summary(table: pa.Table) -> dict[str, Any]:
    """Mean tissue fraction, tiles with tissue, tiles without overlay pixels."""
    values = table["tissue_fraction"].to_numpy(zero_copy_only=False).astype(np.float64)
    measured = values[~np.isnan(values)]
    return {
        "mean_tissue_fraction": float(measured.mean()) if len(measured) else None,
        "tiles_with_tissue": int((measured > 0).sum()),
        "tiles_without_overlay_pixels": int(np.isnan(values).sum()),
    }
