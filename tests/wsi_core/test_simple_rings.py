"""clearly_valid: never calls an invalid polygon valid (GEOS's is_valid is the oracle), and
proves the ordinary valid ones, so that GEOS checks only the rest."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from shapely.geometry import Polygon

import wsi_core.simple_rings as simple_rings_module
from wsi_core.simple_rings import clearly_valid


def _proven(polygon: Polygon) -> bool:
    return bool(clearly_valid(np.array([polygon], dtype=object))[0])


INVALID = {
    "bowtie": Polygon([(0, 0), (2, 2), (2, 0), (0, 2)]),
    "spike": Polygon([(0, 0), (4, 0), (4, 4), (2, 4), (2, 6), (2, 4), (0, 4)]),
    "spike_back_onto_edge": Polygon([(0, 0), (4, 0), (2, 0), (2, 3)]),
    "vertex_touches_vertex": Polygon([(0, 0), (4, 0), (2, 2), (4, 4), (0, 4), (2, 2)]),
    "vertex_touches_edge": Polygon([(0, 0), (4, 0), (4, 4), (2, 0.0), (0, 4)]),
    "collinear_triangle": Polygon([(0, 0), (1, 1), (2, 2)]),
    "two_points": Polygon([(0, 0), (1, 1), (0, 0), (1, 1)]),
    "crossing_far_from_the_origin": Polygon(
        [(1e7, 1e7), (1e7 + 2, 1e7 + 2), (1e7 + 2, 1e7), (1e7, 1e7 + 2)]
    ),
    # Turning one way round its centre at every edge, but twice round.
    "pentagram": Polygon([(np.cos(a), np.sin(a)) for a in np.arange(5) * 4 * np.pi / 5]),
    # Star-shaped about its centre but for one vertex pushed out across another edge.
    "star_pushed_across": Polygon([(4, 0), (0, 4), (-4, 0), (2, 2.5), (0, -4)]),
}
with np.errstate(invalid="ignore"):  # GEOS warns of the NaN as it builds the ring
    INVALID["nan"] = Polygon([(0, 0), (1, 0), (np.nan, 1)])

VALID_UNPROVEN = {
    "with_hole": Polygon([(0, 0), (9, 0), (9, 9), (0, 9)], [[(3, 3), (6, 3), (6, 6), (3, 6)]]),
    # Two edges 1e-12 apart (far below the tolerance relative to the coordinates).
    "near_contact": Polygon([(0, 0), (10, 0), (10, 10), (5, 1e-12 + 1e-12), (0, 10)]),
}


@pytest.mark.parametrize("name", list(INVALID))
def test_invalid_polygons_are_not_proven(name):
    polygon = INVALID[name]
    assert not polygon.is_valid
    assert not _proven(polygon)


@pytest.mark.parametrize("name", list(VALID_UNPROVEN))
def test_valid_polygons_it_cannot_prove_are_left_to_geos(name):
    polygon = VALID_UNPROVEN[name]
    assert polygon.is_valid
    assert not _proven(polygon)


def test_ordinary_polygons_are_proven():
    """Squares, stars, repeated vertices and the closing edge's neighbours."""
    angles = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    radii = np.where(np.arange(40) % 2 == 0, 10.0, 4.0)
    star = Polygon(np.c_[radii * np.cos(angles), radii * np.sin(angles)])
    cases = [
        Polygon([(0, 0), (1, 0), (1, 1), (0, 1)]),
        Polygon([(0, 0), (1, 0), (1, 0), (1, 1), (0, 1), (0, 0)]),  # a repeated vertex
        Polygon([(1, 1), (0, 1), (0, 0), (1, 0)][::-1]),  # clockwise
        star,
        shapely.affinity.translate(star, 1e6, 2e6),
    ]
    assert clearly_valid(np.array(cases, dtype=object)).all()


