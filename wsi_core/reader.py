"""The slide-reader interface every backend implements, and the helpers they share.

Backends (:mod:`wsi_core.openslide`, :mod:`wsi_core.tiff_reader`) import from this module
only; the factory that picks one, :func:`wsi_core.slide.open_slide`, lives apart in
:mod:`wsi_core.slide`, so that no backend needs to import the factory.

Failures: a problem of the file (damaged, truncated, undecodable, more data than memory) is a
:class:`~wsi_core.errors.SlideError` naming it, from the constructor and from every public
method (see :func:`wsi_core.errors.reported_as`); storage errors other than a missing file
(``OSError``) pass unchanged for the caller to retry. A wrong argument (a level that does not
exist, a window outside the level, a malformed background) is the caller's, not the file's,
and stays a ``ValueError``.

Units used throughout:

* "level coords": pixels of one pyramid level, ``x`` = column, ``y`` = row.
* "level 0": pixels of the full-resolution level (where annotations live).
* ``level_downsamples[i]``: level-0 pixels per level-``i`` pixel.
* ``mpp``: micrometres per pixel, always an ``(x, y)`` pair of floats.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import Any, Literal, NamedTuple

import numpy as np

from wsi_core.errors import slide_errors
from wsi_core.resolution import LevelsMixin

Background = int | Sequence[int]


class TileRequest(NamedTuple):
    """One checked tile of a :meth:`SlideReader.read_tiles` call.

    ``slot`` is its position in the call's input; ``x``, ``y`` its origin and ``width``,
    ``height`` its size, in level coords of ``level``; ``inside`` = ``(x0, y0, x1, y1)`` its
    on-level part, or None for a tile wholly outside the level.
    """

    slot: int
    level: int
    x: int
    y: int
    width: int
    height: int
    inside: tuple[int, int, int, int] | None

    def blank(self, fill: np.ndarray) -> np.ndarray:
        """The tile's output array: ``fill`` outside ``inside``, not yet written inside (the
        backend paints every pixel of ``inside``)."""
        tile = np.empty((self.height, self.width, 3), dtype=np.uint8)
        if self.inside is None:
            _fill(tile, fill)
            return tile
        x0, y0, x1, y1 = self.inside
        top, bottom, left, right = y0 - self.y, y1 - self.y, x0 - self.x, x1 - self.x
        _fill(tile[:top], fill)
        _fill(tile[bottom:], fill)
        _fill(tile[top:bottom, :left], fill)
        _fill(tile[top:bottom, right:], fill)
        return tile


def _fill(region: np.ndarray, fill: np.ndarray) -> None:
    """Set every pixel of ``region`` (``(..., 3)`` uint8) to ``fill``. A grey fill is one
    ``ndarray.fill``: broadcasting three values over a 512 px tile costs 2 ms, ten times more."""
    if not region.size:
        return
    if fill[0] == fill[1] == fill[2]:
        region.fill(fill[0])
    else:
        region[...] = fill


def _count(path: str, *values: Any) -> int:
    """How many tiles the per-tile arguments ``values`` (ints or 1-D sequences) describe."""
    shapes = [np.shape(value) for value in values]
    if any(len(shape) > 1 for shape in shapes):
        raise ValueError(f"{path}: per-tile arguments must be ints or 1-D sequences")
    sizes = {shape[0] for shape in shapes if shape}
    if len(sizes) > 1:
        raise ValueError(f"{path}: per-tile arguments differ in length: {sorted(sizes)}")
    return sizes.pop() if sizes else 1


#: Placeholder of :meth:`SlideReader.read_tiles` until a tile is read (every one is).
_NO_TILE = np.empty((0, 0, 3), dtype=np.uint8)


class SlideReader(LevelsMixin, ABC):
    """A pyramidal whole-slide image opened for reading; a context manager.

    Backends provide ``path``, ``level_count``, ``level_dimensions`` (``(width, height)`` per
    level, level coords), ``level_downsamples``, ``mpp`` (base resolution, micrometres per
    level-0 pixel; raises :class:`~wsi_core.errors.MissingMPPError` when the file records none
    and no override was passed), ``vendor``, ``read_tile``, ``read_level_region`` and ``close``.
    ``closest_level(mpp)`` and ``slide_resolution(level)`` come from ``LevelsMixin``.
    """

    path: str
    vendor: str

    @property
    @abstractmethod
    def level_count(self) -> int:
        """Number of pyramid levels."""

    @property
    @abstractmethod
    def level_dimensions(self) -> tuple[tuple[int, int], ...]:
        """``(width, height)`` of each level, in that level's pixels."""

    @property
    @abstractmethod
    def level_downsamples(self) -> tuple[float, ...]:
        """Level-0 pixels per level pixel, one per level (level 0 gives 1.0)."""

    @property
    @abstractmethod
    def mpp(self) -> tuple[float, float]:
        """``(x, y)`` micrometres per level-0 pixel."""

    def read_tile(
        self,
        x: int,
        y: int,
        extent_x: int,
        extent_y: int,
        level: int,
        background: Background = 255,
    ) -> np.ndarray:
        """RGB ``uint8`` array ``(extent_y, extent_x, 3)`` whose top-left pixel is ``(x, y)``
        in level coords of ``level``. Alpha is composited over ``background`` (an int or an RGB
        triple); pixels outside the level are ``background``. One tile of :meth:`read_tiles`."""
        return self.read_tiles(x, y, extent_x, extent_y, level, background=background)[0]

    def read_tiles(
        self,
        x: Any,
        y: Any,
        extent_x: Any,
        extent_y: Any,
        level: Any,
        background: Background = 255,
    ) -> list[np.ndarray]:
        """Many tiles of this slide at once, each exactly as :meth:`read_tile` gives it.

        Every argument but ``background`` is an int (the same for every tile) or a sequence
        with one value per tile: origins ``x``, ``y`` in level coords of ``level``, sizes
        ``extent_x``, ``extent_y`` in pixels of that level. Returns one ``uint8`` array
        ``(extent_y, extent_x, 3)`` per tile, in input order (all of them in memory: use
        :meth:`iter_tiles` for more tiles than that).

        Backends that decode stored tiles themselves (:class:`~wsi_core.tiff_reader.TiffReader`,
        and :class:`~wsi_core.openslide.OpenSlide` on TIFF files tifffile decodes) decode each
        stored tile the batch meets once, however many requested tiles share it, holding at
        most a bounded number of decoded bytes; a batch of neighbouring tiles costs about the
        decode of the area they cover.
        """
        tiles: list[np.ndarray] = [_NO_TILE] * _count(self.path, x, y, extent_x, extent_y, level)
        for i, tile in self.iter_tiles(x, y, extent_x, extent_y, level, background=background):
            tiles[i] = tile
        return tiles

    def iter_tiles(
        self,
        x: Any,
        y: Any,
        extent_x: Any,
        extent_y: Any,
        level: Any,
        background: Background = 255,
    ) -> Iterator[tuple[int, np.ndarray]]:
        """:meth:`read_tiles` one tile at a time: ``(position in the input, tile)`` pairs, in
        the order the backend reads them (row by row, level by level, for stored tiles), so
        that memory holds one tile and the decoded stored tiles still to be used, never the
        whole batch. The arguments are checked before the first tile is read."""
        count = _count(self.path, x, y, extent_x, extent_y, level)
        xs, ys, widths, heights, levels = (
            np.broadcast_to(np.asarray(value, dtype=np.int64), (count,)).tolist()
            for value in (x, y, extent_x, extent_y, level)
        )
        fill = background_rgb(background)
        requests: list[TileRequest] = []
        for i in range(count):
            tile_level = self._check_level(levels[i])
            if widths[i] < 0 or heights[i] < 0:
                raise ValueError(f"{self.path}: negative tile size {widths[i]}x{heights[i]}")
            inside = clip_window(
                xs[i], ys[i], widths[i], heights[i], *self.level_dimensions[tile_level]
            )
            requests.append(TileRequest(i, tile_level, xs[i], ys[i], widths[i], heights[i], inside))
        return self._iter_tiles(requests, fill)

    def _iter_tiles(
        self, requests: Sequence[TileRequest], fill: np.ndarray
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Read the checked ``requests``; here one :meth:`_paint_tile` per tile, in input
        order. Backends that can share decoded data between tiles override it."""
        for request in requests:
            tile = request.blank(fill)
            if request.inside is not None:
                level, x, y = request.level, request.x, request.y
                with slide_errors(self.path, f"cannot read level {level} at x={x}, y={y}"):
                    self._paint_tile(tile, level, x, y, request.inside, fill)
            yield request.slot, tile

    @abstractmethod
    def _paint_tile(
        self,
        tile: np.ndarray,
        level: int,
        x: int,
        y: int,
        inside: tuple[int, int, int, int],
        fill: np.ndarray,
    ) -> None:
        """Write the on-level part ``inside`` = ``(x0, y0, x1, y1)`` (level coords) of the tile
        whose origin is ``(x, y)`` into ``tile``, composited over ``fill``."""

    def read_level_region(self, level: int, x: int, y: int, width: int, height: int) -> np.ndarray:
        """Raw samples of a window of ``level`` (level coords) that lies wholly inside it.

        Shape ``(height, width)`` or ``(height, width, channels)``, native dtype (see the
        backend for what its samples are), in a new array that is the caller's to keep or
        overwrite. A window that leaves the level raises ``ValueError``: clipping is the
        caller's decision.
        """
        x, y, width, height = int(x), int(y), int(width), int(height)
        self._check_window(level, x, y, width, height)
        level = int(level)
        with slide_errors(self.path, f"cannot read level {level} at x={x}, y={y}"):
            return self._read_window(level, x, y, width, height)

    @abstractmethod
    def _read_window(self, level: int, x: int, y: int, width: int, height: int) -> np.ndarray:
        """:meth:`read_level_region` for a window that has been checked to lie in ``level``."""

    @abstractmethod
    def close(self) -> None:
        """Release the file; calling it twice is harmless."""

    def __enter__(self) -> SlideReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
        self.close()
        return False  # exceptions raised in the with block propagate

    # Helpers shared by the backends ---------------------------------------------------------

    def _check_level(self, level: int) -> int:
        if not 0 <= int(level) < self.level_count:
            raise ValueError(
                f"{self.path}: level {level} does not exist (the slide has {self.level_count})"
            )
        return int(level)

    def _check_window(self, level: int, x: int, y: int, width: int, height: int) -> None:
        """Raise ``ValueError`` unless the window (level coords) lies wholly inside ``level``."""
        level_width, level_height = self.level_dimensions[self._check_level(level)]
        if width < 0 or height < 0:
            raise ValueError(f"{self.path}: negative window size {width}x{height}")
        if x < 0 or y < 0 or x + width > level_width or y + height > level_height:
            raise ValueError(
                f"{self.path}: window x={x}, y={y}, {width}x{height} leaves level {level} "
                f"({level_width}x{level_height}); clip it first"
            )


def background_rgb(background: Background) -> np.ndarray:
    """``background`` (an int or an RGB triple, 0-255) as a ``uint8`` array of 3 values."""
    values = np.asarray(background)
    if values.ndim == 0:
        values = np.repeat(values, 3)
    if (
        values.shape != (3,)
        or not np.issubdtype(values.dtype, np.integer)
        or np.any(values < 0)
        or np.any(values > 255)
    ):
        raise ValueError(
            f"background must be an int or an RGB triple in 0..255, got {background!r}"
        )
    return values.astype(np.uint8)


def composite_over(rgb: np.ndarray, alpha: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Composite non-premultiplied ``uint8`` colour over an opaque ``background``.

    ``rgb`` is ``(..., 3)``, ``alpha`` ``(...)``, both ``uint8``; rounds to nearest.
    """
    if alpha.size and alpha.min() == 255:
        return np.ascontiguousarray(rgb, dtype=np.uint8)
    a = alpha.astype(np.uint32)[..., None]
    mixed = rgb.astype(np.uint32) * a + background.astype(np.uint32) * (255 - a)
    return ((mixed + 127) // 255).astype(np.uint8)


def clip_window(
    x: int, y: int, width: int, height: int, level_width: int, level_height: int
) -> tuple[int, int, int, int] | None:
    """The part ``(x0, y0, x1, y1)`` of a window (level coords) inside the level, or None."""
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + width, level_width), min(y + height, level_height)
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1, y1
