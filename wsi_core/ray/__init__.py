"""The Ray Data API: ``read_slides`` and the expression UDFs behind the per-tile kernels.

Importing this package imports Ray; nothing else in ``wsi_core`` does (the kernels import
:mod:`wsi_core.ray.expressions` only when they are given Ray column expressions).

``read_slides(paths, mpp=... | level=..., tile_extent=..., stride=...)`` gives one row per
slide (:data:`~wsi_core.ray.metadata.SLIDE_SCHEMA`); ``Dataset.flat_map`` turns slides into
tiles with :func:`~wsi_core.tiling.grid_tiles`, and ``Dataset.with_column`` attaches overlay
fractions, overlay patches or tile pixels with :func:`~wsi_core.tiling.tile_overlay_overlap`,
:func:`~wsi_core.tiling.tile_overlay` and :func:`~wsi_core.tiling.read_slide_tiles` called
with ``ray.data.expressions.col(...)`` arguments.
"""

from wsi_core.ray.datasource import SlideMetadataDatasource, read_slides
from wsi_core.ray.listing import SLIDE_EXTENSIONS, expand_slide_paths
from wsi_core.ray.metadata import SLIDE_SCHEMA

__all__ = [
    "SLIDE_EXTENSIONS",
    "SLIDE_SCHEMA",
    "SlideMetadataDatasource",
    "expand_slide_paths",
    "read_slides",
]
