"""Adversarial cases for the union-boundary coverage kernel (rectangular ROI), each against the
brute-force oracle: crossings of different polygons' edges exactly on tile lines and corners,
nesting and duplicates, near-degenerate geometry, far coordinates, a seeded fuzz loop; that
chunk sizes and fallbacks do not change a value; and :func:`union_boundary` on its own (its
segments bound the union: right area, closed curves).

Cases are built in level coords on an 8 px grid and then scaled by the downsample, the same
products the kernel forms for tile sides, so coincidences with tile lines stay exact at every
downsample (3.7 included).
"""

from __future__ import annotations

import functools
import math
from collections import Counter

import numpy as np
import pytest
import shapely
from kernel_oracles import oracle_areas
from shapely import MultiPolygon, Polygon, box

import wsi_core.tiling.annotations as annotations_module
import wsi_core.tiling.edge_crossings as edge_crossings_module
import wsi_core.tiling.rect_coverage as rect_coverage_module
import wsi_core.tiling.union_boundary as union_boundary_module
from wsi_core.tiling import annotation_coverage, grid_tile_array
from wsi_core.tiling.tile_buckets import TileBuckets

DOWNSAMPLES = [1.0, 2.0, 3.7, (2.0, 3.0)]
EXTENT = (48, 48)  # level coords covered by the tile layouts
OFFSETS = [0.0, 131072.0 * 8, 1e7]  # level coords; both far offsets are multiples of 8


# -- helpers -----------------------------------------------------------------------------------


def _pair(downsample) -> tuple[float, float]:
    return (downsample, downsample) if np.ndim(downsample) == 0 else tuple(downsample)


def _to_level0(geoms: list, downsample, offset: float = 0.0) -> list:
    """Level-coord geometry moved by ``offset`` and scaled to level 0 (``(v + offset) * ds``,
    as the kernel places tile sides)."""
    scale = np.array(_pair(downsample))
    return list(shapely.transform(np.array(geoms, dtype=object), lambda c: (c + offset) * scale))


def _layouts(rng) -> dict:
    """Tile layouts (roi, origins in level coords): a regular grid of 8 px tiles, overlapping
    16 x 8 tiles at strides 8 and 4, and 8 px tiles at arbitrary float origins."""
    return {
        "grid": (box(0, 0, 8, 8), grid_tile_array(EXTENT, 8, 8).astype(float)),
        "overlap": (box(0, 0, 16, 8), grid_tile_array(EXTENT, (16, 8), (8, 4)).astype(float)),
        "float": (box(0, 0, 8, 8), rng.uniform(-4, EXTENT[0], (24, 2))),
    }


def _assert_matches_oracle(geoms: list, downsample, offset: float = 0.0, label: str = "") -> None:
    """Coverage of every layout equals the oracle's to 1e-9 (absolute); some tile must be
    partly covered, or the case tests nothing."""
    placed = _to_level0(geoms, downsample, offset)
    rng = np.random.default_rng(len(geoms))
    partial = False
    for name, (roi, origins) in _layouts(rng).items():
        coords = origins + offset
        expected = oracle_areas(placed, roi, coords, downsample) / roi.area
        partial |= bool(((expected > 1e-6) & (expected < 1 - 1e-6)).any())
        got = annotation_coverage(placed, roi, coords, downsample)
        np.testing.assert_allclose(
            got, expected, rtol=0, atol=1e-9, err_msg=f"{label} layout={name} ds={downsample}"
        )
    assert partial, f"{label}: no tile partly covered"


def _pie(cx: float, cy: float, radius: float, slices: int) -> list:
    """``slices`` triangles sharing the centre and, pairwise, their radial edges."""
    angles = np.arange(slices + 1) * (2 * np.pi / slices)
    xs, ys = cx + radius * np.cos(angles), cy + radius * np.sin(angles)
    return [Polygon([(cx, cy), (xs[k], ys[k]), (xs[k + 1], ys[k + 1])]) for k in range(slices)]


def _ring_box(outer: tuple, inner: tuple) -> Polygon:
    """box(*outer) with the hole box(*inner)."""
    return Polygon(box(*outer).exterior, [box(*inner).exterior])


