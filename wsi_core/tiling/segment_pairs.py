"""Pairs of straight segments that come near each other, found by hashing into a uniform grid.

Used by :mod:`wsi_core.tiling.union_boundary` to find where the edges of different polygons
meet. Coordinates are whatever frame the caller uses (level-0 pixels there); no geometry is
built. The work grows with the segments plus the pairs that share a grid cell; a crowded cell is
reported rather than paired, so the work stays bounded however the segments crowd. The loops are
compiled by numba (cached on disk, so a process compiles them once per install).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from wsi_core.segments import segment_point

# Grid cells are this many median segment extents wide: fewer, larger cells list each segment
# under fewer cells (less memory, so fewer fresh pages) but pair more of them. near_pairs alone,
# in ms, at 2 / 4 / 6: the benchmark's 300 stars 5.3 / 3.9 / 4.0, 20,000 cells 137 / 84 / 87,
# 76,000 squares 63 / 79 / 112.
_CELL_EXTENTS = 4.0

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
    within the tolerance of each other, each pair once (in no set order); and the groups left
    out because their segments crowd one cell (the caller must deal with those another way)."""

    i: np.ndarray
    j: np.ndarray
    crowded_groups: np.ndarray


def near_pairs(segments: Segments, group: np.ndarray, tol: float) -> NearPairs:
    """Every pair of segments from different ``group`` values whose boxes, widened by ``tol``,
    overlap (see :class:`NearPairs`); a segment longer than a grid cell counts with the boxes
    of its pieces, which still hold every pair that comes within ``tol``. Fastest when the
    segments of a group come together, as the edges of a polygon do.

    The segments are cut into pieces no longer than one grid cell (``_CELL_EXTENTS`` typical
    segment extents), each piece is listed under the few cells its box meets, and the pieces
    of different groups sharing a cell are paired.
    """
    empty = np.empty(0, dtype=np.int64)
    if len(segments.ax) < 2:
        return NearPairs(empty, empty, empty)
    ax, ay, bx, by = (np.ascontiguousarray(v, dtype=np.float64) for v in segments)
    extent = np.maximum(np.abs(bx - ax), np.abs(by - ay))
    span = float(max(ax.max(), bx.max()) + max(ay.max(), by.max())) - float(
        min(ax.min(), bx.min()) + min(ay.min(), by.min())
    )
    # The floor keeps cell columns and rows below 2**31 (32-bit columns, 64-bit keys).
    cell = max(float(np.median(extent)) * _CELL_EXTENTS, span * 1e-6, 1e-300)
    pieces = _cell_pieces(ax, ay, bx, by, cell, float(tol))
    origin = (float(pieces[1].min()), float(pieces[2].min()))
    piece, key = _cell_entries(pieces, origin, cell)
    order = _by_cell(key)
    i, j, crowded = _pairs_in_cells(
        pieces,
        piece[order],
        key[order],
        np.asarray(group, dtype=np.int64),
        origin,
        cell,
        _CROWDED_CELL,
    )
    return NearPairs(i, j, np.unique(group[crowded]))


# A piece table: (segment, x0, y0, x1, y1) per piece, the box widened by the tolerance.
_Pieces = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


