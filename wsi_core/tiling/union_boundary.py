"""The boundary of the union of polygons as oriented segments, for the coverage kernel.

Everything is at level 0 (level-0 pixels). The result is a set of straight segments, each
oriented with the union on its left in the sense of the shoelace formula (so that the sum of
``∫ x dy`` over them is the union's area), that together form closed curves: consecutive
segments share their endpoint exactly.

Polygons whose boxes meet no other polygon's box are their own union: their edges are taken as
they are. Where polygons overlap, each edge is cut where edges of other polygons cross it, and a
piece is kept when it lies inside no other polygon. Whether it does is counted along each ring:
the number of other polygons holding the ring's first vertex (one point-in-polygon test per
ring), plus one for every crossing into another polygon and minus one for every crossing out of
one. That takes work in proportion to the edges and their crossings, not to the polygons'
overlap areas, and no overlay.

Where edges of different polygons touch or run along each other (shared edges, duplicated
annotations, a vertex on another polygon's edge) those counts would hinge on rounding, so every
group of polygons linked by overlapping boxes that holds such a contact is left to GEOS instead,
as is any group whose counts do not add up: GEOS's coverage check passes the polygons that only
share edges (a tessellation of cells) as they are, and GEOS unions the others.

The crossings are found polygon pair by polygon pair (:mod:`~wsi_core.tiling.edge_crossings`);
the loops over them, the cut pieces and the ring starts are compiled by numba; the rest is
NumPy on whole columns.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import shapely
from numba import njit

from wsi_core.geometry import explode_polygons
from wsi_core.segments import Segments
from wsi_core.tiling.edge_crossings import Crossings, pair_crossings
from wsi_core.tiling.ragged import connected_groups, group_bounds


class _RingEdges(NamedTuple):
    """The edges of polygons' rings in ring order, zero-length edges left out."""

    segments: Segments
    ring: np.ndarray  # ring of each edge (rings numbered part by part)
    part: np.ndarray  # polygon of each edge
    weight: np.ndarray  # +1 where the polygon lies left of the edge (shoelace sense), else -1
    ring_first: np.ndarray  # first edge of each ring
    ring_part: np.ndarray  # polygon of each ring


def union_boundary(parts: np.ndarray, tol: float, by_geos: bool = False) -> Segments:
    """Oriented segments (level 0) bounding the union of ``parts`` (valid Polygons, level 0).

    ``tol`` (level-0 pixels) is how close edges of different polygons may come before their
    group is unioned by GEOS; it must exceed the rounding of coordinate differences. With
    ``by_geos`` every overlapping group is unioned by GEOS.
    """
    if len(parts) == 0:
        return Segments(*(np.empty(0),) * 4)
    edges = _ring_edges(parts)
    boxes = shapely.bounds(parts)
    near = _near_parts(parts)
    group, alone = _overlap_groups(len(parts), near)
    failed = np.zeros(group.max() + 1, dtype=bool)
    failed[group[~alone]] = by_geos
    live = ~alone & ~failed[group]
    shared = np.flatnonzero(live[edges.part])
    crossings, touching = _crossings(edges, near, live, tol)
    failed[group[touching]] = True
    cuts = _Cuts(edges, shared, crossings, _ring_start_counts(edges, near, boxes))
    outside, unsure = cuts.outside_pieces(~failed[group], tol)
    if np.any(~failed[group[unsure]]):  # rare: take those groups' pieces out again
        failed[group[unsure]] = True
        outside, _ = cuts.outside_pieces(~failed[group], tol)
    by_union = np.flatnonzero(failed[group])
    alone_edges = alone[edges.part]
    return _concat(
        _oriented(edges.segments.take(alone_edges), edges.weight[alone_edges]),
        outside,
        _geos_boundary(parts[by_union], tol, whole=by_geos),
    )


def _ring_edges(parts: np.ndarray) -> _RingEdges:
    """The rings' edges of ``parts``, with each ring's orientation weight."""
    if np.any(shapely.get_num_interior_rings(parts)):
        rings, ring_part = shapely.get_rings(parts, return_index=True)
    else:  # each polygon's coordinates are its one ring's: no ring objects to make
        rings, ring_part = parts, np.arange(len(parts))
    ring_start = np.r_[0, np.cumsum(shapely.get_num_coordinates(rings))]
    columns = _edges_of_rings(shapely.get_coordinates(rings), ring_start, ring_part)
    ax, ay, bx, by, ring, weight, ring_first = columns
    return _RingEdges(
        Segments(ax, ay, bx, by), ring, ring_part[ring], weight, ring_first, ring_part
    )


