"""Tile pixels in batches (``SlideReader.read_tiles``, ``iter_tiles``, ``read_slide_tiles``):
each stored tile decoded once per batch, and exactly the pixels of OpenSlide's ``read_region``
at integer downsamples, of the stored level elsewhere."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import openslide
import pytest
import tifffile

from wsi_core import tiff_reader
from wsi_core.errors import SlideError
from wsi_core.openslide import OpenSlide
from wsi_core.slide import open_slide
from wsi_core.synthetic import write_pyramid_tiff
from wsi_core.tiff_reader import TiffReader
from wsi_core.tiling import grid_tile_array, read_slide_tiles

CMU = "CMU-1-Small-Region.svs"  # JPEG, 240 px stored tiles, one level
TCGA = "tcga-cr-7395-01a-01-ts1.svs"  # JPEG 2000, levels at downsamples 1 and 2.0005
BOXES = "boxes.tiff"  # deflate, downsamples 1, 2, 4.0161, 8.0863


def _slide(shared_data: Path, name: str) -> Path:
    path = shared_data / "slides" / name
    if not path.exists():
        pytest.skip(f"{path} is absent (the third-party slides live in ../shared/data)")
    return path


def _grid(size: tuple[int, int], extent: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Origins of a 'keep' grid: the last row and column cross the level's edge."""
    tiles = grid_tile_array(size, extent, stride, last="keep")
    return tiles[:, 0], tiles[:, 1]


