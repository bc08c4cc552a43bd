"""Tiling kernels: tile grids, annotation geometry and coverage per tile, overlays per tile.

Coordinates are level coords (pixels of the pyramid level being tiled) unless a function says
level 0; x is the column, y the row.

``tile_overlay``, ``tile_overlay_overlap`` and ``read_slide_tiles`` compute directly when given
values, and return a Ray Data expression UDF for ``Dataset.with_column`` when given column
expressions (``ray.data.expressions.col``); Ray is imported only in that case.
"""

from wsi_core.tiling.annotations import annotation_coverage, tile_annotations
from wsi_core.tiling.grid import grid_tile_array, grid_tiles
from wsi_core.tiling.overlay import (
    OverlapTable,
    OverlayPatch,
    overlap_fractions,
    tile_overlay,
    tile_overlay_overlap,
)
from wsi_core.tiling.slide_tiles import read_slide_tiles

__all__ = [
    "OverlapTable",
    "OverlayPatch",
    "annotation_coverage",
    "grid_tile_array",
    "grid_tiles",
    "overlap_fractions",
    "read_slide_tiles",
    "tile_annotations",
    "tile_overlay",
    "tile_overlay_overlap",
]
