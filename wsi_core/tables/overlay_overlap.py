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

Before any tile is measured the overlay is aligned with the slide (:func:`align_overlay`):
its level-0 resolution is an override when one is given, else what the file records, else a
fallback, else the one that makes its pixel dimensions the slide's; and the area it covers
must be the slide's, within ``EXTENT_WARN`` (silently) or ``EXTENT_FAIL`` (with a warning).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
from shapely.geometry.base import BaseGeometry

from wsi_core.errors import MissingMPPError, SlideError
from wsi_core.progress import Progress
from wsi_core.resolution import MPP
from wsi_core.slide import open_slide
from wsi_core.tables.schemas import OVERLAY_OVERLAP_SCHEMA, TILE_KEY_COLUMNS
from wsi_core.tables.slide_metadata import base_resolution
from wsi_core.tiling import overlap_fractions

#: Overlay values that count as background (not tissue): black, grey or RGB.
BACKGROUND_VALUES = frozenset({"0", "0,0,0"})
#: Relative difference between the overlay's and the slide's physical extent (per axis) that
#: passes without a word (also always one overlay pixel), and the one past which the overlay
#: is refused: an overlay for another slide, or a wrong resolution, gives wrong fractions.
EXTENT_WARN = 0.02
EXTENT_FAIL = 0.10

Fractions = dict[str, float] | None


@dataclass(frozen=True)
class Alignment:
    """How an overlay lies on its slide: its level-0 resolution ``(x, y)`` micrometres per
    pixel, where that came from (``file``, ``fallback``, ``override`` or ``slide
    dimensions``), and a warning when its extent differs noticeably from the slide's."""

    mpp: tuple[float, float]
    source: str
    warning: str | None = None


class OverlayMismatchError(SlideError):
    """An overlay that cannot be aligned with its slide (the message says why)."""


def align_overlay(
    overlay: str,
    slide_extent0: tuple[int, int],
    slide_mpp: tuple[float, float],
    *,
    fallback_mpp: MPP | None = None,
    override_mpp: MPP | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> Alignment:
    """Align the overlay at ``overlay`` with a slide of level-0 size ``slide_extent0``
    (pixels) and resolution ``slide_mpp`` (micrometres per pixel); see the module docstring.
    Raises :class:`OverlayMismatchError` naming the overlay."""
    with open_slide(overlay, storage_options=storage_options) as reader:
        size = reader.level_dimensions[0]
        try:
            base = base_resolution(reader, fallback_mpp, override_mpp)
        except MissingMPPError:
            base = None
    if base is None:
        return _aligned_by_size(overlay, size, slide_extent0, slide_mpp)
    warning = _extent_check(overlay, size, base.mpp, slide_extent0, slide_mpp)
    return Alignment(base.mpp, base.source, warning)


def _aligned_by_size(
    overlay: str,
    size: tuple[int, int],
    slide_extent0: tuple[int, int],
    slide_mpp: tuple[float, float],
) -> Alignment:
    """An overlay without a resolution, aligned by its pixel size when that is the slide's
    at one scale (within a pixel on the other axis)."""
    scale = slide_extent0[0] / size[0]
    if abs(slide_extent0[1] / scale - size[1]) > 1:
        raise OverlayMismatchError(
            overlay,
            f"records no resolution, and its {size[0]}x{size[1]} pixels are not the slide's "
            f"{slide_extent0[0]}x{slide_extent0[1]} at any one scale",
        )
    mpp = (slide_mpp[0] * scale, slide_mpp[1] * slide_extent0[1] / size[1])
    return Alignment(mpp, "slide dimensions")


def _extent_check(
    overlay: str,
    size: tuple[int, int],
    mpp: tuple[float, float],
    slide_extent0: tuple[int, int],
    slide_mpp: tuple[float, float],
) -> str | None:
    """None when the overlay covers the slide's area; a warning when it is off by more than
    ``EXTENT_WARN``; :class:`OverlayMismatchError` past ``EXTENT_FAIL``."""
    worst = 0.0
    for axis in (0, 1):
        covers = size[axis] * mpp[axis]  # micrometres
        slide = slide_extent0[axis] * slide_mpp[axis]
        off = abs(covers - slide)
        if off > mpp[axis]:  # one overlay pixel is rounding, not a mismatch
            worst = max(worst, off / slide)
    if worst <= EXTENT_WARN:
        return None
    what = (
        f"covers {size[0] * mpp[0]:.0f} x {size[1] * mpp[1]:.0f} um at {mpp[0]:.4g} um/px, "
        f"the slide {slide_extent0[0] * slide_mpp[0]:.0f} x {slide_extent0[1] * slide_mpp[1]:.0f}"
        f" um ({worst:.0%} off)"
    )
    if worst > EXTENT_FAIL:
        raise OverlayMismatchError(overlay, f"does not fit its slide: {what}")
    return what


def measure_overlap(
    grid: pa.Table,
    overlay: str,
    roi: BaseGeometry,
    overlay_mpp: MPP | None = None,
    storage_options: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
) -> list[Fractions]:
    """Value fractions for every tile of ``grid`` (a ``tile_grid`` table) from the overlay at
    ``overlay`` (a local path, or a URL ``open_slide`` reads). ``roi`` is in tile-relative
    level pixels; ``overlay_mpp`` is the overlay's level-0 resolution (micrometres per
    pixel) to use instead of its own; ``progress(done, total)`` hears of tiles counted."""
    if grid.num_rows == 0:
        return []
    return overlap_fractions(
        roi,
        overlay,
        grid["tile_x"].to_numpy(),
        grid["tile_y"].to_numpy(),
        float(grid["mpp_x"][0].as_py()),
        float(grid["mpp_y"][0].as_py()),
        overlay_mpp=overlay_mpp,
        storage_options=storage_options,
        progress=progress,
    ).rows()


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
    alignment: Alignment | None = None,
    storage_options: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
) -> tuple[pa.Table, list[str] | None]:
    """The ``overlay_overlap`` table of one slide, and the overlay values seen in it (None
    when ``overlay`` is None: the slide has no overlay file). ``alignment`` (from
    :func:`align_overlay`) gives the overlay's resolution; None: the file's own.
    ``progress(done, total)`` hears of tiles counted."""
    if overlay is None:
        return overlap_table(grid, None), None
    mpp = None if alignment is None else alignment.mpp
    fractions = measure_overlap(grid, overlay, roi, mpp, storage_options, progress)
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
