"""Slides named by fsspec URLs (memory://, file://): TIFF-family files read by range requests.

A URL must give what the local file gives: same levels, resolution, vendor and samples.
"""

from __future__ import annotations

import ast
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import fsspec
import numpy as np
import pytest
import tifffile

import wsi_core
from wsi_core.errors import LocalCopyRequired, SlideError
from wsi_core.remote import is_url
from wsi_core.slide import open_slide
from wsi_core.synthetic import write_pyramid_tiff
from wsi_core.tiff_reader import TiffReader

HEIGHT, WIDTH = 611, 837  # odd, so that levels do not divide evenly and edge tiles are partial
MPP_XY = (0.499, 0.502)
LEVELS = 3

# (subifds, ome, tile): SubIFD pyramid, reduced top-level pages, OME, stripped.
LAYOUTS = [
    (True, False, (256, 256)),
    (False, False, (64, 128)),
    (True, True, (128, 128)),
    (False, False, None),
]


@pytest.fixture
def memory() -> Iterator[tuple[fsspec.AbstractFileSystem, str]]:
    """fsspec's (process-wide) memory filesystem and a fresh folder URL in it, removed after."""
    fs = fsspec.filesystem("memory")
    folder = f"/wsi-test-{uuid.uuid4().hex[:12]}"
    yield fs, f"memory://{folder}"
    if fs.exists(folder):
        fs.rm(folder, recursive=True)


def upload(memory: tuple[fsspec.AbstractFileSystem, str], path: Path) -> str:
    """Copy the local file ``path`` into the memory filesystem; its memory:// URL."""
    fs, folder = memory
    url = f"{folder}/{path.name}"
    fs.pipe_file(url, path.read_bytes())
    return url


@pytest.fixture(scope="module")
def rgb() -> np.ndarray:
    return np.random.default_rng(20240611).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)


