"""Compiled loops of the overlay counts (numba): one pass over a region read of the overlay
level for each step that NumPy would split into several passes and temporaries.

Planes are 2-D arrays of overlay-level pixels (a region read, or its value codes).
Imported only where they run: numba costs 120 MB and a third of a second to import.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# Rows added into one 16-bit count per column before the counts are flushed into their blocks:
# the most a uint16 holds.
STRIP_ROWS = 65535


@njit(cache=True, nogil=True)
def extrema(plane: np.ndarray) -> tuple[int, int]:
    """The least and greatest value of a non-empty 2-D integer plane, in one pass."""
    low = high = plane[0, 0]
    for y in range(plane.shape[0]):
        row = plane[y]
        for x in range(plane.shape[1]):
            low = min(low, row[x])
            high = max(high, row[x])
    return low, high


@njit(cache=True, nogil=True)
def any_between(plane: np.ndarray, low: np.integer, high: np.integer) -> bool:
    """Whether a pixel of the 2-D plane lies strictly between ``low`` and ``high`` (its
    extrema: then it holds a third value). Row by row, each row's test without a branch (so
    it is vectorised), stopping at the first row that has one."""
    for y in range(plane.shape[0]):
        row = plane[y]
        between = False
        for x in range(plane.shape[1]):
            between |= (row[x] > low) & (row[x] < high)
        if between:
            return True
    return False


@njit(cache=True, nogil=True)
def code_two_values(plane: np.ndarray) -> tuple[int, np.integer, np.integer]:
    """Overwrite a non-empty 2-D plane of at most two values with its 0/1 codes (1 where the
    greater), in one pass, row by row; return how many values it holds (1 or 2) and the
    least and greatest. A plane with a third value is put back as it was and gives 3.

    The values are the first pixel's and the first other one met: rows holding the first
    value alone are coded 0 (their one vectorised test finds no other) and set to 1 if the
    other value turns out to be the lesser. Each row is then tested for a pixel that is
    neither value and coded while it is in cache: one read of the plane, where its extrema
    first would be a second."""
    first = plane[0, 0]
    other = first
    for y in range(plane.shape[0]):
        row = plane[y]
        if other == first:
            if not _differs(row, first):
                row[:] = 0
                continue
            other = _first_other(row, first)
            if other < first:  # the rows coded so far hold the greater value
                plane[:y] = 1
        low, high = min(first, other), max(first, other)
        third = False
        for x in range(row.size):
            third |= (row[x] != low) & (row[x] != high)
        if third:
            _decode_rows(plane, y, low, high)
            return 3, low, high
        for x in range(row.size):
            row[x] = row[x] == high
    return (1 if other == first else 2), min(first, other), max(first, other)


@njit(cache=True, nogil=True)
def _differs(row: np.ndarray, value: np.integer) -> bool:
    """Whether a pixel of ``row`` is not ``value`` (without a branch: vectorised)."""
    differs = False
    for x in range(row.size):
        differs |= row[x] != value
    return differs


@njit(cache=True, nogil=True)
def _first_other(row: np.ndarray, value: np.integer) -> np.integer:
    """The first pixel of ``row`` that is not ``value`` (the caller knows there is one)."""
    for x in range(row.size):
        if row[x] != value:
            return row[x]
    return value


@njit(cache=True, nogil=True)
def _decode_rows(plane: np.ndarray, stop: int, low: np.integer, high: np.integer) -> None:
    """Put back the values of the coded rows ``plane[:stop]``: 1 -> ``high``, 0 -> ``low``."""
    for y in range(stop):
        row = plane[y]
        for x in range(row.size):
            row[x] = high if row[x] else low


@njit(cache=True, nogil=True)
def clip_ranges(
    origin: np.ndarray, start: np.ndarray, stop: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Window-relative ranges ``[start, stop)`` placed at the window origins ``origin``
    (region-relative overlay-level pixels), clipped to the region's ``[0, size]``: the
    ranges' first and last-plus-one pixels, never reversed (an empty range stays empty)."""
    first = np.empty(origin.size, dtype=np.int64)
    last = np.empty(origin.size, dtype=np.int64)
    for i in range(origin.size):
        first[i] = min(max(origin[i] + start[i], 0), size)
        last[i] = max(min(max(origin[i] + stop[i], 0), size), first[i])
    return first, last


