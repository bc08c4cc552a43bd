"""A fast, conservative validity check for polygons without holes (compiled by numba).

GEOS's ``is_valid`` builds a topology graph for every polygon, which costs about a quarter of a
microsecond a vertex: on 300 annotations of 60 vertices that is most of what the coverage
kernel spends at level 1. A polygon without holes is valid exactly when its ring is simple:
at least three edges of non-zero length, no two edges meeting except consecutive ones at their
shared vertex, and no consecutive pair folding back along itself. :func:`clearly_valid` proves
that with room to spare, edge pair by edge pair, and leaves every polygon it cannot prove
(holes, non-finite coordinates, edges that come near each other, or a ring whose edges overlap
in x too often to sweep cheaply) to GEOS: it may say "not proven" of a valid polygon, never
"valid" of an invalid one.

Coordinates are whatever frame the polygons are in (level-0 pixels in the kernels).
"""

from __future__ import annotations

import numpy as np
import shapely
from numba import njit

from wsi_core.segments import end_distance, point_segment_distance

# Edges closer than this many times the ring's largest coordinate (in absolute value) count as
# touching: far above the rounding of the distances computed here (a few ulps of that scale).
_REL_TOL = 1e-9

# A ring whose sweep tests more edge pairs than this many per edge is left to GEOS, which stays
# O(n log n) where the sweep would grow with the square of the edges.
_PAIRS_PER_EDGE = 64


def clearly_valid(polygons: np.ndarray) -> np.ndarray:
    """Per Polygon of the object array ``polygons`` (Polygons only): True where it has no holes
    and its ring is proven simple (so GEOS would call it valid), False where that is not
    proven."""
    proven = np.zeros(len(polygons), dtype=bool)
    holeless = np.flatnonzero(shapely.get_num_interior_rings(polygons) == 0)
    if len(holeless) == 0:
        return proven
    # A holeless polygon's coordinates are its ring's, so no geometry object is made per ring.
    coords = shapely.get_coordinates(polygons[holeless])
    offsets = np.r_[0, np.cumsum(shapely.get_num_coordinates(polygons[holeless]))]
    proven[holeless] = _simple_rings(coords, offsets, _REL_TOL, _PAIRS_PER_EDGE)
    return proven


@njit(cache=True, nogil=True)
def _simple_rings(
    xy: np.ndarray,
    offsets: np.ndarray,
    rel_tol: float,
    pairs_per_edge: int,
) -> np.ndarray:
    """Per closed ring ``xy[offsets[r]:offsets[r + 1]]`` (``(N, 2)`` coordinates, first vertex
    repeated last): whether it is proven simple. Its edges (zero-length ones left out) must
    number three or more, and either turn one way round one point (:func:`_star_shaped`), or
    no consecutive two may fold back and, swept in order of their least x, no other two whose
    boxes come within the tolerance may cross or come within it."""
    n_rings = len(offsets) - 1
    simple = np.zeros(n_rings, dtype=np.bool_)
    # Buffers for one ring: its edges, their order by least x, their boxes in that order.
    size = max(np.max(np.diff(offsets)), 1) if n_rings else 1
    edges = (np.empty(size), np.empty(size), np.empty(size), np.empty(size))
    ax, ay, bx, by = edges
    order = np.empty(size, dtype=np.int64)
    boxes = (np.empty(size), np.empty(size), np.empty(size), np.empty(size))
    for r in range(n_rings):
        first, stop = offsets[r], offsets[r + 1]
        m = 0
        scale = 0.0
        finite = True
        for v in range(first, stop - 1):
            x, y, next_x, next_y = xy[v, 0], xy[v, 1], xy[v + 1, 0], xy[v + 1, 1]
            finite &= np.isfinite(x) and np.isfinite(y)
            scale = max(scale, abs(x), abs(y))
            if next_x != x or next_y != y:
                ax[m], ay[m], bx[m], by[m] = x, y, next_x, next_y
                m += 1
        if m < 3 or not finite:
            continue
        tol = rel_tol * scale
        if _star_shaped(ax, ay, bx, by, m, tol):
            simple[r] = True
            continue
        if _folds(ax, ay, bx, by, m, tol):
            continue
        _sort_by_least_x(ax, bx, m, order)
        simple[r] = _sweep(edges, m, order, boxes, tol, pairs_per_edge)
    return simple


@njit(cache=True, nogil=True)
def _star_shaped(
    ax: np.ndarray, ay: np.ndarray, bx: np.ndarray, by: np.ndarray, m: int, tol: float
) -> bool:
    """Whether the ring's ``m`` edges are seen from the mean of their starts turning one way
    only, each by a clear margin (its cross product beyond ``tol`` times the ends' distances),
    and going round once: then every ray from that point meets the ring once, so the ring is
    simple. Most annotations of cells and blobs pass this in one pass; any other ring fails it
    at once and is swept.

    Going round once is counted where the ring crosses the ray to the right of the point: from
    below it to on or above it (turning left), or back (turning right). Each end's side is one
    computed value, shared by the two edges that meet there, so the count is exact."""
    cx, cy = 0.0, 0.0
    for i in range(m):
        cx += ax[i]
        cy += ay[i]
    cx, cy = cx / m, cy / m
    left = right = True
    up = down = 0
    for i in range(m):
        ux, uy, vx, vy = ax[i] - cx, ay[i] - cy, bx[i] - cx, by[i] - cy
        cross = ux * vy - uy * vx
        # Far above the rounding of the cross product, a few ulps of the coordinates' scale
        # times the ends' distances.
        margin = tol * (abs(ux) + abs(uy) + abs(vx) + abs(vy))
        left &= cross > margin
        right &= cross < -margin
        up += (uy < 0) & (vy >= 0)
        down += (uy >= 0) & (vy < 0)
    return (left and up == 1) or (right and down == 1)


