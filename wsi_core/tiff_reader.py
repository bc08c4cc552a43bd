"""tifffile backend: ``TiffReader(path, mpp=None, *, storage_options=None)``.

(Not the PyPI package ``tiffslide``, whose API differs; hence the name.)

Reads OME-TIFF and plain TIFF, tiled or stripped, single image or pyramid. Pyramid levels are
found, in order, as tifffile's series levels (SubIFDs, OME and Aperio pyramids, successive
reduced pages that tifffile groups itself) or, when the first series has one level, as later
series whose first page is marked reduced-resolution and is smaller than the level before.

Units: ``level_dimensions`` are ``(width, height)`` in each level's pixels; ``level_downsamples``
follow OpenSlide, ``(w0 / wl + h0 / hl) / 2`` level-0 pixels per level pixel; ``mpp`` is
micrometres per level-0 pixel, taken from (first found) OME-XML ``PhysicalSizeX/Y``, the Aperio
description's ``MPP``, or the ``XResolution``/``YResolution`` tags of level 0 in any TIFF unit
(inch, centimetre, and the DNG millimetre and micrometre; ``ResolutionUnit`` NONE means none).

``read_level_region`` decodes only the tiles or strips that meet the window, so a window of a
gigapixel level costs a few tiles, never the level.

``path`` may be an fsspec URL (``s3://``, ``memory://``, ``file://``...): the file is then
read by range requests through a block cache, so opening costs the header and a window the
bytes of its tiles (:mod:`wsi_core.remote`); ``path`` stays the URL, so errors name it.
"""

from __future__ import annotations

import math
import os
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any, cast
from urllib.parse import urlsplit

import numpy as np
import tifffile
from defusedxml import ElementTree

from wsi_core.errors import MissingMPPError, SlideError, slide_errors
from wsi_core.reader import SlideReader, TileRequest, composite_over
from wsi_core.remote import is_url, open_tiff_url
from wsi_core.resolution import MPP, as_mpp_pair
from wsi_core.tiff_structure import TiffLayout, read_tiff_layout, read_tiff_layout_of_file

# Micrometres per ResolutionUnit; 1 (NONE) is absent on purpose: it carries no physical size.
_MICROMETRES_PER_RESUNIT = {2: 25400.0, 3: 10_000.0, 4: 1000.0, 5: 1.0}

# Micrometres per OME UnitsLength symbol (the ones a microscope would plausibly write).
_MICROMETRES_PER_OME_UNIT = {
    "m": 1e6,
    "dm": 1e5,
    "cm": 1e4,
    "mm": 1e3,
    "µm": 1.0,  # U+00B5 micro sign (the OME default)
    "μm": 1.0,  # U+03BC greek mu, also seen in the wild
    "um": 1.0,
    "nm": 1e-3,
    "pm": 1e-6,
    "Å": 1e-4,
    "in": 25400.0,
}

_VENDORS = {"ome": "ome-tiff", "svs": "aperio"}

_JPEG_COMPRESSIONS = {6, 7, 34892, 33007}  # these decoders want the JPEG tables

#: Most bytes one strip or tile may decode to: 512 MiB. Reading a window decodes every
#: segment that meets it whole, so a file claiming one strip of 3,000,000 x 3,000,000 pixels
#: must be refused rather than allocated. Real slides are tiled (a 512 x 512 RGB tile is
#: 768 KiB); a single-strip image up to about 16,000 x 11,000 RGB pixels still reads.
MAX_SEGMENT_BYTES = 512 * 2**20

#: Most decoded bytes one :meth:`TiffReader.read_tiles` call holds beyond what its current
#: tile needs: 256 MiB, a row of 340 stored 512 x 512 RGB tiles (a band 174,000 pixels wide),
#: so a row-major batch across a slide decodes every stored tile once. The attribute
#: ``tile_cache_bytes`` of a reader changes it for that reader.
TILE_CACHE_BYTES = 256 * 2**20

# Tiles a batch plans at once: its bookkeeping (each tile's stored tiles, each stored tile's
# users) costs about 1 KB a tile, so a run stays near 8 MB however many tiles a batch has.
_RUN_TILES = 8192

#: Most bytes one pixel may hold across its samples (and, planar, its planes): 64, eight
#: float64 samples. A window's size is the caller's choice, its depth is the file's claim.
MAX_PIXEL_BYTES = 64


@dataclass
class _Level:
    """One pyramid level: one page, or one page per channel (OME ``CYX`` planes)."""

    pages: list[Any]  # tifffile TiffPage or TiffFrame
    keyframe: tifffile.TiffPage
    width: int
    height: int
    decode: Callable[..., Any]


