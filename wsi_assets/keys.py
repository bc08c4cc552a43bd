"""Asset keys and names shared by assets, checks, sensors and schedules."""

from __future__ import annotations

from dagster import AssetKey

SLIDE_FILE = AssetKey("slide_file")
ANNOTATION_FILE = AssetKey("annotation_file")
OVERLAY_FILE = AssetKey("overlay_file")
SOURCE_KEYS = (SLIDE_FILE, ANNOTATION_FILE, OVERLAY_FILE)

SLIDE_METADATA = "slide_metadata"
TILE_GRID = "tile_grid"
ANNOTATION_COVERAGE = "annotation_coverage"
OVERLAY_OVERLAP = "overlay_overlap"
#: The tables, upstream first.
TABLES = (SLIDE_METADATA, TILE_GRID, ANNOTATION_COVERAGE, OVERLAY_OVERLAP)
TABLE_KEYS = tuple(AssetKey(name) for name in TABLES)

#: The asset job that the sensor and the sweep schedule launch (one slide per run).
SLIDE_JOB = "slide_tables"