def _bar(cx: float, cy: float, degrees: float, length: float = 15.0, width: float = 5.0):
    """A rectangle with one long edge through ``(cx, cy)`` at ``degrees``: several of them
    cross one another at that point without sharing a vertex."""
    u = np.array([math.cos(math.radians(degrees)), math.sin(math.radians(degrees))])
    n = np.array([-u[1], u[0]]) * width
    c = np.array([cx, cy])
    return Polygon([c - length * u, c + length * u, c + length * u + n, c - length * u + n])


TAIL = [(8, 40), (8, 16), (0, 16)]  # the staircase's last vertices
S = math.tan(1e-6)  # slope of a 1e-6 rad crossing
R2 = math.sqrt(2)


# -- structured cases (level coords; tile lines at multiples of 8) ------------------------------

CASES: dict[str, list] = {
    # Edges of two polygons cross exactly on tile lines and corners.
    "cross_at_tile_corner": [box(4, 4, 16, 28), box(8, 16, 28, 24)],  # (16, 16), (16, 24)
    "diagonals_cross_at_corner": [
        Polygon([(0, 0), (32, 32), (0, 32)]),
        Polygon([(0, 32), (32, 0), (32, 32)]),
    ],  # y = x meets y = 32 - x at (16, 16)
    "diagonal_through_corners_and_box": [
        Polygon([(0, 0), (40, 40), (40, 0)]),
        box(8, 8, 24, 32),
    ],
    "diamonds_cross_on_corners": [
        Polygon([(4, 4), (28, 28), (36, 20), (12, -4)]),  # edge along y = x
        Polygon([(4, 28), (28, 4), (38, 12), (14, 38)]),  # edge along y = 32 - x
    ],
    "skew_edges_cross_on_corner": [
        Polygon([(1, -19), (22, 30), (40, 2)]),  # (1, -19) -> (22, 30) passes (16, 16)
        Polygon([(2, 20), (30, 12), (20, 42)]),  # (2, 20) -> (30, 12) passes (16, 16)
    ],
    "skew_edges_cross_on_right_side": [
        Polygon([(10, 1), (22, 25), (30, 0)]),  # passes (16, 13)
        Polygon([(4, 16), (28, 10), (26, 30)]),  # passes (16, 13)
    ],
    "bars_through_one_corner": [_bar(16, 16, a) for a in (0, 17, 45, 90, 113, 150)],
    "bars_through_one_line_point": [_bar(16, 12.5, a, 20, 3) for a in (7, 60, 90, 135)],
    "vertex_on_edge_t_junction": [
        box(0, 0, 24, 24),
        Polygon([(24, 12), (36, 4), (36, 20)]),  # touches the right side at one point
        Polygon([(12, 24), (20, 16), (28, 24), (20, 32)]),  # vertex on the top edge, dips in
    ],
    "vertex_on_edge_at_tile_corner": [
        box(0, 0, 32, 16),
        Polygon([(16, 16), (24, 8), (32, 24), (8, 32)]),  # (16, 16) on the top edge
    ],
    "vertices_at_tile_corners": [
        Polygon([(8, 8), (24, 16), (16, 40), (0, 24)]),
        Polygon([(16, 16), (40, 8), (32, 32)]),
    ],
    "edges_along_right_sides": [
        box(8, 0, 16, 40),
        box(12, 4, 16, 30),  # shares part of the right side x = 16
        box(16, 8, 24, 16),  # touches it from the other side
        box(0, 20, 16, 36),  # right side along x = 16 again
    ],
    "horizontal_edges_on_tile_bottom_top": [
        box(0, 8, 40, 16),
        box(4, 8, 20, 24),  # shares the bottom y = 8
        box(12, 16, 36, 32),  # bottom on the other's top y = 16
        Polygon([(2, 32), (30, 32), (16, 44)]),  # horizontal edge on y = 32
    ],
    "staircase_alone": [
        Polygon([(0, 0), (40, 0), (40, 8), (32, 8), (32, 16), (24, 24), (16, 24), (16, 32), *TAIL])
    ],
    "hole_touching_shell_at_corner": [
        Polygon(
            box(0, 0, 32, 32).exterior,
            [[(16, 0), (24, 8), (8, 8)], [(16, 16), (24, 24), (16, 32), (8, 24)]],
        )
    ],
    # Nesting, duplicates, single-point contacts, a shared vertex.
    "nested": [box(0, 0, 40, 40), box(8, 8, 16, 16), Polygon([(20, 20), (30, 22), (24, 34)])],
    "inside_hole": [_ring_box((0, 0, 40, 40), (8, 8, 32, 32)), box(12, 12, 20, 20)],
    "fills_hole": [_ring_box((0, 0, 40, 40), (8, 8, 32, 32)), box(8, 8, 32, 32)],
    "fills_hole_off_grid": [
        _ring_box((1, 3, 41, 37), (9, 11, 29, 27)),
        box(9, 11, 29, 27),
        box(20, 20, 36, 30),
    ],
    "duplicates": [Polygon([(3, 5), (37, 9), (20, 41)])] * 3 + [box(8, 8, 24, 24)] * 2,
    "equal_to_tile": [box(8, 8, 16, 16), box(16, 16, 24, 24), box(16, 16, 24, 24)],
    "touch_at_point": [
        box(0, 0, 16, 16),
        box(16, 16, 32, 32),  # corner to corner at a tile corner
        Polygon([(32, 0), (40, 8), (36, 12)]),
        Polygon([(40, 8), (44, 2), (46, 16)]),  # vertex to vertex
    ],
    "pie_on_tile_corner": _pie(16, 16, 12, 24),
    "pie_off_grid_with_box": [*_pie(21.5, 18.25, 14, 24), box(16, 8, 32, 24)],
    # Near-degenerate geometry.
    "parallel_gap_1e-7": [box(0, 0, 16, 24), box(16 + 1e-7, 4, 32, 20)],
    "parallel_overlap_1e-7": [box(0, 0, 16, 24), box(16 - 1e-7, 4, 32, 20)],
    "tilted_gap_5e-8": [  # edges along y = x + 3 and 5e-8 px to its lower right
        Polygon([(0, 3), (30, 33), (0, 40)]),
        Polygon([(2, 5 - 5e-8 * R2), (44, 5 - 5e-8 * R2), (44, 47 - 5e-8 * R2)]),
    ],
    "tilted_overlap_5e-8": [
        Polygon([(0, 3), (30, 33), (0, 40)]),
        Polygon([(2, 5 + 5e-8 * R2), (44, 5 + 5e-8 * R2), (44, 47 + 5e-8 * R2)]),
    ],
    "tilted_parallel_1e-7": [
        Polygon([(0, 0), (32, 32), (0, 32)]),
        Polygon([(1e-7, 0), (32, 0), (32 + 1e-7, 32)]),
        Polygon([(8 - 1e-7, 0), (8, 0), (40, 32), (40 - 1e-7, 32)]),
    ],
    "shallow_crossing_on_corner": [
        box(0, 8, 40, 24),
        Polygon([(-2, 0), (42, 0), (42, 8 + 26 * S), (-2, 8 - 18 * S)]),  # y = 8 at x = 16
    ],
    "shallow_crossing_of_right_side": [
        box(16, 4, 32, 36),
        Polygon([(0, 0), (16 - 16 * S, 0), (16 + 24 * S, 40), (0, 40)]),  # x=16 at y=16
    ],
    "shallow_crossing_of_diagonals": [
        Polygon([(0, 0), (40, 40), (40, 0)]),
        Polygon([(-4, -4 + 20 * S), (44, 44 - 28 * S), (-4, 44)]),  # meets y = x at (16, 16)
    ],
    "short_edges": [
        Polygon([(0, 0), (30, 0), (30, 16), (16 + 1e-6, 16), (16, 16 + 1e-6), (0, 30)]),
        box(8, 8, 24, 24),
        Polygon([(20, 20), (24 - 5e-7, 28), (24 + 5e-7, 28 + 1e-6), (40, 40), (20, 40)]),
    ],
}


