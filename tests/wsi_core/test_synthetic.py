"""write_pyramid_tiff: the file it writes, tag by tag, and the level arithmetic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from defusedxml import ElementTree

from wsi_core.openslide import OpenSlide
from wsi_core.synthetic import pyramid_level, write_pyramid_tiff
from wsi_core.tiff_reader import TiffReader


def test_mean_rounds_half_up_and_drops_the_odd_edge():
    image = np.array(
        [[0, 1, 0, 0, 9], [1, 1, 1, 0, 9], [0, 0, 3, 3, 9]], dtype=np.uint8
    )  # 5 wide, 3 high: level 1 is 2x1, the last column and row are dropped
    np.testing.assert_array_equal(pyramid_level(image, 1), [[1, 0]])  # 0.75 -> 1, 0.25 -> 0
    np.testing.assert_array_equal(pyramid_level(np.array([[0, 0], [1, 1]], np.uint8), 1), [[1]])


def test_level_i_is_the_exact_mean_of_its_block():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    level2 = pyramid_level(image, 2)
    assert level2.shape == (9, 13, 3) and level2.dtype == np.uint8
    # repeated exact 2x2 means (no rounding in between) equal the 4x4 block mean
    halves = image[:36, :52].astype(np.float64)
    for _ in range(2):
        halves = (
            halves[0::2, 0::2] + halves[1::2, 0::2] + halves[0::2, 1::2] + halves[1::2, 1::2]
        ) / 4
    np.testing.assert_array_equal(level2, np.floor(halves + 0.5).astype(np.uint8))
    assert level2[4, 7, 1] == int(np.floor(image[16:20, 28:32, 1].mean() + 0.5))


def test_nearest_keeps_mask_values():
    rng = np.random.default_rng(4)
    mask = rng.integers(0, 3, (70, 90), dtype=np.uint8)
    level2 = pyramid_level(mask, 2, resample="nearest")
    np.testing.assert_array_equal(level2, mask[:68:4, :88:4])
    assert set(np.unique(level2)) <= {0, 1, 2}


def test_subifd_layout_and_tags(tmp_path):
    image = np.zeros((300, 500, 3), dtype=np.uint8)
    path = write_pyramid_tiff(tmp_path / "s.tif", image, (0.25, 0.5), 3, tile=(64, 128))
    assert isinstance(path, Path) and path == tmp_path / "s.tif"
    with tifffile.TiffFile(path) as tif:
        assert len(tif.pages) == 1
        base = tif.pages[0]
        assert len(base.subifds) == 2
        assert base.is_tiled and base.tile == (64, 128)
        assert base.compression == tifffile.COMPRESSION.ADOBE_DEFLATE
        assert base.resolutionunit == tifffile.RESUNIT.CENTIMETER
        assert base.resolution == pytest.approx((10_000 / 0.25, 10_000 / 0.5))
        levels = tif.series[0].levels
        assert [level.shape for level in levels] == [(300, 500, 3), (150, 250, 3), (75, 125, 3)]
        reduced = levels[2].keyframe
        assert reduced.subfiletype == 1
        assert reduced.resolution == pytest.approx((10_000 / 1.0, 10_000 / 2.0))  # mpp * 4


@pytest.mark.parametrize(
    ("unit", "per_micrometre"),
    [("INCH", 25400), ("centimeter", 10_000), ("MILLIMETER", 1000), ("MICROMETER", 1)],
)
def test_page_layout_and_resolution_units(tmp_path, unit, per_micrometre):
    image = np.zeros((256, 256), dtype=np.uint16)
    path = write_pyramid_tiff(
        tmp_path / "p.tif", image, 0.5, 4, subifds=False, resolution_unit=unit, compression=None
    )
    with tifffile.TiffFile(path) as tif:
        assert len(tif.pages) == 4
        assert [page.shape for page in tif.pages] == [(256, 256), (128, 128), (64, 64), (32, 32)]
        assert [int(page.subfiletype) for page in tif.pages] == [0, 1, 1, 1]
        assert all(page.dtype == np.uint16 and page.compression == 1 for page in tif.pages)
        assert tif.pages[0].resolutionunit == tifffile.RESUNIT[unit.upper()]
        assert tif.pages[0].resolution == pytest.approx((per_micrometre / 0.5,) * 2)
        assert tif.pages[3].resolution == pytest.approx((per_micrometre / 4.0,) * 2)


def test_no_resolution_unit_writes_none(tmp_path):
    image = np.zeros((64, 64), np.uint8)
    path = write_pyramid_tiff(tmp_path / "n.tif", image, 0.5, 1, resolution_unit=None)
    with tifffile.TiffFile(path) as tif:
        assert tif.pages[0].resolutionunit == tifffile.RESUNIT.NONE


def test_ome_records_physical_size(tmp_path):
    image = np.zeros((128, 96, 3), np.uint8)
    path = write_pyramid_tiff(tmp_path / "o.ome.tif", image, (0.3, 0.4), 2, ome=True)
    with tifffile.TiffFile(path) as tif:
        assert tif.is_ome
        root = ElementTree.fromstring(tif.ome_metadata)
        pixels = next(e for e in root.iter() if e.tag.endswith("Pixels"))
        assert float(pixels.get("PhysicalSizeX")) == pytest.approx(0.3)
        assert float(pixels.get("PhysicalSizeY")) == pytest.approx(0.4)
        assert pixels.get("PhysicalSizeXUnit", "µm") == "µm"
        assert len(tif.series) == 1 and len(tif.series[0].levels) == 2


def test_bool_mask_and_strips(tmp_path):
    mask = np.zeros((40, 60), dtype=bool)
    mask[5:9, 10:30] = True
    path = write_pyramid_tiff(tmp_path / "m.tif", mask, 1.0, 2, tile=None, resample="nearest")
    with tifffile.TiffFile(path) as tif:
        assert not tif.pages[0].is_tiled and tif.pages[0].dtype == np.uint8
    with TiffReader(path) as slide:
        level0, level1 = mask.astype(np.uint8), mask[::2, ::2].astype(np.uint8)
        np.testing.assert_array_equal(slide.read_level_region(0, 0, 0, 60, 40), level0)
        np.testing.assert_array_equal(slide.read_level_region(1, 0, 0, 30, 20), level1)


def test_jpeg_pyramid_reads_the_same_in_both_backends(tmp_path):
    y, x = np.mgrid[0:512, 0:640]
    image = np.stack([(x // 3) % 256, (y // 2) % 256, ((x + y) // 4) % 256], -1).astype(np.uint8)
    path = write_pyramid_tiff(tmp_path / "j.tif", image, 0.5, 2, subifds=False, compression="jpeg")
    with TiffReader(path) as tiff, OpenSlide(path) as osr:
        a, b = tiff.read_tile(0, 0, 640, 512, 0), osr.read_tile(0, 0, 640, 512, 0)
    assert np.abs(a.astype(int) - image).mean() < 2  # lossy, but close
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ome": True, "subifds": False}, "SubIFDs"),
        ({"resolution_unit": "FURLONG"}, "resolution_unit"),
        ({"resample": "cubic"}, "resample"),
        ({"n_levels": 0}, "n_levels"),
        ({"n_levels": 8}, "empty"),
        ({"mpp": 0}, "positive"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, message):
    arguments = {"mpp": 0.5, "n_levels": 2, **kwargs}
    with pytest.raises(ValueError, match=message):
        write_pyramid_tiff(tmp_path / "x.tif", np.zeros((100, 100), np.uint8), **arguments)


def test_bad_image_shape(tmp_path):
    with pytest.raises(ValueError, match="image must be"):
        write_pyramid_tiff(tmp_path / "x.tif", np.zeros((10, 10, 2), np.uint8), 0.5, 1)


def test_description_is_level_0s_image_description(tmp_path):
    image = np.zeros((64, 64), dtype=np.uint8)
    path = write_pyramid_tiff(tmp_path / "d.tif", image, 1.0, 2, description="made by\na test")
    with tifffile.TiffFile(path) as tif:
        assert tif.pages[0].description == "made by\na test"
    assert TiffReader(path).level_count == 2  # the description changes nothing else
    with pytest.raises(ValueError, match="OME-XML"):
        write_pyramid_tiff(tmp_path / "o.tif", image, 1.0, 1, ome=True, description="x")
