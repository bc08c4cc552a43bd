"""Slides that are cut short, loop, claim absurd sizes or are otherwise damaged.

The rule: a slide opens and reads right, or the call raises a ``SlideError`` whose message
starts with the file's path and says what is wrong. Never a slide with levels silently
missing, never a hang, never a bare library exception or ``MemoryError``.
"""

from __future__ import annotations

import logging
import struct
import uuid
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import fsspec
import numpy as np
import openslide
import pytest
import tifffile
from tiff_bytes import IFD, LONG, SHORT, header, ifd, ifd_size, image_tags

from wsi_core import tiff_reader
from wsi_core.errors import SlideError
from wsi_core.openslide import OpenSlide
from wsi_core.slide import SlideReader, open_slide
from wsi_core.synthetic import write_pyramid_tiff
from wsi_core.tiff_reader import MAX_SEGMENT_BYTES, TiffReader
from wsi_core.tiff_structure import MAX_PAGES, read_tiff_layout_of_file


@pytest.fixture(autouse=True)
def _quiet_tifffile() -> Iterator[None]:
    """tifffile logs every damaged tag it skips; these tests make many on purpose."""
    logger = logging.getLogger("tifffile")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    yield
    logger.setLevel(level)


@pytest.fixture
def memory() -> Iterator[str]:
    """A fresh folder URL in fsspec's memory filesystem, removed after the test."""
    fs = fsspec.filesystem("memory")
    folder = f"/wsi-hostile-{uuid.uuid4().hex[:12]}"
    yield f"memory://{folder}"
    if fs.exists(folder):
        fs.rm(folder, recursive=True)


def as_url(memory: str, path: Path) -> str:
    url = f"{memory}/{path.name}"
    fsspec.filesystem("memory").pipe_file(url, path.read_bytes())
    return url


Opener = Callable[[str], SlideReader]


def open_and_read(opener: Opener, path: str) -> None:
    """Open ``path`` with ``opener`` and read a tile of level 0."""
    with opener(path) as slide:
        slide.read_tile(0, 0, 64, 64, 0)


def refused(opener: Opener, path: str, match: str) -> SlideError:
    """Open ``path`` (and read a tile if it opens), expecting a SlideError that starts with
    ``path`` and matches ``match``."""
    with pytest.raises(SlideError, match=match) as info:
        open_and_read(opener, path)
    assert str(info.value).startswith(f"{path}: "), str(info.value)
    assert info.value.path == path
    return info.value


def truncations(path: Path) -> dict[str, int]:
    """File sizes that cut ``path``: inside the pixel data of its smallest pyramid level,
    inside its last IFD, and just before its last IFD (offsets as tifffile reads the intact
    file; SubIFDs included)."""
    with TiffReader(path) as reader:
        smallest = reader.level_dimensions[-1]
    with tifffile.TiffFile(path) as tif:
        pages = list(tif.pages) + [level.keyframe for s in tif.series for level in s.levels]
        level = next(
            page
            for page in pages
            if isinstance(page, tifffile.TiffPage)
            and (page.imagewidth, page.imagelength) == smallest
        )
        used = [(o, c) for o, c in zip(level.dataoffsets, level.databytecounts, strict=True) if c]
        offsets = [page.offset for page in tif.pages]
        offsets += [offset for page in tif.pages for offset in page.subifds or ()]
    start = min(o for o, _ in used)
    end = max(o + c for o, c in used)
    return {
        "inside-last-level-data": (start + end) // 2,
        "inside-last-ifd": max(offsets) + 5,
        "before-last-ifd": max(offsets) - 1,
    }


def cut(source: Path, size: int, folder: Path) -> Path:
    target = folder / f"cut-{size}{source.suffix}"
    target.write_bytes(source.read_bytes()[:size])
    return target


# Truncated pyramids ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rgb() -> np.ndarray:
    return np.random.default_rng(7).integers(0, 256, (300, 400, 3), dtype=np.uint8)


@pytest.mark.parametrize(
    "layout",
    [
        {"subifds": True, "tile": (64, 64)},
        {"subifds": False, "tile": (64, 64)},
        {"subifds": True, "tile": None},
        {"subifds": True, "tile": (64, 64), "ome": True},
    ],
    ids=["subifds", "pages", "stripped", "ome"],
)
@pytest.mark.parametrize("where", ["inside-last-level-data", "inside-last-ifd", "before-last-ifd"])
def test_truncated_synthetic_pyramid_is_refused(tmp_path, memory, rgb, layout, where):
    intact = write_pyramid_tiff(tmp_path / "slide.tiff", rgb, 0.5, 3, **layout)
    size = truncations(intact)[where]
    short = cut(intact, size, tmp_path)
    for opener in (open_slide, TiffReader):
        problem = refused(opener, str(short), "truncated").problem
        assert f"the file has {size:,} bytes" in problem or f"({size:,} bytes)" in problem
    refused(open_slide, as_url(memory, short), "truncated")