@njit(cache=True, nogil=True)
def range_counts(
    present: np.ndarray, x0: np.ndarray, x1: np.ndarray, y0: np.ndarray, y1: np.ndarray
) -> np.ndarray:
    """Per range ``i``, how many pixels of ``present`` (0/1 ``uint8``, region pixels) are set
    in ``present[y0[i]:y1[i], x0[i]:x1[i]]`` (region-relative overlay-level pixels, within
    the plane, ``x0 <= x1`` and ``y0 <= y1``).

    A summed-area table over the blocks between every range's edges (:func:`block_sums`),
    four look-ups a range: each pixel is touched once, and the table is the size of the tile
    grid, not of the overlay level."""
    cuts_x, ix0, ix1 = _cuts(x0, x1, present.shape[1])
    cuts_y, iy0, iy1 = _cuts(y0, y1, present.shape[0])
    blocks = block_sums(present, cuts_y, cuts_x)
    table = np.zeros((cuts_y.size, cuts_x.size), dtype=np.int64)
    for j in range(blocks.shape[0]):
        for i in range(blocks.shape[1]):
            table[j + 1, i + 1] = blocks[j, i] + table[j, i + 1] + table[j + 1, i] - table[j, i]
    counts = np.empty(x0.size, dtype=np.int64)
    for i in range(x0.size):
        a, b, c, d = iy0[i], iy1[i], ix0[i], ix1[i]
        counts[i] = table[b, d] - table[a, d] - table[b, c] + table[a, c]
    return counts