# -- against the oracle -----------------------------------------------------------------------


@pytest.mark.parametrize("downsample", DOWNSAMPLES)
@pytest.mark.parametrize("name", list(CASES))
def test_structured_case_matches_oracle(name, downsample):
    """Every structured case, on every layout and downsample, near the origin: the union's
    area per tile is the oracle's where crossings, vertices, shared edges and holes sit exactly
    on the lines the kernel counts along."""
    _assert_matches_oracle(CASES[name], downsample, label=name)


FAR_CASES = [
    "cross_at_tile_corner",
    "diagonals_cross_at_corner",
    "vertex_on_edge_t_junction",
    "edges_along_right_sides",
    "horizontal_edges_on_tile_bottom_top",
    "fills_hole",
    "duplicates",
    "pie_on_tile_corner",
    "shallow_crossing_of_diagonals",
]


@pytest.mark.parametrize("offset", OFFSETS[1:])
@pytest.mark.parametrize("downsample", [1.0, 3.7, (2.0, 3.0)])
@pytest.mark.parametrize("name", FAR_CASES)
def test_far_case_matches_oracle(name, downsample, offset):
    """The same coincidences with polygons and tiles near 1e6 and 1e7 (level coords; level 0
    up to 3.7e7), where coordinate differences lose up to 30 bits."""
    _assert_matches_oracle(CASES[name], downsample, offset, label=f"{name} offset={offset}")


