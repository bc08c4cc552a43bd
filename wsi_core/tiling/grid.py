"""Regular grids of tile origins.

All extents, strides and origins are integers in the coordinates of the level being tiled
(level coords; at level 0 these are level-0 pixels). The first axis is x (columns), the second
y (rows); any number of axes works the same way.

Per axis, with ``q = (S - T) / s`` for slide extent ``S``, tile extent ``T`` and stride ``s``:

- ``"drop"``: ``floor(q) + 1`` origins ``0, s, 2s, ...``: only tiles that lie wholly inside
  the slide; none when ``T > S``.
- ``"keep"``: ``ceil(q) + 1`` origins ``0, s, 2s, ...``: the last tile may run past the slide
  edge. Unlike the reference, never a tile that starts at or beyond ``S`` (possible when
  ``s > T``), and one tile at 0 when ``T > S``.
- ``"shift"``: as ``"keep"``, with the last origin moved back to ``S - T`` so that every tile
  lies inside the slide; never below 0 (a single tile at 0 when ``T > S``).

An empty slide axis (``S == 0``) has no tiles in any mode.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import Literal, TypeAlias

import numpy as np

Extent: TypeAlias = int | np.integer | Sequence[int] | np.ndarray
Last = Literal["keep", "shift", "drop"]

_MODES = ("keep", "shift", "drop")


def _as_int_vector(value: Extent, name: str) -> np.ndarray:
    """``value`` as a 1-D int64 vector; whole-valued floats (e.g. 512.0 from Arrow) are accepted."""
    array = np.asarray(value)
    if array.ndim > 1:
        raise ValueError(f"{name} must be a scalar or a 1-D sequence, got shape {array.shape}")
    if array.dtype == object or not (
        np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
    ):
        raise ValueError(f"{name} must be integers, got {value!r}")
    # A fractional extent has no pixel grid; refusing is safer than rounding silently.
    if np.issubdtype(array.dtype, np.floating) and (
        not np.all(np.isfinite(array)) or np.any(array != np.round(array))
    ):
        raise ValueError(f"{name} must be whole numbers, got {value!r}")
    return np.atleast_1d(array).astype(np.int64)


def _broadcast(
    slide_extent: Extent, tile_extent: Extent, stride: Extent
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The three parameters as equal-length vectors; a scalar applies to every axis."""
    vectors = [
        _as_int_vector(slide_extent, "slide_extent"),
        _as_int_vector(tile_extent, "tile_extent"),
        _as_int_vector(stride, "stride"),
    ]
    lengths = {len(v) for v in vectors if len(v) != 1}
    if len(lengths) > 1:
        raise ValueError(
            "slide_extent, tile_extent and stride have different numbers of axes: "
            f"{[len(v) for v in vectors]}"
        )
    ndim = lengths.pop() if lengths else 1
    if ndim == 0:
        raise ValueError("slide_extent, tile_extent and stride need at least one axis")
    slide, tile, step = (np.broadcast_to(v, (ndim,)) for v in vectors)
    if np.any(slide < 0):
        raise ValueError(f"slide_extent must not be negative, got {slide.tolist()}")
    if np.any(tile <= 0):
        raise ValueError(f"tile_extent must be positive, got {tile.tolist()}")
    if np.any(step <= 0):
        raise ValueError(f"stride must be positive, got {step.tolist()}")
    return slide, tile, step


def _axis_origins(slide: int, tile: int, stride: int, last: str) -> np.ndarray:
    """Origins along one axis (level coords), ascending, int64."""
    if slide == 0:
        return np.empty(0, dtype=np.int64)
    overhang = slide - tile  # q * stride; integer arithmetic avoids float floor/ceil traps
    if last == "drop":
        if overhang < 0:
            return np.empty(0, dtype=np.int64)
        return np.arange(overhang // stride + 1, dtype=np.int64) * stride
    # ceil(q) + 1 tiles, at least one: a slide smaller than a tile still gets its tile.
    count = max(-(-overhang // stride), 0) + 1
    origins = np.arange(count, dtype=np.int64) * stride
    if last == "shift":
        origins[-1] = max(overhang, 0)
    else:
        # With stride > tile the last ceil(q) origin can land at or past the slide edge,
        # giving a tile with no slide pixel in it.
        origins = origins[origins < slide]
    return origins


def _all_axis_origins(
    slide_extent: Extent, tile_extent: Extent, stride: Extent, last: str
) -> list[np.ndarray]:
    """The tile origins of each axis (level coords), after checking the arguments."""
    if last not in _MODES:
        raise ValueError(f"last must be one of {_MODES}, got {last!r}")
    slide, tile, step = _broadcast(slide_extent, tile_extent, stride)
    return [
        _axis_origins(int(s), int(t), int(d), last)
        for s, t, d in zip(slide, tile, step, strict=True)
    ]


def grid_tile_array(
    slide_extent: Extent, tile_extent: Extent, stride: Extent, last: Last = "keep"
) -> np.ndarray:
    """All tile origins at once: an ``(N, ndim)`` int64 array in level coords.

    Rows are ordered with the first axis varying fastest (x inner, then y, ...), the same order
    as :func:`grid_tiles`. Raises ``ValueError`` for an unknown ``last``, a non-positive tile
    extent or stride, a negative slide extent, or mismatched numbers of axes.
    """
    axes = _all_axis_origins(slide_extent, tile_extent, stride, last)
    # meshgrid over the reversed axes with "ij" indexing makes the first axis the fastest one
    # in C order.
    grids = np.meshgrid(*axes[::-1], indexing="ij")
    columns = [g.reshape(-1) for g in grids[::-1]]
    return np.stack(columns, axis=1).astype(np.int64, copy=False)


def grid_tiles(
    slide_extent: Extent, tile_extent: Extent, stride: Extent, last: Last = "keep"
) -> Iterator[np.ndarray]:
    """Tile origins (level coords) of a regular grid, one int64 array of shape ``(ndim,)`` each.

    ``slide_extent``, ``tile_extent`` and ``stride`` are each an integer (applied to every axis)
    or a sequence with one integer per axis (x first). ``last`` is ``"keep"``, ``"shift"`` or
    ``"drop"`` (see the module docstring). The first axis varies fastest, so
    ``for x, y in grid_tiles(...)`` walks rows of tiles left to right, top to bottom, and
    ``np.array(list(grid_tiles(...)))`` equals :func:`grid_tile_array`.

    Arguments are validated when this is called, not when iteration starts; origins are then
    produced lazily, so a huge grid costs no memory up front.
    """
    axes = _all_axis_origins(slide_extent, tile_extent, stride, last)
    return _iterate(axes)


def _iterate(axes: list[np.ndarray]) -> Iterator[np.ndarray]:
    """Every combination of the axes' origins (level coords), the first axis fastest."""
    # itertools.product varies its last argument fastest, so it gets the first axis.
    for combo in itertools.product(*(a.tolist() for a in axes[::-1])):
        yield np.array(combo[::-1], dtype=np.int64)
