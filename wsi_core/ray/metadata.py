"""One ``read_slides`` row per slide, from the slide's header alone (no pixel is decoded).

No Ray here: the rows are plain Arrow tables, built inside Ray's read tasks.

Units: ``extent_*`` are pixels of the chosen level, ``tile_extent_*`` and ``stride_*`` pixels
of that level too, ``mpp_*`` micrometres per pixel of that level, ``base_mpp_*`` micrometres
per level-0 pixel, ``downsample`` level-0 pixels per pixel of the chosen level.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from wsi_core.errors import MissingMPPError, SlideError
from wsi_core.resolution import MPP, as_mpp_pair

#: The columns of ``read_slides``, in order. ``mpp_*`` and ``base_mpp_*`` are null only for
#: a slide that records no resolution, read at an explicit ``level`` without ``slide_mpp``.
SLIDE_SCHEMA = pa.schema(
    [
        ("path", pa.string()),
        ("extent_x", pa.int64()),
        ("extent_y", pa.int64()),
        ("tile_extent_x", pa.int64()),
        ("tile_extent_y", pa.int64()),
        ("stride_x", pa.int64()),
        ("stride_y", pa.int64()),
        ("mpp_x", pa.float64()),
        ("mpp_y", pa.float64()),
        ("level", pa.int64()),
        ("downsample", pa.float64()),
        ("level_count", pa.int64()),
        ("base_mpp_x", pa.float64()),
        ("base_mpp_y", pa.float64()),
        ("vendor", pa.string()),
    ]
)


@dataclass(frozen=True)
class TilingRequest:
    """What ``read_slides`` was asked for, checked: tile extent and stride as ``(x, y)``
    pixels of the chosen level; exactly one of ``mpp`` (target micrometres per pixel) and
    ``level``; ``slide_mpp`` overrides every slide's level-0 resolution; ``storage_options``
    open slides named by URL."""

    tile_extent: tuple[int, int]
    stride: tuple[int, int]
    mpp: tuple[float, float] | None
    level: int | None
    slide_mpp: tuple[float, float] | None
    storage_options: Mapping[str, Any] | None

    @classmethod
    def of(
        cls,
        *,
        tile_extent: Any,
        stride: Any,
        mpp: MPP | None,
        level: int | None,
        slide_mpp: MPP | None,
        storage_options: Mapping[str, Any] | None,
    ) -> TilingRequest:
        """Check the arguments (``ValueError`` naming the wrong one) and build the request."""
        if (mpp is None) == (level is None):
            raise ValueError("read_slides needs exactly one of mpp= and level=")
        if level is not None and (
            isinstance(level, bool) or not isinstance(level, numbers.Integral) or int(level) < 0
        ):
            raise ValueError(f"level must be a non-negative int, not {level!r}")
        return cls(
            tile_extent=_pixel_pair("tile_extent", tile_extent),
            stride=_pixel_pair("stride", stride),
            mpp=None if mpp is None else _positive_mpp("mpp", mpp),
            level=None if level is None else int(level),
            slide_mpp=None if slide_mpp is None else _positive_mpp("slide_mpp", slide_mpp),
            storage_options=None if storage_options is None else dict(storage_options),
        )


def _pixel_pair(name: str, value: Any) -> tuple[int, int]:
    """A positive int, or an ``(x, y)`` pair of them, as a pair."""
    pair = (value, value) if not isinstance(value, (tuple, list)) else tuple(value)
    if len(pair) != 2 or not all(
        isinstance(v, numbers.Integral) and not isinstance(v, bool) and int(v) > 0 for v in pair
    ):
        raise ValueError(f"{name} must be a positive int or an (x, y) pair of them, not {value!r}")
    return int(pair[0]), int(pair[1])


def _positive_mpp(name: str, value: MPP) -> tuple[float, float]:
    try:
        pair = as_mpp_pair(value)
    except (TypeError, ValueError):
        pair = (0.0, 0.0)
    if not all(v > 0 and v != float("inf") for v in pair):
        raise ValueError(
            f"{name} must be a positive number of micrometres per pixel or an (x, y) pair, "
            f"not {value!r}"
        )
    return pair


def slide_row(location: str, request: TilingRequest) -> dict[str, Any]:
    """The ``read_slides`` row of the slide at ``location`` (local path or URL).

    Opens the slide's header only. Every problem of the file is a
    :class:`~wsi_core.errors.SlideError` (or subclass) whose message starts with
    ``location``: not a slide, damaged, no resolution recorded while ``mpp`` was asked for,
    no such ``level``.
    """
    # Looked up on every call rather than imported at the top: the factory loads both slide
    # backends, and whoever replaces ``wsi_core.slide.open_slide`` sees every open.
    from wsi_core.slide import open_slide

    with open_slide(location, request.slide_mpp, storage_options=request.storage_options) as slide:
        if request.level is None:
            assert request.mpp is not None  # TilingRequest.of checks exactly one is given
            level = slide.closest_level(request.mpp)  # MissingMPPError names the file
        else:
            level = request.level
            if level >= slide.level_count:
                raise SlideError(
                    location,
                    f"has no level {level} (its levels are 0 to {slide.level_count - 1}); "
                    "choose a level every slide has, or tile by mpp=",
                )
        try:
            base: tuple[float, float] | None = slide.mpp
        except MissingMPPError:
            base = None  # only reachable with an explicit level: tiling needs no resolution
        downsample = float(slide.level_downsamples[level])
        extent_x, extent_y = slide.level_dimensions[level]
        return {
            "path": location,
            "extent_x": int(extent_x),
            "extent_y": int(extent_y),
            "tile_extent_x": request.tile_extent[0],
            "tile_extent_y": request.tile_extent[1],
            "stride_x": request.stride[0],
            "stride_y": request.stride[1],
            "mpp_x": None if base is None else base[0] * downsample,
            "mpp_y": None if base is None else base[1] * downsample,
            "level": int(level),
            "downsample": downsample,
            "level_count": int(slide.level_count),
            "base_mpp_x": None if base is None else float(base[0]),
            "base_mpp_y": None if base is None else float(base[1]),
            "vendor": str(slide.vendor),
        }


def slide_table(locations: list[str], request: TilingRequest) -> pa.Table:
    """The rows of ``locations``, in that order, as one table of :data:`SLIDE_SCHEMA`."""
    return pa.Table.from_pylist([slide_row(path, request) for path in locations], SLIDE_SCHEMA)