# -- fuzz -------------------------------------------------------------------------------------


def _snap(rng, step: float = 4.0, low: float = -4.0, high: float = 44.0) -> float:
    return float(np.round(rng.uniform(low, high) / step) * step)


def _random_polygon(rng, out: list):
    """One random annotation (level coords): a star, a grid-snapped box or triangle, a box with
    a hole, a two-part multipolygon, or a duplicate of an earlier one."""
    kind = int(rng.integers(0, 7))
    x, y = _snap(rng), _snap(rng)
    if kind == 0 or (kind == 6 and not out):
        cx, cy = (x, y) if rng.uniform() < 0.5 else rng.uniform(0, 40, 2)
        k = int(rng.integers(3, 12))
        angles = (np.arange(k) + rng.uniform(-0.3, 0.3, k)) * (2 * np.pi / k)
        radii = rng.uniform(3, 14) * rng.uniform(0.4, 1.0, k)
        shape = Polygon(np.c_[cx + radii * np.cos(angles), cy + radii * np.sin(angles)])
    elif kind == 1:
        shape = box(x, y, x + 4 * int(rng.integers(1, 6)), y + 4 * int(rng.integers(1, 6)))
    elif kind == 2:
        shape = Polygon([(x, y), (_snap(rng), _snap(rng)), (_snap(rng), _snap(rng))])
        shape = shape if shape.area > 0 else box(0, 0, 8, 8)
    elif kind == 3:
        w, h = 8 * int(rng.integers(2, 4)), 8 * int(rng.integers(2, 4))
        shape = _ring_box((x, y, x + w, y + h), (x + 4, y + 4, x + w - 4, y + h - 4))
    elif kind == 4:
        x2, y2 = _snap(rng), _snap(rng)
        union = shapely.union_all([box(x, y, x + 8, y + 8), box(x2, y2, x2 + 4, y2 + 12)])
        shape = union if isinstance(union, MultiPolygon) else MultiPolygon([union])
    elif kind == 5:
        shape = Polygon([(x, y), (x + 16, y + 8), (x + 8, y + 16)])
    else:
        shape = out[int(rng.integers(len(out)))]
    return shape


def _fuzz_case(seed: int):
    """(annotations in level coords, downsample, roi, origins) of fuzz case ``seed``."""
    rng = np.random.default_rng([20240611, seed])
    out: list = []
    for _ in range(int(rng.integers(2, 7))):
        out.append(_random_polygon(rng, out))
    downsample = DOWNSAMPLES[int(rng.integers(len(DOWNSAMPLES)))]
    layout = int(rng.integers(4))
    if layout == 0:
        roi, origins = box(0, 0, 8, 8), grid_tile_array((40, 40), 8, 8)
    elif layout == 1:
        roi, origins = box(0, 0, 8, 8), grid_tile_array((40, 40), 8, (4, 6))
    elif layout == 2:
        roi, origins = box(0, 0, 16, 8), grid_tile_array((40, 40), (16, 8), 8)
    else:
        roi, origins = box(0, 0, 8, 8), rng.uniform(-6, 40, (12, 2))
    return out, downsample, roi, origins.astype(float)


