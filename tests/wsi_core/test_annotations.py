"""tile_annotations and annotation_coverage: golden values, frames, overlaps, and agreement
with a brute-force oracle on random polygons."""

from __future__ import annotations

import numpy as np
import pytest
from kernel_oracles import oracle_areas
from shapely import GeometryCollection, LineString, MultiPolygon, Point, Polygon, box

import wsi_core.tiling.annotations as annotations_module
import wsi_core.tiling.rect_coverage as rect_coverage_module
from wsi_core.tiling import annotation_coverage, grid_tile_array, grid_tiles, tile_annotations

GOLDEN_ORIGINS = [(0, 0), (8, 0), (0, 8), (8, 8)]


def areas(geometries) -> np.ndarray:
    return np.array([g.area for g in geometries])


# -- golden values ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("roi", "expected"),
    [(box(0, 0, 8, 8), [64, 16, 16, 4]), (box(1, 1, 7, 7), [36, 6, 6, 1])],
)
def test_golden_values(roi, expected):
    annotations = [box(0, 0, 10, 10)]
    geoms = list(tile_annotations(annotations, roi, GOLDEN_ORIGINS, 1))
    np.testing.assert_allclose(areas(geoms), expected, rtol=0, atol=1e-12)
    coverage = annotation_coverage(annotations, roi, GOLDEN_ORIGINS, 1)
    np.testing.assert_allclose(coverage, np.array(expected) / roi.area, rtol=0, atol=1e-12)
    assert coverage.dtype == np.float64 and coverage.shape == (4,)


def test_golden_geometries_are_in_the_tile_frame():
    roi = box(0, 0, 8, 8)
    geoms = list(tile_annotations([box(0, 0, 10, 10)], roi, GOLDEN_ORIGINS, 1))
    assert geoms[0].equals(roi)
    assert geoms[1].equals(box(0, 0, 2, 8))  # level-0 x 8..10 is x 0..2 of the tile
    assert geoms[2].equals(box(0, 0, 8, 2))
    assert geoms[3].equals(box(0, 0, 2, 2))


def test_downsample_hand_computed():
    # Annotation box(0,0,100,100) at level 0 is box(0,0,25,25) at a level with downsample 4.
    roi = box(0, 0, 10, 10)
    origins = [(0, 0), (20, 0), (20, 20), (30, 30), (24, 5)]
    expected = [100, 5 * 10, 5 * 5, 0, 1 * 10]
    geoms = list(tile_annotations([box(0, 0, 100, 100)], roi, origins, 4))
    np.testing.assert_allclose(areas(geoms), expected, atol=1e-12)
    assert geoms[1].equals(box(0, 0, 5, 10))
    np.testing.assert_allclose(
        annotation_coverage([box(0, 0, 100, 100)], roi, origins, 4),
        np.array(expected) / 100,
        atol=1e-12,
    )


def test_downsample_per_axis():
    # (x, y) downsample (2, 4): level box is x 0..50, y 0..25.
    roi = box(0, 0, 10, 10)
    origins = [(45, 0), (0, 20), (45, 20)]
    expected = [5 * 10, 10 * 5, 5 * 5]
    geoms = list(tile_annotations([box(0, 0, 100, 100)], roi, origins, (2, 4)))
    np.testing.assert_allclose(areas(geoms), expected, atol=1e-12)
    np.testing.assert_allclose(
        annotation_coverage([box(0, 0, 100, 100)], roi, origins, (2.0, 4.0)),
        np.array(expected) / 100,
        atol=1e-12,
    )


def test_non_integer_downsample_hand_computed():
    # Triangle with legs of 37 level-0 px = 10 level px at downsample 3.7; ROI box(0,0,10,10).
    triangle = Polygon([(0, 0), (37, 0), (0, 37)])
    geoms = list(tile_annotations([triangle], box(0, 0, 10, 10), [(0, 0), (5, 0)], 3.7))
    np.testing.assert_allclose(areas(geoms), [50, 12.5], atol=1e-9)
    np.testing.assert_allclose(
        annotation_coverage([triangle], box(0, 0, 10, 10), [(0, 0), (5, 0)], 3.7),
        [0.5, 0.125],
        atol=1e-12,
    )


def test_result_bounds_lie_within_roi_bounds():
    rng = np.random.default_rng(3)
    annotations = [_star(rng, *rng.uniform(0, 200, 2), rng.uniform(10, 80), 30) for _ in range(8)]
    for roi in (box(0, 0, 32, 32), box(4, 8, 20, 30), Point(16, 16).buffer(12)):
        rx0, ry0, rx1, ry1 = roi.bounds
        coords = grid_tile_array((100, 100), 32, 16)
        for geom in tile_annotations(annotations, roi, coords, 2.0):
            if geom.is_empty:
                continue
            x0, y0, x1, y1 = geom.bounds
            assert x0 >= rx0 - 1e-9 and y0 >= ry0 - 1e-9
            assert x1 <= rx1 + 1e-9 and y1 <= ry1 + 1e-9
            assert geom.difference(roi).area <= 1e-9


