"""pair_crossings against all pairs of edges: for every given pair of polygons, the crossings and
touching edges are exactly those the crossing test finds among all pairs of their edges, by
either way of pairing them (each with each, or the sweep), however little room the first call
makes; crowded pairs are reported instead of paired; and the crossings are where shapely sees
the segments cross."""

from __future__ import annotations

import numpy as np
import pytest
import shapely

import wsi_core.tiling.edge_crossings as edge_crossings_module
from wsi_core.segments import Segments
from wsi_core.tiling.edge_crossings import PairCrossings, pair_crossings

# A polygon as its closed ring of vertices: (k + 1, 2), first vertex repeated last.
Ring = np.ndarray


def _edges(rings: list[Ring]) -> tuple[Segments, np.ndarray, np.ndarray]:
    """The rings' edges grouped by ring (polygon), a weight per edge, and each polygon's first
    edge (with the end)."""
    a = np.concatenate([r[:-1] for r in rings])
    b = np.concatenate([r[1:] for r in rings])
    count = np.array([len(r) - 1 for r in rings])
    weight = np.repeat(np.where(np.arange(len(rings)) % 2 == 0, 1.0, -1.0), count)
    first = np.r_[0, np.cumsum(count)]
    return Segments(a[:, 0], a[:, 1], b[:, 0], b[:, 1]), weight, first


def _stars(seed: int, n: int, extent: float = 100.0) -> list[Ring]:
    """``n`` star-shaped rings of 5-40 vertices, radius 2-30, over an ``extent`` square."""
    rng = np.random.default_rng(seed)
    rings = []
    for _ in range(n):
        k = int(rng.integers(5, 41))
        angle = np.sort(rng.uniform(0, 2 * np.pi, k))
        radius = rng.uniform(2, 30) * rng.uniform(0.4, 1.0, k)
        centre = rng.uniform(0, extent, 2)
        ring = centre + radius[:, None] * np.c_[np.cos(angle), np.sin(angle)]
        rings.append(np.vstack([ring, ring[:1]]))
    return rings


def _comb(teeth: int, vertical: bool) -> Ring:
    """A comb of ``teeth`` long thin teeth across [0, 100]^2, so two combs at right angles
    cross each other's teeth everywhere: far more crossings than edges."""
    pitch = 100.0 / teeth
    points = [(0.0, -5.0)]
    for k in range(teeth):
        x = k * pitch
        points += [(x, 105.0), (x + pitch / 2, 105.0), (x + pitch / 2, -1.0), (x + pitch, -1.0)]
    points += [(100.0, -5.0), (0.0, -5.0)]
    ring = np.array(points)
    return ring[:, ::-1].copy() if vertical else ring


def _all_pairs(edges: Segments, first: np.ndarray, pairs: tuple[np.ndarray, np.ndarray]):
    """Every pair of an edge of ``pairs[0][k]`` and one of ``pairs[1][k]``, all ``k``."""
    e, f = [], []
    for p, q in zip(*pairs, strict=True):
        ep, fq = np.meshgrid(np.arange(first[p], first[p + 1]), np.arange(first[q], first[q + 1]))
        e.append(ep.ravel())
        f.append(fq.ravel())
    return np.concatenate(e), np.concatenate(f)