@dataclass(frozen=True)
class ParsedTiff:
    """What :class:`TiffReader` finds in a local file when it opens it: its levels (tifffile
    pages, which stay valid after their file handle is closed) and what the file records.
    Read-only, so readers of the same unchanged file may share it
    (``TiffReader(path, parsed=...)``)."""

    levels: tuple[_Level, ...]
    file_mpp: tuple[float, float] | None  # micrometres per level-0 pixel
    vendor: str
    tiff_kind: str
    software: str

    @property
    def segments(self) -> int:
        """How many strips or tiles the levels list: what their pages hold grows with it
        (two Python ints a segment, about 70 bytes)."""
        return sum(len(page.dataoffsets) for level in self.levels for page in level.pages)


class TiffReader(SlideReader):
    """A TIFF or OME-TIFF slide read with tifffile; one open file handle per reader.

    ``mpp`` (micrometres per level-0 pixel, float or ``(x, y)``) overrides what the file
    records. ``storage_options`` go to fsspec when ``path`` is a URL (endpoint, credentials;
    see :mod:`wsi_core.remote`) and are ignored for a local path. ``parsed``, the
    :attr:`parsed` of another reader of the same local file, unchanged since, spares the
    structure walk and tifffile's parse (``layout`` is then unused). Reads are serialised on the
    file handle and decoded outside the lock, so one reader can be shared by threads.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        mpp: MPP | None = None,
        *,
        storage_options: Mapping[str, Any] | None = None,
        layout: TiffLayout | None = None,
        parsed: ParsedTiff | None = None,
    ) -> None:
        self.path = os.fspath(path)
        self._storage_options = storage_options
        self._layout = layout  # of a local file, read by the caller (open_slide) just now
        self._tif: tifffile.TiffFile | None = None
        # What segments are read through: the TiffFile's handle, or the reader's own when
        # it was given another reader's parse. None once closed.
        self._handle: tifffile.FileHandle | None = None
        self._file: IO[bytes] | None = None  # the fsspec file of a URL; tifffile won't close it
        #: What was parsed from the local file (given, or found on opening it); None for a URL.
        self.parsed = parsed
        self._mpp_override = None if mpp is None else as_mpp_pair(mpp)
        self._lock = threading.RLock()
        #: Most decoded bytes a :meth:`read_tiles` call holds for later tiles (bytes).
        self.tile_cache_bytes = TILE_CACHE_BYTES
        try:
            with slide_errors(self.path, "cannot read the TIFF structure"):
                if parsed is None:
                    self._open()
                else:
                    self._reopen(parsed)
        except BaseException:
            self.close()
            raise

    def _open(self) -> None:
        """Check the file's structure, open it with tifffile and find its levels."""
        layout, self._tif = self._open_tiff()
        # The layout walk has refused every IFD tifffile would skip, so tifffile must see
        # every page; if it does not, some page would be silently missing from the slide.
        if len(self._tif.pages) != layout.main_pages:
            raise SlideError(
                self.path,
                f"tifffile reads {len(self._tif.pages)} of the {layout.main_pages} pages "
                "in the file; the page chain is damaged",
            )
        series = self._tif.series
        if not series:
            raise SlideError(self.path, "the TIFF holds no image")
        levels = _find_levels(self.path, series)
        layout.check_data(
            self.path,
            {
                page.offset: f"level {index}"
                for index, level in enumerate(levels)
                for page in level.pages
            },
        )
        parsed = ParsedTiff(
            levels=tuple(levels),
            file_mpp=_file_mpp(self._tif, levels[0].keyframe),
            vendor=_VENDORS.get(series[0].kind, "generic-tiff"),
            tiff_kind=str(series[0].kind),
            software=str(self._tif.pages.first.software or ""),
        )
        self._handle = self._tif.filehandle
        self._adopt(parsed)
        if self._file is None:  # a local file: its parse may serve later readers
            self.parsed = parsed

    def _reopen(self, parsed: ParsedTiff) -> None:
        """Open the local file that another reader parsed as ``parsed`` (its :attr:`parsed`)
        while the file was as it is now, which the caller has checked (see
        :mod:`wsi_core.file_cache`): its own handle, without the structure walk or tifffile's
        parse (about 0.5 ms for a one-page mask)."""
        self._handle = tifffile.FileHandle(self.path)
        self._adopt(parsed)

    def _adopt(self, parsed: ParsedTiff) -> None:
        """Take the levels and records of the file from ``parsed``."""
        self._levels = list(parsed.levels)
        self._file_mpp = parsed.file_mpp
        self.vendor = parsed.vendor
        #: tifffile's name for the TIFF flavour: "svs", "ome", "generic", "ndpi", ...
        self.tiff_kind = parsed.tiff_kind
        #: The Software tag of the first page ("" when absent).
        self.software = parsed.software
        width0, height0 = self._levels[0].width, self._levels[0].height
        self._dimensions = tuple((level.width, level.height) for level in self._levels)
        self._downsamples = tuple(
            (width0 / level.width + height0 / level.height) / 2.0 for level in self._levels
        )

    @property
    def level_count(self) -> int:
        """Number of pyramid levels found (see the module docstring)."""
        return len(self._levels)

    @property
    def level_dimensions(self) -> tuple[tuple[int, int], ...]:
        """``(width, height)`` of each level, in that level's pixels."""
        return self._dimensions

    @property
    def level_downsamples(self) -> tuple[float, ...]:
        """Level-0 pixels per level pixel, ``(w0 / wl + h0 / hl) / 2`` as OpenSlide has it."""
        return self._downsamples

    @property
    def mpp(self) -> tuple[float, float]:
        """``(x, y)`` micrometres per level-0 pixel: the override, else the file's own."""
        if self._mpp_override is not None:
            return self._mpp_override
        if self._file_mpp is None:
            raise MissingMPPError(self.path)
        return self._file_mpp

    def read_level_region(self, level: int, x: int, y: int, width: int, height: int) -> np.ndarray:
        """Raw samples of a window (level coords) wholly inside ``level``: ``(height, width)``
        for one sample per pixel, else ``(height, width, samples)``; native dtype."""
        return super().read_level_region(level, x, y, width, height)

    def _read_window(self, level: int, x: int, y: int, width: int, height: int) -> np.ndarray:
        return self._read_planes(level, self._levels[level], x, y, width, height)

    def _paint_tile(
        self,
        tile: np.ndarray,
        level: int,
        x: int,
        y: int,
        inside: tuple[int, int, int, int],
        fill: np.ndarray,
    ) -> None:
        """Samples become RGB as follows: grey is replicated to 3 channels (MINISWHITE
        inverted); palette images go through their colour map; an alpha extra sample
        (associated or not) is composited over ``fill``; with 3 or more colour samples the
        first three are taken as RGB. Non-``uint8`` samples are scaled to 0-255 first: bool to
        0/255, integers by their ``BitsPerSample`` maximum (negatives clip to 0), floats from
        [0, 1]."""
        x0, y0, x1, y1 = inside
        raw = self.read_level_region(level, x0, y0, x1 - x0, y1 - y0)
        info = self._levels[level]
        tile[y0 - y : y1 - y, x0 - x : x1 - x] = _samples_to_rgb(
            raw, info.keyframe, multi_page=len(info.pages) > 1, background=fill
        )

    def _open_tiff(self) -> tuple[TiffLayout, tifffile.TiffFile]:
        """The checked layout of ``self.path`` (:mod:`wsi_core.tiff_structure`) and tifffile's
        view of it: a local file, or a URL through fsspec (range requests with a block cache,
        see :mod:`wsi_core.remote`), whose size comes from the handle without a read."""
        if is_url(self.path):
            self._file = handle = open_tiff_url(self.path, self._storage_options)
            layout = read_tiff_layout(self.path, handle, name=urlsplit(self.path).path)
            handle.seek(0)
            return layout, tifffile.TiffFile(handle)
        if not os.path.exists(self.path):
            raise SlideError(self.path, "no such file")
        layout = self._layout or read_tiff_layout_of_file(self.path)
        return layout, tifffile.TiffFile(self.path)

    def close(self) -> None:
        """Close the TIFF file (and the fsspec file of a URL); a second call does nothing."""
        if self._tif is not None:
            tif, self._tif = self._tif, None
            tif.close()  # its file handle too
        elif self._handle is not None:  # a reader given another reader's parse
            self._handle.close()
        self._handle = None
        if self._file is not None:
            handle, self._file = self._file, None
            handle.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!r})"

    # Decoding -------------------------------------------------------------------------------

    def _iter_tiles(
        self, requests: Sequence[TileRequest], fill: np.ndarray
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Read a batch of tiles, decoding each stored strip or tile they meet once.

        Tiles wholly off their level come first. Then, per level, the tiles are visited row
        by row (by ``y``, then ``x``), so that neighbours sharing stored tiles come one after
        the other; a decoded segment is kept while a later tile of the batch still needs it
        and dropped after its last use. At most :attr:`tile_cache_bytes` decoded bytes are
        held beyond what the current tile needs: over that, the segment needed again last is
        dropped first (and decoded again when its turn comes), so memory stays bounded
        whatever the batch.
        """
        by_level: dict[int, list[TileRequest]] = {}
        for request in requests:
            if request.inside is None:
                yield request.slot, request.blank(fill)
            else:
                by_level.setdefault(request.level, []).append(request)
        for level, group in by_level.items():
            info = self._levels[level]
            order = sorted(group, key=lambda request: (request.y, request.x))
            cache = _SegmentCache(self.tile_cache_bytes)
            direct = _is_plain_rgb(info)
            # Runs of tiles bound the bookkeeping (a few MB a run) however large the batch.
            # Each run is planned with the next one in view, so that the segments the next
            # run needs stay held across the boundary.
            for first in range(0, len(order), _RUN_TILES):
                run = order[first : first + _RUN_TILES]
                ahead = order[first + _RUN_TILES : first + 2 * _RUN_TILES]
                windows = [_window(request.inside) for request in run if request.inside]
                needs = _segment_keys(info, windows)
                cache.plan(
                    needs + _segment_keys(info, [_window(r.inside) for r in ahead if r.inside])
                )
                for position, (request, window) in enumerate(zip(run, windows, strict=True)):
                    x, y = request.x, request.y
                    tile = request.blank(fill)
                    left, top, width, height = window[0] - x, window[1] - y, window[2], window[3]
                    part = tile[top : top + height, left : left + width]
                    with slide_errors(self.path, f"cannot read level {level} at x={x}, y={y}"):
                        cache.position = position
                        if direct:  # the samples are the RGB pixels: decode into the tile
                            raw = self._read_page_window(level, info, 0, *window, cache, out=part)
                        else:
                            raw = self._read_planes(level, info, *window, cache=cache)
                        rgb = _samples_to_rgb(
                            raw, info.keyframe, multi_page=len(info.pages) > 1, background=fill
                        )
                        if not np.may_share_memory(rgb, part):  # else rgb is part, unchanged
                            part[...] = rgb
                    cache.finish(needs[position])
                    yield request.slot, tile

    def _read_planes(
        self,
        level: int,
        info: _Level,
        x: int,
        y: int,
        width: int,
        height: int,
        cache: _SegmentCache | None = None,
    ) -> np.ndarray:
        """Raw samples of a window wholly inside ``level``: every page of the level (one per
        OME channel plane) stacked on the last axis; decoded segments shared through
        ``cache`` when given."""
        if self._handle is None:
            raise SlideError(self.path, "the slide is closed")
        planes = [
            self._read_page_window(level, info, plane, x, y, width, height, cache)
            for plane in range(len(info.pages))
        ]
        if len(planes) == 1:
            return planes[0]
        return np.stack(planes, axis=-1)

    def _read_page_window(
        self,
        level: int,
        info: _Level,
        plane: int,
        x: int,
        y: int,
        width: int,
        height: int,
        cache: _SegmentCache | None = None,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """Decode the segments of page ``plane`` of ``level`` that meet the window (or take
        them from ``cache``) and assemble the window, into ``out`` when given (an array of
        the window's ``(height, width, samples)``; single-plane, contiguous samples only).

        What the file claims is bounded before anything is allocated: a pixel may hold at
        most :data:`MAX_PIXEL_BYTES`, a strip or tile at most :data:`MAX_SEGMENT_BYTES`
        decoded, and every segment the window needs must be listed in the page.
        """
        keyframe = info.keyframe
        page = info.pages[plane]
        separate, _, page_height, page_width, contig = keyframe.shaped
        dtype = np.dtype(keyframe.dtype)
        kind = self._check_segment_size(level, keyframe)
        if out is None:
            # Not prefilled: the segments that meet a window inside the page cover all of it,
            # so every pixel is written below (a sparse segment's part with nodata).
            window = np.empty((separate, height, width, contig), dtype=dtype)
        else:
            window = out.reshape(1, height, width, contig)  # a view: writes land in ``out``
        if width and height:
            indices, needed = _segment_indices(keyframe, x, y, width, height)
            listed = min(len(page.dataoffsets), len(page.databytecounts))
            if indices[-1] >= listed:  # plane-major order: the last index is the largest
                raise SlideError(
                    self.path,
                    f"level {level} lists {listed:,} {kind} offsets but its "
                    f"{page_width}x{page_height} image needs {needed:,}",
                )
            if cache is None:  # each segment pasted as it is decoded, then let go
                segments = (value for _, value in self._decode_segments(level, info, page, indices))
            else:
                missing = [index for index in indices if (plane, index) not in cache.held]
                if missing:
                    fresh = self._decode_segments(level, info, page, missing)
                    cache.hold({(plane, index): value for index, value in fresh})
                segments = (cache.held[plane, index] for index in indices)
            for segment, position in segments:
                _paste(window, keyframe, segment, position, x, y)
        if separate > 1:  # planar configuration 2: one plane per sample, put samples last
            return np.ascontiguousarray(np.moveaxis(window[..., 0], 0, -1))
        return window[0, ..., 0] if contig == 1 else window[0]

    def _check_segment_size(self, level: int, keyframe: tifffile.TiffPage) -> str:
        """Refuse a level whose pixels claim more than :data:`MAX_PIXEL_BYTES` or whose
        strips or tiles decode to more than :data:`MAX_SEGMENT_BYTES`; return what its
        segments are called ("tile" or "strip")."""
        separate, _, _, _, contig = keyframe.shaped
        dtype = np.dtype(keyframe.dtype)
        if separate * contig * dtype.itemsize > MAX_PIXEL_BYTES:
            raise SlideError(
                self.path,
                f"level {level} claims {separate * contig} samples of {dtype} per pixel, "
                f"more than {MAX_PIXEL_BYTES} bytes a pixel (wsi_core.tiff_reader."
                "MAX_PIXEL_BYTES); no slide has that",
            )
        segment_bytes = math.prod(int(n) for n in keyframe.chunks) * dtype.itemsize
        kind = "tile" if keyframe.is_tiled else "strip"
        if segment_bytes > MAX_SEGMENT_BYTES:
            raise SlideError(
                self.path,
                f"a {kind} of level {level} ({'x'.join(map(str, keyframe.chunks))} samples) "
                f"decodes to {segment_bytes:,} bytes, more than the {MAX_SEGMENT_BYTES:,} "
                "decoded at once (wsi_core.tiff_reader.MAX_SEGMENT_BYTES); write the slide "
                "with tiles (512 x 512, say) or smaller strips",
            )
        return kind

    def _decode_segments(
        self, level: int, info: _Level, page: Any, indices: list[int]
    ) -> Iterator[tuple[int, _Decoded]]:
        """Read the segments ``indices`` of ``page`` (one locked read, in file order) and
        decode them one at a time as the caller asks: ``(index, (samples (1, h, w, s) or None
        for a sparse one, tifffile's position (plane, depth, y, x, sample)))``.

        Only the encoded bytes are read up front; decoding lazily lets a caller that pastes
        each segment drop it before the next, so a window never holds its decoded segments
        all at once besides itself."""
        keyframe = info.keyframe
        kind = "tile" if keyframe.is_tiled else "strip"
        offsets = [page.dataoffsets[i] for i in indices]
        counts = [page.databytecounts[i] for i in indices]
        kwargs: dict[str, Any] = {}
        if keyframe.compression in _JPEG_COMPRESSIONS:
            tables = getattr(page, "jpegtables", None)
            kwargs = {
                "jpegtables": keyframe.jpegtables if tables is None else tables,
                "jpegheader": keyframe.jpegheader,
            }
        with self._lock:  # tifffile's file handle is one seek position for all threads
            if self._handle is None:  # closed by another thread since the read began
                raise SlideError(self.path, "the slide is closed")
            segments = self._handle.read_segments(
                offsets, counts, indices=indices, sort=True, flat=True
            )
            # tifffile annotates both forms of the result (flat or not) as one union.
            encoded = list(cast(Iterator[tuple[bytes | None, int]], segments))
        for data, index in encoded:
            try:
                segment, position, _ = info.decode(data, index, **kwargs)
            except MemoryError:
                raise  # reported as such by the caller's slide_errors
            except Exception as error:
                problem = f"{type(error).__name__}: {error}"
                raise SlideError(
                    self.path, f"cannot decode {kind} {index} of level {level}: {problem}"
                ) from error
            yield index, (segment, tuple(map(int, position)))


#: A decoded segment and tifffile's position of it, ``(plane, depth, y, x, sample)``.
_Decoded = tuple[np.ndarray | None, tuple[int, ...]]


class _SegmentCache:
    """The decoded segments one :meth:`TiffReader.read_tiles` call shares between its tiles.

    Keys are ``(page, segment index)`` within one level. ``uses`` lists, per key, the
    positions (in visiting order, within the current run of tiles) of the tiles that need it,
    ascending; the cache drops a segment once its last user is past, and over ``budget``
    bytes drops the held segment whose next use is furthest away (never one the current tile
    needs).
    """

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.uses: dict[tuple[int, int], deque[int]] = {}
        self.held: dict[tuple[int, int], _Decoded] = {}
        self.nbytes = 0
        #: The visiting position of the current tile; set by the caller before each tile.
        self.position = 0

    def plan(self, needs: list[list[tuple[int, int]]]) -> None:
        """Start a run of tiles, ``needs[position]`` the keys of each (the run's tiles first,
        then those of the tiles after it, whose uses keep their segments held past the run):
        record every key's uses, and drop the held segments none of them needs."""
        self.uses = {}
        for position, keys in enumerate(needs):
            for key in keys:
                self.uses.setdefault(key, deque()).append(position)
        for key in [key for key in self.held if key not in self.uses]:
            self._drop(key)
        self.position = 0

    def finish(self, keys: list[tuple[int, int]]) -> None:
        """The current tile, which needed ``keys``, is done: forget that use, and drop the
        segments no later tile needs. Costs its own keys only, whatever the cache holds."""
        for key in keys:
            pending = self.uses[key]
            pending.popleft()
            if not pending and key in self.held:
                self._drop(key)

    def hold(self, decoded: Mapping[tuple[int, int], _Decoded]) -> None:
        """Keep freshly decoded segments, then shrink to the budget: every use before the
        current tile has been finished, so a held key's next use is its first pending one."""
        for key, value in decoded.items():
            self.held[key] = value
            self.nbytes += _nbytes(value)
        while self.nbytes > self.budget:
            later = [(self.uses[key][0], key) for key in self.held]
            furthest, key = max(later)
            if furthest <= self.position:
                break  # everything held is needed by the current tile
            self._drop(key)

    def _drop(self, key: tuple[int, int]) -> None:
        self.nbytes -= _nbytes(self.held.pop(key))


def _paste(
    window: np.ndarray,
    keyframe: tifffile.TiffPage,
    segment: np.ndarray | None,
    position: tuple[int, ...],
    x: int,
    y: int,
) -> None:
    """Write the part of one decoded segment that meets the window into ``window`` (shape
    ``(planes, height, width, samples)``, origin ``(x, y)`` in level coords); a sparse
    segment (never written, ``None``) gives that part the page's nodata. The segments that
    meet a window cover all of it, so pasting each of them writes every pixel once."""
    sample_plane, _, seg_y, seg_x, _ = position
    _, _, page_height, page_width, _ = keyframe.shaped
    seg_h, seg_w = _segment_size(keyframe) if segment is None else segment.shape[1:3]
    seg_h, seg_w = min(seg_h, page_height - seg_y), min(seg_w, page_width - seg_x)
    height, width = window.shape[1:3]
    top, left = max(seg_y, y), max(seg_x, x)
    bottom, right = min(seg_y + seg_h, y + height), min(seg_x + seg_w, x + width)
    if bottom <= top or right <= left:
        return
    part = window[sample_plane, top - y : bottom - y, left - x : right - x]
    if segment is None:
        part[...] = keyframe.nodata
    else:
        part[...] = segment[0, top - seg_y : bottom - seg_y, left - seg_x : right - seg_x]


def _segment_size(keyframe: tifffile.TiffPage) -> tuple[int, int]:
    """``(height, width)`` in pixels of one stored tile or strip of the page."""
    if keyframe.is_tiled:
        return int(keyframe.tilelength), int(keyframe.tilewidth)
    return int(keyframe.rowsperstrip), int(keyframe.imagewidth)


def _segment_keys(
    info: _Level, windows: list[tuple[int, int, int, int]]
) -> list[list[tuple[int, int]]]:
    """Per window ``(x, y, width, height)`` of a level, the ``(page, segment index)`` keys of
    the stored strips or tiles it meets."""
    planes = range(len(info.pages))
    return [
        [
            (plane, index)
            for index in _segment_indices(info.keyframe, *window)[0]
            for plane in planes
        ]
        for window in windows
    ]


def _is_plain_rgb(info: _Level) -> bool:
    """Whether a level's samples are its RGB pixels as they are: one page of three ``uint8``
    contiguous samples and no extra (alpha) sample, which :func:`_samples_to_rgb` returns
    unchanged."""
    keyframe = info.keyframe
    separate, _, _, _, contig = keyframe.shaped
    return (
        len(info.pages) == 1
        and separate == 1
        and contig == 3
        and np.dtype(keyframe.dtype) == np.uint8
        and not keyframe.extrasamples
    )


def _nbytes(decoded: _Decoded) -> int:
    segment = decoded[0]
    return 0 if segment is None else int(segment.nbytes)


def _window(inside: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)`` as ``(x, y, width, height)``."""
    x0, y0, x1, y1 = inside
    return x0, y0, x1 - x0, y1 - y0


def _segment_indices(
    keyframe: tifffile.TiffPage, x: int, y: int, width: int, height: int
) -> tuple[list[int], int]:
    """Indices (into dataoffsets) of the tiles or strips that meet the window, in the
    numbering tifffile's decoder expects (sample plane, then row, then column), and how many
    segments the whole page has."""
    separate = keyframe.shaped[0]
    if keyframe.is_tiled:
        tile_h, tile_w = keyframe.tilelength, keyframe.tilewidth
        across = math.ceil(keyframe.imagewidth / tile_w)
        down = math.ceil(keyframe.imagelength / tile_h)
        rows = range(y // tile_h, (y + height - 1) // tile_h + 1)
        cols = range(x // tile_w, (x + width - 1) // tile_w + 1)
        indices = [
            plane * across * down + row * across + col
            for plane in range(separate)
            for row in rows
            for col in cols
        ]
        return indices, separate * across * down
    rows_per_strip = keyframe.rowsperstrip
    strips = math.ceil(keyframe.imagelength / rows_per_strip)
    first, last = y // rows_per_strip, (y + height - 1) // rows_per_strip
    indices = [plane * strips + s for plane in range(separate) for s in range(first, last + 1)]
    return indices, separate * strips


# Level discovery -------------------------------------------------------------------------------


def _find_levels(path: str, series: Sequence[tifffile.TiffPageSeries]) -> list[_Level]:
    """The pyramid levels of the file, level 0 (full resolution) first."""
    main = series[0]
    candidates = list(main.levels)
    # Aperio's other series are thumbnail, label and macro images, never levels.
    if len(candidates) == 1 and main.kind != "svs":
        # Reduced-resolution pages that tifffile reported as series of their own. A label or
        # macro image may be flagged reduced too, hence the aspect-ratio test.
        base = main.keyframe
        for other in series[1:]:
            keyframe = other.keyframe
            previous = candidates[-1].keyframe
            if (
                keyframe is not None
                and keyframe.is_reduced
                and keyframe.dtype == previous.dtype
                and keyframe.samplesperpixel == previous.samplesperpixel
                and keyframe.imagewidth < previous.imagewidth
                and keyframe.imagelength < previous.imagelength
                and _same_aspect(base, keyframe)
            ):
                candidates.append(other)
    return [_as_level(path, candidate) for candidate in candidates]


def _same_aspect(base: tifffile.TiffPage, reduced: tifffile.TiffPage) -> bool:
    """Whether ``reduced`` is ``base`` shrunk by one factor, to a pixel of rounding."""
    factor = (base.imagewidth / reduced.imagewidth + base.imagelength / reduced.imagelength) / 2
    return (
        abs(base.imagewidth / factor - reduced.imagewidth) <= 1 + 0.01 * reduced.imagewidth
        and abs(base.imagelength / factor - reduced.imagelength) <= 1 + 0.01 * reduced.imagelength
    )


def _as_level(path: str, level: tifffile.TiffPageSeries) -> _Level:
    """One series level as a :class:`_Level` (size in that level's pixels), or a
    :class:`SlideError` for what is no 2-D image (volumes, Z or T stacks)."""
    keyframe = level.keyframe
    if keyframe is None:
        raise SlideError(path, "a pyramid level holds no image")
    if keyframe.imagedepth > 1:
        raise SlideError(path, "volumetric (tiled in depth) TIFF images are not supported")
    if keyframe.imagewidth < 1 or keyframe.imagelength < 1:
        raise SlideError(
            path, f"a level of {keyframe.imagewidth}x{keyframe.imagelength} pixels holds no image"
        )
    pages = [page for page in level.pages if page is not None]
    extra_axes = level.axes.replace("Y", "").replace("X", "").replace("S", "")
    if len(pages) > 1 and extra_axes != "C":
        raise SlideError(
            path,
            f"a level with axes {level.axes!r} is not one 2-D image (Z or T stacks are not slides)",
        )
    # tifffile reads a palette (ColorMap) from the file when first asked: ask now, while the
    # file is open, since readers of a file parsed before share this page without its handle.
    keyframe.tags.valueof(320)
    return _Level(
        pages=pages,
        keyframe=keyframe,
        width=int(keyframe.imagewidth),
        height=int(keyframe.imagelength),
        decode=keyframe.decode,  # built here, once, rather than raced for by reader threads
    )


# Resolution -------------------------------------------------------------------------------------


def _file_mpp(tif: tifffile.TiffFile, page: tifffile.TiffPage) -> tuple[float, float] | None:
    """Micrometres per level-0 pixel recorded in the file, or None."""
    for source in (_ome_mpp, _aperio_mpp, _tag_mpp):
        mpp = source(tif, page)
        if mpp is not None and all(math.isfinite(v) and v > 0 for v in mpp):
            return mpp
    return None


def _ome_mpp(tif: tifffile.TiffFile, page: tifffile.TiffPage) -> tuple[float, float] | None:
    """Micrometres per level-0 pixel from OME-XML ``PhysicalSizeX/Y`` (any length unit)."""
    xml = tif.ome_metadata if tif.is_ome else None
    if not xml:
        return None
    try:
        root = ElementTree.fromstring(xml)
    except Exception:  # malformed OME-XML: fall back to the TIFF tags
        return None
    pixels = next((e for e in root.iter() if e.tag.rsplit("}", 1)[-1] == "Pixels"), None)
    if pixels is None:
        return None
    values = []
    for axis in ("X", "Y"):
        size = pixels.get(f"PhysicalSize{axis}")
        scale = _MICROMETRES_PER_OME_UNIT.get(pixels.get(f"PhysicalSize{axis}Unit", "µm"))
        if size is None or scale is None:
            return None
        try:
            values.append(float(size) * scale)
        except ValueError:
            return None
    return values[0], values[1]


def _aperio_mpp(tif: tifffile.TiffFile, page: tifffile.TiffPage) -> tuple[float, float] | None:
    """Micrometres per level-0 pixel from an Aperio description's ``MPP`` (one for x and y)."""
    if not page.is_svs:
        return None
    # The description is "header|Key = value|...", one MPP for both axes.
    for item in page.description.split("|")[1:]:
        key, _, value = item.partition("=")
        if key.strip() == "MPP":
            try:
                mpp = float(value.strip())
            except ValueError:
                return None
            return mpp, mpp
    return None


def _tag_mpp(tif: tifffile.TiffFile, page: tifffile.TiffPage) -> tuple[float, float] | None:
    """Micrometres per pixel of ``page`` from its X/YResolution tags (pixels per unit)."""
    if 282 not in page.tags or 283 not in page.tags:  # XResolution, YResolution
        return None
    unit = int(page.tags.valueof(296, default=2))  # an absent ResolutionUnit means inch
    scale = _MICROMETRES_PER_RESUNIT.get(unit)
    if scale is None:
        return None
    per_unit_x, per_unit_y = page.get_resolution()
    if not per_unit_x or not per_unit_y:
        return None
    return scale / float(per_unit_x), scale / float(per_unit_y)


# Samples to RGB ---------------------------------------------------------------------------------


def _samples_to_rgb(
    raw: np.ndarray, keyframe: tifffile.TiffPage, *, multi_page: bool, background: np.ndarray
) -> np.ndarray:
    """Raw samples ``(h, w)`` or ``(h, w, s)`` of a window as ``uint8`` RGB ``(h, w, 3)``, by
    the rules in :meth:`TiffReader._paint_tile`."""
    photometric = int(keyframe.photometric)
    if photometric == 3 and keyframe.colormap is not None and not multi_page:  # PALETTE
        colormap = keyframe.colormap  # (3, 2**bits) uint16
        rgb = colormap[:, raw.astype(np.intp)]
        return np.moveaxis(np.floor(rgb / 257.0 + 0.5).astype(np.uint8), 0, -1)
    data = _to_uint8(raw, keyframe.bitspersample)
    if data.ndim == 2:
        data = data[..., None]
    alpha_kind = 0
    extrasamples = tuple(int(e) for e in keyframe.extrasamples) if not multi_page else ()
    if extrasamples and extrasamples[0] in (1, 2):  # ASSOCALPHA, UNASSALPHA
        alpha_kind = extrasamples[0]
    colour_samples = data.shape[-1] - len(extrasamples)
    alpha = data[..., colour_samples] if alpha_kind else None
    if colour_samples >= 3:
        colour = data[..., :3]
    else:
        grey = data[..., 0]
        if photometric == 0:  # MINISWHITE: 0 is white
            grey = 255 - grey
        colour = np.repeat(grey[..., None], 3, axis=-1)
    if alpha is None:
        return colour
    if alpha_kind == 1:  # premultiplied: colour already carries alpha
        a = alpha.astype(np.uint32)[..., None]
        mixed = colour.astype(np.uint32) * 255 + background.astype(np.uint32) * (255 - a)
        return np.minimum((mixed + 127) // 255, 255).astype(np.uint8)
    return composite_over(colour, alpha, background)


def _to_uint8(raw: np.ndarray, bits: Any) -> np.ndarray:
    """Samples scaled to 0-255: bool to 0/255, integers by ``bits`` (BitsPerSample), floats
    from [0, 1]."""
    if raw.dtype == np.uint8:
        return raw
    if raw.dtype == np.bool_:
        return raw.astype(np.uint8) * 255
    if np.issubdtype(raw.dtype, np.integer):
        bits = bits if isinstance(bits, int) else raw.dtype.itemsize * 8
        maximum = float(min(2**bits - 1, np.iinfo(raw.dtype).max))
        scaled = np.clip(raw.astype(np.float64), 0, maximum) * (255.0 / maximum)
        return np.floor(scaled + 0.5).astype(np.uint8)
    if np.issubdtype(raw.dtype, np.floating):
        unit_range = np.clip(np.nan_to_num(raw.astype(np.float64)), 0, 1)
        return np.floor(unit_range * 255 + 0.5).astype(np.uint8)
    raise TypeError(f"cannot show {raw.dtype} samples as RGB")