def _openslide_tile(
    plain: openslide.OpenSlide, x: int, y: int, extent: int, level: int, background: int
) -> np.ndarray:
    """OpenSlide's own read_region at level coords (x, y) of a level whose downsample is an
    integer, alpha (0 off the slide) composited over ``background``."""
    downsample = round(plain.level_downsamples[level])
    region = np.asarray(plain.read_region((x * downsample, y * downsample), level, (extent,) * 2))
    alpha = region[..., 3:].astype(np.uint32)
    mixed = region[..., :3].astype(np.uint32) * alpha + background * (255 - alpha)
    return ((mixed + 127) // 255).astype(np.uint8)


def _count_decodes(slide: TiffReader, level: int) -> Counter[int]:
    """Count, per stored tile index, the decodes of ``level`` from now on."""
    calls: Counter[int] = Counter()
    decode = slide._levels[level].decode

    def counting(data, index, **kwargs):
        calls[index] += 1
        return decode(data, index, **kwargs)

    slide._levels[level].decode = counting
    return calls


# Exact pixels ----------------------------------------------------------------------------------


@pytest.mark.parametrize("background", [255, 0])
def test_cmu_batch_equals_openslide_read_region(shared_data, background):
    """Overlapping 512 px tiles (stride 300) across the whole level, the last row and column
    past its edge: every pixel as OpenSlide's read_region gives it."""
    path = _slide(shared_data, CMU)
    xs, ys = _grid((2220, 2967), 512, 300)
    with open_slide(path) as slide, openslide.OpenSlide(str(path)) as plain:
        assert isinstance(slide, OpenSlide)
        tiles = slide.read_tiles(xs, ys, 512, 512, 0, background=background)
        assert len(tiles) == len(xs) == 70
        for x, y, tile in zip(xs.tolist(), ys.tolist(), tiles, strict=True):
            expected = _openslide_tile(plain, x, y, 512, 0, background)
            np.testing.assert_array_equal(tile, expected, err_msg=f"tile at {x}, {y}")
        edge = tiles[-1]  # origin (1800, 2700): 420 x 267 pixels on the slide
        assert np.all(edge[267:] == background) and np.all(edge[:, 420:] == background)
        assert edge[:267, :420].min() < 100  # the slide's own pixels reach the edge


def test_tcga_jpeg2000_level0_equals_openslide(shared_data):
    path = _slide(shared_data, TCGA)
    xs, ys = _grid((4443, 3567), 512, 512)
    pick = np.arange(0, len(xs), 5)  # a spread of 13 tiles, edges included
    with open_slide(path) as slide, openslide.OpenSlide(str(path)) as plain:
        tiles = slide.read_tiles(xs[pick], ys[pick], 512, 512, 0)
        for x, y, tile in zip(xs[pick].tolist(), ys[pick].tolist(), tiles, strict=True):
            np.testing.assert_array_equal(tile, _openslide_tile(plain, x, y, 512, 0, 255))


def test_tcga_non_integer_level_is_the_stored_pixels(shared_data):
    """Level 1 (downsample 2.0005): the stored pixels at every origin, as TiffReader reads
    them; OpenSlide's read_region agrees where it does not resample (origin 0)."""
    path = _slide(shared_data, TCGA)
    xs, ys = _grid((2221, 1783), 512, 512)
    with open_slide(path) as slide, TiffReader(path) as stored:
        level = stored.read_level_region(1, 0, 0, 2221, 1783)
        tiles = slide.read_tiles(xs, ys, 512, 512, 1)
        for x, y, tile in zip(xs.tolist(), ys.tolist(), tiles, strict=True):
            part = level[y : y + 512, x : x + 512]
            np.testing.assert_array_equal(tile[: part.shape[0], : part.shape[1]], part)
            assert np.all(tile[part.shape[0] :] == 255) and np.all(tile[:, part.shape[1] :] == 255)
        origin = np.asarray(slide.read_region((0, 0), 1, (512, 512)))[..., :3]
        np.testing.assert_array_equal(tiles[0], origin)
        np.testing.assert_array_equal(slide.read_level_region(1, 0, 0, 512, 512), tiles[0])


def test_boxes_every_level(shared_data):
    """boxes.tiff (deflate): OpenSlide's read_region at the integer levels 0 and 1, the stored
    level (tifffile.imread) and the one-tile path at the others; tiles cross every edge."""
    path = _slide(shared_data, BOXES)
    with TiffReader(path) as slide, openslide.OpenSlide(str(path)) as plain:
        for level in range(4):
            width, height = slide.level_dimensions[level]
            xs, ys = _grid((width, height), 48, 40)
            tiles = slide.read_tiles(xs, ys, 48, 48, level)
            stored = tifffile.imread(path, series=0, level=level)
            padded = np.full((height + 48, width + 48, 3), 255, dtype=np.uint8)
            padded[:height, :width] = stored[..., :3] if stored.ndim == 3 else stored[..., None]
            for x, y, tile in zip(xs.tolist(), ys.tolist(), tiles, strict=True):
                np.testing.assert_array_equal(tile, padded[y : y + 48, x : x + 48])
                np.testing.assert_array_equal(tile, slide.read_tile(x, y, 48, 48, level))
                if level < 2:
                    np.testing.assert_array_equal(
                        tile, _openslide_tile(plain, x, y, 48, level, 255)
                    )


def test_mixed_levels_sizes_and_order(shared_data):
    """One call with tiles of several levels and sizes, some wholly off the level: each as
    read_tile gives it, in input order."""
    path = _slide(shared_data, TCGA)
    xs = [4000, -600, 100, 2000, 0, 5000, 10, -100]
    ys = [3000, 0, 1500, 1700, 0, 10, 20, -50]
    widths = [512, 512, 256, 300, 64, 32, 1, 300]
    heights = [512, 512, 128, 100, 64, 16, 1, 200]
    levels = [0, 0, 1, 1, 0, 0, 1, 1]
    with open_slide(path) as slide, TiffReader(path) as reference:
        tiles = slide.read_tiles(xs, ys, widths, heights, levels, background=(1, 2, 3))
        for i, tile in enumerate(tiles):
            assert tile.shape == (heights[i], widths[i], 3)
            one = reference.read_tile(xs[i], ys[i], widths[i], heights[i], levels[i], (1, 2, 3))
            np.testing.assert_array_equal(tile, one)
        assert np.all(tiles[1] == (1, 2, 3)) and np.all(tiles[5] == (1, 2, 3))  # off the level
        corner = tiles[7]  # hangs over the top-left corner: 200 x 150 pixels on the level
        assert np.all(corner[:50] == (1, 2, 3)) and np.all(corner[:, :100] == (1, 2, 3))
        np.testing.assert_array_equal(
            corner[50:, 100:], reference.read_level_region(1, 0, 0, 200, 150)
        )
    with pytest.raises(ValueError, match="differ in length"):
        slide.read_tiles([0, 1], [0, 1, 2], 8, 8, 0)


# Decoded once ------------------------------------------------------------------------------------


def test_each_stored_tile_is_decoded_once_per_batch(shared_data):
    """Overlapping 512 px tiles over 240 px stored tiles: every stored tile they meet is
    decoded exactly once, where one read_tile per tile decodes the shared ones again."""
    path = _slide(shared_data, CMU)
    xs, ys = _grid((2220, 2967), 512, 256)
    with TiffReader(path) as slide:
        one_by_one = [slide.read_tile(x, y, 512, 512, 0) for x, y in zip(xs, ys, strict=True)]
        calls = _count_decodes(slide, 0)
        tiles = slide.read_tiles(xs, ys, 512, 512, 0)
        assert set(calls.values()) == {1}
        assert sorted(calls) == list(range(10 * 13))  # 2220 x 2967 in 240 px tiles
        calls.clear()
        for x, y in zip(xs[:20], ys[:20], strict=True):
            slide.read_tile(x, y, 512, 512, 0)
        assert max(calls.values()) > 1  # without a batch, shared tiles decode again
    for batch, single in zip(tiles, one_by_one, strict=True):
        np.testing.assert_array_equal(batch, single)


def test_a_small_cache_bound_decodes_again_and_gives_the_same_pixels(shared_data):
    """With no room to keep decoded tiles for later, a stored tile is decoded again when its
    next user comes, and the pixels are the same."""
    path = _slide(shared_data, CMU)
    xs, ys = _grid((2220, 2967), 512, 256)
    with TiffReader(path) as slide:
        roomy = slide.read_tiles(xs, ys, 512, 512, 0)
        slide.tile_cache_bytes = 0
        calls = _count_decodes(slide, 0)
        tight = [tile for _, tile in sorted(slide.iter_tiles(xs, ys, 512, 512, 0))]
        assert max(calls.values()) > 1 and sorted(calls) == list(range(130))
    for a, b in zip(roomy, tight, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("run", [7, 17])
def test_batches_planned_in_runs_give_the_same_pixels(shared_data, monkeypatch, run):
    """A batch is planned in runs of tiles (here shorter than a row of 8 tiles, and two rows):
    the same pixels; with runs of two rows or more, still one decode per stored tile."""
    path = _slide(shared_data, CMU)
    xs, ys = _grid((2220, 2967), 512, 256)
    with TiffReader(path) as slide:
        whole = slide.read_tiles(xs, ys, 512, 512, 0)
        monkeypatch.setattr(tiff_reader, "_RUN_TILES", run)
        calls = _count_decodes(slide, 0)
        runs = slide.read_tiles(xs, ys, 512, 512, 0)
    assert sorted(calls) == list(range(130))
    if run >= 16:
        assert set(calls.values()) == {1}
    for a, b in zip(whole, runs, strict=True):
        np.testing.assert_array_equal(a, b)


def test_iter_tiles_yields_every_tile_once_row_by_row(tmp_path):
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (700, 900, 3), dtype=np.uint8)
    path = write_pyramid_tiff(tmp_path / "s.tiff", image, 0.5, 2, tile=(128, 128))
    xs, ys = np.array([600, 0, 300, 0]), np.array([300, 300, 0, 0])
    with TiffReader(path) as slide:
        pairs = list(slide.iter_tiles(xs, ys, 256, 256, 0))
    assert [i for i, _ in pairs] == [3, 2, 1, 0]  # visited by y, then x
    for i, tile in pairs:
        np.testing.assert_array_equal(tile, image[ys[i] : ys[i] + 256, xs[i] : xs[i] + 256])


# Backends and entry points ---------------------------------------------------------------------


def test_openslide_reads_what_tifffile_cannot_decode_as_rgb(tmp_path):
    """A grey generic TIFF goes through read_region (its samples are no RGB tiles), and still
    gives the same tiles as the tifffile backend."""
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (300, 400), dtype=np.uint8)
    path = write_pyramid_tiff(tmp_path / "grey.tiff", image, 0.5, 2, subifds=False)
    xs, ys = _grid((400, 300), 128, 100)
    with OpenSlide(path) as slide, TiffReader(path) as reference:
        assert slide._stored_tiles() is None
        for a, b in zip(
            slide.read_tiles(xs, ys, 128, 128, 0),
            reference.read_tiles(xs, ys, 128, 128, 0),
            strict=True,
        ):
            np.testing.assert_array_equal(a, b)