def test_fuzz_never_proves_an_invalid_polygon():
    """Random small polygons on coarse grids (many touching and collinear edges), random
    polygons, and stars with a duplicated vertex: every one proven is valid to GEOS, and most
    valid ones are proven."""
    rng = np.random.default_rng(7)
    polygons = []
    for trial in range(6000):
        k = int(rng.integers(3, 9))
        mode = trial % 4
        if mode == 0:
            points = rng.integers(0, 4, (k, 2)).astype(float)
        elif mode == 1:
            points = rng.uniform(0, 1, (k, 2))
        elif mode == 2:
            angle = np.sort(rng.uniform(0, 2 * np.pi, k))
            points = np.c_[np.cos(angle), np.sin(angle)] * rng.uniform(0.5, 1, (k, 1))
            points[rng.integers(k)] = points[rng.integers(k)]
        else:
            points = rng.integers(0, 3, (k, 2)).astype(float) * 1e-3 + 1e6
        polygons.append(Polygon(points))
    geoms = np.array(polygons, dtype=object)
    proven = clearly_valid(geoms)
    valid = shapely.is_valid(geoms)
    assert not np.any(proven & ~valid)
    assert proven.sum() > 0.8 * valid.sum()


def test_too_many_overlapping_edges_are_left_to_geos(monkeypatch):
    """A serpentine whose edges all overlap in x would cost the sweep the square of its edges:
    past the budget it is left to GEOS."""
    n = 50
    xs = np.tile([0.0, 100.0, 100.0, 0.0], n // 2)
    ys = np.repeat(np.arange(n) * 2.0, 2)
    serpentine = Polygon(np.r_[np.c_[xs, ys], [[-1.0, ys[-1]], [-1.0, 0.0]]])
    assert serpentine.is_valid
    assert _proven(serpentine)
    monkeypatch.setattr(simple_rings_module, "_PAIRS_PER_EDGE", 2)
    assert not _proven(serpentine)


def test_star_shaped_rings_are_proven_in_one_pass(monkeypatch):
    """Star-shaped rings (either way round, far from the origin, with a repeated vertex) are
    proven without the sweep: with no pair allowed to the sweep, they still are, while a ring
    that is valid but not star-shaped about its mean is not."""
    monkeypatch.setattr(simple_rings_module, "_PAIRS_PER_EDGE", 0)
    angles = np.linspace(0, 2 * np.pi, 60, endpoint=False)
    radii = np.where(np.arange(60) % 2 == 0, 10.0, 3.0)
    star = np.c_[radii * np.cos(angles), radii * np.sin(angles)]
    doubled = np.insert(star, 7, star[7], axis=0)
    stars = [Polygon(star), Polygon(star[::-1]), Polygon(star + 1e7), Polygon(doubled)]
    assert clearly_valid(np.array(stars, dtype=object)).all()
    c_shape = Polygon([(0, 0), (10, 0), (10, 10), (0, 10), (0, 8), (8, 8), (8, 2), (0, 2)])
    assert c_shape.is_valid
    assert not _proven(c_shape)


def test_fuzz_star_shaped_and_twice_round():
    """Rings whose vertices go round a point in order once (valid) or twice (never valid), with
    jittered radii, some with the point near an edge: no ring GEOS calls invalid is proven, and
    nearly every star-shaped one is."""
    rng = np.random.default_rng(11)
    polygons = []
    for trial in range(4000):
        k = int(rng.integers(3, 40))
        turns = 1 + trial % 2
        angle = np.sort(rng.uniform(0, 2 * np.pi * turns, k))
        radius = rng.uniform(0.05, 1, k) if trial % 3 else rng.uniform(0.9, 1, k)
        centre = rng.uniform(-1, 1, 2) * (1e6 if trial % 5 == 0 else 1)
        polygons.append(Polygon(centre + radius[:, None] * np.c_[np.cos(angle), np.sin(angle)]))
    geoms = np.array(polygons, dtype=object)
    proven = clearly_valid(geoms)
    valid = shapely.is_valid(geoms)
    assert not np.any(proven & ~valid)
    assert valid.sum() > 1000 and (~valid).sum() > 1000
    assert proven.sum() > 0.9 * valid.sum()
