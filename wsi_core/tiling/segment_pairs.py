"""Pairs of straight segments that come near each other, found by hashing into a uniform grid.

Used by :mod:`wsi_core.tiling.union_boundary` to find where the edges of different polygons
meet. Coordinates are whatever frame the caller uses (level-0 pixels there); no geometry is
built. The work grows with the segments plus the pairs that share a grid cell, and each batch of
pairs is bounded, so memory stays small however the segments crowd.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from wsi_core.tiling.ragged import bounded_chunks, ragged_expand

# Candidate pairs per batch: each costs some 100 bytes of temporaries.
_PAIR_BUDGET = 1 << 20

# Grid cells are this many median segment extents wide: fewer, larger cells list each segment
# under fewer cells but pair more of them (2 was the fastest on the coverage benchmark).
_CELL_EXTENTS = 2.0

# A grid cell holding more segment pieces than this is not paired piece by piece (its pairs would
# grow with the square of this); the groups of its segments are reported as crowded instead.
_CROWDED_CELL = 1024


class Segments(NamedTuple):
    """Straight segments ``(ax, ay) -> (bx, by)``, one per row."""

    ax: np.ndarray
    ay: np.ndarray
    bx: np.ndarray
    by: np.ndarray

    def take(self, rows: np.ndarray) -> Segments:
        """The segments at ``rows`` (an index or a mask)."""
        return Segments(self.ax[rows], self.ay[rows], self.bx[rows], self.by[rows])

    def canonical(self) -> tuple[Segments, np.ndarray]:
        """The segments with their ends ordered by (x, y), and which were turned. A segment and
        its reverse (an edge two polygons share) then give bit-identical points."""
        flip = (self.bx < self.ax) | ((self.bx == self.ax) & (self.by < self.ay))
        return (
            Segments(
                np.where(flip, self.bx, self.ax),
                np.where(flip, self.by, self.ay),
                np.where(flip, self.ax, self.bx),
                np.where(flip, self.ay, self.by),
            ),
            flip,
        )

    def point_at(
        self, t: np.ndarray, rows: np.ndarray | slice = slice(None)
    ) -> tuple[np.ndarray, np.ndarray]:
        """The points at parameters ``t`` (0 at a, 1 at b) along segments ``rows``.

        Exactly a at 0 and b at 1, and exactly on the line of a vertical or horizontal segment:
        a piece of a segment along a tile side stays on that side.
        """
        ax, ay, bx, by = self.ax[rows], self.ay[rows], self.bx[rows], self.by[rows]
        end = t == 1
        return np.where(end, bx, ax + t * (bx - ax)), np.where(end, by, ay + t * (by - ay))


class NearPairs(NamedTuple):
    """Segment pairs ``(i, j)``, ``i < j``, of different groups whose bounding boxes come
    within the tolerance of each other, each pair once; and the groups left out because their
    segments crowd one cell (the caller must deal with those another way)."""

    i: np.ndarray
    j: np.ndarray
    crowded_groups: np.ndarray


def near_pairs(segments: Segments, group: np.ndarray, tol: float) -> NearPairs:
    """Every pair of segments from different ``group`` values whose boxes, widened by ``tol``,
    overlap (see :class:`NearPairs`).

    The segments are cut into pieces no longer than one grid cell (the cell about the typical
    segment's extent), each piece is listed under the few cells its box meets, and the pieces
    of different groups sharing a cell are paired.
    """
    empty = np.empty(0, dtype=np.int64)
    if len(segments.ax) < 2:
        return NearPairs(empty, empty, empty)
    grid = _Grid(segments, tol)
    piece_key = grid.pieces.seg
    piece, key = grid.entries()
    # Sorted by cell, then group: an entry's partners in other groups are the rest of its cell
    # after its own group's run, one contiguous range.
    order = np.lexsort((group[piece_key[piece]], key))
    piece, key = piece[order], key[order]
    n = len(key)
    new_cell = np.r_[True, key[1:] != key[:-1]]
    new_run = new_cell | np.r_[True, group[piece_key[piece]][1:] != group[piece_key[piece]][:-1]]
    cell_end = _run_ends(new_cell, n)
    run_end = _run_ends(new_run, n)
    crowded = cell_end - _run_starts(new_cell, n) > _CROWDED_CELL
    crowded_groups = np.unique(group[piece_key[piece[crowded]]])
    partners = np.where(crowded, 0, cell_end - run_end)
    found = [np.empty(0, dtype=np.int64)]
    for start, stop in bounded_chunks(partners, _PAIR_BUDGET):
        left, k = ragged_expand(partners[start:stop])
        left += start
        a, b = piece[left], piece[run_end[left] + k]
        # Each pair of pieces counts in one cell only: the one holding the corner of their
        # boxes' overlap.
        near = grid.overlap_in(a, b, key[left])
        a, b = piece_key[a[near]], piece_key[b[near]]
        found.append(np.minimum(a, b) * len(segments.ax) + np.maximum(a, b))
    # Edges cut into several pieces can still meet twice.
    keys = np.sort(np.concatenate(found))
    keys = keys[np.r_[True, keys[1:] != keys[:-1]]] if len(keys) else keys
    return NearPairs(keys // len(segments.ax), keys % len(segments.ax), crowded_groups)


def _run_ends(new_run: np.ndarray, n: int) -> np.ndarray:
    """Per row, the end (exclusive) of the run it belongs to; ``new_run`` marks run starts."""
    starts = np.flatnonzero(new_run)
    ends = np.r_[starts[1:], n]
    return np.repeat(ends, np.diff(np.r_[starts, n]))


def _run_starts(new_run: np.ndarray, n: int) -> np.ndarray:
    """Per row, the start of the run it belongs to; ``new_run`` marks run starts."""
    starts = np.flatnonzero(new_run)
    return np.repeat(starts, np.diff(np.r_[starts, n]))


class _Pieces(NamedTuple):
    """Pieces of segments, each at most one grid cell long in x and in y: the segment each
    was cut from and its box widened by the tolerance."""

    seg: np.ndarray
    x0: np.ndarray
    y0: np.ndarray
    x1: np.ndarray
    y1: np.ndarray


class _Grid:
    """A uniform grid of square cells (``_CELL_EXTENTS`` median segment extents) over the segments,
    and the segments cut into pieces no longer than a cell, so each piece meets a few cells."""

    def __init__(self, segments: Segments, tol: float) -> None:
        ax, ay, bx, by = segments
        extent = np.maximum(np.abs(bx - ax), np.abs(by - ay))
        self.ox = float(min(ax.min(), bx.min())) - tol
        self.oy = float(min(ay.min(), by.min())) - tol
        span = float(max(ax.max(), bx.max()) + max(ay.max(), by.max())) - self.ox - self.oy
        # The floor keeps the cell count within what an int64 key holds.
        self.cell = max(float(np.median(extent)) * _CELL_EXTENTS, span * 1e-6, 1e-300)
        n_pieces = np.maximum(np.ceil(extent / self.cell), 1).astype(np.int64)
        seg, k = ragged_expand(n_pieces)
        px0, py0 = segments.point_at(k / n_pieces[seg], seg)
        px1, py1 = segments.point_at((k + 1) / n_pieces[seg], seg)
        self.pieces = _Pieces(
            seg,
            np.minimum(px0, px1) - tol,
            np.minimum(py0, py1) - tol,
            np.maximum(px0, px1) + tol,
            np.maximum(py0, py1) + tol,
        )
        self.rows = int(self._cell(self.pieces.y1, self.oy).max()) + 1

    def _cell(self, v: np.ndarray, origin: float) -> np.ndarray:
        """The cell column (or row) of coordinates ``v`` along an axis starting at ``origin``."""
        return np.floor((v - origin) / self.cell).astype(np.int64)

    def entries(self) -> tuple[np.ndarray, np.ndarray]:
        """(piece, cell key) for every cell each piece's box meets."""
        p = self.pieces
        cx0, cx1 = self._cell(p.x0, self.ox), self._cell(p.x1, self.ox)
        cy0, cy1 = self._cell(p.y0, self.oy), self._cell(p.y1, self.oy)
        ny = cy1 - cy0 + 1
        piece, m = ragged_expand((cx1 - cx0 + 1) * ny)
        return piece, (cx0[piece] + m // ny[piece]) * self.rows + cy0[piece] + m % ny[piece]

    def overlap_in(self, a: np.ndarray, b: np.ndarray, key: np.ndarray) -> np.ndarray:
        """Whether the boxes of pieces ``a`` and ``b`` overlap with the lower corner of their
        overlap in cell ``key``."""
        p = self.pieces
        x, y = np.maximum(p.x0[a], p.x0[b]), np.maximum(p.y0[a], p.y0[b])
        return (
            (x <= np.minimum(p.x1[a], p.x1[b]))
            & (y <= np.minimum(p.y1[a], p.y1[b]))
            & (self._cell(x, self.ox) * self.rows + self._cell(y, self.oy) == key)
        )