def test_read_slide_tiles_equals_read_tile(shared_data, tmp_path):
    path = _slide(shared_data, CMU)
    xs, ys = _grid((2220, 2967), 512, 700)
    tiles = read_slide_tiles(str(path), xs, ys, 512, 512, 0)
    with openslide.OpenSlide(str(path)) as plain:
        for x, y, tile in zip(xs.tolist(), ys.tolist(), tiles, strict=True):
            np.testing.assert_array_equal(tile, _openslide_tile(plain, x, y, 512, 0, 255))


def test_s3_batch_equals_local(shared_data, s3_bucket):
    """The same batch through an s3:// URL (TiffReader over range requests) and locally
    (OpenSlide with its stored-tile decoder): the same pixels."""
    path = _slide(shared_data, CMU)
    s3_bucket.put(CMU, path.read_bytes())
    xs, ys = _grid((2220, 2967), 512, 600)
    remote = read_slide_tiles(s3_bucket.url(CMU), xs, ys, 512, 512, 0)
    local = read_slide_tiles(str(path), xs, ys, 512, 512, 0)
    assert len(remote) == len(local) == 20
    for a, b in zip(remote, local, strict=True):
        np.testing.assert_array_equal(a, b)


def test_reads_after_close_are_refused_not_reopened(shared_data):
    """Closing an OpenSlide closes its stored-tile decoder too; a later read is OpenSlide's
    error naming the file, never a silent reopening through tifffile."""
    path = _slide(shared_data, CMU)
    slide = OpenSlide(path)
    assert slide.read_tile(0, 0, 8, 8, 0).shape == (8, 8, 3)
    decoder = slide._stored_tiles()
    assert isinstance(decoder, TiffReader)
    slide.close()
    assert decoder._tif is None and slide._stored_tiles() is None
    with pytest.raises(SlideError, match=r"CMU-1-Small-Region\.svs: .*closed"):
        slide.read_tile(0, 0, 8, 8, 0)


