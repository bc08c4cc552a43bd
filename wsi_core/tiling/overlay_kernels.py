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