def test_cut_inside_the_last_level_names_the_level(tmp_path, rgb):
    intact = write_pyramid_tiff(tmp_path / "slide.tiff", rgb, 0.5, 3, tile=(64, 64))
    size = truncations(intact)["inside-last-level-data"]
    short = cut(intact, size, tmp_path)
    problem = refused(open_slide, str(short), "truncated").problem
    assert problem.startswith("truncated: the data of level 2 (page 0, SubIFD 1) ends at byte ")
    assert problem.endswith(f"but the file has {size:,} bytes")


def test_tifffile_alone_would_drop_the_levels(tmp_path, rgb):
    """The hazard: cut before its last SubIFD, tifffile opens the pyramid with a level less."""
    intact = write_pyramid_tiff(tmp_path / "slide.tiff", rgb, 0.5, 3, tile=(64, 64))
    short = cut(intact, truncations(intact)["before-last-ifd"], tmp_path)
    with tifffile.TiffFile(short) as tif:
        assert len(tif.series[0].levels) < 3
    refused(open_slide, str(short), "truncated")


SHARED_SLIDES = [
    "slides/boxes.tiff",
    "slides/CMU-1-Small-Region.svs",
    "slides/tcga-cr-7395-01a-01-ts1.svs",
    "masks/mask_full_res.tif",
]


@pytest.mark.parametrize("where", ["inside-last-level-data", "inside-last-ifd", "before-last-ifd"])
@pytest.mark.parametrize("name", SHARED_SLIDES)
def test_truncated_real_slides_are_refused(shared_data, tmp_path, memory, name, where):
    intact = shared_data / name
    short = cut(intact, truncations(intact)[where], tmp_path)
    openers: list[Opener] = [open_slide, TiffReader]
    if OpenSlide.detect_format(str(intact)) is not None:
        openers.append(OpenSlide)  # libtiff reads these too: same refusal, same reason
    for opener in openers:
        refused(opener, str(short), "truncated")
    refused(open_slide, as_url(memory, short), "truncated")


@pytest.mark.parametrize("name", SHARED_SLIDES)
def test_intact_real_slides_still_open(shared_data, memory, name):
    """The checks refuse nothing whole: every level of every real slide still reads."""
    path = shared_data / name
    layout = read_tiff_layout_of_file(str(path))
    assert layout.size == path.stat().st_size
    assert all(page.data_end is None or page.data_end <= layout.size for page in layout.ifds)
    for location in (str(path), as_url(memory, path)):
        with open_slide(location) as slide:
            for level in range(slide.level_count):
                assert slide.read_tile(0, 0, 16, 16, level).shape == (16, 16, 3)


# Loops and page counts ------------------------------------------------------------------------


def looping_tiff(chain: int = 101, back_to: int = 50) -> bytes:
    """A 472-byte TIFF: one 2x2 page, then ``chain`` empty IFDs of 4 bytes each (the count,
    then the low half of the next offset, whose high half is the next IFD's zero count), the
    last leading back to the ``back_to``-th. tifffile looks for a loop only at its 100th page,
    so with more than 100 distinct IFDs before the loop its ``series`` never returns."""
    first = {256: (LONG, [2]), 257: (LONG, [2]), 273: (LONG, [0]), 279: (LONG, [4])}
    chain_at = 8 + ifd_size(first)
    first[273] = (LONG, [chain_at + 4 * chain + 2])
    data = header(8) + ifd(first, 8, next_ifd=chain_at)
    for i in range(chain):
        target = i + 1 if i < chain - 1 else back_to
        data += struct.pack("<HH", 0, chain_at + 4 * target)
    return data + b"\x00\x00" + bytes(4)


@pytest.mark.timeout(30)
def test_looping_page_chain_is_refused_at_once(tmp_path, memory):
    path = tmp_path / "loop.tif"
    path.write_bytes(looping_tiff())
    assert path.stat().st_size == 472
    for opener in (open_slide, TiffReader, OpenSlide):
        problem = refused(opener, str(path), "loops").problem
        assert problem == (
            "the IFD chain loops: the next-IFD offset of page 101 leads back to byte 262, "
            "the IFD of page 51"
        )
    refused(open_slide, as_url(memory, path), "loops")


