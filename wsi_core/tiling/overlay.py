"""Overlay patches and per-value overlap fractions for tiles.

An overlay is a raster aligned with the slide (tissue mask, heatmap, label map), usually at a
coarser resolution. For every tile the overlay is read at its level closest to the tile's
resolution, in a window that covers the ROI placed at the tile.

Pixel ownership: an overlay pixel counts for a tile when its centre lies inside the ROI mapped
into overlay pixels, with ties broken as the window rounding ``floor(v + 0.5)`` breaks them: a
centre exactly on the ROI's left or top edge is outside, on its right or bottom edge inside. A
rectangular ROI therefore counts exactly the pixels of its rounded window.

Units: tile origins are level coords of the tiled slide (pixels of the level being tiled), the
ROI is in tile-relative pixels of that level, and the tiles' ``mpp`` is micrometres per pixel
of that level. Read windows, masks and patches are in pixels of the chosen overlay level;
``scale`` is overlay-level pixels per tile pixel.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple, overload

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from wsi_core.geometry import is_axis_aligned_rectangle
from wsi_core.progress import Progress, Throttled
from wsi_core.reader import SlideReader
from wsi_core.resolution import MPP
from wsi_core.tiling.expressions import has_column_expressions
from wsi_core.tiling.overlay_values import ValueCodes, encode_values, sort_keys

if TYPE_CHECKING:  # for the overloads only: Ray is imported when expressions are given
    from ray.data.expressions import Expr, UDFExpr

# Pixel centres are tested at (c - EPS), which gives the half-open ownership described above
# without a special case for centres that fall exactly on an edge.
EPS = 1e-6

# One read covers the windows of many tiles; above this many pixels the tiles are split into
# row bands that are read one at a time, so a full-resolution overlay is never held at once.
READ_BUDGET_PIXELS = 64 * 1024 * 1024

# Distinct ROI placements whose masks are kept (least recently used dropped first); a regular
# grid has only a few, so this bounds memory for irregular tile origins.
MASK_CACHE_SIZE = 256


class OverlayPatch(NamedTuple):
    """The overlay under one tile's ROI.

    ``data`` holds the overlay samples of the ROI's bounding-box window, shape ``(h, w)`` or
    ``(h, w, channels)`` in overlay-level pixels (zero where the window leaves the image);
    ``mask`` is a bool ``(h, w)`` array, True where a pixel is not counted: its centre is outside
    the ROI, or it lies outside the overlay image.
    """

    data: np.ndarray
    mask: np.ndarray


class _Windows(NamedTuple):
    """Read windows of a group of tiles on one overlay level, in overlay-level pixels."""

    positions: np.ndarray  # of the tiles in the caller's input
    x: np.ndarray  # window origins, int64
    y: np.ndarray
    width: int
    height: int
    offset_x: np.ndarray  # tile origin in window-relative overlay pixels, float64
    offset_y: np.ndarray
    scale: tuple[float, float]  # overlay pixels per tile pixel (x, y)
    level: int  # the overlay level the windows are on


@overload
def tile_overlay(
    roi: BaseGeometry,
    overlay_path: Expr,
    tile_x: Any,
    tile_y: Any,
    mpp_x: Any,
    mpp_y: Any,
    *,
    overlay_mpp: MPP | None = ...,
    storage_options: Mapping[str, Any] | None = ...,
) -> UDFExpr: ...


@overload
def tile_overlay(
    roi: BaseGeometry,
    overlay_path: Any,
    tile_x: Expr,
    tile_y: Any,
    mpp_x: Any,
    mpp_y: Any,
    *,
    overlay_mpp: MPP | None = ...,
    storage_options: Mapping[str, Any] | None = ...,
) -> UDFExpr: ...


@overload
def tile_overlay(
    roi: BaseGeometry,
    overlay_path: Any,
    tile_x: Any,
    tile_y: Any,
    mpp_x: Any,
    mpp_y: Any,
    *,
    overlay_mpp: MPP | None = ...,
    storage_options: Mapping[str, Any] | None = ...,
) -> list[OverlayPatch]: ...


def tile_overlay(
    roi: BaseGeometry,
    overlay_path: Any,
    tile_x: Any,
    tile_y: Any,
    mpp_x: Any,
    mpp_y: Any,
    *,
    overlay_mpp: MPP | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> list[OverlayPatch] | UDFExpr:
    """The overlay patch under the ROI of every tile.

    Args:
        roi: Region of interest in tile-relative pixels of the tiled level; any polygon, may
            exceed the tile.
        overlay_path: The overlay file, one for all tiles or one per tile.
        tile_x, tile_y: Tile origins in level coords of the tiled slide (scalar or per tile).
        mpp_x, mpp_y: Micrometres per pixel of the tiled level (scalar or per tile).
        overlay_mpp: Base (level-0) micrometres per pixel of the overlay, for files that do not
            record it or record a wrong one.
        storage_options: fsspec options for overlays named by URL (endpoint, credentials; see
            :mod:`wsi_core.remote`), passed to :func:`~wsi_core.slide.open_slide`.

    Returns:
        One :class:`OverlayPatch` per tile, in input order.

    Called with Ray Data column expressions (``ray.data.expressions.col("tile_x")``) for any
    of the per-tile arguments, it returns a Ray Data expression for
    ``Dataset.with_column(name, expr)`` instead: per block, every overlay file is opened once
    and the patches are computed by this function; the column holds per row a struct
    ``{"data": ndarray, "mask": ndarray}`` (see :mod:`wsi_core.ray.expressions`).
    """
    per_tile = {
        "overlay_path": overlay_path,
        "tile_x": tile_x,
        "tile_y": tile_y,
        "mpp_x": mpp_x,
        "mpp_y": mpp_y,
    }
    if has_column_expressions(per_tile):
        from wsi_core.ray.expressions import PATCHES, column_expression

        return column_expression(
            "tile_overlay",
            tile_overlay,
            PATCHES,
            per_tile,
            {"roi": roi, "overlay_mpp": overlay_mpp, "storage_options": storage_options},
        )
    tiles = _TileInputs.of(overlay_path, tile_x, tile_y, mpp_x, mpp_y)
    patches: dict[int, OverlayPatch] = {}
    for slide, windows in _groups(roi, tiles, overlay_mpp, storage_options):
        for rows, region, rx, ry in _read_bands(slide, windows):
            for i in rows:
                patches[int(windows.positions[i])] = _patch(roi, windows, i, region, rx, ry)
    return [patches[position] for position in range(tiles.size)]


@overload
def tile_overlay_overlap(
    roi: BaseGeometry,
    overlay_path: Expr,
    tile_x: Any,
    tile_y: Any,
    mpp_x: Any,
    mpp_y: Any,
    *,
    overlay_mpp: MPP | None = ...,
    storage_options: Mapping[str, Any] | None = ...,
) -> UDFExpr: ...


@overload
def tile_overlay_overlap(
    roi: BaseGeometry,
    overlay_path: Any,
    tile_x: Expr,
    tile_y: Any,
    mpp_x: Any,
    mpp_y: Any,
    *,
    overlay_mpp: MPP | None = ...,
    storage_options: Mapping[str, Any] | None = ...,
) -> UDFExpr: ...


@overload
def tile_overlay_overlap(
    roi: BaseGeometry,
    overlay_path: Any,
    tile_x: Any,
    tile_y: Any,
    mpp_x: Any,
    mpp_y: Any,
    *,
    overlay_mpp: MPP | None = ...,
    storage_options: Mapping[str, Any] | None = ...,
) -> list[dict[str, float] | None]: ...


def tile_overlay_overlap(
    roi: BaseGeometry,
    overlay_path: Any,
    tile_x: Any,
    tile_y: Any,
    mpp_x: Any,
    mpp_y: Any,
    *,
    overlay_mpp: MPP | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> list[dict[str, float] | None] | UDFExpr:
    """The fraction of each tile's counted overlay pixels that holds each overlay value.

    Arguments as for :func:`tile_overlay`. Fractions are per pixel; keys are the values as
    strings: ``"0"``, ``"255"`` for one channel (and for RGB pixels whose channels are equal),
    ``"r,g,b"`` for coloured RGB pixels. Every returned dict has every key seen in this call,
    ``0.0`` where a tile lacks it. A tile with no counted pixel (its ROI lies off the overlay)
    gives ``None``.

    An axis-aligned rectangular ROI (:func:`~wsi_core.geometry.is_axis_aligned_rectangle`, the
    same test as the coverage kernel's) is counted from block sums between the tiles' edges
    over each read of the overlay level, with no per-tile mask; other ROIs rasterise one mask
    per distinct sub-pixel placement and correct the box counts of its tiles by the pixels
    gathered outside the mask (or count the mask's own, when fewer), except where a tile's
    box holds one value, which the mask then holds alone. Both count exactly the pixels
    :func:`tile_overlay` leaves unmasked.

    Called with Ray Data column expressions (``ray.data.expressions.col("tile_x")``) for any
    of the per-tile arguments, it returns a Ray Data expression for
    ``Dataset.with_column(name, expr)`` instead: per block, every overlay file is opened once
    and the fractions are computed by :func:`overlap_fractions`; the column is a struct with
    one field per key seen in the block (``0.0`` where a tile lacks the key) and null for a
    tile with no counted pixel (see :mod:`wsi_core.ray.expressions`).
    """
    per_tile = {
        "overlay_path": overlay_path,
        "tile_x": tile_x,
        "tile_y": tile_y,
        "mpp_x": mpp_x,
        "mpp_y": mpp_y,
    }
    if has_column_expressions(per_tile):
        from wsi_core.ray.expressions import FRACTIONS, column_expression

        return column_expression(
            "tile_overlay_overlap",
            overlap_fractions,
            FRACTIONS,
            per_tile,
            {"roi": roi, "overlay_mpp": overlay_mpp, "storage_options": storage_options},
        )
    table = overlap_fractions(
        roi,
        overlay_path,
        tile_x,
        tile_y,
        mpp_x,
        mpp_y,
        overlay_mpp=overlay_mpp,
        storage_options=storage_options,
    )
    return table.rows()


class OverlapTable(NamedTuple):
    """Value fractions of many tiles as one matrix (what :func:`tile_overlay_overlap` returns
    as one dict per tile).

    ``keys`` are the overlay values met, as strings in value order; ``fractions[i, k]`` is the
    share of tile ``i``'s counted pixels holding ``keys[k]`` (float64, ``0.0`` where the tile
    lacks the value); ``counted[i]`` is False for a tile with no counted pixel, whose row is
    all zeros and means "no fractions", not "none of each value".
    """

    keys: list[str]
    fractions: np.ndarray
    counted: np.ndarray

    def rows(self) -> list[dict[str, float] | None]:
        """One dict per tile with every key (``0.0`` where the tile lacks it), ``None`` for a
        tile with no counted pixel: what :func:`tile_overlay_overlap` returns."""
        if not self.keys:  # no tile counted a pixel
            return [None] * len(self.counted)
        rows = _dicts(self.keys, self.fractions.T.tolist())
        for i in np.flatnonzero(~self.counted).tolist():
            rows[i] = None
        return rows


def _dicts(keys: list[str], columns: list[list[float]]) -> list[dict[str, float] | None]:
    """One dict per row of ``columns`` (one list per key, not one per row: fewer objects).

    Two keys (a tissue mask, the usual overlay) are built by a dict display, three times
    faster than ``dict(zip(keys, row))``; that per-row zip takes no keyword (``strict=``),
    which would cost a third of its time."""
    rows = zip(*columns, strict=True)
    if len(keys) == 2:
        first, second = keys
        return [{first: a, second: b} for a, b in rows]
    return list(map(dict, map(functools.partial(zip, keys), rows)))


def overlap_fractions(
    roi: BaseGeometry,
    overlay_path: Any,
    tile_x: Any,
    tile_y: Any,
    mpp_x: Any,
    mpp_y: Any,
    *,
    overlay_mpp: MPP | None = None,
    storage_options: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
) -> OverlapTable:
    """:func:`tile_overlay_overlap` as an :class:`OverlapTable`; the arguments and units are
    the same (plain values only). Each overlay file is opened once per call.
    ``progress(done, total)`` hears of the tiles counted, read by read of the overlay (see
    :class:`~wsi_core.progress.Throttled`)."""
    tiles = _TileInputs.of(overlay_path, tile_x, tile_y, mpp_x, mpp_y)
    keys: dict[str, int] = {}
    bands: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    count = _count_box if _is_rectangle(roi.wkb) else _count_masked
    reporter = Throttled(progress, tiles.size)
    for slide, windows in _groups(roi, tiles, overlay_mpp, storage_options):
        for rows, region, rx, ry in _read_bands(slide, windows):
            # The region is a new array (read_level_region) used only here: coded in place.
            values = encode_values(region, overwrite=True)
            columns = np.array(
                [keys.setdefault(key, len(keys)) for key in values.keys], dtype=np.intp
            )
            bands.append(
                (windows.positions[rows], columns, count(roi, windows, rows, values, rx, ry))
            )
            reporter.add(len(rows))
    reporter.finish()
    return _fractions(_gather(bands, tiles.size, len(keys)), keys)


def _gather(
    bands: list[tuple[np.ndarray, np.ndarray, np.ndarray]], size: int, k: int
) -> np.ndarray:
    """Per-value pixel counts ``(size, k)`` of every tile from the bands' ``(positions,
    columns, counts)``: each band's counts of its tiles (at ``positions`` in the input) in
    its own key columns (at ``columns`` among the call's ``k`` keys)."""
    if len(bands) == 1:
        index, columns, band = bands[0]
        if _is_identity(index, size) and _is_identity(columns, k):
            return band  # the usual call: one read of every tile, in order, with every key
    counts = np.zeros((size, k), dtype=np.int64)
    for index, columns, band in bands:
        # Each tile is in one band (of one file and resolution): an assignment, not a sum,
        # five times faster than adding through np.ix_.
        counts[index[:, None], columns] = band
    return counts


def _is_identity(index: np.ndarray, size: int) -> bool:
    """Whether ``index`` is ``0, 1, ..., size - 1``."""
    return index.size == size and bool((index == np.arange(size)).all())


@functools.lru_cache(maxsize=MASK_CACHE_SIZE)
def _is_rectangle(roi_wkb: bytes) -> bool:
    """:func:`~wsi_core.geometry.is_axis_aligned_rectangle` of the ROI given as WKB (exact:
    the coordinates as stored), cached: its validity and equality tests cost GEOS about
    0.1 ms a call right after an overlay's decode, for the same ROI call after call."""
    return is_axis_aligned_rectangle(shapely.from_wkb(roi_wkb))


class _TileInputs(NamedTuple):
    """The per-tile arguments, broadcast to one entry per tile."""

    paths: list[str]
    x: np.ndarray
    y: np.ndarray
    mpp_x: np.ndarray
    mpp_y: np.ndarray

    @property
    def size(self) -> int:
        """The number of tiles."""
        return len(self.paths)

    @classmethod
    def of(cls, paths: Any, x: Any, y: Any, mpp_x: Any, mpp_y: Any) -> _TileInputs:
        """Broadcast scalars to every tile: ``x, y`` level coords of the tiled slide,
        ``mpp_x, mpp_y`` micrometres per pixel of that level."""
        sizes = {len(v) for v in (paths, x, y, mpp_x, mpp_y) if _is_sequence(v)}
        if len(sizes) > 1:
            raise ValueError(f"per-tile arguments differ in length: {sorted(sizes)}")
        n = sizes.pop() if sizes else 1
        as_paths = [os.fspath(p) for p in paths] if _is_sequence(paths) else [os.fspath(paths)] * n
        return cls(
            as_paths,
            _per_tile(x, np.int64, n),
            _per_tile(y, np.int64, n),
            _per_tile(mpp_x, np.float64, n),
            _per_tile(mpp_y, np.float64, n),
        )


def _per_tile(value: Any, dtype: type, n: int) -> np.ndarray:
    """``value`` as ``n`` entries of ``dtype``: itself when it has them (np.broadcast_to costs
    2-4 us a call, four calls a call of the kernels), else a scalar broadcast to all ``n``."""
    array: np.ndarray = np.asarray(value, dtype=dtype)
    return array if array.shape == (n,) else np.broadcast_to(array, (n,))


def _is_sequence(value: Any) -> bool:
    """Whether ``value`` gives one entry per tile (a sequence or array, not a path)."""
    return not isinstance(value, (str, bytes, os.PathLike)) and np.ndim(value) > 0


def _groups(
    roi: BaseGeometry,
    tiles: _TileInputs,
    overlay_mpp: MPP | None,
    storage_options: Mapping[str, Any] | None,
):
    """Yield ``(slide, windows)`` per overlay file and tile resolution (``mpp`` pair, in
    micrometres per pixel of the tiled level); each file is opened once."""
    # Imported here: the factory loads both backends (OpenSlide's C library, tifffile), which
    # ``import wsi_core.tiling`` for grid_tiles alone should not pay for.
    from wsi_core.slide import open_slide

    for path, index in _by_path(tiles.paths):
        with open_slide(path, mpp=overlay_mpp, storage_options=storage_options) as slide:
            for mpp, same in _by_mpp(tiles, index):
                yield slide, _windows(roi, slide, same, tiles, mpp)


def _by_path(paths: list[str]) -> Iterator[tuple[str, np.ndarray]]:
    """Yield ``(path, positions)``: the tiles of each overlay file, files in first-seen order.
    One file for every tile (the usual call) skips the loop over the tiles."""
    if paths and paths.count(paths[0]) == len(paths):
        yield paths[0], np.arange(len(paths))
        return
    by_path: dict[str, list[int]] = {}
    for i, path in enumerate(paths):
        by_path.setdefault(path, []).append(i)
    for path, members in by_path.items():
        yield path, np.asarray(members)


def _by_mpp(
    tiles: _TileInputs, index: np.ndarray
) -> Iterator[tuple[tuple[float, float], np.ndarray]]:
    """Yield ``((mpp_x, mpp_y), positions)`` per distinct resolution (micrometres per pixel of
    the tiled level) among the tiles at ``index``, in ascending order. One resolution for
    every tile (the usual call) skips sorting the pairs."""
    mpp_x, mpp_y = tiles.mpp_x[index], tiles.mpp_y[index]
    if index.size and (mpp_x == mpp_x[0]).all() and (mpp_y == mpp_y[0]).all():
        yield (float(mpp_x[0]), float(mpp_y[0])), index
        return
    pairs = np.stack([mpp_x, mpp_y], axis=1)
    for pair in np.unique(pairs, axis=0):
        same = index[(pairs == pair).all(axis=1)]
        yield (float(pair[0]), float(pair[1])), same


def _windows(
    roi: BaseGeometry,
    slide: SlideReader,
    index: np.ndarray,
    tiles: _TileInputs,
    mpp: tuple[float, float],
) -> _Windows:
    """Place the ROI's bounding box of every tile on the overlay level closest to ``mpp``
    (micrometres per pixel of the tiled level): origin and size in overlay-level pixels are
    ``floor(v * scale + 0.5)`` of the bounds placed at the tile origin (level coords)."""
    level = slide.closest_level(mpp)
    level_mpp = slide.slide_resolution(level)
    sx, sy = mpp[0] / level_mpp[0], mpp[1] / level_mpp[1]
    min_x, min_y, max_x, max_y = roi.bounds
    tile_x, tile_y = tiles.x[index], tiles.y[index]
    x = np.floor((tile_x + min_x) * sx + 0.5).astype(np.int64)
    y = np.floor((tile_y + min_y) * sy + 0.5).astype(np.int64)
    return _Windows(
        positions=index,
        x=x,
        y=y,
        width=math.floor((max_x - min_x) * sx + 0.5),
        height=math.floor((max_y - min_y) * sy + 0.5),
        offset_x=tile_x * sx - x,
        offset_y=tile_y * sy - y,
        scale=(sx, sy),
        level=level,
    )


def _read_bands(slide: SlideReader, windows: _Windows):
    """Yield ``(rows, region, region_x, region_y)``: each read of the overlay level covers the
    clipped windows of ``rows`` (positions in ``windows``); ``region`` starts at overlay-level
    pixel ``(region_x, region_y)``. Tiles sharing a band are read once together."""
    level_w, level_h = slide.level_dimensions[windows.level]
    x0 = np.clip(windows.x, 0, level_w)
    x1 = np.clip(windows.x + windows.width, 0, level_w)
    y0 = np.clip(windows.y, 0, level_h)
    y1 = np.clip(windows.y + windows.height, 0, level_h)
    on = (x1 > x0) & (y1 > y0)
    on_image, off_image = np.flatnonzero(on), np.flatnonzero(~on)
    if off_image.size:
        yield off_image, _empty_region(slide, windows.level), 0, 0
    if not on_image.size:
        return
    rx, ry, rw, rh = _union(on_image, x0, x1, y0, y1)
    if rw * rh <= READ_BUDGET_PIXELS:  # the usual call: one read, the rows in any order
        yield on_image, slide.read_level_region(windows.level, rx, ry, rw, rh), rx, ry
        return
    for rows in _bands(on_image[np.argsort(y0[on_image], kind="stable")], x0, x1, y0, y1):
        rx, ry, rw, rh = _union(rows, x0, x1, y0, y1)
        yield rows, slide.read_level_region(windows.level, rx, ry, rw, rh), rx, ry


def _union(
    rows: np.ndarray, x0: np.ndarray, x1: np.ndarray, y0: np.ndarray, y1: np.ndarray
) -> tuple[int, int, int, int]:
    """``(x, y, width, height)`` of the union of the clipped windows of ``rows`` (``x0 .. y1``,
    overlay-level pixels)."""
    x, y = int(x0[rows].min()), int(y0[rows].min())
    return x, y, int(x1[rows].max()) - x, int(y1[rows].max()) - y


def _bands(
    rows: np.ndarray, x0: np.ndarray, x1: np.ndarray, y0: np.ndarray, y1: np.ndarray
) -> Iterator[np.ndarray]:
    """Split ``rows`` (sorted by window top) into runs whose union window fits the budget
    (``READ_BUDGET_PIXELS``); ``x0 .. y1`` are clipped windows in overlay-level pixels. A
    window larger than the budget is read alone."""
    start = 0
    while start < rows.size:
        stop = _band_stop(rows, start, x0, x1, y0, y1)
        yield rows[start:stop]
        start = stop


def _band_stop(
    rows: np.ndarray, start: int, x0: np.ndarray, x1: np.ndarray, y0: np.ndarray, y1: np.ndarray
) -> int:
    """The end of the band that begins at ``rows[start]``: the union window of
    ``rows[start:stop]`` grows with ``stop`` (its top is ``rows[start]``'s, the rows being
    sorted by top), so the band ends before the first row whose union exceeds the budget.

    The unions are running extrema over a span of rows that doubles until the band ends inside
    it, so the work stays proportional to the band's length, not to the rows left. Rows
    that all fit (a slide's tiles over a mask, the usual call) make one band at once."""
    top = y0[rows[start]]
    rest = rows[start:]
    if (x1[rest].max() - x0[rest].min()) * (y1[rest].max() - top) <= READ_BUDGET_PIXELS:
        return rows.size
    span = 256
    while True:
        part = rows[start : start + span]
        width = np.maximum.accumulate(x1[part]) - np.minimum.accumulate(x0[part])
        area = width * (np.maximum.accumulate(y1[part]) - top)  # pixels, non-decreasing
        fits = int(np.searchsorted(area, READ_BUDGET_PIXELS, side="right"))
        if fits < part.size or start + part.size == rows.size:
            return start + max(fits, 1)
        span *= 2


def _empty_region(slide: SlideReader, level: int) -> np.ndarray:
    """A 0x0 region with the level's sample layout, for tiles whose window misses the image."""
    return slide.read_level_region(level, 0, 0, 1, 1)[:0, :0]


def _inside(roi: BaseGeometry, windows: _Windows, row: int) -> np.ndarray:
    """Bool ``(height, width)`` over tile ``row``'s window (overlay-level pixels): True where
    the pixel's centre is inside the ROI. Read-only: the array may be shared with other tiles."""
    return _rasterise(
        roi.wkb,
        windows.scale,
        float(windows.offset_x[row]),
        float(windows.offset_y[row]),
        windows.width,
        windows.height,
    )


@functools.lru_cache(maxsize=MASK_CACHE_SIZE)
def _rasterise(
    roi_wkb: bytes,
    scale: tuple[float, float],
    offset_x: float,
    offset_y: float,
    width: int,
    height: int,
) -> np.ndarray:
    """Rasterise the ROI (tile-relative pixels of the tiled level, given as WKB so that the
    arguments hash) into a ``(height, width)`` window of overlay-level pixels: scaled by
    ``scale`` (overlay pixels per tile pixel) and shifted by the tile's sub-pixel offset
    ``(offset_x, offset_y)`` in overlay pixels.

    Tiles on a regular grid share a few placements, so the masks are cached per placement;
    they are returned read-only because every tile with that placement gets the same array.
    """
    placed = shapely.transform(
        shapely.from_wkb(roi_wkb), lambda c: c * np.array(scale) + np.array([offset_x, offset_y])
    )
    shapely.prepare(placed)
    cx = np.arange(width) + 0.5 - EPS
    cy = np.arange(height) + 0.5 - EPS
    mask = shapely.contains_xy(placed, cx[None, :], cy[:, None])
    mask.flags.writeable = False
    return mask


def _clip(windows: _Windows, row: int, rx: int, ry: int, region: np.ndarray):
    """The part of tile ``row``'s window that lies on the image: slices into the window and
    into ``region`` (which starts at overlay-level pixel ``rx, ry``), or None."""
    h, w = region.shape[:2]
    wx, wy = int(windows.x[row]), int(windows.y[row])
    x0, x1 = max(wx, rx), min(wx + windows.width, rx + w)
    y0, y1 = max(wy, ry), min(wy + windows.height, ry + h)
    if x1 <= x0 or y1 <= y0:
        return None
    window = (slice(y0 - wy, y1 - wy), slice(x0 - wx, x1 - wx))
    source = (slice(y0 - ry, y1 - ry), slice(x0 - rx, x1 - rx))
    return window, source


def _patch(
    roi: BaseGeometry,
    windows: _Windows,
    row: int,
    region: np.ndarray,
    rx: int,
    ry: int,
) -> OverlayPatch:
    """Tile ``row``'s patch: its window's samples (overlay-level pixels, zero off the image)
    and the mask of the pixels it does not count."""
    data = np.zeros((windows.height, windows.width, *region.shape[2:]), dtype=region.dtype)
    mask = np.ones((windows.height, windows.width), dtype=bool)
    clipped = _clip(windows, row, rx, ry, region)
    if clipped is not None:
        window, source = clipped
        data[window] = region[source]
        mask[window] = ~_inside(roi, windows, row)[window]
    return OverlayPatch(data, mask)


def _count_masked(
    roi: BaseGeometry, windows: _Windows, rows: np.ndarray, values: ValueCodes, rx: int, ry: int
) -> np.ndarray:
    """Per-value counts of overlay-level pixels, ``(len(rows), K)``, under each tile's
    rasterised ROI; ``values`` is the region read at overlay-level pixel ``rx, ry``.

    Tiles sharing a sub-pixel placement share one mask. The ROI's bounding box is counted by
    block sums (:func:`_count_box`) and, per placement, the box pixels outside the mask are
    gathered and taken off; or, when the mask holds fewer pixels than that, the mask's own
    pixels are gathered. Each pixel of the mask is in the box (a centre strictly inside the
    ROI is strictly inside its bounds), so either way counts exactly the mask's pixels, the
    ones :func:`tile_overlay` leaves unmasked.

    A window whose box holds a single value (on the region) holds only that value under the
    mask too: its count is the size of the mask's part on the region, with nothing gathered.
    Most tiles of a tissue mask lie inside or outside the tissue, so only those on its edges
    are gathered (by :func:`_placement_counts`)."""
    k = len(values.keys)
    counts = np.zeros((rows.size, k), dtype=np.int64)
    if not k:  # the band of tiles whose windows miss the image
        return counts
    box = _count_box(roi, windows, rows, values, rx, ry)
    top, left = windows.y[rows] - ry, windows.x[rows] - rx  # region-relative window origins
    roi_wkb, bounds = roi.wkb, roi.bounds  # once: shapely computes both anew on each access
    for members, offset_x, offset_y in _placements(windows, rows):
        inside = _rasterise(
            roi_wkb, windows.scale, offset_x, offset_y, windows.width, windows.height
        )
        box_mask = _box_mask(
            bounds, windows.scale, offset_x, offset_y, windows.width, windows.height
        )
        # The mask lies in the box (checked: cheap, and both short cuts rely on it).
        in_box = not (inside > box_mask).any()
        counts[members] = _placement_counts(
            values.codes, box[members], top[members], left[members], inside, box_mask, in_box
        )
    return counts


def _placement_counts(
    codes: np.ndarray,
    box: np.ndarray,
    top: np.ndarray,
    left: np.ndarray,
    inside: np.ndarray,
    box_mask: np.ndarray,
    in_box: bool,
) -> np.ndarray:
    """Per-value counts ``(len(top), K)`` of ``codes`` (a region's value codes) under the
    mask ``inside`` (bool, window-sized, overlay-level pixels) placed at each window origin
    ``(top, left)`` (region-relative), pixels off the region not counted; ``box`` holds the
    windows' counts over ``box_mask``, which holds the mask when ``in_box``. One compiled pass
    over the windows (see :func:`~wsi_core.tiling.overlay_kernels.placement_counts`)."""
    # Compiled by numba, which costs 120 MB and a third of a second to import: only here.
    from wsi_core.tiling.overlay_kernels import placement_counts

    counts, _ = placement_counts(codes, box, top, left, inside, box_mask, in_box)
    return counts


def _placements(
    windows: _Windows, rows: np.ndarray
) -> Iterator[tuple[np.ndarray | slice, float, float]]:
    """Yield ``(members, offset_x, offset_y)``: the positions in ``rows`` of the tiles that
    share each sub-pixel placement (tile origin in window-relative overlay-level pixels), as
    an index array, or a slice of every position when all share one (a grid at an integral
    scale: then per-tile arrays are views, not gathered copies)."""
    if not rows.size:
        return
    ox, oy = windows.offset_x[rows], windows.offset_y[rows]
    if (ox == ox[0]).all() and (oy == oy[0]).all():
        yield slice(None), float(ox[0]), float(oy[0])
        return
    order = np.lexsort((oy, ox))
    starts = np.flatnonzero((np.diff(ox[order]) != 0) | (np.diff(oy[order]) != 0)) + 1
    for members in np.split(order, starts):
        yield members, float(ox[members[0]]), float(oy[members[0]])


@functools.lru_cache(maxsize=MASK_CACHE_SIZE)
def _box_mask(
    bounds: tuple[float, float, float, float],
    scale: tuple[float, float],
    offset_x: float,
    offset_y: float,
    width: int,
    height: int,
) -> np.ndarray:
    """Bool ``(height, width)`` over a window (overlay-level pixels): the pixels
    :func:`_count_box` owns for the box ``bounds`` (tile pixels) at this placement (``scale``
    and offsets as for :func:`_rasterise`). Cached per placement like the ROI's masks, and
    read-only for the same reason."""
    min_x, min_y, max_x, max_y = bounds
    x0, x1 = _owned_range_at(min_x, max_x, scale[0], offset_x, width)
    y0, y1 = _owned_range_at(min_y, max_y, scale[1], offset_y, height)
    mask = np.zeros((height, width), dtype=bool)
    mask[y0:y1, x0:x1] = True
    mask.flags.writeable = False
    return mask


def _count_box(
    roi: BaseGeometry, windows: _Windows, rows: np.ndarray, values: ValueCodes, rx: int, ry: int
) -> np.ndarray:
    """Per-value counts of overlay-level pixels, ``(len(rows), K)``, for an axis-aligned box
    ROI: a summed-area table per value over the blocks between the tiles' edges, four look-ups
    per tile (:func:`~wsi_core.tiling.overlay_kernels.range_counts`); ``values`` is the region
    read at overlay-level pixel ``rx, ry``."""
    # Compiled by numba, which costs 120 MB and a third of a second to import: only here.
    from wsi_core.tiling.overlay_kernels import clip_ranges, range_counts

    min_x, min_y, max_x, max_y = roi.bounds
    h, w = values.codes.shape
    x0, x1 = _owned_range(min_x, max_x, windows.scale[0], windows.offset_x[rows], windows.width)
    y0, y1 = _owned_range(min_y, max_y, windows.scale[1], windows.offset_y[rows], windows.height)
    # window-relative -> region-relative, clipped to the region (the image part that was read)
    x0, x1 = clip_ranges(windows.x[rows] - rx, x0, x1, w)
    y0, y1 = clip_ranges(windows.y[rows] - ry, y0, y1, h)
    counts = np.zeros((rows.size, len(values.keys)), dtype=np.int64)
    if not values.keys:  # the band of tiles whose windows miss the image
        return counts
    # Every pixel of the range is on the image, so the first value is the area minus the rest.
    counts[:, 0] = (x1 - x0) * (y1 - y0)
    for k in range(1, len(values.keys)):
        counts[:, k] = range_counts(_indicator(values, k), x0, x1, y0, y1)
        counts[:, 0] -= counts[:, k]
    return counts


def _indicator(values: ValueCodes, k: int) -> np.ndarray:
    """Where the region holds value ``k`` (0/1 ``uint8``): the codes themselves when they are
    a 0/1 uint8 plane (two values: a tissue mask), which saves a pass over the region."""
    if len(values.keys) == 2 and values.codes.dtype == np.uint8:
        return values.codes
    return (values.codes == k).view(np.uint8)


def _owned_range(lo: float, hi: float, scale: float, offset: np.ndarray, size: int):
    """Window-relative ``[start, stop)`` (overlay-level pixels, clipped to ``[0, size]``) of
    the pixels whose centre ``c`` (tested at ``c - EPS``) lies strictly between the ROI edges
    ``lo`` and ``hi`` (tile pixels), with exactly the arithmetic of :func:`_rasterise`, so both
    paths own the same pixels."""
    if offset.size > 1 and (offset == offset[0]).all():  # a grid at an integral scale
        first, last = _owned_range_at(lo, hi, scale, float(offset[0]), size)
        return np.full(offset.shape, first), np.full(offset.shape, last)
    edge_lo = lo * scale + offset
    edge_hi = hi * scale + offset
    start = np.floor(edge_lo - 0.5 + EPS).astype(np.int64) + 1  # first centre > edge_lo
    stop = np.ceil(edge_hi - 0.5 + EPS).astype(np.int64)  # first centre >= edge_hi
    # The closed forms can be one pixel off where float rounding bites: settle them on the
    # predicate itself.
    for _ in range(2):
        start += _centre(start) <= edge_lo
        start -= _centre(start - 1) > edge_lo
        stop += _centre(stop) < edge_hi
        stop -= _centre(stop - 1) >= edge_hi
    return np.clip(start, 0, size), np.clip(stop, 0, size)


@functools.lru_cache(maxsize=MASK_CACHE_SIZE)
def _owned_range_at(
    lo: float, hi: float, scale: float, offset: float, size: int
) -> tuple[int, int]:
    """:func:`_owned_range` of one placement, cached like the masks: the range of a grid's
    tiles, the same call after call, in a microsecond instead of a dozen NumPy calls on
    one-element arrays."""
    start, stop = _owned_range(lo, hi, scale, np.array([offset]), size)
    return int(start[0]), int(stop[0])


def _centre(index: np.ndarray) -> np.ndarray:
    """Where the centre of pixel ``index`` is tested (overlay-level pixels, ``c - EPS``)."""
    return index + 0.5 - EPS


def _fractions(counts: np.ndarray, keys: dict[str, int]) -> OverlapTable:
    """Fractions from per-value pixel counts ``(tiles, K)``, keys put in value order; a tile
    with no counted pixel keeps a zero row and is marked not counted."""
    ordered = sort_keys(list(keys))
    if ordered != list(keys):  # a tissue mask's keys come in value order ("0", "255")
        counts = counts[:, [keys[key] for key in ordered]]
    totals = _row_sums(counts)
    fractions = counts / np.maximum(totals, 1)[:, None]
    return OverlapTable(ordered, fractions, totals > 0)


def _row_sums(counts: np.ndarray) -> np.ndarray:
    """Each tile's counted pixels: the sum of a ``(tiles, K)`` count matrix's rows, column by
    column. ``counts.sum(axis=1)`` reduces K (two, for a mask) values at a time, twelve times
    slower (60 us on 4661 tiles)."""
    totals = np.zeros(len(counts), dtype=counts.dtype)
    for k in range(counts.shape[1]):
        totals += counts[:, k]
    return totals
