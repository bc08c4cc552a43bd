"""The four per-slide tables: schemas (:mod:`.schemas`), one builder per table (slide or
upstream table in, ``pyarrow.Table`` out) and their consistency rules (:mod:`.checks`).

The builders are the same code whichever engine calls them: the Dagster assets, a Ray
backfill or the command line. They read files but write nothing; storing the tables is the
caller's business.
"""

from wsi_core.tables.annotation_coverage import build_annotation_coverage
from wsi_core.tables.overlay_overlap import build_overlay_overlap
from wsi_core.tables.schemas import (
    ANNOTATION_COVERAGE,
    OVERLAY_OVERLAP,
    SLIDE_METADATA,
    TABLES,
    TILE_GRID,
)
from wsi_core.tables.slide_metadata import build_slide_metadata
from wsi_core.tables.tile_grid import build_tile_grid

__all__ = [
    "ANNOTATION_COVERAGE",
    "OVERLAY_OVERLAP",
    "SLIDE_METADATA",
    "TABLES",
    "TILE_GRID",
    "build_annotation_coverage",
    "build_overlay_overlap",
    "build_slide_metadata",
    "build_tile_grid",
]