def _box_pairs(edges: Segments, first: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Polygon pairs ``p < q`` whose boxes meet."""
    x0 = np.minimum.reduceat(np.minimum(edges.ax, edges.bx), first[:-1])
    x1 = np.maximum.reduceat(np.maximum(edges.ax, edges.bx), first[:-1])
    y0 = np.minimum.reduceat(np.minimum(edges.ay, edges.by), first[:-1])
    y1 = np.maximum.reduceat(np.maximum(edges.ay, edges.by), first[:-1])
    p, q = np.triu_indices(len(x0), k=1)
    meet = (x0[p] <= x1[q]) & (x0[q] <= x1[p]) & (y0[p] <= y1[q]) & (y0[q] <= y1[p])
    return p[meet], q[meet]


def _rows(found: PairCrossings) -> tuple[set, set]:
    """The crossings as a set of rows, and the touching pairs as a set."""
    c = found.crossings
    rows = set(zip(*(v.tolist() for v in c), strict=True))
    assert len(rows) == len(c.edge), "a crossing was listed twice"
    touching = found.touching.reshape(-1, 2)
    return rows, {tuple(sorted(pair)) for pair in touching.tolist()}


def _oracle(edges, weight, first, pairs, tol) -> tuple[set, set]:
    """The crossing test on every pair of the pairs' edges."""
    e, f = _all_pairs(edges, first, pairs)
    columns = (np.ascontiguousarray(v) for v in edges)
    *crossings, touching = edge_crossings_module._crossings(e, f, *columns, weight, tol)
    return _rows(PairCrossings(edge_crossings_module.Crossings(*crossings), touching, None))


@pytest.fixture(params=["each_with_each", "sweep"])
def route(request, monkeypatch):
    """Pair the edges each with each (the default for small overlaps), or always sweep."""
    if request.param == "sweep":
        monkeypatch.setattr(edge_crossings_module, "_SWEEP", 0)
    return request.param


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("tol", [0.0, 1e-9, 0.5])
def test_crossings_are_those_of_all_edge_pairs(seed, tol, route):
    rings = _stars(seed, 60)
    edges, weight, first = _edges(rings)
    pairs = _box_pairs(edges, first)
    found = pair_crossings(edges, weight, first, pairs, tol)
    assert len(found.crowded) == 0
    expected = _oracle(edges, weight, first, pairs, tol)
    assert len(expected[0]) > 100
    assert _rows(found) == expected


def test_crossings_are_where_shapely_sees_the_segments_cross(route):
    """In general position (random floats, tol 0) nothing touches, and a crossing is listed for
    exactly the edge pairs whose segments cross, at their intersection point."""
    rings = _stars(7, 40)
    edges, weight, first = _edges(rings)
    pairs = _box_pairs(edges, first)
    found = pair_crossings(edges, weight, first, pairs, 0.0)
    assert len(found.touching) == 0
    ends = np.stack([np.c_[edges.ax, edges.ay], np.c_[edges.bx, edges.by]], axis=1)
    lines = shapely.linestrings(ends)
    e, f = _all_pairs(edges, first, pairs)
    cross = shapely.crosses(lines[e], lines[f])
    c = found.crossings
    got = {tuple(sorted(pair)) for pair in c.edge.reshape(-1, 2).tolist()}
    assert got == {tuple(sorted(pair)) for pair in zip(e[cross], f[cross], strict=True)}
    # Each crossing's point is on both of its edges: one row per edge, the same point.
    points = shapely.points(c.x, c.y)
    assert np.all(shapely.distance(lines[c.edge], points) < 1e-9)
    t_point = (
        np.c_[edges.ax[c.edge], edges.ay[c.edge]]
        + c.t[:, None]
        * np.c_[edges.bx[c.edge] - edges.ax[c.edge], edges.by[c.edge] - edges.ay[c.edge]]
    )
    np.testing.assert_allclose(t_point, np.c_[c.x, c.y], atol=1e-9)


@pytest.mark.parametrize("tol", [0.0, 1e-9])
def test_squares_that_share_edges_touch(tol, route):
    """A grid of unit squares (edges and corners shared exactly): no proper crossing, and every
    pair of different squares' edges that touch is reported."""
    corners = np.array([(0, 0), (1, 0), (1, 1), (0, 1), (0, 0)], dtype=float)
    rings = [corners + np.array([x, y]) for x in range(5) for y in range(4)]
    edges, weight, first = _edges(rings)
    pairs = _box_pairs(edges, first)
    found = pair_crossings(edges, weight, first, pairs, tol)
    assert len(found.crossings.edge) == 0
    assert _rows(found) == _oracle(edges, weight, first, pairs, tol)
    assert len(found.touching) > 0


def test_more_crossings_than_the_first_call_makes_room_for(route):
    """Two combs at right angles cross over 1,000 times on 160 edges: the first call runs out
    of room (two candidate pairs an edge) and the second finds them all."""
    rings = [_comb(20, vertical=False), _comb(20, vertical=True)]
    edges, weight, first = _edges(rings)
    pairs = (np.array([0]), np.array([1]))
    found = pair_crossings(edges, weight, first, pairs, 1e-9)
    assert len(found.crossings.edge) // 2 > 1000 > 2 * len(edges.ax)
    assert _rows(found) == _oracle(edges, weight, first, pairs, 1e-9)


def test_crowded_pairs_are_reported_not_paired(monkeypatch):
    """With 8 looks an edge allowed, the combs' pair is crowded (both polygons reported, none
    of their crossings listed: a sweep looks at about 20 pairs an edge there) while the stars
    elsewhere are still paired in full."""
    monkeypatch.setattr(edge_crossings_module, "_PAIRS_PER_EDGE", 8)
    far = [r + 1000.0 for r in _stars(3, 12)]
    rings = [_comb(20, vertical=False), _comb(20, vertical=True), *far]
    edges, weight, first = _edges(rings)
    pairs = _box_pairs(edges, first)
    found = pair_crossings(edges, weight, first, pairs, 1e-9)
    assert found.crowded.tolist() == [0, 1]
    sparse = tuple(v[pairs[0] >= 2] for v in pairs)
    assert len(sparse[0]) > 0
    assert _rows(found) == _oracle(edges, weight, first, sparse, 1e-9)


def test_touching_and_crossing_edges_on_a_grid_against_shapely(route):
    """Rectangles and triangles with corners on a coarse integer grid: ends on other edges
    (T-junctions), shared corners, collinear overlaps and proper crossings everywhere. A pair
    touches exactly when an end of one lies within tol of the other (shapely's distances), and
    crosses exactly when shapely says the segments cross and neither touches."""
    rng = np.random.default_rng(4)
    rings = []
    for k in range(40):
        x0, y0 = rng.integers(0, 8, 2)
        x1, y1 = x0 + rng.integers(1, 5), y0 + rng.integers(1, 5)
        corners = (
            [(x0, y0), (x1, y0), (x1, y1), (x0, y1)] if k % 2 else [(x0, y0), (x1, y0), (x0, y1)]
        )
        rings.append(np.array([*corners, corners[0]], dtype=float))
    tol = 1e-9
    edges, weight, first = _edges(rings)
    pairs = _box_pairs(edges, first)
    found = pair_crossings(edges, weight, first, pairs, tol)
    ends_a = shapely.points(np.c_[edges.ax, edges.ay])
    ends_b = shapely.points(np.c_[edges.bx, edges.by])
    ends = np.stack([np.c_[edges.ax, edges.ay], np.c_[edges.bx, edges.by]], axis=1)
    lines = shapely.linestrings(ends)
    e, f = _all_pairs(edges, first, pairs)
    end_distance = np.min(
        [
            shapely.distance(ends_a[e], lines[f]),
            shapely.distance(ends_b[e], lines[f]),
            shapely.distance(ends_a[f], lines[e]),
            shapely.distance(ends_b[f], lines[e]),
        ],
        axis=0,
    )
    touch = end_distance <= tol
    cross = shapely.crosses(lines[e], lines[f]) & ~touch
    assert touch.sum() > 100 and cross.sum() > 20
    got_touch = {tuple(sorted(pair)) for pair in found.touching.reshape(-1, 2).tolist()}
    assert got_touch == {tuple(sorted(pair)) for pair in zip(e[touch], f[touch], strict=True)}
    got_cross = {tuple(sorted(pair)) for pair in found.crossings.edge.reshape(-1, 2).tolist()}
    assert got_cross == {tuple(sorted(pair)) for pair in zip(e[cross], f[cross], strict=True)}