def test_tile_wholly_inside_returns_the_roi():
    roi = Point(5, 5).buffer(4)
    (geom,) = tile_annotations([box(-100, -100, 100, 100)], roi, [(3, 3)], 1)
    assert geom.equals(roi)


# -- overlaps, non-polygons, inputs -------------------------------------------------------


def test_overlap_counted_once():
    roi = box(0, 0, 8, 8)
    annotations = [box(0, 0, 6, 8), box(2, 0, 6, 8), box(0, 0, 6, 8)]  # nested + duplicate
    (geom,) = tile_annotations(annotations, roi, [(0, 0)], 1)
    assert geom.area == pytest.approx(48)
    assert annotation_coverage(annotations, roi, [(0, 0)], 1)[0] == pytest.approx(48 / 64)
    crossing = [box(0, 0, 6, 6), box(3, 3, 12, 12)]  # overlap 3x3 in the tile
    (geom,) = tile_annotations(crossing, roi, [(0, 0)], 1)
    assert geom.area == pytest.approx(36 + 25 - 9)
    assert annotation_coverage(crossing, roi, [(0, 0)], 1)[0] == pytest.approx(52 / 64)


def test_overlapping_stars_match_oracle():
    # Non-degenerate overlaps: the NumPy union path, not the GEOS fallback.
    rng = np.random.default_rng(11)
    annotations = [_star(rng, *rng.uniform(20, 80, 2), rng.uniform(20, 50), 40) for _ in range(6)]
    roi = box(0, 0, 16, 16)
    coords = grid_tile_array((100, 100), 16, 16)
    expected = oracle_areas(annotations, roi, coords, 1.0) / roi.area
    assert (expected > 0).sum() > 20
    np.testing.assert_allclose(
        annotation_coverage(annotations, roi, coords, 1.0), expected, rtol=0, atol=1e-9
    )


def test_points_and_lines_contribute_nothing():
    roi = box(0, 0, 8, 8)
    only_lines = [Point(1, 1), LineString([(0, 0), (8, 8)]), Point(4, 4).buffer(0.0)]
    (geom,) = tile_annotations(only_lines, roi, [(0, 0)], 1)
    assert geom.is_empty and geom.area == 0 and geom.geom_type == "Polygon"
    assert annotation_coverage(only_lines, roi, [(0, 0)], 1).tolist() == [0.0]
    mixed = [Point(1, 1), GeometryCollection([box(0, 0, 4, 8), LineString([(0, 0), (8, 8)])])]
    (geom,) = tile_annotations(mixed, roi, [(0, 0)], 1)
    assert geom.area == pytest.approx(32)
    assert geom.geom_type in ("Polygon", "MultiPolygon")
    assert annotation_coverage(mixed, roi, [(0, 0)], 1)[0] == pytest.approx(0.5)


def test_touching_annotation_gives_empty_polygon_not_a_line():
    # The annotation only shares the tile's right edge: zero area, an empty Polygon back.
    (geom,) = tile_annotations([box(8, 0, 16, 8)], box(0, 0, 8, 8), [(0, 0)], 1)
    assert geom.geom_type == "Polygon" and geom.is_empty
    assert annotation_coverage([box(8, 0, 16, 8)], box(0, 0, 8, 8), [(0, 0)], 1)[0] == 0.0


def test_generator_inputs_and_list_of_pairs():
    def annotation_stream():
        yield box(0, 0, 10, 10)
        yield None  # tolerated: nothing to add

    origins = (o for o in GOLDEN_ORIGINS)
    geoms = list(tile_annotations(annotation_stream(), box(0, 0, 8, 8), origins, 1))
    np.testing.assert_allclose(areas(geoms), [64, 16, 16, 4])
    coverage = annotation_coverage(
        annotation_stream(), box(0, 0, 8, 8), [list(o) for o in GOLDEN_ORIGINS], 1
    )
    np.testing.assert_allclose(coverage, [1, 0.25, 0.25, 1 / 16])
    # grid_tiles output feeds straight in
    coords = np.array(list(grid_tiles((16, 16), 8, 8)))
    coverage = annotation_coverage([box(0, 0, 10, 10)], box(0, 0, 8, 8), coords, 1)
    np.testing.assert_allclose(coverage, [1, 0.25, 0.25, 1 / 16])