def test_fuzz_matches_oracle():
    """200 seeded small cases: random stars, grid-snapped boxes and triangles (coincident edges
    and vertices everywhere), holes, multipolygons, duplicates, over random tile layouts and
    downsamples. The seed is in the failure message."""
    for seed in range(200):
        geoms, downsample, roi, origins = _fuzz_case(seed)
        placed = _to_level0(geoms, downsample)
        expected = oracle_areas(placed, roi, origins, downsample) / roi.area
        got = annotation_coverage(placed, roi, origins, downsample)
        np.testing.assert_allclose(
            got, expected, rtol=0, atol=1e-9, err_msg=f"fuzz seed={seed} ds={downsample}"
        )


# -- chunking and fallbacks change nothing ----------------------------------------------------


VARIANTS = {
    "small_chunks": [
        (rect_coverage_module, "_CHUNK_PIECES", 3),
    ],
    "swept": [(edge_crossings_module, "_SWEEP", 0)],
    "crowded_pairs": [
        (edge_crossings_module, "_SWEEP", 0),
        (edge_crossings_module, "_PAIRS_PER_EDGE", 0),
    ],
    "all_by_geos": [
        (
            rect_coverage_module,
            "union_boundary",
            functools.partial(union_boundary_module.union_boundary, by_geos=True),
        )
    ],
}


def _identity_inputs():
    """(label, level-0 annotations, roi, origins, downsample) for the identity checks: every
    structured case, one far case, and a few fuzz cases."""
    for name, geoms in CASES.items():
        for downsample in (1.0, 3.7):
            roi, origins = _layouts(np.random.default_rng(0))["overlap"]
            yield name, _to_level0(geoms, downsample), roi, origins, downsample
    offset = OFFSETS[2]
    roi, origins = _layouts(np.random.default_rng(0))["grid"]
    geoms = _to_level0(CASES["pie_on_tile_corner"], (2.0, 3.0), offset)
    yield "pie far", geoms, roi, origins + offset, (2.0, 3.0)
    for seed in range(0, 200, 10):
        geoms, downsample, roi, origins = _fuzz_case(seed)
        yield f"fuzz seed={seed}", _to_level0(geoms, downsample), roi, origins, downsample


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_chunking_and_fallbacks_change_nothing(variant, monkeypatch):
    """Tiny chunks of tiles, edges paired by the sweep, every pair of polygons with edges to
    compare crowded (so GEOS unions their groups), or GEOS for every group: each tile's value
    stays the default run's, to 1e-12."""
    cases = list(_identity_inputs())
    default = [annotation_coverage(g, roi, o, ds) for _, g, roi, o, ds in cases]
    for module, attribute, value in VARIANTS[variant]:
        monkeypatch.setattr(module, attribute, value)
    for (label, geoms, roi, origins, ds), want in zip(cases, default, strict=True):
        got = annotation_coverage(geoms, roi, origins, ds)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12, err_msg=f"{variant}: {label}")


# -- union_boundary on its own ----------------------------------------------------------------


def _boundary_inputs():
    """(label, level-0 polygon parts): the structured cases at two downsamples and offsets, and
    the first 60 fuzz cases."""
    for name, geoms in CASES.items():
        for downsample, offset in ((1.0, 0.0), (3.7, 0.0), ((2.0, 3.0), OFFSETS[1])):
            label = f"{name} ds={downsample} offset={offset}"
            yield label, _to_level0(geoms, downsample, offset)
    for seed in range(60):
        geoms, downsample, _, _ = _fuzz_case(seed)
        yield f"fuzz seed={seed}", _to_level0(geoms, downsample)


def _boundary(geoms: list, by_geos: bool = False):
    """union_boundary of the annotations' parts with the kernel's tolerance for 8 px tiles, and
    the parts' least x."""
    parts = annotations_module._polygon_parts(geoms)
    x0, y0, x1, y1 = shapely.total_bounds(parts)
    tol = 1e-9 * 16 + 1e-12 * max(abs(x0), abs(y0), abs(x1), abs(y1))
    return parts, x0, union_boundary_module.union_boundary(parts, tol, by_geos=by_geos)


def _open_ends(segments) -> Counter:
    """Segment starts that are no segment's end (as multisets): empty for closed curves."""
    ax, ay, bx, by = segments
    starts = Counter(zip(ax.tolist(), ay.tolist(), strict=True))
    return starts - Counter(zip(bx.tolist(), by.tolist(), strict=True))