@njit(cache=True, nogil=True)
def _cuts(
    start: np.ndarray, stop: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every range boundary along one axis of ``size`` pixels, 0 and ``size`` included, in
    order and once each; and each range's ``start`` and ``stop`` as indices into them. Marks
    on the axis instead of a sort: the running count of marks is each boundary's index."""
    marked = np.zeros(size + 1, dtype=np.bool_)
    marked[0] = marked[size] = True
    for i in range(start.size):
        marked[start[i]] = marked[stop[i]] = True
    index = np.cumsum(marked) - 1
    return np.flatnonzero(marked), index[start], index[stop]


@njit(cache=True, nogil=True)
def block_sums(present: np.ndarray, cuts_y: np.ndarray, cuts_x: np.ndarray) -> np.ndarray:
    """``blocks[j, i]``: how many pixels of ``present`` (0/1 ``uint8``, region pixels) are set
    between rows ``cuts_y[j], cuts_y[j + 1]`` and columns ``cuts_x[i], cuts_x[i + 1]``.

    Rows are added into one ``uint16`` count per column (a loop that is vectorised, with four
    times the pixels per instruction of 64-bit counts), which are added up per block at the
    end of each strip and every ``STRIP_ROWS`` rows, before they can wrap."""
    width = present.shape[1]
    blocks = np.zeros((cuts_y.size - 1, cuts_x.size - 1), dtype=np.int64)
    columns = np.zeros(width, dtype=np.uint16)
    for j in range(cuts_y.size - 1):
        for start in range(cuts_y[j], cuts_y[j + 1], STRIP_ROWS):
            columns[:] = 0
            for y in range(start, min(start + STRIP_ROWS, cuts_y[j + 1])):
                row = present[y]
                for x in range(width):
                    columns[x] += row[x]
            for i in range(cuts_x.size - 1):
                total = 0
                for x in range(cuts_x[i], cuts_x[i + 1]):
                    total += columns[x]
                blocks[j, i] += total
    return blocks


@njit(cache=True, nogil=True)
def placement_counts(
    codes: np.ndarray,
    box: np.ndarray,
    top: np.ndarray,
    left: np.ndarray,
    mask: np.ndarray,
    box_mask: np.ndarray,
    in_box: bool,
) -> tuple[np.ndarray, int]:
    """Per-value counts ``(len(top), K)`` of the pixels of ``codes`` (value codes of a region,
    overlay-level pixels) under the ROI mask ``mask`` (bool, window-sized) placed at each
    window origin ``(top, left)`` (region-relative); pixels off the region are not counted.
    Also how many windows had their pixels gathered.

    ``box`` holds each window's counts over ``box_mask`` (bool, window-sized), which holds
    the mask when ``in_box``. Then a window whose box holds one value holds only that value
    under the mask (its count is the mask's size on the region, nothing gathered), and the
    others take the box pixels outside the mask off the box counts when those are fewer than
    the mask's own. Otherwise the mask's own pixels are counted."""
    h, w = codes.shape
    height, width = mask.shape
    inside_y, inside_x = np.nonzero(mask)
    outside_y, outside_x = np.nonzero(box_mask & ~mask)
    subtract = in_box and outside_y.size < inside_y.size
    dy, dx = (outside_y, outside_x) if subtract else (inside_y, inside_x)
    sign = -1 if subtract else 1
    counts = np.zeros(box.shape, dtype=np.int64)
    gathered = 0
    for i in range(top.size):
        t, s = top[i], left[i]
        whole = t >= 0 and s >= 0 and t + height <= h and s + width <= w
        only = _only_value(box, i) if in_box else -1
        if only >= 0:
            size = inside_y.size if whole else _on_region(inside_y, inside_x, t, s, h, w)
            counts[i, only] = size
            continue
        gathered += 1
        if subtract:
            for j in range(box.shape[1]):
                counts[i, j] = box[i, j]
        if box.shape[1] == 2:  # 0/1 codes: the ones by their sum, the zeros by the rest
            ones, n = _sum_codes(codes, t, s, dy, dx, whole)
            counts[i, 0] += sign * (n - ones)
            counts[i, 1] += sign * ones
        else:
            _add_codes(counts, i, codes, t, s, dy, dx, whole, sign)
    return counts, gathered


@njit(cache=True, nogil=True)
def _sum_codes(
    codes: np.ndarray, top: int, left: int, dy: np.ndarray, dx: np.ndarray, whole: bool
) -> tuple[int, int]:
    """The sum of ``codes`` at the offsets ``(dy, dx)`` placed at ``(top, left)``, and how
    many of them fall on the region (all when ``whole``, else tested). A sum, not a count
    per value: no store and reload of a count per pixel."""
    h, w = codes.shape
    total = n = 0
    for p in range(dy.size):
        y, x = top + dy[p], left + dx[p]
        if whole or (0 <= y < h and 0 <= x < w):
            total += codes[y, x]
            n += 1
    return total, n


@njit(cache=True, nogil=True)
def _add_codes(
    counts: np.ndarray,
    i: int,
    codes: np.ndarray,
    top: int,
    left: int,
    dy: np.ndarray,
    dx: np.ndarray,
    whole: bool,
    sign: int,
) -> None:
    """Add ``sign`` to ``counts[i, code]`` for the code at each offset ``(dy, dx)`` placed at
    ``(top, left)`` that falls on the region (all when ``whole``, else tested)."""
    h, w = codes.shape
    for p in range(dy.size):
        y, x = top + dy[p], left + dx[p]
        if whole or (0 <= y < h and 0 <= x < w):
            counts[i, codes[y, x]] += sign


@njit(cache=True, nogil=True)
def _only_value(box: np.ndarray, i: int) -> int:
    """The column of the one non-zero count of ``box[i]``; -1 when there are none or several."""
    only = -1
    for j in range(box.shape[1]):
        if box[i, j]:
            if only >= 0:
                return -1
            only = j
    return only


@njit(cache=True, nogil=True)
def _on_region(dy: np.ndarray, dx: np.ndarray, top: int, left: int, h: int, w: int) -> int:
    """How many of the offsets ``(dy, dx)``, placed at ``(top, left)``, fall on an ``(h, w)``
    region (overlay-level pixels)."""
    n = 0
    for p in range(dy.size):
        n += 0 <= top + dy[p] < h and 0 <= left + dx[p] < w
    return n
