"""``tile_grid``: one row per tile of the chosen level (``wsi_core.tiling.grid_tile_array``)."""

from typing import Any

import numpy as np
import pyarrow as pa
from dagster import AssetExecutionContext, AssetKey, AssetsDefinition, MaterializeResult, asset

from ..config import WSISettings
from ..keys import SLIDE_METADATA, TILE_GRID
from ..partitions import slides_partitions
from ..tables import materialize_result
from ._common import GROUP, RETRY, TILE_KEY_DESCRIPTIONS, TILE_KEY_FIELDS, code_version, load, save

REVISION = "1"

SCHEMA = pa.schema(
    [
        *TILE_KEY_FIELDS,
        ("tile_extent_x", pa.int64()),
        ("tile_extent_y", pa.int64()),
        ("stride_x", pa.int64()),
        ("stride_y", pa.int64()),
        ("mpp_x", pa.float64()),
        ("mpp_y", pa.float64()),
        ("downsample", pa.float64()),
        ("x0", pa.int64()),
        ("y0", pa.int64()),
        ("extent0_x", pa.int64()),
        ("extent0_y", pa.int64()),
    ]
)

DESCRIPTIONS = {
    **TILE_KEY_DESCRIPTIONS,
    "tile_extent_x": "tile width, level pixels",
    "tile_extent_y": "tile height, level pixels",
    "stride_x": "step between origins, level pixels (x)",
    "stride_y": "step between origins, level pixels (y)",
    "mpp_x": "resolution of the level, micrometres per pixel (x)",
    "mpp_y": "resolution of the level, micrometres per pixel (y)",
    "downsample": "level-0 pixels per level pixel",
    "x0": "tile origin at level 0, pixels: round(tile_x * downsample)",
    "y0": "tile origin at level 0, pixels: round(tile_y * downsample)",
    "extent0_x": "tile width at level 0, pixels: round(tile_extent_x * downsample)",
    "extent0_y": "tile height at level 0, pixels: round(tile_extent_y * downsample)",
}

LINEAGE = {
    "slide_key": [(SLIDE_METADATA, "slide_key")],
    "tile_x": [(SLIDE_METADATA, "extent_x")],
    "tile_y": [(SLIDE_METADATA, "extent_y")],
    "level": [(SLIDE_METADATA, "level")],
    "mpp_x": [(SLIDE_METADATA, "mpp_x")],
    "mpp_y": [(SLIDE_METADATA, "mpp_y")],
    "downsample": [(SLIDE_METADATA, "downsample")],
    "x0": [(SLIDE_METADATA, "extent_x"), (SLIDE_METADATA, "downsample")],
    "y0": [(SLIDE_METADATA, "extent_y"), (SLIDE_METADATA, "downsample")],
    "extent0_x": [(SLIDE_METADATA, "downsample")],
    "extent0_y": [(SLIDE_METADATA, "downsample")],
}


def _level0(values: np.ndarray, downsample: float) -> np.ndarray:
    """Level pixels to level-0 pixels, rounded half up."""
    return np.floor(values * downsample + 0.5).astype(np.int64)


def grid_table(meta: dict[str, Any], tile_extent: int, stride: int, last: str) -> pa.Table:
    """The tile grid of one slide from its ``slide_metadata`` row (square tiles)."""
    from wsi_core.tiling import grid_tile_array

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
        "x0": _level0(origins[:, 0], downsample),
        "y0": _level0(origins[:, 1], downsample),
        "extent0_x": constant(extent0, np.int64),
        "extent0_y": constant(extent0, np.int64),
    }
    return pa.table(columns, schema=SCHEMA)


def build(settings: WSISettings) -> AssetsDefinition:
    """The ``tile_grid`` asset; its code version follows the tiling settings."""

    @asset(
        name=TILE_GRID,
        partitions_def=slides_partitions,
        deps=[AssetKey(SLIDE_METADATA)],
        group_name=GROUP,
        kinds={"parquet"},
        retry_policy=RETRY,
        code_version=code_version(REVISION, settings.tiling_params()),
        description="One row per tile of the chosen level: origin in level pixels and at "
        "level 0, extent, stride, mpp and downsample.",
    )
    def tile_grid(context: AssetExecutionContext, settings: WSISettings) -> MaterializeResult:
        key = context.partition_key
        meta = load(settings, SLIDE_METADATA, key).to_pylist()[0]
        table = grid_table(meta, settings.tile_extent, settings.stride, settings.last)
        uri, digest = save(settings, TILE_GRID, key, table)
        return materialize_result(
            table=table,
            uri=uri,
            content_hash=digest,
            descriptions=DESCRIPTIONS,
            lineage=LINEAGE,
            params={
                **settings.tiling_params(),
                "level": meta["level"],
                "extent": [meta["extent_x"], meta["extent_y"]],
            },
        )

    return tile_grid
