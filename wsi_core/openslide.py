"""OpenSlide backend: ``OpenSlide(path, mpp=None)``.

A subclass of both ``openslide.OpenSlide`` (so every openslide-python call still works) and
:class:`~wsi_core.reader.SlideReader`. ``read_tile`` and ``read_level_region`` take level coords;
``openslide.OpenSlide.read_region`` takes a level-0 location, so the origin is converted with
``round(x * downsample)``.

Pixels: on TIFF files whose levels tifffile finds as OpenSlide does (Aperio SVS and generic
tiled TIFF, the two formats OpenSlide reads through libtiff) and whose tiles are 8-bit RGB
or YCbCr in a codec imagecodecs decodes (JPEG with its tables, JPEG 2000, deflate, LZW, ...),
``read_tile``, ``read_tiles`` and ``read_level_region`` decode the stored tiles themselves
through a :class:`~wsi_core.tiff_reader.TiffReader` opened on the same file at the first
read: a batch decodes each stored tile once (see
:meth:`~wsi_core.reader.SlideReader.read_tiles`). Every other file is read through
``read_region``. Both give the same pixels at integer downsamples (the tests compare them).

Quirk worth knowing: at a level whose downsample is not an integer (Aperio's 2.0005, say),
a level-0 location rarely maps back to a whole level pixel, and ``read_region`` then
resamples the level with a sub-pixel shift, slightly blurred compared to the stored pixels
except at origins where ``x * downsample`` is a whole number (``x = 0``). The level coords
of ``read_tile`` mean the stored pixels, so where tifffile decodes the file these reads
are the stored pixels at every origin (as a URL of the same file gives them), and only
``read_region`` itself keeps OpenSlide's resampling.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import numpy as np
import openslide
import tifffile
from PIL import Image

from wsi_core.errors import MissingMPPError, SlideError, slide_errors
from wsi_core.reader import SlideReader, TileRequest, composite_over
from wsi_core.resolution import MPP, as_mpp_pair
from wsi_core.tiff_reader import TiffReader
from wsi_core.tiff_structure import is_tiff_file, read_tiff_layout_of_file


class OpenSlide(openslide.OpenSlide, SlideReader):
    """A slide read by OpenSlide.

    ``mpp`` (micrometres per level-0 pixel, float or ``(x, y)``) overrides the file's
    ``openslide.mpp-x/y``. A slide without either raises
    :class:`~wsi_core.errors.MissingMPPError` only when the resolution is asked for
    (``mpp``, ``closest_level``, ``slide_resolution``), so reading by explicit level works.
    """

    def __init__(self, path: str | os.PathLike[str], mpp: MPP | None = None) -> None:
        self.path = os.fspath(path)
        self._closed = True  # until the handle exists, close() has nothing to release
        self._tiff: TiffReader | None = None  # the stored-tile decoder, once looked for
        self._tiff_checked = False
        self._tiff_lock = threading.Lock()
        self._mpp_override = None if mpp is None else as_mpp_pair(mpp)
        try:
            with slide_errors(self.path, "OpenSlide cannot open it"):
                self._open()
        except BaseException:
            self.close()
            raise

    def _open(self) -> None:
        """Check a TIFF-family file's structure, open it, and keep what never changes."""
        if not os.path.exists(self.path):
            raise SlideError(self.path, "no such file")
        if is_tiff_file(self.path):
            # libtiff, like tifffile, skips IFDs past the end of a truncated file: refuse the
            # file rather than read a slide with levels missing.
            read_tiff_layout_of_file(self.path).check_data(self.path)
        try:
            super().__init__(self.path)
        except openslide.OpenSlideUnsupportedFormatError as error:
            raise SlideError(self.path, "not a slide format OpenSlide can read") from error
        self._closed = False
        # Read once: after any failed read OpenSlide answers every call with the same error
        # ("latching"), and the levels and properties of an open slide never change.
        self._level_count = super().level_count  # first: the properties below ask for it
        self._dimensions = super().level_dimensions
        self._downsamples = super().level_downsamples
        self._properties: Mapping[str, str] = MappingProxyType(dict(super().properties))
        self.vendor = self._properties.get("openslide.vendor") or "unknown"
        self._tiff_checked = not (self.vendor in _TIFFFILE_VENDORS and is_tiff_file(self.path))

    @property
    def level_count(self) -> int:
        """Number of pyramid levels."""
        return self._level_count

    @property
    def level_dimensions(self) -> tuple[tuple[int, int], ...]:
        """``(width, height)`` of each level, in that level's pixels."""
        return self._dimensions

    @property
    def level_downsamples(self) -> tuple[float, ...]:
        """Level-0 pixels per level pixel, one per level, as OpenSlide reports them."""
        return self._downsamples

    @property
    def properties(self) -> Mapping[str, str]:
        """OpenSlide's properties of the slide (read-only, read once when opened)."""
        return self._properties

    @property
    def mpp(self) -> tuple[float, float]:
        """``(x, y)`` micrometres per level-0 pixel: the override, else ``openslide.mpp-x/y``."""
        if self._mpp_override is not None:
            return self._mpp_override
        values = []
        for key in ("openslide.mpp-x", "openslide.mpp-y"):
            try:
                value = float(self.properties[key])
            except (KeyError, ValueError):
                raise MissingMPPError(self.path) from None
            if not math.isfinite(value) or value <= 0:
                raise MissingMPPError(self.path)
            values.append(value)
        return values[0], values[1]

    def _level0_location(self, level: int, x: int, y: int) -> tuple[int, int]:
        """The level-0 pixel that ``read_region`` wants for level coords ``(x, y)``."""
        downsample = self.level_downsamples[level]
        return round(x * downsample), round(y * downsample)

    def _stored_tiles(self) -> TiffReader | None:
        """The tifffile reader that decodes this slide's stored tiles, or None where the file
        is read through ``read_region`` (see the module docstring); opened at the first call."""
        if self._tiff_checked:
            return self._tiff
        with self._tiff_lock:
            if not self._tiff_checked:
                self._tiff = _tiff_reader_like(self)
                self._tiff_checked = True
        return self._tiff

    def _iter_tiles(
        self, requests: Sequence[TileRequest], fill: np.ndarray
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Stored tiles decoded once per batch where tifffile reads the file, else one
        ``read_region`` per tile."""
        tiff = self._stored_tiles()
        if tiff is None:
            return super()._iter_tiles(requests, fill)
        return tiff._iter_tiles(requests, fill)

    def _paint_tile(
        self,
        tile: np.ndarray,
        level: int,
        x: int,
        y: int,
        inside: tuple[int, int, int, int],
        fill: np.ndarray,
    ) -> None:
        """OpenSlide's RGBA (not premultiplied) composited over ``fill``. OpenSlide gives alpha 0
        outside the slide; only the on-level part is written, so the rest stays exactly
        ``fill`` (a slide's own transparent pixels may carry colour)."""
        extent_y, extent_x = tile.shape[:2]
        # Read the whole requested window (not just the clipped part) so the level-0 location
        # is the same as a plain read_region at (x, y); then mask what lies outside.
        region = np.asarray(
            self.read_region(self._level0_location(level, x, y), level, (extent_x, extent_y))
        )
        x0, y0, x1, y1 = inside
        window = (slice(y0 - y, y1 - y), slice(x0 - x, x1 - x))
        tile[window] = composite_over(region[window][..., :3], region[window][..., 3], fill)

    def read_region(
        self, location: tuple[int, int], level: int, size: tuple[int, int]
    ) -> Image.Image:
        """``openslide.OpenSlide.read_region`` (``location`` in level-0 pixels, ``size`` in
        pixels of ``level``), its failures raised as :class:`SlideError` naming the file."""
        with slide_errors(self.path, f"OpenSlide cannot read level {level} at {location}"):
            return super().read_region(location, level, size)

    def read_level_region(self, level: int, x: int, y: int, width: int, height: int) -> np.ndarray:
        """RGB ``uint8`` ``(height, width, 3)`` of a window wholly inside ``level`` (level
        coords). OpenSlide's alpha channel is dropped, not composited."""
        return super().read_level_region(level, x, y, width, height)

    def _read_window(self, level: int, x: int, y: int, width: int, height: int) -> np.ndarray:
        tiff = self._stored_tiles()
        if tiff is not None:  # 8-bit RGB samples: the same array read_region would give
            return tiff._read_window(level, x, y, width, height)
        if width == 0 or height == 0:
            return np.zeros((height, width, 3), dtype=np.uint8)
        region = self.read_region(self._level0_location(level, x, y), level, (width, height))
        return np.ascontiguousarray(np.asarray(region)[..., :3])

    def close(self) -> None:
        """Release the OpenSlide handle; a second call does nothing."""
        with self._tiff_lock:
            # Checked for good: a read after close goes to read_region, which refuses it,
            # rather than opening the file again through tifffile.
            self._tiff_checked = True
            if self._tiff is not None:
                tiff, self._tiff = self._tiff, None
                tiff.close()
        if not self._closed:
            self._closed = True
            super().close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!r})"