def windows(slide: TiffReader) -> list[tuple[int, int, int, int, int]]:
    """``(level, x, y, width, height)`` windows (level coords): whole levels, tile-crossing
    interiors, and the bottom-right corner with its partial edge tiles."""
    found = []
    for level, (width, height) in enumerate(slide.level_dimensions):
        found.append((level, 0, 0, width, height))
        found.append((level, width // 5, height // 7, width // 2, height // 3))
        found.append((level, width - 37, height - 29, 37, 29))
    return found


def assert_same_slide(remote: TiffReader, local: TiffReader) -> None:
    assert remote.level_dimensions == local.level_dimensions
    assert remote.level_downsamples == local.level_downsamples
    assert remote.mpp == local.mpp
    assert remote.vendor == local.vendor
    for level, x, y, width, height in windows(local):
        np.testing.assert_array_equal(
            remote.read_level_region(level, x, y, width, height),
            local.read_level_region(level, x, y, width, height),
        )


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda p: "-".join(map(str, p)))
@pytest.mark.parametrize("opener", [open_slide, TiffReader])
def test_synthetic_pyramid_through_memory_url(memory, rgb, tmp_path, layout, opener):
    subifds, ome, tile = layout
    path = write_pyramid_tiff(
        tmp_path / "slide.tiff", rgb, MPP_XY, LEVELS, subifds=subifds, ome=ome, tile=tile
    )
    url = upload(memory, path)
    with opener(url) as remote, TiffReader(path) as local:
        assert isinstance(remote, TiffReader)
        assert remote.path == url
        assert remote.level_count == LEVELS
        assert remote.mpp == pytest.approx(MPP_XY)
        assert_same_slide(remote, local)
        np.testing.assert_array_equal(
            remote.read_tile(800, 600, 64, 64, 0), local.read_tile(800, 600, 64, 64, 0)
        )


@pytest.mark.parametrize("opener", [open_slide, TiffReader])
def test_file_url_reads_like_the_path(rgb, tmp_path, opener):
    path = write_pyramid_tiff(tmp_path / "slide.tiff", rgb, MPP_XY, LEVELS)
    url = path.as_uri()
    assert url.startswith("file://")
    with opener(url) as remote, TiffReader(path) as local:
        assert remote.path == url
        assert_same_slide(remote, local)


def test_mpp_override_through_a_url(memory, rgb, tmp_path):
    path = write_pyramid_tiff(tmp_path / "bare.tiff", rgb, 0.5, 2, resolution_unit=None)
    with open_slide(upload(memory, path), mpp=0.25) as slide:
        assert slide.mpp == (0.25, 0.25)
        assert slide.closest_level(0.5) == 1


def test_only_tiles_meeting_the_window_are_decoded(memory, rgb, tmp_path):
    path = write_pyramid_tiff(tmp_path / "tiles.tiff", rgb, 0.5, 1, tile=(64, 64))
    with TiffReader(upload(memory, path)) as slide:
        decoded: list[int] = []
        decode = slide._levels[0].decode

        def counting(data, index, **kwargs):
            decoded.append(index)
            return decode(data, index, **kwargs)

        slide._levels[0].decode = counting
        region = slide.read_level_region(0, 100, 70, 60, 60)  # tile columns 1-2, rows 1-2
    np.testing.assert_array_equal(region, rgb[70:130, 100:160])
    across = -(-WIDTH // 64)
    assert sorted(decoded) == [across + 1, across + 2, 2 * across + 1, 2 * across + 2]


def test_one_url_reader_is_safe_across_threads(memory, rgb, tmp_path):
    path = write_pyramid_tiff(tmp_path / "threads.tiff", rgb, 0.5, 2, tile=(64, 64))
    origins = [(x, y) for x in range(0, 700, 97) for y in range(0, 500, 89)] * 4
    with TiffReader(upload(memory, path)) as slide, ThreadPoolExecutor(8) as pool:
        tiles = list(pool.map(lambda o: slide.read_level_region(0, o[0], o[1], 130, 110), origins))
    for (x, y), tile in zip(origins, tiles, strict=True):
        np.testing.assert_array_equal(tile, rgb[y : y + 110, x : x + 130])


def test_close_closes_the_fsspec_file(rgb, tmp_path):
    path = write_pyramid_tiff(tmp_path / "close.tiff", rgb, 0.5, 1)
    slide = TiffReader(path.as_uri())  # file://: memory files ignore close(), local ones don't
    handle = slide._file
    assert handle is not None and not handle.closed
    slide.close()
    assert handle.closed
    slide.close()  # twice is harmless
    with pytest.raises(SlideError, match=r"file://.*close\.tiff: the slide is closed"):
        slide.read_level_region(0, 0, 0, 1, 1)


# Real third-party slides ------------------------------------------------------------------------


def test_cmu_small_region_svs_through_memory_url(memory, shared_data):
    path = shared_data / "slides" / "CMU-1-Small-Region.svs"
    url = upload(memory, path)
    with open_slide(url) as remote, TiffReader(path) as local:
        assert isinstance(remote, TiffReader)
        assert remote.vendor == "aperio"
        assert remote.level_dimensions == ((2220, 2967),)
        assert remote.mpp == pytest.approx((0.499, 0.499))
        assert_same_slide(remote, local)
        np.testing.assert_array_equal(
            remote.read_tile(700, 1100, 512, 512, 0), local.read_tile(700, 1100, 512, 512, 0)
        )
    # The local open_slide reads SVS with OpenSlide: the facts a pipeline records agree.
    with open_slide(url) as remote, open_slide(path) as local:
        assert remote.vendor == local.vendor
        assert remote.mpp == local.mpp
        assert remote.level_dimensions == local.level_dimensions
        assert remote.level_downsamples == local.level_downsamples


def test_svs_with_non_integer_downsample_agrees_with_openslide(memory, shared_data):
    path = shared_data / "slides" / "tcga-cr-7395-01a-01-ts1.svs"
    with open_slide(upload(memory, path), mpp=0.25) as remote, open_slide(path, mpp=0.25) as local:
        assert remote.level_dimensions == local.level_dimensions == ((4443, 3567), (2221, 1783))
        assert remote.level_downsamples == local.level_downsamples
        assert remote.closest_level(0.5) == local.closest_level(0.5) == 1


# Errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("opener", [open_slide, TiffReader])
def test_non_tiff_url_needs_a_local_copy(memory, tmp_path, opener):
    notes = tmp_path / "notes.svs"
    notes.write_bytes(b"not a slide\n" * 100)
    url = upload(memory, notes)
    with pytest.raises(
        SlideError, match=r"memory://.*notes\.svs: not a TIFF file.*local copy"
    ) as info:
        opener(url)
    assert isinstance(info.value, LocalCopyRequired)
    assert info.value.path == url


@pytest.mark.parametrize("opener", [open_slide, TiffReader])
def test_missing_url_is_a_slide_error_naming_it(memory, opener):
    url = f"{memory[1]}/absent.tiff"
    with pytest.raises(SlideError, match=r"memory://.*absent\.tiff: no such file"):
        opener(url)


def test_broken_tiff_url_is_a_slide_error_not_a_copy_request(memory, tmp_path):
    broken = tmp_path / "broken.tiff"
    broken.write_bytes(b"II*\x00 this is not a tiff")
    url = upload(memory, broken)
    with pytest.raises(SlideError, match=r"memory://.*broken\.tiff: ") as info:
        open_slide(url)
    assert not isinstance(info.value, LocalCopyRequired)
    with pytest.raises(SlideError) as local:
        open_slide(broken)
    assert info.value.problem == local.value.problem  # the same diagnosis as the local file


def test_tiff_flavours_openslide_claims_need_a_local_copy(memory, tmp_path):
    """A URL must give the reader a local path would: OpenSlide's TIFF vendors stay local."""
    path = tmp_path / "trestle.tif"
    tifffile.imwrite(path, np.zeros((64, 64), np.uint8), software="MedScan", tile=(16, 16))
    url = upload(memory, path)
    with pytest.raises(LocalCopyRequired, match=r"trestle\.tif: a Trestle TIFF.*local copy"):
        open_slide(url)
    with TiffReader(url) as slide:  # the tifffile reader itself still reads it, if asked
        assert slide.level_dimensions == ((64, 64),)


# One URL predicate ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("location", "url"),
    [
        ("s3://bucket/slide.svs", True),
        ("memory://folder/slide.tiff", True),
        ("file:///data/slide.tiff", True),
        ("/data/slide.tiff", False),
        ("slides/a:b.tiff", False),
        ("C:\\slides\\slide.tiff", False),
    ],
)
def test_is_url(location, url):
    assert is_url(location) is url


def test_is_url_is_the_only_url_test_in_wsi_core():
    """No module but wsi_core.remote tests for ``"://"`` by hand."""
    root = Path(wsi_core.__file__).parent
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Compare)
                and isinstance(node.left, ast.Constant)
                and node.left.value == "://"
            ):
                found.append(f"{path.relative_to(root)}:{node.lineno}")
    assert len(found) == 1 and found[0].startswith("remote.py:"), found