@njit(cache=True, nogil=True)
def _edges_of_rings(
    xy: np.ndarray, ring_start: np.ndarray, ring_part: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The edges of closed rings ``xy[ring_start[r]:ring_start[r + 1]]`` (``(N, 2)``
    coordinates, each ring's first vertex repeated last; a polygon's rings in ``ring_part``
    order, its exterior first), with zero-length edges left out: (ax, ay, bx, by, ring,
    weight, ring_first) as in :class:`_RingEdges`, ``ring_first`` -1 for a ring with no
    edge."""
    n_rings = len(ring_start) - 1
    m = max(len(xy) - n_rings, 0)
    ax, ay, bx, by = np.empty(m), np.empty(m), np.empty(m), np.empty(m)
    ring = np.empty(m, dtype=np.int64)
    weight = np.empty(m)
    ring_first = np.full(n_rings, -1, dtype=np.int64)
    k = 0
    for r in range(n_rings):
        start, stop = ring_start[r], ring_start[r + 1]
        # Shoelace about the ring's first vertex keeps the sign reliable far from the origin.
        ox, oy = xy[start, 0], xy[start, 1]
        twice_area = 0.0
        first = k
        for v in range(start, stop - 1):
            x, y, next_x, next_y = xy[v, 0], xy[v, 1], xy[v + 1, 0], xy[v + 1, 1]
            if next_x != x or next_y != y:
                ax[k], ay[k], bx[k], by[k], ring[k] = x, y, next_x, next_y, r
                twice_area += (x - ox) * (next_y - oy) - (next_x - ox) * (y - oy)
                k += 1
        if k > first:
            ring_first[r] = first
        exterior = r == 0 or ring_part[r] != ring_part[r - 1]
        weight[first:k] = np.sign(twice_area) * (1.0 if exterior else -1.0)
    return ax[:k], ay[:k], bx[:k], by[:k], ring[:k], weight[:k], ring_first


def _near_parts(parts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs ``(a, b)`` of different polygons whose boxes meet (closed: touching counts), both
    ways round. Polygons whose boxes do not meet cannot overlap, so their union is both."""
    a, b = shapely.STRtree(parts).query(parts)
    other = a != b
    return a[other], b[other]


def _overlap_groups(n: int, near: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per polygon of ``n``: its group (polygons linked by the ``near`` pairs), and whether it
    is alone in its group."""
    group = connected_groups(n, *near)
    alone = np.bincount(group, minlength=n)[group] == 1
    return group, alone


def _crossings(
    edges: _RingEdges, near: tuple[np.ndarray, np.ndarray], live: np.ndarray, tol: float
) -> tuple[Crossings, np.ndarray]:
    """Crossings among the edges of the ``live`` polygons (a mask) that are ``near`` each other
    (pairs from :func:`_near_parts`), and the polygons whose edges touch another polygon's, or
    crowd together, so that crossings cannot be decided reliably."""
    a, b = near
    pair = (a < b) & live[a]
    n_parts = len(live)
    first, _ = group_bounds(edges.part, n_parts)
    part_first = np.r_[first, len(edges.part)]
    found = pair_crossings(edges.segments, edges.weight, part_first, (a[pair], b[pair]), tol)
    return found.crossings, np.r_[edges.part[found.touching], found.crowded]


def _ring_start_counts(
    edges: _RingEdges, near: tuple[np.ndarray, np.ndarray], boxes: np.ndarray
) -> np.ndarray:
    """Per ring: how many other polygons hold its first vertex, counted among the polygons
    ``near`` its own (pairs from :func:`_near_parts`; ``boxes`` are the polygons' bounds). A
    vertex on another polygon's boundary may count either way: its edges then touch that
    polygon's, which sends their group to GEOS."""
    ax, ay, bx, by = (np.ascontiguousarray(v, dtype=np.float64) for v in edges.segments)
    n_parts = int(edges.ring_part.max()) + 1 if len(edges.ring_part) else 0
    part_edges, _ = group_bounds(edges.part, n_parts)
    part_rings, _ = group_bounds(edges.ring_part, n_parts)
    return _count_holders(
        *near,
        np.r_[part_edges, len(ax)],
        np.r_[part_rings, len(edges.ring_first)],
        edges.ring_first,
        ax,
        ay,
        bx,
        by,
        *(np.ascontiguousarray(v) for v in boxes.T),
    )


@njit(cache=True, nogil=True)
def _count_holders(
    first: np.ndarray,
    second: np.ndarray,
    part_edges: np.ndarray,
    part_rings: np.ndarray,
    ring_first: np.ndarray,
    ax: np.ndarray,
    ay: np.ndarray,
    bx: np.ndarray,
    by: np.ndarray,
    x0: np.ndarray,
    y0: np.ndarray,
    x1: np.ndarray,
    y1: np.ndarray,
) -> np.ndarray:
    """:func:`_ring_start_counts` on columns: for each pair ``(first[k], second[k])``, the rings
    of polygon ``first[k]`` whose first vertex polygon ``second[k]`` holds get one more. The
    edges of polygon p are ``part_edges[p]..part_edges[p + 1]``, its rings ``part_rings[p]..``
    likewise, its box ``[x0[p], x1[p]] x [y0[p], y1[p]]``; a point is held where a ray to its
    right crosses the polygon's edges an odd number of times (each edge taken as holding its
    lower end, not its upper), which a point outside the box never is."""
    count = np.zeros(len(ring_first), dtype=np.int64)
    for k in range(len(first)):
        p, q = first[k], second[k]
        for r in range(part_rings[p], part_rings[p + 1]):
            if ring_first[r] < 0:
                continue
            px, py = ax[ring_first[r]], ay[ring_first[r]]
            if px < x0[q] or px > x1[q] or py < y0[q] or py > y1[q]:
                continue
            inside = False
            for e in range(part_edges[q], part_edges[q + 1]):
                if (ay[e] > py) != (by[e] > py):
                    x = ax[e] + (py - ay[e]) * (bx[e] - ax[e]) / (by[e] - ay[e])
                    inside ^= px < x
            count[r] += inside
    return count


class _Cuts:
    """The ``shared`` edges (indices, ascending: ring by ring) cut where other polygons' edges
    cross them, each piece with the count of other polygons holding it: the count at its
    ring's first vertex (``start_count``), then plus each crossing's delta along the ring."""

    def __init__(
        self, edges: _RingEdges, shared: np.ndarray, crossings: Crossings, start_count: np.ndarray
    ) -> None:
        ax, ay, bx, by = (np.ascontiguousarray(v, dtype=np.float64) for v in edges.segments)
        self.columns = (ax, ay, bx, by, shared, edges.ring, start_count)
        self.crossings = crossings
        self.first, self.order = _by_edge(shared, crossings.edge, crossings.t, len(edges.ring))
        self.edges = edges

    def outside_pieces(self, live: np.ndarray, tol: float) -> tuple[Segments, np.ndarray]:
        """The pieces of the polygons ``live`` (a mask) that no other polygon holds, turned so
        that their polygon lies on their left (the union's boundary there); and the polygons
        whose counts cannot be trusted, whose group GEOS must union instead: a ring's count
        falls below zero or does not come back to where it started (crossings were missed or
        misjudged), or a piece is within ``tol`` of a point (crossings that close along an
        edge, as where three edges meet at about one point, may be ordered by rounding,
        leaving gaps of a few ulps)."""
        _, _, delta, x, y = self.crossings
        keep = live[self.edges.part]
        weight = self.edges.weight
        *found, unsure = _walk(
            *self.columns, self.first, self.order, delta, x, y, keep, weight, tol
        )
        return Segments(*found), self.edges.ring_part[unsure]


@njit(cache=True, nogil=True)
def _by_edge(
    shared: np.ndarray, edge: np.ndarray, t: np.ndarray, n_edges: int
) -> tuple[np.ndarray, np.ndarray]:
    """The crossings ``(edge, t)`` grouped by edge in the order of ``shared``, and along each
    edge by ``t`` (ties in their given order): the crossings of ``shared[k]`` are
    ``order[first[k]:first[k + 1]]``."""
    slot = np.full(n_edges, -1, dtype=np.int64)
    slot[shared] = np.arange(len(shared))
    # A stable counting sort by edge, then insertion sort by t within each edge.
    first = np.zeros(len(shared) + 1, dtype=np.int64)
    for c in range(len(edge)):
        first[slot[edge[c]] + 1] += 1
    first = np.cumsum(first)
    fill = first[:-1].copy()
    order = np.empty(len(edge), dtype=np.int64)
    for c in range(len(edge)):
        order[fill[slot[edge[c]]]] = c
        fill[slot[edge[c]]] += 1
    for k in range(len(shared)):
        for i in range(first[k] + 1, first[k + 1]):  # few crossings an edge
            c = order[i]
            j = i
            while j > first[k] and t[order[j - 1]] > t[c]:
                order[j] = order[j - 1]
                j -= 1
            order[j] = c
    return first, order


@njit(cache=True, nogil=True)
def _walk(
    ax: np.ndarray,
    ay: np.ndarray,
    bx: np.ndarray,
    by: np.ndarray,
    shared: np.ndarray,
    ring: np.ndarray,
    start_count: np.ndarray,
    first: np.ndarray,
    order: np.ndarray,
    delta: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    keep: np.ndarray,
    weight: np.ndarray,
    tol: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:meth:`_Cuts.outside_pieces` on columns, in one walk along the rings: the pieces of the
    ``shared`` edges that are ``keep`` with a count of zero, each from its start to its end,
    reversed where the edge's ``weight`` is negative; and per ring (all rings of the edges)
    whether its counts cannot be trusted."""
    n = len(shared) + len(delta)
    out_ax, out_ay, out_bx, out_by = np.empty(n), np.empty(n), np.empty(n), np.empty(n)
    unsure = np.zeros(len(start_count), dtype=np.bool_)
    found = 0
    running = 0
    for k in range(len(shared)):
        e = shared[k]
        r = ring[e]
        if k == 0 or r != ring[shared[k - 1]]:
            running = start_count[r]
        px, py = ax[e], ay[e]
        for i in range(first[k], first[k + 1] + 1):
            last = i == first[k + 1]
            qx, qy = (bx[e], by[e]) if last else (x[order[i]], y[order[i]])
            unsure[r] |= (qx - px) ** 2 + (qy - py) ** 2 <= tol * tol
            if running == 0 and keep[e]:
                flip = weight[e] < 0
                out_ax[found], out_ay[found] = (qx, qy) if flip else (px, py)
                out_bx[found], out_by[found] = (px, py) if flip else (qx, qy)
                found += 1
            if not last:
                running += int(delta[order[i]])
                unsure[r] |= running < 0
                px, py = qx, qy
        if k == len(shared) - 1 or ring[shared[k + 1]] != r:
            unsure[r] |= running != start_count[r]
    return out_ax[:found], out_ay[:found], out_bx[:found], out_by[:found], unsure


def _oriented(segments: Segments, weight: np.ndarray) -> Segments:
    """``segments`` turned so that the polygon lies on their left (``weight`` -1: reversed)."""
    flip = weight < 0
    ax, ay, bx, by = segments
    return Segments(
        np.where(flip, bx, ax),
        np.where(flip, by, ay),
        np.where(flip, ax, bx),
        np.where(flip, ay, by),
    )


def _geos_boundary(parts: np.ndarray, tol: float, whole: bool) -> Segments:
    """Oriented boundary of the union of ``parts`` (level 0), from GEOS.

    Unless ``whole``, GEOS's coverage check first finds the polygons that overlap none of the
    others (they may share edges exactly, as the cells of a tessellation do): those are their
    own union, their shared edges cancel out in every sum taken over the boundary, and only the
    rest are unioned. A polygon with no flagged edge can still hold one that overlaps it wholly
    inside, so the neighbours of flagged polygons (boxes within ``tol``) are unioned too.
    """
    if len(parts) == 0:
        return Segments(*(np.empty(0),) * 4)
    overlapping = np.ones(len(parts), dtype=bool)
    if not whole:
        overlapping = ~shapely.is_empty(shapely.coverage_invalid_edges(parts))
        x0, y0, x1, y1 = shapely.bounds(parts[overlapping]).T
        _, near = shapely.STRtree(parts).query(shapely.box(x0 - tol, y0 - tol, x1 + tol, y1 + tol))
        overlapping[near] = True
    union = explode_polygons(np.array([shapely.union_all(parts[overlapping])], dtype=object))
    edges = _ring_edges(np.concatenate([parts[~overlapping], union]))
    return _oriented(edges.segments, edges.weight)


def _concat(*sets: Segments) -> Segments:
    """One set of segments from several."""
    return Segments(*(np.concatenate(columns) for columns in zip(*sets, strict=True)))
