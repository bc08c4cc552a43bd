"""Tiling kernels: tile grids, annotation geometry and coverage per tile, overlays per tile.

Coordinates are level coords (pixels of the pyramid level being tiled) unless a function says
level 0; x is the column, y the row.
"""

from wsi_core.tiling.annotations import annotation_coverage, tile_annotations
from wsi_core.tiling.grid import grid_tile_array, grid_tiles
from wsi_core.tiling.overlay import OverlayPatch, tile_overlay, tile_overlay_overlap

__all__ = [
    "OverlayPatch",
    "annotation_coverage",
    "grid_tile_array",
    "grid_tiles",
    "tile_annotations",
    "tile_overlay",
    "tile_overlay_overlap",
]