@pytest.mark.parametrize("by_geos", [False, True])
def test_union_boundary_bounds_the_union(by_geos):
    """The segments' ∮ x dy is the union's area (GEOS) to 1e-9 relative, and they form closed
    curves: their ends are their starts, exactly, as multisets. The integral is taken about the
    parts' least x (the same value on closed curves) so that far cases keep their digits."""
    for label, geoms in _boundary_inputs():
        parts, x0, segments = _boundary(geoms, by_geos)
        assert not _open_ends(segments), f"{label}: open curve"
        ax, ay, bx, by = segments
        area = float(np.sum(0.5 * ((ax - x0) + (bx - x0)) * (by - ay)))
        want = shapely.union_all(parts).area
        assert area == pytest.approx(want, rel=1e-9, abs=0), label


# -- kernel failures these tests found (fixed) -------------------------------------------------


def test_concurrent_crossings_close_the_boundary():
    """Three bars at 0, 60 and 120 degrees whose long edges pass through (16, 16), no vertex
    shared: the union's boundary must still be closed curves. Before the fix, near (13.11, 21),
    where the bars' other edges meet, a piece started at x = 13.113248654051871 while the piece
    before it ended at x = 13.11324865405187: crossings of three edges at about one point were
    ordered along an edge by rounding. Such groups now go to GEOS."""
    _, _, segments = _boundary([_bar(16, 16, a) for a in (0, 60, 120)])
    assert not _open_ends(segments)


UP = float(np.nextafter(16.0, 99.0))  # 16 + 1 ulp


@pytest.mark.parametrize(
    ("geoms", "origins"),
    [
        # One polygon; its right edge leaves x = 16 at y = 0 and tilts right by 1 ulp.
        ([Polygon([(12, 0), (16, 0), (UP, 16), (12, 16)])], [(8.0, 0.0)]),
        # Bars at 16, 90 and 110 degrees through (10.1, 7.3): the 90 degree bar's right edge
        # is 1 ulp off vertical (cos 90° != 0) and, cut at the crossing, starts on x = 10.1
        # (the tile's right side). The second tile keeps the bars uncut by the grid clip.
        ([_bar(10.1, 7.3, a, 20, 3) for a in (16, 90, 110)], [(2.1 - 4.4e-16, 3.3), (-20, -20)]),
    ],
)
def test_near_vertical_edge_from_a_tile_side(geoms, origins):
    """An edge starting exactly on a tile's right side and tilting right by 1 ulp over more than
    a tile's height. Before the fix the line crossings (on the whole edge) counted the right side
    as inside, and the edge's cut pieces, whose cut points round back onto the side, added W·dy
    again: the first input gave 1.5 unclipped (1.0 returned) instead of 0.5, the second 0.76700
    instead of 0.65711. Both terms are now taken on the same pieces."""
    roi, coords = box(0, 0, 8, 8), np.array(origins, dtype=float)
    expected = oracle_areas(geoms, roi, coords, 1.0) / roi.area
    got = annotation_coverage(geoms, roi, coords, 1.0)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)


RIGHT_OF_8 = float(np.nextafter(8.0, 9.0))  # 8 + 1 ulp


@pytest.mark.parametrize(
    "geoms",
    [
        # Right edge one ulp right of the tile's right side (x = 8).
        [box(-4, 0, RIGHT_OF_8, 8)],
        # Left edge one ulp right of it: nothing of the box is in the tile.
        [box(RIGHT_OF_8, 0, 20, 8)],
        # An edge leaving the side at y = 0 and an ulp right of it at the top.
        [Polygon([(-4, 0), (8, 0), (RIGHT_OF_8, 8), (-4, 8)])],
    ],
)
def test_edge_an_ulp_right_of_a_tile_side_seen_from_a_negative_origin(geoms):
    """Tile [-8, 8] x [0, 8]: in its local frame x - (-8) rounds 8 + 1 ulp down to 16, onto
    the right side, while the counts along x = 8 see the edge right of it. Before the fix the
    first box came out 1.0 (with 1.75 unclipped) instead of 0.75."""
    roi, coords = box(0, 0, 16, 8), np.array([(-8.0, 0.0), (-40.0, -40.0)])
    expected = oracle_areas(geoms, roi, coords, 1.0) / roi.area
    got = annotation_coverage(geoms, roi, coords, 1.0)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)


