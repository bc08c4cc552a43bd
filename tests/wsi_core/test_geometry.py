"""wsi_core.geometry: the one axis-aligned-rectangle test, and the coverage and overlay kernels
routing a ROI the same way through it."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from kernel_oracles import check_against_oracle, oracle_areas
from shapely import MultiPolygon, Point, Polygon, box
from shapely.affinity import rotate

import wsi_core.tiling.overlay as overlay_module
import wsi_core.tiling.rect_coverage as rect_coverage_module
from wsi_core.geometry import (
    finish_polygon,
    force_2d,
    is_axis_aligned_rectangle,
    valid_polygon_parts,
)
from wsi_core.synthetic import write_pyramid_tiff
from wsi_core.tiling import annotation_coverage, tile_annotations, tile_overlay

# The centre of an overlay pixel as the overlay kernel tests it (c - 1e-6), in the tile frame
# of a tile read at scale 1.
CENTRE = 0.5 - 1e-6


def slit_box(size: float = 16.0, half_width: float = 1e-10) -> Polygon:
    """``box(0, 0, size, size)`` with a slit 2e-10 wide and 1 deep cut down from its top edge
    through the tested centre of pixel (0, 0). It misses its bounding box's area by less than
    1e-12 of it, so a test with an area tolerance takes it for its bounding box."""
    left, right = CENTRE - half_width, CENTRE + half_width
    return Polygon(
        [(0, 0), (left, 0), (left, 1), (right, 1), (right, 0), (size, 0), (size, size), (0, size)]
    )


RECTANGLES = {
    "box": box(0, 0, 8, 8),
    "offset box": box(3.3, 4.1, 97.6, 88.2),
    "counter-clockwise": Polygon([(0, 0), (0, 8), (8, 8), (8, 0)]),
    "extra vertices on the sides": Polygon([(0, 0), (4, 0), (8, 0), (8, 3), (8, 8), (0, 8)]),
    "repeated closing vertex": Polygon([(0, 0), (8, 0), (8, 8), (0, 8), (0, 0), (0, 0)]),
    "with z": Polygon([(0, 0, 1), (8, 0, 1), (8, 8, 1), (0, 8, 1)]),
    "far from the origin": box(1e9, 1e9, 1e9 + 0.001, 1e9 + 0.002),
}

NOT_RECTANGLES = {
    "slit": slit_box(),
    "corner moved by 1e-13": Polygon([(0, 0), (10, 0), (10, 10), (1e-13, 10)]),
    "rotated by 1e-12 degrees": rotate(box(0, 0, 512, 512), 1e-12, origin=(0, 0)),
    "side bent by 1e-10": Polygon([(0, 0), (512, 0), (512, 512), (256, 512 - 1e-10), (0, 512)]),
    "hole": box(0, 0, 8, 8).difference(box(2, 2, 3, 3)),
    "two boxes": MultiPolygon([box(0, 0, 3, 3), box(5, 5, 8, 8)]),
    "triangle": Polygon([(0, 0), (8, 0), (3, 7)]),
    "circle": Point(4, 4).buffer(3.5),
    "empty": Polygon(),
    "zero width": box(0, 0, 0, 8),
    "self-touching spike (invalid)": Polygon(
        [(0, 0), (10, 0), (10, 5), (5, 5), (10, 5), (10, 10), (0, 10)]
    ),
    "ring traced twice (invalid)": Polygon(
        [(0, 0), (8, 0), (8, 8), (0, 8), (0, 0), (8, 0), (8, 8), (0, 8)]
    ),
    "a point": Point(1, 1),
}


@pytest.mark.parametrize("name", list(RECTANGLES))
def test_rectangles(name):
    assert is_axis_aligned_rectangle(RECTANGLES[name])


@pytest.mark.parametrize("name", list(NOT_RECTANGLES))
def test_not_rectangles(name):
    assert not is_axis_aligned_rectangle(NOT_RECTANGLES[name])


def test_the_slit_is_within_an_area_tolerance_of_its_bounding_box():
    # What made the two former tests disagree: by area it is its bounding box.
    roi = slit_box()
    assert roi.is_valid
    assert 0 < 256 - roi.area <= 1e-12 * 256


def test_coverage_kernel_takes_the_general_route_for_a_near_rectangle(monkeypatch):
    """The slit ROI is not a rectangle: the rectangle kernel (which computes on the
    bounding box) is never asked, and coverage and geometry match the oracle."""

    def refuse(*args, **kwargs):
        raise AssertionError("the rectangle kernel was used for a ROI that is no rectangle")

    monkeypatch.setattr(rect_coverage_module, "RectCoverage", refuse)
    roi = slit_box()
    annotations = [box(0, 0, 10, 10), box(20, 3, 40, 30), Polygon([(30, 0), (60, 10), (35, 40)])]
    coords = np.array(
        [(x, y) for y in range(0, 48, 16) for x in range(0, 64, 16)] + [(3, 5), (17.5, 2.25)],
        dtype=float,
    )
    for downsample in (1.0, 2.5):
        expected = oracle_areas(annotations, roi, coords, downsample) / roi.area
        coverage = annotation_coverage(annotations, roi, coords, downsample)
        # Routed through the bounding box, tiles across the slit are off by about 7e-13.
        np.testing.assert_allclose(coverage, expected, rtol=0, atol=1e-14)
        geoms = list(tile_annotations(annotations, roi, coords, downsample))
        np.testing.assert_allclose([g.area / roi.area for g in geoms], expected, atol=1e-14)
        # Clipped to the bounding box, the tile at (0, 0) would keep the slit (2e-10).
        assert max(shapely.difference(g, roi).area for g in geoms) <= 1e-14


def test_overlay_kernel_takes_the_mask_route_for_a_near_rectangle(tmp_path, monkeypatch):
    """The same ROI on an overlay: the slit holds the tested centre of each tile's top-left
    pixel, so that pixel is not the tile's. The block-sum route alone (bounding box) would
    count it; the mask route, like the oracle, does not (it may use block sums for the box and
    take off the pixels outside the mask)."""
    used = []
    real_masked = overlay_module._count_masked

    def spy_masked(*args, **kwargs):
        used.append("masked")
        return real_masked(*args, **kwargs)

    monkeypatch.setattr(overlay_module, "_count_masked", spy_masked)
    image = np.zeros((64, 64), dtype=np.uint8)
    image[:, ::16] = 7  # each tile's left column, its top-left pixel included
    image[40:, 40:] = 255
    path = write_pyramid_tiff(
        tmp_path / "columns.tiff", image, mpp=1.0, n_levels=1, resample="nearest"
    )
    roi = slit_box()
    tiles = [(x, y) for y in range(0, 64, 16) for x in range(0, 64, 16)]
    overlap = check_against_oracle(path, image, roi, tiles, 1.0, 1.0)
    assert overlap[0] == {"0": 240 / 255, "7": 15 / 255, "255": 0.0}
    assert used
    patch = tile_overlay(roi, str(path), [16], [16], 1.0, 1.0)[0]
    assert patch.mask[0, 0] and not patch.mask[1:, 0].any() and not patch.mask[:, 1:].any()


def test_both_kernels_take_the_rectangle_route_for_a_rectangle(tmp_path, monkeypatch):
    """And the converse: a true rectangle with extra vertices goes down both fast routes."""
    used = []
    real_rect, real_box = rect_coverage_module.RectCoverage, overlay_module._count_box

    def spy_rect(*args, **kwargs):
        used.append("coverage")
        return real_rect(*args, **kwargs)

    def spy_box(*args, **kwargs):
        used.append("overlay")
        return real_box(*args, **kwargs)

    monkeypatch.setattr(rect_coverage_module, "RectCoverage", spy_rect)
    monkeypatch.setattr(overlay_module, "_count_box", spy_box)
    roi = RECTANGLES["extra vertices on the sides"]
    annotations = [Polygon([(2, 1), (30, 5), (9, 25)])]
    coords = [(x, y) for y in range(0, 32, 8) for x in range(0, 32, 8)]
    np.testing.assert_allclose(
        annotation_coverage(annotations, roi, coords, 1.0),
        oracle_areas(annotations, roi, coords, 1.0) / roi.area,
        rtol=0,
        atol=1e-12,
    )
    image = np.zeros((32, 32), dtype=np.uint8)
    image[5:20, 3:11] = 255
    path = write_pyramid_tiff(tmp_path / "rect.tiff", image, mpp=1.0, n_levels=1)
    check_against_oracle(path, image, roi, coords, 1.0, 1.0)
    assert set(used) == {"coverage", "overlay"}


def test_one_repair_rule_for_parsers_and_kernels():
    """finish_polygon (one annotation, kept whole) and valid_polygon_parts (arrays of parts)
    repair a bow-tie to the same area."""
    bowtie = Polygon([(0, 0), (8, 8), (8, 0), (0, 8)])
    repaired, _ = finish_polygon(bowtie)
    parts = valid_polygon_parts(np.array([bowtie], dtype=object))
    assert repaired is not None and repaired.is_valid
    assert all(part.is_valid for part in parts)
    assert repaired.area == pytest.approx(32) and shapely.union_all(parts).area == pytest.approx(32)


def test_force_2d_rebuilds_only_what_has_z_or_m():
    """Polygons with z or m lose them (same x, y); 2-D ones come back as the same objects; and
    coverage of z/m annotations equals that of their 2-D copies."""
    flat = [box(0, 0, 4, 4), Point(6, 6).buffer(3), Polygon([(2, 2), (9, 2), (9, 5), (2, 5)])]
    with_z = shapely.force_3d(flat[1], z=7.0)
    with_m = shapely.from_wkt("POLYGON M ((2 2 1, 9 2 1, 9 5 1, 2 5 1, 2 2 1))")
    geoms = np.array([flat[0], with_z, with_m], dtype=object)
    out = force_2d(geoms)
    assert out[0] is geoms[0]
    assert not np.any(shapely.has_z(out) | shapely.has_m(out))
    assert all(shapely.equals_exact(a, b, tolerance=0) for a, b in zip(out, flat, strict=True))
    assert geoms[1] is with_z, "the input array is left as it was"
    origins = np.array([(0, 0), (4, 0), (0, 4), (4, 4)], dtype=float)
    roi = box(0, 0, 4, 4)
    np.testing.assert_array_equal(
        annotation_coverage(geoms, roi, origins, 1.0), annotation_coverage(flat, roi, origins, 1.0)
    )