def _page_with_subifds(subifds: Callable[[int], list[int]]) -> bytes:
    """One 8x8 grey page at byte 8 whose SubIFDs tag lists ``subifds(8)``."""
    tags = image_tags(8, 8, [0], [64])
    tags[330] = (IFD, subifds(8))
    data_at = 8 + ifd_size(tags)
    tags = image_tags(8, 8, [data_at], [64])
    tags[330] = (IFD, subifds(8))
    return header(8) + ifd(tags, 8) + bytes(64)


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("subifds", "match"),
    [
        (lambda page: [page], "the SubIFDs tag of page 0 leads back to byte 8, the IFD of page 0"),
        (lambda page: [0], "SubIFDs tag lists offset 0"),
        (lambda page: [10**6], "truncated: the IFD of page 0, SubIFD 0 starts at byte 1,000,000"),
    ],
    ids=["self", "zero", "past-the-end"],
)
def test_damaged_subifds_are_refused(tmp_path, subifds, match):
    path = tmp_path / "subifds.tif"
    path.write_bytes(_page_with_subifds(subifds))
    for opener in (open_slide, TiffReader):
        refused(opener, str(path), match)


@pytest.mark.timeout(30)
def test_subifd_chain_back_to_its_parent_is_refused(tmp_path):
    """page 0 -> SubIFD 0 -> SubIFD 0 -> page 0 again."""
    child = image_tags(8, 8, [8], [64])
    child[330] = (IFD, [8])
    parent = image_tags(8, 8, [8], [64])
    parent[330] = (IFD, [0])
    child_at = 8 + ifd_size(parent)
    parent[330] = (IFD, [child_at])
    path = tmp_path / "subifd-loop.tif"
    path.write_bytes(header(8) + ifd(parent, 8) + ifd(child, child_at) + bytes(64))
    refused(
        TiffReader,
        str(path),
        r"the SubIFDs tag of page 0, SubIFD 0 leads back to byte 8, the IFD of page 0",
    )


@pytest.mark.timeout(60)
def test_more_pages_than_max_pages_are_refused(tmp_path):
    """A chain of MAX_PAGES + 1 empty IFDs, no loop: bounded all the same."""
    first = {256: (LONG, [2]), 257: (LONG, [2]), 273: (LONG, [0]), 279: (LONG, [4])}
    chain_at = 8 + ifd_size(first)
    chain = MAX_PAGES + 1
    first[273] = (LONG, [chain_at + 8 * chain])
    data = bytearray(header(8) + ifd(first, 8, next_ifd=chain_at))
    for i in range(chain):
        data += struct.pack("<HI", 0, chain_at + 8 * (i + 1) if i < chain - 1 else 0) + b"\0\0"
    path = tmp_path / "many.tif"
    path.write_bytes(bytes(data) + bytes(4))
    refused(open_slide, str(path), f"more than {MAX_PAGES:,} pages")


@pytest.mark.timeout(30)
def test_too_many_tags_are_refused(tmp_path):
    path = tmp_path / "tags.tif"
    path.write_bytes(header(8) + struct.pack("<H", 5000) + bytes(5000 * 12 + 4))
    refused(open_slide, str(path), "claims 5,000 tags")


# Absurd claims ------------------------------------------------------------------------------

HUGE = 3_000_000  # pixels on a side: 9e12 pixels claimed by a file of a few hundred bytes


def _claiming(
    tmp_path: Path, name: str, payload: bytes, *, tile: int | None = None, samples: int = 1
) -> Path:
    """A file claiming a HUGE x HUGE deflate image whose only strip or tile is ``payload``."""
    tags = image_tags(HUGE, HUGE, [0], [len(payload)], compression=8, tile=tile, samples=samples)
    data_at = 8 + ifd_size(tags)
    tags = image_tags(
        HUGE, HUGE, [data_at], [len(payload)], compression=8, tile=tile, samples=samples
    )
    path = tmp_path / name
    path.write_bytes(header(8) + ifd(tags, 8) + payload)
    return path


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("tile", "match"),
    [
        (None, "a strip of level 0 .* decodes to 27,000,000,000,000 bytes"),
        (2_999_984, "a tile of level 0 .* decodes to 26,999,712,000,768 bytes"),
    ],
    ids=["one-strip", "one-tile"],
)
def test_huge_claimed_segment_is_refused_not_allocated(tmp_path, tile, match):
    payload = zlib.compress(bytes(7000))
    path = _claiming(tmp_path, "huge.tif", payload, tile=tile, samples=3)
    assert path.stat().st_size < 8 * 1024
    with open_slide(path) as slide:  # legal to open: the table layer bounds tile counts
        assert slide.level_dimensions == ((HUGE, HUGE),)
        with pytest.raises(SlideError, match=match) as info:
            slide.read_tile(0, 0, 256, 256, 0)
        assert str(info.value).startswith(f"{path}: ")
        assert "MAX_SEGMENT_BYTES" in str(info.value)
        with pytest.raises(SlideError, match="decodes to"):
            slide.read_level_region(0, HUGE - 256, HUGE - 256, 256, 256)