def test_sparse_stored_tile_reads_as_nodata(tmp_path):
    """A stored tile the file never wrote (byte count 0) reads as the level's nodata (0)
    through every path, and its neighbours as written."""
    rng = np.random.default_rng(9)
    image = rng.integers(1, 256, (128, 128, 3), dtype=np.uint8)  # no 0: nodata stands out
    path = tmp_path / "sparse.tif"
    tifffile.imwrite(path, image, tile=(64, 64), compression="zlib", photometric="rgb")
    data = bytearray(path.read_bytes())
    with tifffile.TiffFile(path) as tif:
        for name in ("TileOffsets", "TileByteCounts"):  # a sparse tile lists 0 and 0
            tag = tif.pages.first.tags[name]
            assert tag.count == 4 and tag.dtype_name == "LONG"
            data[tag.valueoffset + 4 : tag.valueoffset + 8] = bytes(4)  # tile 1
    path.write_bytes(bytes(data))
    expected = image.copy()
    expected[:64, 64:] = 0
    with TiffReader(path) as slide:
        np.testing.assert_array_equal(slide.read_level_region(0, 0, 0, 128, 128), expected)
        np.testing.assert_array_equal(slide.read_tile(32, 32, 64, 64, 0), expected[32:96, 32:96])
        tiles = slide.read_tiles([0, 64, 32], [0, 0, 32], 64, 64, 0)
    for tile, (x, y) in zip(tiles, [(0, 0), (64, 0), (32, 32)], strict=True):
        np.testing.assert_array_equal(tile, expected[y : y + 64, x : x + 64])
