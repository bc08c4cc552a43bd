"""Slide readers: synthetic pyramids through both backends, and the real third-party slides."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import openslide
import pytest
import tifffile

from wsi_core.errors import MissingMPPError, SlideError
from wsi_core.openslide import OpenSlide
from wsi_core.slide import SlideReader, open_slide
from wsi_core.synthetic import pyramid_level, write_pyramid_tiff
from wsi_core.tiff_reader import TiffReader

# Odd sizes so that levels do not divide evenly and edge tiles are partial.
HEIGHT, WIDTH = 611, 837
MPP_XY = (0.499, 0.502)
LEVELS = 3


def _rgb(image: np.ndarray) -> np.ndarray:
    return image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=-1)


def _expected_downsamples(width: int, height: int, levels: int) -> list[float]:
    return [((width / (width >> i)) + (height / (height >> i))) / 2 for i in range(levels)]


@pytest.fixture(scope="module")
def images() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(20240611)
    return {
        "rgb": rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8),
        "grey": rng.integers(0, 256, (HEIGHT, WIDTH), dtype=np.uint8),
    }


# (kind, subifds, ome, resolution_unit, tile)
LAYOUTS = [
    ("rgb", True, False, "CENTIMETER", (256, 256)),
    ("rgb", False, False, "INCH", (256, 256)),
    ("grey", True, True, "MILLIMETER", (128, 128)),
    ("grey", False, False, "MICROMETER", (64, 128)),
    ("rgb", True, True, "INCH", (128, 256)),
    ("rgb", False, False, "CENTIMETER", None),  # stripped
]


@pytest.fixture(scope="module", params=LAYOUTS, ids=lambda p: "-".join(map(str, p)))
def written(request, images, tmp_path_factory) -> tuple[Path, np.ndarray, tuple]:
    kind, subifds, ome, unit, tile = request.param
    path = tmp_path_factory.mktemp("pyr") / "slide.tiff"
    result = write_pyramid_tiff(
        path,
        images[kind],
        MPP_XY,
        LEVELS,
        subifds=subifds,
        ome=ome,
        resolution_unit=unit,
        tile=tile,
    )
    assert result == path
    return path, images[kind], request.param


# Synthetic round trips: tifffile backend ---------------------------------------------------------


def test_tiff_reader_levels_and_mpp(written):
    path, _, (_, _, ome, _, _) = written
    with TiffReader(path) as slide:
        assert isinstance(slide, SlideReader)
        assert slide.level_count == LEVELS
        assert slide.level_dimensions == ((837, 611), (418, 305), (209, 152))
        assert slide.level_downsamples == pytest.approx(
            _expected_downsamples(WIDTH, HEIGHT, LEVELS)
        )
        assert slide.mpp == pytest.approx(MPP_XY, rel=1e-7)
        assert slide.vendor == ("ome-tiff" if ome else "generic-tiff")
        assert slide.slide_resolution(2) == pytest.approx(
            (MPP_XY[0] * slide.level_downsamples[2], MPP_XY[1] * slide.level_downsamples[2])
        )


@pytest.mark.parametrize(
    "window",
    [(0, 0, 5, 7), (250, 120, 20, 300), (60, 60, 140, 140), (0, 0, 209, 152), (200, 140, 9, 12)],
)
def test_tiff_reader_read_level_region_equals_slice(written, window):
    path, image, _ = written
    x, y, w, h = window
    with TiffReader(path) as slide:
        for level in range(LEVELS):
            width, height = slide.level_dimensions[level]
            if x + w > width or y + h > height:
                continue  # every window fits level 0 at least
            expected = pyramid_level(image, level)[y : y + h, x : x + w]
            region = slide.read_level_region(level, x, y, w, h)
            assert region.dtype == np.uint8
            np.testing.assert_array_equal(region, expected)
            region[...] = 7  # the caller's to overwrite: a read afterwards is unchanged
            np.testing.assert_array_equal(slide.read_level_region(level, x, y, w, h), expected)


def test_tiff_reader_read_tile_hangs_off_edge(written):
    path, image, _ = written
    with TiffReader(path) as slide:
        for level, background in ((0, 255), (1, (10, 20, 30))):
            data = _rgb(pyramid_level(image, level))
            width, height = slide.level_dimensions[level]
            x, y = width - 100, height - 37
            tile = slide.read_tile(
                x=x, y=y, extent_x=256, extent_y=128, level=level, background=background
            )
            assert tile.shape == (128, 256, 3) and tile.dtype == np.uint8
            np.testing.assert_array_equal(tile[:37, :100], data[y:, x:])
            assert np.all(tile[37:] == np.asarray(background, dtype=np.uint8))
            assert np.all(tile[:, 100:] == np.asarray(background, dtype=np.uint8))
        # a negative origin: the top-left is outside, the rest is the image corner
        tile = slide.read_tile(-3, -5, 10, 10, 0, background=0)
        np.testing.assert_array_equal(tile[5:, 3:], _rgb(image)[:5, :7])
        assert not tile[:5].any() and not tile[:, :3].any()
        # wholly outside
        assert np.all(slide.read_tile(5000, 0, 4, 4, 0) == 255)


def test_read_level_region_rejects_windows_outside_the_level(written):
    path, _, _ = written
    with TiffReader(path) as slide:
        with pytest.raises(ValueError, match="leaves level 1"):
            slide.read_level_region(1, 400, 0, 20, 20)
        with pytest.raises(ValueError, match="leaves level 0"):
            slide.read_level_region(0, -1, 0, 2, 2)
        with pytest.raises(ValueError, match="level 3 does not exist"):
            slide.read_level_region(3, 0, 0, 1, 1)


def test_open_slide_picks_tifffile_for_synthetic_tiffs(written):
    path, _, _ = written
    with open_slide(path) as slide:
        assert isinstance(slide, TiffReader)
        assert slide.level_count == LEVELS


# Synthetic round trips: OpenSlide backend --------------------------------------------------------


@pytest.mark.parametrize(("kind", "unit"), [("rgb", "CENTIMETER"), ("grey", "INCH")])
def test_openslide_reads_page_pyramids(images, tmp_path, kind, unit):
    image = images[kind]
    path = write_pyramid_tiff(
        tmp_path / "pages.tiff", image, MPP_XY, LEVELS, subifds=False, resolution_unit=unit
    )
    with OpenSlide(path) as slide, TiffReader(path) as reference:
        assert isinstance(slide, openslide.OpenSlide) and isinstance(slide, SlideReader)
        assert slide.vendor == "generic-tiff"
        assert slide.level_dimensions == ((837, 611), (418, 305), (209, 152))
        assert slide.level_dimensions == reference.level_dimensions
        assert slide.level_downsamples == pytest.approx(reference.level_downsamples)
        assert slide.mpp == pytest.approx(MPP_XY, rel=1e-6)
        for level in range(LEVELS):
            data = _rgb(pyramid_level(image, level))
            width, height = slide.level_dimensions[level]
            # OpenSlide reads whole level pixels only where x * downsample is a whole number
            np.testing.assert_array_equal(slide.read_tile(0, 0, width, height, level), data)
            np.testing.assert_array_equal(slide.read_level_region(level, 0, 0, width, height), data)
        region = slide.read_level_region(0, 250, 120, 20, 300)
        np.testing.assert_array_equal(region, _rgb(image)[120:420, 250:270])
        region[...] = 7  # the caller's to overwrite: a read afterwards is unchanged
        np.testing.assert_array_equal(
            slide.read_level_region(0, 250, 120, 20, 300), _rgb(image)[120:420, 250:270]
        )
        tile = slide.read_tile(WIDTH - 100, HEIGHT - 37, 256, 128, 0, background=(1, 2, 3))
        np.testing.assert_array_equal(tile[:37, :100], _rgb(image)[-37:, -100:])
        assert np.all(tile[37:] == (1, 2, 3)) and np.all(tile[:, 100:] == (1, 2, 3))
        with pytest.raises(ValueError, match="leaves level 0"):
            slide.read_level_region(0, WIDTH - 5, 0, 10, 10)


def test_openslide_ignores_subifd_pyramids(images, tmp_path):
    """Why open_slide sends generic TIFFs to tifffile: OpenSlide sees level 0 only."""
    path = write_pyramid_tiff(tmp_path / "sub.tiff", images["rgb"], MPP_XY, LEVELS, subifds=True)
    with OpenSlide(path) as slide:
        assert slide.level_dimensions == ((WIDTH, HEIGHT),)
        assert slide.mpp == pytest.approx(MPP_XY, rel=1e-6)
    with open_slide(path) as slide:
        assert slide.level_count == LEVELS


def test_openslide_has_no_mpp_for_millimetre_tags_but_tifffile_does(images, tmp_path):
    path = write_pyramid_tiff(
        tmp_path / "mm.tiff", images["rgb"], MPP_XY, 2, subifds=False, resolution_unit="MILLIMETER"
    )
    with OpenSlide(path) as slide, pytest.raises(MissingMPPError, match=r"mm\.tiff"):
        _ = slide.mpp
    with TiffReader(path) as slide:
        assert slide.mpp == pytest.approx(MPP_XY, rel=1e-7)


@pytest.mark.parametrize("backend", [TiffReader, OpenSlide])
def test_closest_level_and_slide_resolution(tmp_path, backend):
    image = np.zeros((512, 1024, 3), dtype=np.uint8)  # downsamples exactly 1, 2, 4
    path = write_pyramid_tiff(tmp_path / "exact.tiff", image, (0.5, 0.25), 3, subifds=False)
    with backend(path) as slide:
        assert slide.level_downsamples == (1.0, 2.0, 4.0)
        assert slide.mpp == pytest.approx((0.5, 0.25))
        assert slide.closest_level((0.5, 0.25)) == 0
        assert slide.closest_level((1.0, 0.5)) == 1
        assert slide.closest_level((2.0, 1.0)) == 2
        assert slide.closest_level((100.0, 50.0)) == 2
        assert slide.closest_level((0.75, 0.375)) == 0  # ratio 1.5: tie between 1 and 2 -> finer
        assert slide.closest_level((1.5, 0.75)) == 1  # ratio 3: tie between 2 and 4 -> finer
        # a scalar applies to both axes: ratios (2, 4), summed distances 4, 2, 2 -> finer tie
        assert slide.closest_level(1.0) == 1
        assert slide.slide_resolution(0) == pytest.approx((0.5, 0.25))
        assert slide.slide_resolution(2) == pytest.approx((2.0, 1.0))


@pytest.mark.parametrize("backend", [TiffReader, OpenSlide])
def test_missing_mpp_is_lazy_and_names_the_file(images, tmp_path, backend):
    path = write_pyramid_tiff(
        tmp_path / "no-mpp.tiff", images["rgb"], 1.0, 2, subifds=False, resolution_unit=None
    )
    with backend(path) as slide:  # opening works
        expected = pyramid_level(images["rgb"], 1)[:8, :8]
        np.testing.assert_array_equal(slide.read_tile(0, 0, 8, 8, 1), expected)
        calls = (
            lambda: slide.mpp,
            lambda: slide.closest_level(0.5),
            lambda: slide.slide_resolution(1),
        )
        for call in calls:
            with pytest.raises(MissingMPPError, match=r"no-mpp\.tiff") as info:
                call()
            assert info.value.path == str(path)
    with backend(path, mpp=0.25) as slide:
        assert slide.mpp == (0.25, 0.25)
        assert slide.closest_level(0.5) == 1
        assert slide.slide_resolution(1) == pytest.approx((0.25 * slide.level_downsamples[1],) * 2)


@pytest.mark.parametrize("backend", [TiffReader, OpenSlide])
def test_alpha_is_composited_over_background(tmp_path, backend):
    rng = np.random.default_rng(7)
    image = rng.integers(0, 256, (200, 300, 4), dtype=np.uint8)
    image[:10, :10, 3] = 0
    path = write_pyramid_tiff(tmp_path / "rgba.tiff", image, 0.5, 2, subifds=False)
    background = np.array([10, 200, 30])
    alpha = image[..., 3:].astype(np.float64)
    expected = np.floor((image[..., :3] * alpha + background * (255 - alpha)) / 255 + 0.5)
    with backend(path) as slide:
        tile = slide.read_tile(0, 0, 300, 200, 0, background=(10, 200, 30))
    # OpenSlide premultiplies and openslide-python divides again: allow that rounding
    tolerance = 0 if backend is TiffReader else 1
    assert np.abs(tile.astype(np.int64) - expected).max() <= tolerance
    assert np.all(tile[:10, :10] == (10, 200, 30))


# tifffile backend specifics -------------------------------------------------------------------


def _count_decodes(slide: TiffReader, level: int) -> list[int]:
    calls: list[int] = []
    decode = slide._levels[level].decode

    def counting(data, index, **kwargs):
        calls.append(index)
        return decode(data, index, **kwargs)

    slide._levels[level].decode = counting
    return calls


def test_only_tiles_meeting_the_window_are_decoded(images, tmp_path):
    path = write_pyramid_tiff(tmp_path / "t.tiff", images["rgb"], 0.5, 1, tile=(128, 128))
    with TiffReader(path) as slide:
        calls = _count_decodes(slide, 0)
        slide.read_level_region(0, 130, 260, 100, 100)  # inside tile row 2, column 1
        assert calls == [2 * 7 + 1]  # 837 px wide = 7 tiles per row
        calls.clear()
        window = slide.read_level_region(0, 120, 250, 20, 20)  # the corner of 4 tiles
        assert sorted(calls) == [1 * 7 + 0, 1 * 7 + 1, 2 * 7 + 0, 2 * 7 + 1]
        np.testing.assert_array_equal(window, images["rgb"][250:270, 120:140])


def test_only_strips_meeting_the_window_are_decoded(images, tmp_path):
    path = tmp_path / "strips.tif"
    tifffile.imwrite(path, images["grey"], rowsperstrip=16, compression="zlib")
    with TiffReader(path) as slide:
        calls = _count_decodes(slide, 0)
        window = slide.read_level_region(0, 5, 30, 40, 10)  # rows 30..39: strips 1 and 2
        assert sorted(calls) == [1, 2]
        np.testing.assert_array_equal(window, images["grey"][30:40, 5:45])


def test_planar_separate_rgb(images, tmp_path):
    path = tmp_path / "planar.tif"
    planes = np.moveaxis(images["rgb"], -1, 0)
    tifffile.imwrite(path, planes, photometric="rgb", planarconfig="separate", tile=(64, 64))
    with TiffReader(path) as slide:
        expected = images["rgb"][61:66, 60:130]
        np.testing.assert_array_equal(slide.read_level_region(0, 60, 61, 70, 5), expected)
        np.testing.assert_array_equal(slide.read_tile(60, 61, 70, 5, 0), expected)


def test_ome_channel_planes_are_stacked(images, tmp_path):
    planes = np.moveaxis(images["rgb"], -1, 0)  # CYX: one grey page per channel
    path = tmp_path / "cyx.ome.tif"
    tifffile.imwrite(path, planes, ome=True, metadata={"axes": "CYX"}, tile=(64, 64))
    with TiffReader(path) as slide:
        assert len(slide._levels[0].pages) == 3
        expected = images["rgb"][100:140, 33:97]
        np.testing.assert_array_equal(slide.read_level_region(0, 33, 100, 64, 40), expected)
        np.testing.assert_array_equal(slide.read_tile(33, 100, 64, 40, 0), expected)


def test_uint16_samples_keep_dtype_and_scale_to_uint8(tmp_path):
    image = np.array([[0, 257, 65535, 32896]], dtype=np.uint16).repeat(16, axis=0)
    path = tmp_path / "u16.tif"
    tifffile.imwrite(path, image, tile=(16, 16))
    with TiffReader(path) as slide:
        region = slide.read_level_region(0, 0, 0, 4, 2)
        assert region.dtype == np.uint16
        np.testing.assert_array_equal(region, image[:2])
        np.testing.assert_array_equal(slide.read_tile(0, 0, 4, 1, 0)[0, :, 0], [0, 1, 255, 128])


@pytest.mark.parametrize(
    ("size", "unit", "expected"),
    [
        (250.0, "nm", 0.25),
        (0.0005, "mm", 0.5),
        (0.5, "µm", 0.5),
        (0.75, None, 0.75),  # OME's default unit is the micrometre
        (2e-5, "cm", 0.2),
    ],
)
def test_ome_physical_size_units(tmp_path, size, unit, expected):
    metadata = {"axes": "YX", "PhysicalSizeX": size, "PhysicalSizeY": size}
    if unit is not None:
        metadata.update(PhysicalSizeXUnit=unit, PhysicalSizeYUnit=unit)
    path = tmp_path / "unit.ome.tif"
    tifffile.imwrite(path, np.zeros((32, 48), dtype=np.uint8), ome=True, metadata=metadata)
    with TiffReader(path) as slide:
        assert slide.vendor == "ome-tiff"
        assert slide.mpp == pytest.approx((expected, expected))


def test_reduced_pages_written_as_separate_series_are_levels(images, tmp_path):
    """OME-TIFF whose reduced levels are further OME images flagged reduced-resolution; a
    reduced page of another shape (a label) is not a level."""
    path = tmp_path / "pages.ome.tif"
    with tifffile.TiffWriter(path, ome=True) as writer:
        writer.write(
            images["rgb"],
            tile=(64, 64),
            photometric="rgb",
            metadata={"axes": "YXS", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5},
        )
        for level in (1, 2):
            writer.write(
                pyramid_level(images["rgb"], level), tile=(64, 64), photometric="rgb", subfiletype=1
            )
        writer.write(np.zeros((80, 40, 3), dtype=np.uint8), photometric="rgb", subfiletype=1)
    with TiffReader(path) as slide:
        assert len(slide._tif.series) == 4
        assert slide.level_dimensions == ((837, 611), (418, 305), (209, 152))
        assert slide.mpp == (0.5, 0.5)
        np.testing.assert_array_equal(
            slide.read_level_region(2, 100, 50, 30, 40),
            pyramid_level(images["rgb"], 2)[50:90, 100:130],
        )


def test_one_reader_is_safe_across_threads(images, tmp_path):
    path = write_pyramid_tiff(tmp_path / "threads.tiff", images["rgb"], 0.5, 2, tile=(64, 64))
    origins = [(x, y) for x in range(0, 700, 97) for y in range(0, 500, 89)]
    with TiffReader(path) as slide, ThreadPoolExecutor(8) as pool:
        tiles = list(pool.map(lambda o: slide.read_tile(o[0], o[1], 130, 110, 0), origins * 4))
    for (x, y), tile in zip(origins * 4, tiles, strict=True):
        expected = np.full((110, 130, 3), 255, dtype=np.uint8)
        part = images["rgb"][y : y + 110, x : x + 130]
        expected[: part.shape[0], : part.shape[1]] = part
        np.testing.assert_array_equal(tile, expected)


# Errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("opener", [open_slide, OpenSlide, TiffReader])
def test_non_slide_file_is_a_slide_error_naming_it(tmp_path, opener):
    path = tmp_path / "notes.txt"
    path.write_text("not a slide\n")
    with pytest.raises(SlideError, match=r"notes\.txt") as info:
        opener(path)
    assert info.value.path == str(path)


@pytest.mark.parametrize("opener", [open_slide, OpenSlide, TiffReader])
def test_missing_file_is_a_slide_error_naming_it(tmp_path, opener):
    path = tmp_path / "absent.svs"
    with pytest.raises(SlideError, match=r"absent\.svs: no such file"):
        opener(path)


def test_directory_is_a_slide_error(tmp_path):
    with pytest.raises(SlideError, match="not a file"):
        open_slide(tmp_path)


def test_close_twice_is_harmless(images, tmp_path):
    path = write_pyramid_tiff(tmp_path / "c.tiff", images["grey"], 0.5, 1, subifds=False)
    for backend in (TiffReader, OpenSlide):
        slide = backend(path)
        slide.close()
        slide.close()


# Real third-party slides ------------------------------------------------------------------------


def test_cmu_small_region(shared_data):
    path = shared_data / "slides" / "CMU-1-Small-Region.svs"
    with open_slide(path) as slide:
        assert isinstance(slide, OpenSlide)
        assert slide.vendor == "aperio"
        assert slide.level_count == 1
        assert slide.level_dimensions == ((2220, 2967),)
        assert slide.level_downsamples == (1.0,)
        assert slide.mpp == pytest.approx((0.499, 0.499))
        assert slide.closest_level(0.5) == 0
        assert slide.slide_resolution(0) == pytest.approx((0.499, 0.499))
        tile = slide.read_tile(x=700, y=1100, extent_x=512, extent_y=512, level=0)
    with openslide.OpenSlide(str(path)) as plain:
        reference = np.asarray(plain.read_region((700, 1100), 0, (512, 512)))
    assert reference[..., 3].min() == 255
    assert tile.shape == (512, 512, 3) and tile.dtype == np.uint8
    np.testing.assert_array_equal(tile, reference[..., :3])
    assert tile.std() > 8  # tissue, not blank glass
    with TiffReader(path) as slide:  # same JPEG tiles decoded by tifffile
        assert slide.level_dimensions == ((2220, 2967),)  # label/macro are not levels
        assert slide.mpp == pytest.approx((0.499, 0.499))
        np.testing.assert_array_equal(slide.read_tile(700, 1100, 512, 512, 0), tile)


def test_tcga_without_mpp(shared_data):
    path = shared_data / "slides" / "tcga-cr-7395-01a-01-ts1.svs"
    with open_slide(path) as slide:
        assert isinstance(slide, OpenSlide)
        assert slide.level_count == 2
        assert slide.level_dimensions == ((4443, 3567), (2221, 1783))
        assert slide.level_downsamples == pytest.approx((1.0, 2.0005), abs=1e-4)
        with pytest.raises(MissingMPPError, match=r"tcga-cr-7395-01a-01-ts1\.svs") as info:
            slide.closest_level(0.5)
        assert info.value.path == str(path)
        with pytest.raises(MissingMPPError, match=r"tcga-cr-7395-01a-01-ts1\.svs"):
            _ = slide.mpp
        # an explicit level needs no mpp; origin 0 because OpenSlide resamples this level
        # (downsample 2.0005) wherever x * downsample is not a whole number
        tile = slide.read_tile(0, 0, 1024, 1024, level=1)
        assert tile.shape == (1024, 1024, 3) and tile.std() > 8
    with TiffReader(path) as reference:
        assert reference.level_dimensions == ((4443, 3567), (2221, 1783))
        with pytest.raises(MissingMPPError):
            _ = reference.mpp
        np.testing.assert_array_equal(reference.read_tile(0, 0, 1024, 1024, 1), tile)
    with open_slide(path, mpp=0.25) as slide:
        assert slide.mpp == (0.25, 0.25)
        assert slide.closest_level(0.5) == 1
        assert slide.slide_resolution(1) == pytest.approx((0.25 * 2.0005055, 0.25 * 2.0005055))


def test_boxes_through_both_backends(shared_data):
    path = shared_data / "slides" / "boxes.tiff"
    with open_slide(path) as chosen:
        assert isinstance(chosen, TiffReader)
    with TiffReader(path) as tiff, OpenSlide(path) as osr:
        for slide in (tiff, osr):
            assert slide.level_count == 4
            assert slide.level_dimensions == ((300, 250), (150, 125), (75, 62), (37, 31))
            assert [round(d, 4) for d in slide.level_downsamples] == [1.0, 2.0, 4.0161, 8.0863]
            assert slide.mpp == pytest.approx((352.7778, 352.7778), abs=1e-4)
            assert slide.closest_level(700) == 1
        for level in range(4):
            width, height = tiff.level_dimensions[level]
            np.testing.assert_array_equal(
                tiff.read_tile(0, 0, width, height, level),
                osr.read_tile(0, 0, width, height, level),
            )
            np.testing.assert_array_equal(
                tiff.read_level_region(level, 0, 0, width, height),
                tifffile.imread(path, series=0, level=level),
            )


def test_mask_full_res(shared_data):
    path = shared_data / "masks" / "mask_full_res.tif"
    with pytest.raises(SlideError, match=r"mask_full_res\.tif"):
        OpenSlide(path)
    with open_slide(path) as slide:
        assert isinstance(slide, TiffReader)
        assert slide.level_dimensions == ((2220, 2967),)
        with pytest.raises(MissingMPPError, match=r"mask_full_res\.tif"):
            _ = slide.mpp  # ResolutionUnit NONE
        mask = slide.read_level_region(0, 0, 0, 2220, 2967)
        assert mask.shape == (2967, 2220) and mask.dtype == np.uint8
        assert set(np.unique(mask).tolist()) == {0, 1}
        assert int(mask.sum()) == 89
        rows, cols = np.nonzero(mask)
        assert (cols.min(), rows.min(), cols.max(), rows.max()) == (1, 2, 5, 30)
        corner = slide.read_level_region(0, 0, 0, 8, 40)  # strips at the top only
        assert int(corner.sum()) == 89
        tile = slide.read_tile(0, 0, 8, 40, 0)
        np.testing.assert_array_equal(tile, np.repeat(corner[..., None], 3, axis=-1))


def test_open_slide_walks_a_tiffs_pages_once(tmp_path, monkeypatch):
    """open_slide checks a TIFF's page chain before any library reads it and hands the
    layout to TiffReader, which does not walk the file again; TiffReader on its own does."""
    import wsi_core.slide as slide_module
    import wsi_core.tiff_reader as reader_module

    path = write_pyramid_tiff(
        tmp_path / "mask.tiff", np.zeros((64, 96), dtype=np.uint8), mpp=1.0, n_levels=2
    )
    walks = []
    walk = reader_module.read_tiff_layout_of_file

    def counting(name):
        walks.append(name)
        return walk(name)

    monkeypatch.setattr(slide_module, "read_tiff_layout_of_file", counting)
    monkeypatch.setattr(reader_module, "read_tiff_layout_of_file", counting)
    with open_slide(path) as slide:
        assert isinstance(slide, TiffReader) and slide.level_count == 2
    assert walks == [str(path)]
    with TiffReader(path) as slide:
        assert slide.level_count == 2
    assert walks == [str(path)] * 2