def test_a_tessellation_needs_no_union(monkeypatch):
    """Voronoi cells sharing every edge (with long edges, cut into several pieces per tile) and
    one cell drawn twice: the cells that only share edges pass GEOS's coverage check as they are
    and their shared edges cancel out, so the first boundary already counts up consistently
    along every line (no retry with a GEOS union of everything) and only the duplicate's
    neighbourhood is unioned. Values match the oracle."""
    rng = np.random.default_rng(7)
    region = box(0, 0, 96, 64)
    points = shapely.multipoints(rng.uniform(0, 96, (40, 2)) * [1, 64 / 96])
    cells = list(shapely.intersection(shapely.get_parts(shapely.voronoi_polygons(points)), region))
    cells.append(cells[5])
    calls, unioned = [], []
    real_union_all = shapely.union_all

    def spy_boundary(*args, **kwargs):
        calls.append(kwargs.get("by_geos", False))
        return union_boundary_module.union_boundary(*args, **kwargs)

    def spy_union_all(geoms, *args, **kwargs):
        unioned.append(len(geoms))
        return real_union_all(geoms, *args, **kwargs)

    roi = box(0, 0, 8, 8)
    for downsample in (1.0, 0.25):  # 0.25: tiles of 2 level-0 px, edges cut in many pieces
        coords = grid_tile_array((int(96 / downsample), int(64 / downsample)), 8, 8)
        expected = oracle_areas(cells, roi, coords, downsample) / roi.area
        calls.clear()
        unioned.clear()
        with monkeypatch.context() as patch:
            patch.setattr(rect_coverage_module, "union_boundary", spy_boundary)
            patch.setattr(shapely, "union_all", spy_union_all)
            got = annotation_coverage(cells, roi, coords, downsample)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)
        assert calls == [False]
        assert len(unioned) == 1 and 2 <= unioned[0] < 12


def test_tiles_scattered_far_apart_are_looked_up_by_key():
    """Tiles scattered over a wide area hash into far more cells than there are tiles, so the
    kernel looks their cells up by binary search instead of a table: same values as the
    oracle, and as the same tiles next to each other (a table)."""
    rng = np.random.default_rng(5)
    centres, radii = rng.uniform(0, 4000, (40, 2)), rng.uniform(20, 300, 40)
    stars = [shapely.Point(*c).buffer(r, 3) for c, r in zip(centres, radii, strict=True)]
    roi = box(0, 0, 64, 64)
    origins = np.floor(rng.uniform(0, 4000, (60, 2)))
    assert not TileBuckets(origins[:, 0], origins[:, 1], 64.0, 64.0).dense
    expected = oracle_areas(stars, roi, origins, 1.0) / roi.area
    assert ((expected > 0) & (expected < 1)).sum() > 5
    got = annotation_coverage(stars, roi, origins, 1.0)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)


def test_repeated_vertices_and_either_ring_orientation():
    """Rings with a vertex repeated (first one included: zero-length edges), drawn either way
    round, one with a hole drawn the same way as its shell: the boundary is still closed curves
    whose ∮ x dy is the union's area."""
    shell = [(0, 0), (0, 0), (20, 0), (20, 0), (20, 20), (0, 20)]
    hole = [(5, 5), (5, 5), (15, 5), (15, 15), (5, 15)]
    cases = [
        [Polygon(shell, [hole]), Polygon([(10, 10), (30, 10), (30, 10), (30, 30), (10, 30)])],
        [Polygon(shell[::-1], [hole]), Polygon([(30, 30), (30, 10), (10, 10), (10, 10)])],
    ]
    for geoms in cases:
        assert all(g.is_valid for g in geoms)
        _, x0, segments = _boundary(geoms)
        assert not _open_ends(segments)
        ax, ay, bx, by = segments
        area = float(np.sum(0.5 * ((ax - x0) + (bx - x0)) * (by - ay)))
        assert area == pytest.approx(shapely.union_all(geoms).area, rel=1e-12)