def test_empty_inputs():
    roi = box(0, 0, 8, 8)
    geoms = list(tile_annotations([], roi, GOLDEN_ORIGINS, 1))
    assert len(geoms) == 4 and all(g.is_empty and g.geom_type == "Polygon" for g in geoms)
    assert annotation_coverage([], roi, GOLDEN_ORIGINS, 1).tolist() == [0.0] * 4
    assert list(tile_annotations([box(0, 0, 1, 1)], roi, [], 1)) == []
    assert annotation_coverage([box(0, 0, 1, 1)], roi, np.empty((0, 2)), 1).shape == (0,)
    # np.array(list(grid_tiles(...))) of an empty grid has shape (0,)
    assert annotation_coverage([box(0, 0, 1, 1)], roi, np.array([]), 1).shape == (0,)


def test_invalid_annotation_is_repaired():
    bowtie = Polygon([(0, 0), (8, 8), (8, 0), (0, 8)])  # self-intersecting
    assert not bowtie.is_valid
    (geom,) = tile_annotations([bowtie], box(0, 0, 8, 8), [(0, 0)], 1)
    assert geom.area == pytest.approx(32)
    assert annotation_coverage([bowtie], box(0, 0, 8, 8), [(0, 0)], 1)[0] == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("roi", "coords", "downsample", "message"),
    [
        (LineString([(0, 0), (1, 1)]), [(0, 0)], 1, "non-empty Polygon or MultiPolygon"),
        (box(0, 0, 0, 8), [(0, 0)], 1, "valid polygon"),
        (Polygon([(0, 0), (8, 8), (8, 0), (0, 8)]), [(0, 0)], 1, "valid polygon"),
        (box(0, 0, 8, 8), [(0, 0, 0)], 1, r"\(N, 2\) tile origins"),
        (box(0, 0, 8, 8), [(0, 0)], 0, "downsample must be positive"),
        (box(0, 0, 8, 8), [(0, 0)], -2.0, "downsample must be positive"),
        (box(0, 0, 8, 8), [(0, np.nan)], 1, "coordinates must be finite"),
    ],
)
def test_bad_arguments_raise(roi, coords, downsample, message):
    with pytest.raises(ValueError, match=message):
        tile_annotations([box(0, 0, 1, 1)], roi, coords, downsample)
    with pytest.raises(ValueError, match=message):
        annotation_coverage([box(0, 0, 1, 1)], roi, coords, downsample)


def test_non_geometry_annotation_raises_type_error():
    with pytest.raises(TypeError):
        annotation_coverage([[(0, 0), (1, 0), (1, 1)]], box(0, 0, 8, 8), [(0, 0)], 1)


# -- random polygons against the oracle -------------------------------------------------------


def _star(rng, cx, cy, radius, n) -> Polygon:
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    radii = radius * rng.uniform(0.3, 1.0, n)
    return Polygon(np.c_[cx + radii * np.cos(angles), cy + radii * np.sin(angles)])


def _random_annotations(rng, extent: np.ndarray, aligned_step: float) -> list:
    out: list = []
    for _ in range(int(rng.integers(2, 10))):
        centre = rng.uniform(-0.1, 1.1, 2) * extent
        radius = rng.uniform(0.03, 0.45) * extent.min()
        kind = int(rng.integers(0, 7))
        if kind <= 1:
            star = _star(rng, *centre, radius, int(rng.integers(3, 48)))
            if star.is_valid:
                out.append(star)
        elif kind == 2:  # polygon with a hole
            ring = Point(centre).buffer(radius, 12)
            out.append(ring.difference(Point(centre + radius * 0.2).buffer(radius * 0.45, 6)))
        elif kind == 3:  # MultiPolygon
            a = box(*(centre - radius / 2), *centre)
            b = Point(centre + radius * 0.6).buffer(radius * 0.3, 5)
            out.append(MultiPolygon([a, b]))
        elif kind == 4:  # box on the level-0 tile grid: edges through tile corners and sides
            g = np.round(centre / aligned_step) * aligned_step
            size = aligned_step * rng.integers(1, 4, 2)
            out.append(box(g[0], g[1], g[0] + size[0], g[1] + size[1]))
        elif kind == 5 and out:  # exact duplicate: shared edges everywhere
            out.append(out[int(rng.integers(len(out)))])
        else:
            out.append(Point(centre))
            out.append(LineString([centre, centre + radius]))
    return out


