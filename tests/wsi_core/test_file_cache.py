"""open_slide's cache of parsed local TIFFs (:mod:`wsi_core.file_cache`): a file opened
again unchanged skips its parse; a file rewritten, touched or only just written is parsed
anew, so what is read is always the file as it is now."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import fsspec
import numpy as np
import pytest

import wsi_core.slide as slide_module
from wsi_core import file_cache
from wsi_core.errors import SlideError
from wsi_core.slide import open_slide
from wsi_core.synthetic import write_pyramid_tiff
from wsi_core.tiff_reader import TiffReader

SECOND_NS = 1_000_000_000


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The paths TiffReader parsed with tifffile, in order, with an empty cache."""
    seen: list[str] = []
    parse = TiffReader._open

    def counting(reader: TiffReader) -> None:
        seen.append(reader.path)
        parse(reader)

    monkeypatch.setattr(TiffReader, "_open", counting)
    slide_module._PARSED_TIFFS.clear()
    yield seen
    slide_module._PARSED_TIFFS.clear()


@pytest.fixture
def settled(monkeypatch: pytest.MonkeyPatch) -> None:
    """Files count as settled at once, so that a test need not wait two seconds."""
    monkeypatch.setattr(file_cache, "SETTLED_NS", 0)


def grey(seed: int, shape: tuple[int, int] = (96, 128)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def read_all(path: Path) -> np.ndarray:
    with open_slide(path) as slide:
        width, height = slide.level_dimensions[0]
        return slide.read_level_region(0, 0, 0, width, height)


def test_an_unchanged_file_is_parsed_once(tmp_path, parses, settled):
    image = grey(1)
    path = write_pyramid_tiff(tmp_path / "mask.tiff", image, mpp=2.0, n_levels=2)
    with open_slide(path) as first, open_slide(path) as second:
        assert isinstance(second, TiffReader)
        assert second.level_dimensions == first.level_dimensions
        assert second.mpp == first.mpp == (2.0, 2.0)
        assert second.vendor == first.vendor
        first.close()  # each reader has its own file handle
        np.testing.assert_array_equal(second.read_level_region(0, 0, 0, 128, 96), image)
    assert parses == [str(path)]
    with pytest.raises(SlideError, match="closed"):
        second.read_level_region(0, 0, 0, 8, 8)


def test_a_file_rewritten_in_place_is_parsed_again(tmp_path, parses, settled):
    path = write_pyramid_tiff(tmp_path / "mask.tiff", grey(1), mpp=2.0, n_levels=1)
    inode = path.stat().st_ino
    np.testing.assert_array_equal(read_all(path), grey(1))
    np.testing.assert_array_equal(read_all(path), grey(1))
    assert len(parses) == 1
    # Other pixels compress to other tile sizes: the old tile offsets would read garbage.
    write_pyramid_tiff(path, grey(2), mpp=2.0, n_levels=1)
    assert path.stat().st_ino == inode  # rewritten, not replaced
    np.testing.assert_array_equal(read_all(path), grey(2))
    assert len(parses) == 2


def test_a_rewrite_of_the_same_size_is_seen_by_its_time(tmp_path, parses, settled):
    """Uncompressed, a 32 x 64 image has the bytes of a 64 x 32 one: only the file's times
    tell the rewrite (here a later modification time, as a later write would stamp)."""
    path = write_pyramid_tiff(
        tmp_path / "mask.tiff", grey(1, (32, 64)), 1.0, 1, tile=(16, 16), compression=None
    )
    before = path.stat()
    assert read_all(path).shape == (32, 64)
    write_pyramid_tiff(path, grey(2, (64, 32)), 1.0, 1, tile=(16, 16), compression=None)
    later = before.st_mtime_ns + 5 * SECOND_NS
    os.utime(path, ns=(later, later))
    assert path.stat().st_size == before.st_size
    np.testing.assert_array_equal(read_all(path), grey(2, (64, 32)))
    assert len(parses) == 2


def test_a_parse_of_many_tiles_is_not_kept(tmp_path, parses, settled, monkeypatch):
    """A slide listing more than PARSED_TIFF_MAX_SEGMENTS tiles is parsed at every open."""
    path = write_pyramid_tiff(tmp_path / "mask.tiff", grey(1), 2.0, 1, tile=(16, 16))
    monkeypatch.setattr(slide_module, "PARSED_TIFF_MAX_SEGMENTS", 6 * 8 - 1)  # 48 tiles
    read_all(path)
    read_all(path)
    assert len(parses) == 2
    monkeypatch.setattr(slide_module, "PARSED_TIFF_MAX_SEGMENTS", 6 * 8)
    read_all(path)
    read_all(path)
    assert len(parses) == 3


def test_a_file_just_written_is_not_cached(tmp_path, parses):
    """Within a timestamp tick a rewrite may keep the file's times and size: a file whose
    times are not yet SETTLED_NS old is parsed at every open."""
    path = write_pyramid_tiff(tmp_path / "mask.tiff", grey(1), mpp=2.0, n_levels=1)
    read_all(path)
    read_all(path)
    assert parses == [str(path)] * 2


def test_a_file_replaced_by_another_kind_is_opened_as_it_is_now(tmp_path, parses, settled):
    path = write_pyramid_tiff(tmp_path / "mask.tiff", grey(1), mpp=2.0, n_levels=1)
    read_all(path)
    path.write_bytes(b"not a slide at all")
    with pytest.raises(SlideError, match="not a slide format"):
        open_slide(path)
    path.unlink()
    with pytest.raises(SlideError, match="no such file"):
        open_slide(path)


def test_urls_are_not_cached(tmp_path, parses, settled):
    path = write_pyramid_tiff(tmp_path / "mask.tiff", grey(1), mpp=2.0, n_levels=1)
    fs = fsspec.filesystem("memory")
    url = "memory://wsi-test-file-cache/mask.tiff"
    fs.pipe_file(url, path.read_bytes())
    try:
        for _ in range(2):
            with open_slide(url) as slide:
                assert isinstance(slide, TiffReader) and slide.parsed is None
    finally:
        fs.rm(url)
    assert parses == [url, url]


def test_the_cache_keeps_its_size(tmp_path, parses, settled, monkeypatch):
    cache: file_cache.FileCache[int] = file_cache.FileCache(2)
    paths = [tmp_path / f"{name}.bin" for name in "abc"]
    for value, path in enumerate(paths):
        path.write_bytes(b"x")
        cache.put(str(path), file_cache.FileSignature.of(path.stat()), value)
    signatures = [file_cache.FileSignature.of(path.stat()) for path in paths]
    assert cache.get(str(paths[0]), signatures[0]) is None  # the least recently used
    assert cache.get(str(paths[1]), signatures[1]) == 1
    assert cache.get(str(paths[2]), signatures[2]) == 2
