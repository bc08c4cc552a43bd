"""``read_slide_tiles``: the pixels of many tiles, each slide file opened once.

Units: tile origins are level coords (pixels of the level the tile is read from), extents
are pixels of that level, ``level`` is the pyramid level index.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, overload

import numpy as np

from wsi_core.reader import Background
from wsi_core.tiling.expressions import has_column_expressions

if TYPE_CHECKING:  # for the overloads only: Ray is imported when expressions are given
    from ray.data.expressions import Expr, UDFExpr


@overload
def read_slide_tiles(
    path: Expr,
    tile_x: Any,
    tile_y: Any,
    tile_extent_x: Any,
    tile_extent_y: Any,
    level: Any,
    *,
    background: Background = ...,
    storage_options: Mapping[str, Any] | None = ...,
) -> UDFExpr: ...


@overload
def read_slide_tiles(
    path: Any,
    tile_x: Expr,
    tile_y: Any,
    tile_extent_x: Any,
    tile_extent_y: Any,
    level: Any,
    *,
    background: Background = ...,
    storage_options: Mapping[str, Any] | None = ...,
) -> UDFExpr: ...


@overload
def read_slide_tiles(
    path: Any,
    tile_x: Any,
    tile_y: Any,
    tile_extent_x: Any,
    tile_extent_y: Any,
    level: Any,
    *,
    background: Background = ...,
    storage_options: Mapping[str, Any] | None = ...,
) -> list[np.ndarray]: ...


def read_slide_tiles(
    path: Any,
    tile_x: Any,
    tile_y: Any,
    tile_extent_x: Any,
    tile_extent_y: Any,
    level: Any,
    *,
    background: Background = 255,
    storage_options: Mapping[str, Any] | None = None,
) -> list[np.ndarray] | UDFExpr:
    """The RGB pixels of every tile, exactly as
    :meth:`~wsi_core.reader.SlideReader.read_tile` gives them.

    Args:
        path: The slide file (a local path or a URL :func:`~wsi_core.slide.open_slide`
            reads), one for all tiles or one per tile.
        tile_x, tile_y: Tile origins in level coords of ``level`` (scalar or per tile).
        tile_extent_x, tile_extent_y: Tile width and height in pixels of ``level``.
        level: The pyramid level to read (scalar or per tile).
        background: Value (an int or an RGB triple) of pixels outside the slide and under
            transparent ones.
        storage_options: fsspec options for slides named by URL (see :mod:`wsi_core.remote`).

    Returns:
        One ``uint8`` array ``(tile_extent_y, tile_extent_x, 3)`` per tile, in input order.
        Each slide file is opened once per call, however many tiles it has, and its tiles are
        one :meth:`~wsi_core.reader.SlideReader.read_tiles` batch: every stored tile they
        meet is decoded once, where the backend decodes stored tiles itself.

    Called with Ray Data column expressions (``ray.data.expressions.col("tile_x")``) for any
    of the per-tile arguments, it returns a Ray Data expression for
    ``Dataset.with_column("tile", expr)`` instead: each block's tiles are read by this
    function (every slide opened once per block) into a tensor column. A block holds all its
    tiles' pixels at once (a 512 px RGB tile is 768 KiB), so keep blocks of tiles small, for
    example with ``Dataset.repartition(target_num_rows_per_block=...)``.
    """
    per_tile = {
        "path": path,
        "tile_x": tile_x,
        "tile_y": tile_y,
        "tile_extent_x": tile_extent_x,
        "tile_extent_y": tile_extent_y,
        "level": level,
    }
    if has_column_expressions(per_tile):
        from wsi_core.ray.expressions import TENSORS, column_expression

        return column_expression(
            "read_slide_tiles",
            read_slide_tiles,
            TENSORS,
            per_tile,
            {"background": background, "storage_options": storage_options},
        )
    # Imported here: the factory loads both backends (OpenSlide's C library, tifffile), which
    # ``import wsi_core.tiling`` for grid_tiles alone should not pay for. Looked up on every
    # call, so whoever replaces ``wsi_core.slide.open_slide`` sees every open.
    from wsi_core.slide import open_slide

    paths, columns = _broadcast(path, per_tile)
    by_path: dict[str, list[int]] = {}
    for i, name in enumerate(paths):
        by_path.setdefault(name, []).append(i)
    tiles: list[np.ndarray | None] = [None] * len(paths)
    for name, members in by_path.items():
        with open_slide(name, storage_options=storage_options) as slide:
            # One batch per slide: its stored tiles are decoded once for all its tiles.
            read = slide.read_tiles(
                columns["tile_x"][members],
                columns["tile_y"][members],
                columns["tile_extent_x"][members],
                columns["tile_extent_y"][members],
                columns["level"][members],
                background=background,
            )
        for i, tile in zip(members, read, strict=True):
            tiles[i] = tile
    return [tile for tile in tiles if tile is not None]


def _broadcast(path: Any, per_tile: Mapping[str, Any]) -> tuple[list[str], dict[str, np.ndarray]]:
    """The slide path of every tile and the integer arguments as one int64 array per name,
    scalars repeated for every tile."""
    sizes = {len(value) for value in per_tile.values() if _is_sequence(value)}
    if len(sizes) > 1:
        raise ValueError(f"per-tile arguments differ in length: {sorted(sizes)}")
    n = sizes.pop() if sizes else 1
    paths = [os.fspath(p) for p in path] if _is_sequence(path) else [os.fspath(path)] * n
    columns = {
        name: np.broadcast_to(np.asarray(value, dtype=np.int64), (n,))
        for name, value in per_tile.items()
        if name != "path"
    }
    return paths, columns


def _is_sequence(value: Any) -> bool:
    """Whether ``value`` gives one entry per tile (a sequence or array, not a path)."""
    return not isinstance(value, (str, bytes, os.PathLike)) and np.ndim(value) > 0