ROIS = {
    "box": box(0, 0, 8, 8),
    "offset_box": box(1, 2, 7, 5),
    "wide_box": box(0, 0, 16, 4),
    "circle": Point(4, 4).buffer(3.5, 12),
    "triangle": Polygon([(0, 0), (8, 0), (3, 7)]),
    "box_with_hole": box(0, 0, 8, 8).difference(box(2, 2, 5, 5)),
    "two_boxes": MultiPolygon([box(0, 0, 3, 3), box(5, 5, 8, 8)]),
}


@pytest.mark.parametrize("roi_name", list(ROIS))
@pytest.mark.parametrize("downsample", [1.0, 2.0, 3.7, (2.0, 3.0)])
def test_random_polygons_against_oracle(roi_name, downsample):
    roi = ROIS[roi_name]
    dsx, dsy = (downsample, downsample) if np.ndim(downsample) == 0 else downsample
    # A fixed seed per case (str hash is salted per process, so not hash()).
    rng = np.random.default_rng([*map(ord, roi_name), int(dsx * 10), int(dsy * 10)])
    for trial in range(4):
        extent = np.array([80.0 * dsx, 60.0 * dsy])
        annotations = _random_annotations(rng, extent, aligned_step=8 * dsx)
        if trial == 0:
            coords = grid_tile_array((80, 60), 8, 8)  # regular grid, stride = tile
        elif trial == 1:
            coords = grid_tile_array((80, 60), 8, (5, 3))  # overlapping tiles
        elif trial == 2:
            coords = rng.uniform(-5, 80, (40, 2))  # arbitrary origins
        else:
            coords = grid_tile_array((80, 60), 8, 11)  # gaps between tiles
        expected = oracle_areas(annotations, roi, coords, downsample)
        geoms = list(tile_annotations(iter(annotations), roi, coords, downsample))
        got = areas(geoms)
        np.testing.assert_allclose(got / roi.area, expected / roi.area, rtol=0, atol=1e-9)
        coverage = annotation_coverage(annotations, roi, coords, downsample)
        np.testing.assert_allclose(coverage, got / roi.area, rtol=0, atol=1e-9)
        assert ((coverage >= 0) & (coverage <= 1)).all()
        for g in geoms:
            assert g.geom_type in ("Polygon", "MultiPolygon")


@pytest.mark.parametrize("seed", range(6))
def test_numpy_kernel_matches_geos_route(seed):
    # Two independent implementations for a rectangle ROI: the rectangle kernel and the GEOS route.
    rng = np.random.default_rng(100 + seed)
    annotations = _random_annotations(rng, np.array([400.0, 300.0]), aligned_step=32)
    annotations += [_star(rng, *rng.uniform(0, 400, 2), rng.uniform(20, 150), 60) for _ in range(6)]
    roi = box(0, 0, 32, 32)
    coords = grid_tile_array((400, 300), 32, 32)
    parts = annotations_module._polygon_parts(annotations)
    geos = annotations_module._general_coverage(parts, roi, coords.astype(float), (1.0, 1.0))
    np.testing.assert_allclose(
        annotation_coverage(annotations, roi, coords, 1), geos, rtol=0, atol=1e-9
    )


def test_large_polygon_spanning_many_tiles_far_from_origin():
    # Long edges cut across many tiles; coordinates near 1e5 stress the rounding guards.
    offset = 100_000.0
    big = Polygon(
        [(offset - 50, offset - 30), (offset + 900, offset + 40), (offset + 300, offset + 700)]
    )
    hole = Point(offset + 350, offset + 250).buffer(60, 8)
    annotations = [big.difference(hole), Point(offset + 128, offset + 128).buffer(200, 16)]
    roi = box(0, 0, 32, 32)
    coords = grid_tile_array((1000, 800), 32, 32) + offset
    expected = oracle_areas(annotations, roi, coords, 1.0) / roi.area
    assert (expected == 1).sum() > 50 and ((expected > 0) & (expected < 1)).sum() > 50
    np.testing.assert_allclose(
        annotation_coverage(annotations, roi, coords, 1.0), expected, rtol=0, atol=1e-9
    )


def test_corners_on_tile_corners_in_small_chunks(monkeypatch):
    # Annotation corners on tile corners and edges along tile sides put crossings exactly on
    # the lines the kernel counts along; tiny chunks of boundary pieces exercise its chunking.
    monkeypatch.setattr(rect_coverage_module, "_CHUNK_PIECES", 2)
    annotations = [box(0, 0, 16, 16), box(8, 8, 40, 24), Polygon([(16, 0), (40, 0), (16, 24)])]
    roi = box(0, 0, 8, 8)
    coords = grid_tile_array((48, 32), 8, 8)
    expected = oracle_areas(annotations, roi, coords, 1.0) / 64
    np.testing.assert_allclose(
        annotation_coverage(annotations, roi, coords, 1), expected, rtol=0, atol=1e-12
    )
