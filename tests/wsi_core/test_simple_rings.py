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