@njit(cache=True, nogil=True)
def _pairs_in_cells(
    pieces: _Pieces,
    piece: np.ndarray,
    key: np.ndarray,
    group: np.ndarray,
    origin: tuple[float, float],
    cell: float,
    crowded_cell: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`near_pairs` from the cell entries ``(piece, key)``, equal keys together: the
    pairs ``(i, j)``, and which segments lie in a cell of more than ``crowded_cell`` pieces."""
    seg, x0, y0, x1, y1 = pieces
    n = seg[-1] + 1
    # The entries' boxes, groups and lower-corner cells in cell order: the pair loop reads them
    # in sequence.
    ex0, ey0, ex1, ey1 = x0[piece], y0[piece], x1[piece], y1[piece]
    column = np.floor((ex0 - origin[0]) / cell).astype(np.int32)
    row = np.floor((ey0 - origin[1]) / cell).astype(np.int32)
    eseg = seg[piece]
    egroup = group[eseg].astype(np.int32)
    single = (np.bincount(seg) == 1)[eseg]
    entries = (egroup, ex0, ey0, ex1, ey1, column, row)
    crowded = np.zeros(n, dtype=np.bool_)
    # Two passes: count each entry's partners, then write the partners of the entries that have
    # some (the counting loop has no branch, so the compiler vectorises it).
    partners = np.zeros(len(key), dtype=np.int64)
    found_v = np.empty(0, dtype=np.int64)
    start = np.empty(0, dtype=np.int64)
    for write in (False, True):
        run = 0
        while run < len(key):
            stop = run + 1
            while stop < len(key) and key[stop] == key[run]:
                stop += 1
            if stop - run > crowded_cell:
                crowded[eseg[run:stop]] = True
            else:
                cell_at = (key[run] // _KEY_ROWS, key[run] % _KEY_ROWS)
                _cell_partners(run, stop, cell_at, entries, partners, start, found_v)
            run = stop
        if not write:
            start = np.cumsum(partners) - partners
            found_v = np.empty(partners.sum(), dtype=np.int64)
            if len(found_v) == 0:
                break
    found_u = np.repeat(np.arange(len(key)), partners)
    # A pair is met in one cell, by the corner rule, unless a segment has several pieces.
    seg_u, seg_v = eseg[found_u], eseg[found_v]
    pair = np.minimum(seg_u, seg_v) * n + np.maximum(seg_u, seg_v)
    multi = ~(single[found_u] & single[found_v])
    keys = np.concatenate((pair[~multi], _distinct(pair[multi])))
    return keys // n, keys % n, crowded


# The cell entries' columns, in cell order: group, box (x0, y0, x1, y1), lower corner's cell
# column and row.
_Entries = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


@njit(cache=True, nogil=True, inline="always")
def _meet(u: int, v: int, cell: tuple[int, int], entries: _Entries) -> bool:
    """Whether entries ``u`` and ``v`` of ``cell`` (column, row) are of different groups and
    their boxes overlap with the corner of the overlap in this cell (floor is monotonic, so the
    corner's column and row are the larger of theirs), so that each pair of pieces meets in
    one cell only. No branch: its parts are unpredictable."""
    group, x0, y0, x1, y1, column, row = entries
    return (
        (group[v] != group[u])
        & (x0[v] <= x1[u])
        & (x0[u] <= x1[v])
        & (y0[v] <= y1[u])
        & (y0[u] <= y1[v])
        & (max(column[u], column[v]) == cell[0])
        & (max(row[u], row[v]) == cell[1])
    )


@njit(cache=True, nogil=True, inline="always")
def _cell_partners(
    run: int,
    stop: int,
    cell: tuple[int, int],
    entries: _Entries,
    partners: np.ndarray,
    start: np.ndarray,
    found: np.ndarray,
) -> None:
    """For entries ``run..stop-1`` of ``cell``: how many later entries each meets
    (:func:`_meet`), into ``partners``; or, when ``found`` is not empty, which ones, into
    ``found[start[u]:start[u] + partners[u]]`` for each entry ``u``."""
    group = entries[0]
    write = len(found) > 0
    # Entries keep the segments' order within a cell, so a group's entries there are usually
    # one run: each entry is paired from the end of its run on.
    group_end = stop
    for u in range(stop - 1, run - 1, -1):
        if u + 1 < stop and group[u + 1] != group[u]:
            group_end = u + 1
        if not write:
            total = 0
            for v in range(group_end, stop):
                total += _meet(u, v, cell, entries)
            partners[u] = total
        elif partners[u] > 0:
            slot = start[u]
            for v in range(group_end, stop):
                if _meet(u, v, cell, entries):
                    found[slot] = v
                    slot += 1


@njit(cache=True, nogil=True)
def _distinct(keys: np.ndarray) -> np.ndarray:
    """The distinct values of ``keys`` (non-negative), in order of first appearance: an
    open-addressing hash set at most half full, no sort."""
    bits = 4
    while (1 << bits) < 2 * len(keys):
        bits += 1
    table = np.full(1 << bits, -1, dtype=np.int64)
    out, n_out = np.empty(len(keys), dtype=np.int64), 0
    for key in keys:
        slot = _hash(key, bits)
        while table[slot] != -1 and table[slot] != key:
            slot = (slot + 1) & ((1 << bits) - 1)
        if table[slot] == -1:
            table[slot] = key
            out[n_out] = key
            n_out += 1
    return out[:n_out]


@njit(cache=True, nogil=True, inline="always")
def _hash(key: int, bits: int) -> np.int64:
    """A slot of a table of ``2**bits`` for ``key``: the top bits of the key times 2^64 / golden
    ratio (Fibonacci hashing), which spreads keys that differ in any of their bits."""
    product = np.uint64(key) * np.uint64(0x9E3779B97F4A7C15)
    return np.int64(product >> np.uint64(64 - bits))


_KEY_ROWS = 1 << 31  # cell keys: column * _KEY_ROWS + row (the cell's floor keeps both below)


@njit(cache=True, nogil=True)
def _cell_entries(
    pieces: _Pieces, origin: tuple[float, float], cell: float
) -> tuple[np.ndarray, np.ndarray]:
    """(piece, cell key) for every cell each piece's box meets (a piece spans one cell at most,
    plus the tolerance, so a few), in piece order. Pieces are numbered in 32 bits: memory is
    what this costs most (fresh pages fault in one by one)."""
    n_pieces = len(pieces[0])
    total = 0
    for p in range(n_pieces):
        columns, rows, _, _ = _cells_met(p, pieces, origin, cell)
        total += columns * rows
    piece = np.empty(total, dtype=np.int32)
    key = np.empty(total, dtype=np.int64)
    k = 0
    for p in range(n_pieces):
        columns, rows, cx, cy = _cells_met(p, pieces, origin, cell)
        for i in range(columns):
            for j in range(rows):
                piece[k], key[k] = p, (cx + i) * _KEY_ROWS + cy + j
                k += 1
    return piece, key


@njit(cache=True, nogil=True, inline="always")
def _cells_met(
    p: int, pieces: _Pieces, origin: tuple[float, float], cell: float
) -> tuple[int, int, int, int]:
    """How many columns and rows of cells piece ``p``'s box meets, and its first cell's column
    and row."""
    _, x0, y0, x1, y1 = pieces
    cx0 = int(np.floor((x0[p] - origin[0]) / cell))
    cy0 = int(np.floor((y0[p] - origin[1]) / cell))
    cx1 = int(np.floor((x1[p] - origin[0]) / cell))
    cy1 = int(np.floor((y1[p] - origin[1]) / cell))
    return cx1 - cx0 + 1, cy1 - cy0 + 1, cx0, cy0


@njit(cache=True, nogil=True)
def _by_cell(key: np.ndarray) -> np.ndarray:
    """A stable order (32-bit indices) of the entries that brings equal keys together: a
    counting sort by a hash of the key (as many buckets as entries, give or take a factor of
    two, so few keys share one), then the buckets holding several keys sorted by key."""
    bits = 1
    while (1 << bits) < len(key):
        bits += 1
    # end[b] counts bucket b's entries, then becomes its end as the entries are placed.
    end = np.zeros(1 << bits, dtype=np.int64)
    for e in range(len(key)):
        end[_hash(key[e], bits)] += 1
    total = 0
    for b in range(1 << bits):
        total, end[b] = total + end[b], total
    order = np.empty(len(key), dtype=np.int32)
    for e in range(len(key)):
        slot = _hash(key[e], bits)
        order[end[slot]] = e
        end[slot] += 1
    lo = 0
    for b in range(1 << bits):
        hi = end[b]
        mixed = False
        for e in range(lo + 1, hi):
            mixed |= key[order[e]] != key[order[lo]]
        if mixed:
            entries = order[lo:hi]
            order[lo:hi] = entries[np.argsort(key[entries], kind="mergesort")]
        lo = hi
    return order


@njit(cache=True, nogil=True)
def _cell_pieces(
    ax: np.ndarray, ay: np.ndarray, bx: np.ndarray, by: np.ndarray, cell: float, tol: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The segments cut into pieces spanning at most ``cell`` in x and y: per piece, its
    segment and its box widened by ``tol`` (x0, y0, x1, y1)."""
    count = np.empty(len(ax), dtype=np.int64)
    for s in range(len(ax)):
        extent = max(abs(bx[s] - ax[s]), abs(by[s] - ay[s]))
        count[s] = max(int(np.ceil(extent / cell)), 1)
    total = count.sum()
    seg = np.empty(total, dtype=np.int64)
    x0, y0 = np.empty(total), np.empty(total)
    x1, y1 = np.empty(total), np.empty(total)
    p = 0
    for s in range(len(ax)):
        m = count[s]
        for k in range(m):
            px0, py0 = segment_point(ax[s], ay[s], bx[s], by[s], k / m)
            px1, py1 = segment_point(ax[s], ay[s], bx[s], by[s], (k + 1) / m)
            seg[p] = s
            x0[p], y0[p] = min(px0, px1) - tol, min(py0, py1) - tol
            x1[p], y1[p] = max(px0, px1) + tol, max(py0, py1) + tol
            p += 1
    return seg, x0, y0, x1, y1