@njit(cache=True, nogil=True)
def _sort_by_least_x(ax: np.ndarray, bx: np.ndarray, m: int, order: np.ndarray) -> None:
    """Fill ``order[:m]`` with the edges ``0..m-1`` sorted by their least x: a counting sort
    into ``m`` buckets of equal width, then insertion sort, which the buckets leave little to
    do (numba's argsort costs microseconds on a few dozen values)."""
    lo = np.inf
    hi = -np.inf
    for i in range(m):
        lo = min(lo, ax[i], bx[i])
        hi = max(hi, ax[i], bx[i])
    width = (hi - lo) / m if hi > lo else 1.0
    count = np.zeros(m + 1, dtype=np.int64)
    for i in range(m):
        count[min(int((min(ax[i], bx[i]) - lo) / width), m - 1) + 1] += 1
    for b in range(m):
        count[b + 1] += count[b]
    for i in range(m):
        b = min(int((min(ax[i], bx[i]) - lo) / width), m - 1)
        order[count[b]] = i
        count[b] += 1
    for k in range(1, m):
        i = order[k]
        key = min(ax[i], bx[i])
        j = k
        while j > 0 and min(ax[order[j - 1]], bx[order[j - 1]]) > key:
            order[j] = order[j - 1]
            j -= 1
        order[j] = i


@njit(cache=True, nogil=True)
def _folds(
    ax: np.ndarray, ay: np.ndarray, bx: np.ndarray, by: np.ndarray, m: int, tol: float
) -> bool:
    """Whether two consecutive edges of the ring's ``m`` edges may fold back along each other:
    the far end of one within ``tol`` of the other."""
    for i in range(m):
        j = (i + 1) % m
        ux, uy, vx, vy = bx[i] - ax[i], by[i] - ay[i], bx[j] - ax[j], by[j] - ay[j]
        # Turning by less than a right angle, both edges longer than tol: each far end is
        # nearest the shared vertex, a whole edge length away.
        if ux * vx + uy * vy >= 0 and min(ux * ux + uy * uy, vx * vx + vy * vy) > tol * tol:
            continue
        if point_segment_distance(bx[j], by[j], i, ax, ay, bx, by) <= tol:
            return True
        if point_segment_distance(ax[i], ay[i], j, ax, ay, bx, by) <= tol:
            return True
    return False


@njit(cache=True, nogil=True)
def _sweep(
    edges: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    m: int,
    order: np.ndarray,
    boxes: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    tol: float,
    pairs_per_edge: int,
) -> bool:
    """Whether no two non-consecutive edges of the ring's ``m`` ``edges`` (ax, ay, bx, by)
    meet or come within ``tol``, swept in ``order`` (by least x; ``boxes`` is a buffer for
    their boxes in that order); False too when that would take more than ``pairs_per_edge``
    box tests an edge."""
    ax, ay, bx, by = edges
    lo_x, hi_x, lo_y, hi_y = boxes
    for k in range(m):
        i = order[k]
        lo_x[k], hi_x[k] = min(ax[i], bx[i]), max(ax[i], bx[i])
        lo_y[k], hi_y[k] = min(ay[i], by[i]), max(ay[i], by[i])
    budget = pairs_per_edge * m
    for k in range(m):
        stop = k + 1
        while stop < m and lo_x[stop] <= hi_x[k] + tol:
            stop += 1
        budget -= stop - k - 1
        if budget < 0:
            return False
        for step in range(k + 1, stop):
            i, j = order[k], order[step]
            # One branch for the whole test (its parts are unpredictable); consecutive edges
            # were checked by _folds.
            near = (
                (lo_y[step] <= hi_y[k] + tol)
                & (lo_y[k] <= hi_y[step] + tol)
                & (abs(i - j) != 1)
                & (abs(i - j) != m - 1)
            )
            if near and not _apart(i, j, ax, ay, bx, by, tol):
                return False
    return True


@njit(cache=True, nogil=True)
def _apart(
    i: int, j: int, ax: np.ndarray, ay: np.ndarray, bx: np.ndarray, by: np.ndarray, tol: float
) -> bool:
    """Whether edges ``i`` and ``j`` neither cross nor come within ``tol`` of each other."""
    # Ends on both sides of the other's line, or on it, both ways: they may cross.
    if _straddles(i, j, ax, ay, bx, by) and _straddles(j, i, ax, ay, bx, by):
        return False
    return end_distance(i, j, ax, ay, bx, by) > tol


@njit(cache=True, nogil=True, inline="always")
def _straddles(
    i: int, j: int, ax: np.ndarray, ay: np.ndarray, bx: np.ndarray, by: np.ndarray
) -> bool:
    """Whether the ends of edge ``j`` do not lie strictly on one side of edge ``i``'s line."""
    rx, ry = bx[i] - ax[i], by[i] - ay[i]
    c0 = rx * (ay[j] - ay[i]) - ry * (ax[j] - ax[i])
    c1 = rx * (by[j] - ay[i]) - ry * (bx[j] - ax[i])
    return not (c0 * c1 > 0)