#: OpenSlide vendors whose files tifffile decodes tile by tile as OpenSlide does: Aperio
#: SVS and generic tiled TIFF (OpenSlide reads both with libtiff, one TIFF page per level).
_TIFFFILE_VENDORS = frozenset({"aperio", "generic-tiff"})

#: TIFF compressions whose YCbCr tiles tifffile decodes to RGB: JPEG (old and new style) and
#: Aperio's JPEG 2000. Other YCbCr tiles would come back as YCbCr samples.
_YCBCR_TO_RGB_COMPRESSIONS = frozenset({6, 7, 33003, 33005})


def _tiff_reader_like(slide: OpenSlide) -> TiffReader | None:
    """A :class:`TiffReader` of ``slide``'s file if it decodes exactly OpenSlide's levels as
    8-bit RGB tiles in a codec imagecodecs has, else None (OpenSlide reads it then).

    Levels must agree in number and size; each level one tiled page of three ``uint8``
    samples, RGB (any codec) or YCbCr (JPEG, Aperio JPEG 2000), no alpha or other extra
    sample. A file tifffile refuses, or reads
    otherwise, stays with OpenSlide, which accepted it: its own reads are right.
    """
    try:
        tiff = TiffReader(slide.path, mpp=slide._mpp_override)
    except SlideError:
        return None
    if tiff.level_dimensions == slide.level_dimensions and all(
        _decodes_as_rgb(level) for level in tiff._levels
    ):
        return tiff
    tiff.close()
    return None


def _decodes_as_rgb(level: Any) -> bool:
    """Whether one TiffReader level is a single tiled page of 8-bit RGB that tifffile can
    decode (its compression has a decoder) with nothing to composite."""
    keyframe = level.keyframe
    return (
        len(level.pages) == 1
        and bool(keyframe.is_tiled)
        and (
            int(keyframe.photometric) == 2  # RGB
            or (
                int(keyframe.photometric) == 6  # YCbCr
                and int(keyframe.compression) in _YCBCR_TO_RGB_COMPRESSIONS
            )
        )
        and int(keyframe.samplesperpixel) == 3
        and not keyframe.extrasamples
        and int(keyframe.planarconfig) == 1
        and np.dtype(keyframe.dtype) == np.uint8
        and keyframe.compression in tifffile.TIFF.DECOMPRESSORS
    )