@pytest.mark.timeout(30)
def test_huge_image_with_few_tiles_reads_what_is_there(tmp_path):
    """3,000,000 x 3,000,000 in 256-pixel tiles, but one tile listed: that tile reads, a
    tile the file does not list is a SlideError, not an IndexError."""
    payload = zlib.compress(bytes(range(256)) * 256)
    path = _claiming(tmp_path, "sparse.tif", payload, tile=256)
    with open_slide(path) as slide:
        tile = slide.read_tile(0, 0, 256, 256, 0)
        np.testing.assert_array_equal(tile[3, :, 0], np.arange(256))
        with pytest.raises(SlideError, match=r"level 0 lists 1 tile offsets but its .* needs"):
            slide.read_tile(2_000_000, 2_000_000, 256, 256, 0)


def test_segment_bound_leaves_ordinary_strips_alone(tmp_path, rgb):
    """A plain single-strip image far below the bound still reads."""
    path = tmp_path / "strip.tif"
    tifffile.imwrite(path, rgb, rowsperstrip=rgb.shape[0])
    assert rgb.nbytes < MAX_SEGMENT_BYTES
    with open_slide(path) as slide:
        np.testing.assert_array_equal(slide.read_level_region(0, 0, 0, 400, 300), rgb)


# Damaged fields and the errors of libraries --------------------------------------------------


def _grey_page(overrides: dict[int, tuple[int, list[int]]]) -> bytes:
    """A 64x64 grey stripped page, uncompressed, with some of its tags replaced."""
    tags = {**image_tags(64, 64, [0], [64 * 64]), **overrides}
    if 273 not in overrides:
        tags[273] = (LONG, [8 + ifd_size(tags)])
    return header(8) + ifd(tags, 8) + bytes(64 * 64 * 3)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({278: (LONG, [0])}, "ZeroDivisionError"),  # RowsPerStrip 0
        ({256: (LONG, [0])}, "a level of 0x64 pixels holds no image"),
        ({258: (SHORT, [0])}, "cannot decode .* 0-bit"),  # BitsPerSample 0
        ({258: (SHORT, [64])}, "cannot decode .* cannot be reshaped"),
        ({259: (SHORT, [12345])}, "cannot decode .* not a known COMPRESSION"),
        ({259: (SHORT, [7])}, "cannot decode .* Not a JPEG file"),
        ({259: (SHORT, [8])}, "cannot decode"),  # zeros are no deflate stream
        ({339: (SHORT, [9])}, "cannot decode .*SampleFormat 9"),
        ({279: (LONG, [1, 2])}, r"lists 1 StripOffsets \(273\) but 2 StripByteCounts"),
        ({273: (LONG, [2**32 - 1])}, "truncated: the data of level 0 .* ends at byte"),
        (
            {322: (LONG, [15]), 323: (LONG, [15]), 324: (LONG, [1]), 325: (LONG, [1])},
            "level 0 lists 1 tile offsets but its 64x64 image needs 25",
        ),
    ],
    ids=[
        "rows-per-strip-0",
        "width-0",
        "bits-0",
        "bits-64",
        "compression",
        "jpeg",
        "deflate",
        "sample-format",
        "counts",
        "offset",
        "tile-15",
    ],
)
def test_damaged_fields_are_slide_errors(tmp_path, overrides, match):
    path = tmp_path / "damaged.tif"
    path.write_bytes(_grey_page(overrides))
    with pytest.raises(SlideError, match=match) as info:
        open_and_read(open_slide, str(path))
    assert str(info.value).startswith(f"{path}: ")


