"""A spatial hash of equal-size tile rectangles, for joining boxes to the tiles they touch.

Tiles and boxes share one frame; the coverage kernel (:mod:`wsi_core.tiling.rect_coverage`)
uses level-0 pixels. No geometry is built: a box is matched to tiles by hashing tile origins
into cells of one tile size.
"""

from __future__ import annotations

import numpy as np

from wsi_core.tiling.ragged import bounded_chunks, group_bounds, ragged_expand

# Candidate cells per batch of boxes in TileBuckets.join (each costs a few dozen bytes).
_JOIN_CELLS = 1 << 20


class TileBuckets:
    """Tiles ``[x0, x0 + width] x [y0, y0 + height]`` hashed by origin into cells of one tile
    size, so that the tiles a set of boxes touches are found without building any geometry."""

    def __init__(self, x0: np.ndarray, y0: np.ndarray, width: float, height: float) -> None:
        self.x0, self.y0, self.w, self.h = x0, y0, width, height
        self.gx, self.gy = float(x0.min()), float(y0.min())
        cx, cy = self._cell_x(x0), self._cell_y(y0)
        self.ncx, self.ncy = int(cx.max()) + 1, int(cy.max()) + 1
        keys = cx * self.ncy + cy
        self.order = np.argsort(keys, kind="stable")
        self.sorted_keys = keys[self.order]
        self.dense = self.ncx * self.ncy <= 8 * len(x0) + 1024
        if self.dense:  # a regular grid: look cells up directly instead of by binary search
            self.cell_start, self.cell_count = group_bounds(self.sorted_keys, self.ncx * self.ncy)

    def cells(
        self,
    ) -> tuple[float, float, float, float, int, int, np.ndarray, np.ndarray, np.ndarray]:
        """The hash as plain values, for a compiled loop to look tiles up as :meth:`join` does:
        the grid's origin ``(gx, gy)``, the cell size, the columns and rows of cells, the tiles
        in cell order, their cell keys (``column * rows + row``), and where each key's tiles
        start in that order (one more entry than keys: the end), which is empty unless the
        grid is dense enough to hold it (then look the keys up by binary search)."""
        start = np.empty(0, dtype=np.int64)
        if self.dense:
            start = np.r_[self.cell_start, len(self.order)].astype(np.int64)
        return (
            self.gx,
            self.gy,
            self.w,
            self.h,
            self.ncx,
            self.ncy,
            self.order,
            self.sorted_keys,
            start,
        )

    def _cell_x(self, x: np.ndarray) -> np.ndarray:
        """The cell column of x (same frame as the tiles, level-0 pixels in the kernel)."""
        return np.floor((x - self.gx) / self.w).astype(np.int64)

    def _cell_y(self, y: np.ndarray) -> np.ndarray:
        """The cell row of y (same frame as the tiles, level-0 pixels in the kernel)."""
        return np.floor((y - self.gy) / self.h).astype(np.int64)

    def join(
        self, bx0: np.ndarray, by0: np.ndarray, bx1: np.ndarray, by1: np.ndarray, margin: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """(box, tile) pairs where box ``[bx0, bx1] x [by0, by1]`` comes within ``margin`` of the
        closed tile rectangle ``[x0, x0 + w] x [y0, y0 + h]`` (all in the tiles' frame), grouped by
        box, boxes ascending.

        Boxes are taken in batches of about ``_JOIN_CELLS`` candidate cells, so the
        temporaries stay small however many boxes there are.
        """
        # A tile qualifies when its origin lies in [b0 - size - margin, b1 + margin]. The same
        # float values feed the cell range and the final test, and floor is monotonic, so no
        # qualifying tile is missed.
        lo_x, hi_x = bx0 - self.w - margin, bx1 + margin
        lo_y, hi_y = by0 - self.h - margin, by1 + margin
        cx0 = np.maximum(self._cell_x(lo_x), 0)
        cx1 = np.minimum(self._cell_x(hi_x), self.ncx - 1)
        cy0 = np.maximum(self._cell_y(lo_y), 0)
        cy1 = np.minimum(self._cell_y(hi_y), self.ncy - 1)
        nx = np.maximum(cx1 - cx0 + 1, 0)
        ny = np.maximum(cy1 - cy0 + 1, 0)
        boxes, tiles = [np.empty(0, np.int64)], [np.empty(0, np.int64)]
        for start, stop in bounded_chunks(nx * ny, _JOIN_CELLS):
            part = slice(start, stop)
            box, k = ragged_expand(nx[part] * ny[part])
            box += start
            keys = (cx0[box] + k // ny[box]) * self.ncy + cy0[box] + k % ny[box]
            box, tile = self._tiles_in_cells(box, keys)
            tx, ty = self.x0[tile], self.y0[tile]
            hit = (tx >= lo_x[box]) & (tx <= hi_x[box]) & (ty >= lo_y[box]) & (ty <= hi_y[box])
            boxes.append(box[hit])
            tiles.append(tile[hit])
        return np.concatenate(boxes), np.concatenate(tiles)

    def _tiles_in_cells(self, box: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(box, tile) for every tile hashed into cell ``keys[i]`` of ``box[i]``."""
        if self.dense:
            first, count = self.cell_start[keys], self.cell_count[keys]
        else:
            first = np.searchsorted(self.sorted_keys, keys, side="left")
            count = np.searchsorted(self.sorted_keys, keys, side="right") - first
        slot, j = ragged_expand(count)
        return box[slot], self.order[first[slot] + j]
