"""``tile_grid``: one row per tile of the level chosen in ``slide_metadata``."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from wsi_core.tables.schemas import TILE_GRID_SCHEMA
from wsi_core.tiling import grid_tile_array
from wsi_core.tiling.grid import Last


def level0(values: np.ndarray, downsample: float) -> np.ndarray:
    """Level pixels to level-0 pixels, rounded half up."""
    return np.floor(values * downsample + 0.5).astype(np.int64)


def tile_count(extent: tuple[int, int], tile_extent: int, stride: int, last: Last) -> int:
    """How many tiles ``build_tile_grid`` would give for a level of ``extent`` (level pixels),
    counted per axis without making the grid (a damaged header can claim any size)."""
    across = len(grid_tile_array((extent[0], tile_extent), tile_extent, stride, last))
    down = len(grid_tile_array((tile_extent, extent[1]), tile_extent, stride, last))
    return across * down


def build_tile_grid(
    slide_metadata: pa.Table, tile_extent: int, stride: int, last: Last
) -> pa.Table:
    """The tile grid of one slide from its one-row ``slide_metadata`` table.

    Square tiles of ``tile_extent`` level pixels every ``stride`` level pixels; ``last`` is
    what ``grid_tiles`` does with the last tile of each row and column.
    """
    meta = slide_metadata.to_pylist()[0]
    origins = grid_tile_array((meta["extent_x"], meta["extent_y"]), tile_extent, stride, last)
    count = len(origins)
    downsample = float(meta["downsample"])
    extent0 = int(np.floor(tile_extent * downsample + 0.5))

    def constant(value: Any, dtype: Any) -> np.ndarray:
        return np.full(count, value, dtype=dtype)

    columns = {
        "slide_key": pa.array([meta["slide_key"]] * count, pa.string()),
        "tile_x": origins[:, 0],
        "tile_y": origins[:, 1],
        "level": constant(meta["level"], np.int32),
        "tile_extent_x": constant(tile_extent, np.int64),
        "tile_extent_y": constant(tile_extent, np.int64),
        "stride_x": constant(stride, np.int64),
        "stride_y": constant(stride, np.int64),
        "mpp_x": constant(meta["mpp_x"], np.float64),
        "mpp_y": constant(meta["mpp_y"], np.float64),
        "downsample": constant(downsample, np.float64),
        "x0": level0(origins[:, 0], downsample),
        "y0": level0(origins[:, 1], downsample),
        "extent0_x": constant(extent0, np.int64),
        "extent0_y": constant(extent0, np.int64),
    }
    return pa.table(columns, schema=TILE_GRID_SCHEMA)