def test_memory_error_becomes_a_slide_error(tmp_path, rgb, monkeypatch):
    path = write_pyramid_tiff(tmp_path / "slide.tiff", rgb, 0.5, 2)

    def out_of_memory(*args: object, **kwargs: object) -> None:
        raise MemoryError

    with TiffReader(path) as slide:
        monkeypatch.setattr(tiff_reader, "_samples_to_rgb", out_of_memory)
        with pytest.raises(SlideError, match="out of memory") as info:
            slide.read_tile(0, 0, 64, 64, 0)
        assert str(info.value).startswith(f"{path}: ")
        assert isinstance(info.value.__cause__, MemoryError)
    monkeypatch.setattr(tiff_reader, "_file_mpp", out_of_memory)
    with pytest.raises(SlideError, match=r"slide\.tiff: cannot read the TIFF structure: out of"):
        open_slide(path)


@pytest.mark.parametrize(
    "error", [TimeoutError("timed out"), ConnectionResetError("reset"), PermissionError("no")]
)
def test_storage_errors_pass_unchanged_for_retries(tmp_path, rgb, monkeypatch, error):
    path = write_pyramid_tiff(tmp_path / "slide.tiff", rgb, 0.5, 2)

    def fail(*args: object, **kwargs: object) -> None:
        raise error

    with TiffReader(path) as slide:
        monkeypatch.setattr(tiff_reader, "_samples_to_rgb", fail)
        with pytest.raises(type(error)) as info:
            slide.read_tile(0, 0, 64, 64, 0)
        assert info.value is error


def test_file_removed_while_open_is_no_such_file(tmp_path, rgb, monkeypatch):
    path = write_pyramid_tiff(tmp_path / "slide.tiff", rgb, 0.5, 2)

    def gone(*args: object, **kwargs: object) -> None:
        raise FileNotFoundError(str(path))

    with TiffReader(path) as slide:
        monkeypatch.setattr(tiff_reader, "_samples_to_rgb", gone)
        with pytest.raises(SlideError, match=r"slide\.tiff: no such file"):
            slide.read_tile(0, 0, 64, 64, 0)


def test_openslide_error_becomes_a_slide_error(shared_data, tmp_path):
    """A real corrupt tile: OpenSlide raises OpenSlideError and latches it; the reader raises
    SlideError naming the file, and its levels and properties still answer. read_tile decodes
    this SVS's tiles with tifffile: the same tile is a SlideError naming the file there too."""
    source = shared_data / "slides/CMU-1-Small-Region.svs"
    with tifffile.TiffFile(source) as tif:
        first_tile = tif.pages[0].dataoffsets[0]
    data = bytearray(source.read_bytes())
    data[first_tile : first_tile + 2] = b"\0\0"  # the tile's JPEG start-of-image marker
    path = tmp_path / "corrupt.svs"
    path.write_bytes(bytes(data))
    with open_slide(path) as slide:
        assert isinstance(slide, OpenSlide)
        for _ in range(2):
            with pytest.raises(SlideError, match=r"tile 0 of level 0.*Not a JPEG file") as info:
                slide.read_tile(0, 0, 64, 64, 0)
            assert str(info.value).startswith(f"{path}: ")
        with TiffReader(source) as intact:  # the tiles that are intact still read
            expected = intact.read_tile(240, 0, 64, 64, 0)
        np.testing.assert_array_equal(slide.read_tile(240, 0, 64, 64, 0), expected)
        for _ in range(2):  # the second read meets OpenSlide's latched error
            with pytest.raises(SlideError, match="Not a JPEG file") as info:
                slide.read_region((0, 0), 0, (8, 8))
            assert str(info.value).startswith(f"{path}: ")
            assert isinstance(info.value.__cause__, openslide.OpenSlideError)
        assert slide.level_dimensions == ((2220, 2967),)
        assert slide.level_count == 1 and slide.level_downsamples == (1.0,)
        assert slide.properties["openslide.vendor"] == "aperio"
        assert slide.mpp == (0.499, 0.499)


def test_wrong_arguments_stay_value_errors(tmp_path, rgb):
    """A wrong argument is the caller's, not the file's: it stays a ValueError."""
    path = write_pyramid_tiff(tmp_path / "slide.tiff", rgb, 0.5, 2)
    with open_slide(path) as slide:
        with pytest.raises(ValueError, match="level 5 does not exist"):
            slide.read_tile(0, 0, 8, 8, 5)
        with pytest.raises(ValueError, match="negative tile size"):
            slide.read_tile(0, 0, -8, 8, 0)
        with pytest.raises(ValueError, match="background"):
            slide.read_tile(0, 0, 8, 8, 0, background=300)
        with pytest.raises(ValueError, match="level 2 does not exist"):
            slide.slide_resolution(2)
    with pytest.raises(ValueError, match="could not convert"):
        open_slide(path, mpp="fine")  # type: ignore[arg-type]
