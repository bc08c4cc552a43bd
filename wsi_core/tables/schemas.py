"""The four per-slide tables: names, Arrow schemas, column descriptions and column lineage.

Every engine (the Dagster assets, a Ray backfill, the command line) writes these tables with
these schemas, so this module is the one place that says what a column holds and in which
unit. Coordinates are pixels of the pyramid level that was tiled ("level pixels") unless a
column says level 0; resolutions are micrometres per pixel.
"""

from __future__ import annotations

from collections.abc import Mapping

import pyarrow as pa

SLIDE_METADATA = "slide_metadata"
TILE_GRID = "tile_grid"
ANNOTATION_COVERAGE = "annotation_coverage"
OVERLAY_OVERLAP = "overlay_overlap"
#: The tables, upstream first.
TABLES = (SLIDE_METADATA, TILE_GRID, ANNOTATION_COVERAGE, OVERLAY_OVERLAP)
#: The table each table is computed from (None: from the slide file itself).
UPSTREAM: Mapping[str, str | None] = {
    SLIDE_METADATA: None,
    TILE_GRID: SLIDE_METADATA,
    ANNOTATION_COVERAGE: TILE_GRID,
    OVERLAY_OVERLAP: TILE_GRID,
}

#: Column -> upstream columns it is computed from, as ``(table, column)`` pairs.
Lineage = Mapping[str, list[tuple[str, str]]]

#: The columns that identify a tile in every per-tile table, in this order.
TILE_KEY_FIELDS = (
    pa.field("slide_key", pa.string()),
    pa.field("tile_x", pa.int64()),
    pa.field("tile_y", pa.int64()),
    pa.field("level", pa.int32()),
)
TILE_KEY_COLUMNS = tuple(field.name for field in TILE_KEY_FIELDS)
TILE_KEY_DESCRIPTIONS = {
    "slide_key": "partition key of the slide",
    "tile_x": "tile origin, level pixels (column)",
    "tile_y": "tile origin, level pixels (row)",
    "level": "pyramid level of the tile grid",
}
TILE_KEY_LINEAGE: Lineage = {name: [(TILE_GRID, name)] for name in TILE_KEY_COLUMNS}

SLIDE_METADATA_SCHEMA = pa.schema(
    [
        ("slide_key", pa.string()),
        ("uri", pa.string()),
        ("relpath", pa.string()),
        ("file_size", pa.int64()),
        ("vendor", pa.string()),
        ("level_count", pa.int32()),
        ("level_width", pa.list_(pa.int64())),
        ("level_height", pa.list_(pa.int64())),
        ("level_downsample", pa.list_(pa.float64())),
        ("base_mpp_x", pa.float64()),
        ("base_mpp_y", pa.float64()),
        ("target_mpp", pa.float64()),
        ("level", pa.int32()),
        ("mpp_x", pa.float64()),
        ("mpp_y", pa.float64()),
        ("downsample", pa.float64()),
        ("extent_x", pa.int64()),
        ("extent_y", pa.int64()),
    ]
)
SLIDE_METADATA_DESCRIPTIONS = {
    "slide_key": "partition key of the slide",
    "uri": "slide file (local path or URL)",
    "relpath": "slide path relative to the slide root",
    "file_size": "slide file size, bytes",
    "vendor": "format reported by the reader",
    "level_width": "width of each pyramid level, pixels",
    "level_height": "height of each pyramid level, pixels",
    "level_downsample": "level-0 pixels per level pixel, per level",
    "base_mpp_x": "level-0 resolution, micrometres per pixel (x)",
    "base_mpp_y": "level-0 resolution, micrometres per pixel (y)",
    "target_mpp": "requested resolution, micrometres per pixel",
    "level": "pyramid level closest to target_mpp (used for tiling)",
    "mpp_x": "resolution of the chosen level, micrometres per pixel (x)",
    "mpp_y": "resolution of the chosen level, micrometres per pixel (y)",
    "downsample": "level-0 pixels per pixel of the chosen level",
    "extent_x": "width of the chosen level, pixels",
    "extent_y": "height of the chosen level, pixels",
}

TILE_GRID_SCHEMA = pa.schema(
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
TILE_GRID_DESCRIPTIONS = {
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
TILE_GRID_LINEAGE: Lineage = {
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


def coverage_column(name: str) -> str:
    """The ``annotation_coverage`` column that holds label class ``name``'s coverage."""
    return f"coverage_{name}"


def coverage_schema(classes: Mapping[str, str]) -> pa.Schema:
    """Tile key columns, then one float64 coverage column per label class (name -> regex)."""
    return pa.schema(
        [*TILE_KEY_FIELDS, *[(coverage_column(name), pa.float64()) for name in classes]]
    )


def coverage_descriptions(classes: Mapping[str, str]) -> dict[str, str]:
    """Column descriptions of ``annotation_coverage`` for these label classes."""
    descriptions = dict(TILE_KEY_DESCRIPTIONS)
    for name, pattern in classes.items():
        descriptions[coverage_column(name)] = (
            f"area of ROI covered by polygons whose class fullmatches {pattern!r} / ROI area, "
            "in [0, 1]; null when the slide has no annotation file"
        )
    return descriptions


def coverage_lineage(classes: Mapping[str, str]) -> Lineage:
    """Column lineage of ``annotation_coverage``: every coverage comes from the tile geometry."""
    inputs = ["tile_x", "tile_y", "downsample", "tile_extent_x", "tile_extent_y"]
    lineage = dict(TILE_KEY_LINEAGE)
    for name in classes:
        lineage[coverage_column(name)] = [(TILE_GRID, column) for column in inputs]
    return lineage


OVERLAY_OVERLAP_SCHEMA = pa.schema(
    [
        *TILE_KEY_FIELDS,
        ("fractions", pa.map_(pa.string(), pa.float64())),
        ("tissue_fraction", pa.float64()),
    ]
)
OVERLAY_OVERLAP_DESCRIPTIONS = {
    **TILE_KEY_DESCRIPTIONS,
    "fractions": "overlay value -> fraction of the ROI's overlay pixels (sums to 1); null when "
    "no overlay pixel lies under the ROI or the slide has no overlay",
    "tissue_fraction": "fraction of the ROI's overlay pixels whose value is not 0; null as above",
}
_OVERLAY_INPUTS = ["tile_x", "tile_y", "mpp_x", "mpp_y", "tile_extent_x", "tile_extent_y"]
OVERLAY_OVERLAP_LINEAGE: Lineage = {
    **TILE_KEY_LINEAGE,
    "fractions": [(TILE_GRID, column) for column in _OVERLAY_INPUTS],
    "tissue_fraction": [(TILE_GRID, column) for column in _OVERLAY_INPUTS],
}


def descriptions(table: str, classes: Mapping[str, str]) -> dict[str, str]:
    """Column descriptions of ``table`` (``classes`` matter for ``annotation_coverage`` only)."""
    if table == ANNOTATION_COVERAGE:
        return coverage_descriptions(classes)
    return {
        SLIDE_METADATA: SLIDE_METADATA_DESCRIPTIONS,
        TILE_GRID: TILE_GRID_DESCRIPTIONS,
        OVERLAY_OVERLAP: OVERLAY_OVERLAP_DESCRIPTIONS,
    }[table]


def lineage(table: str, classes: Mapping[str, str]) -> Lineage:
    """Column lineage of ``table`` (``classes`` matter for ``annotation_coverage`` only)."""
    if table == ANNOTATION_COVERAGE:
        return coverage_lineage(classes)
    return {
        SLIDE_METADATA: {},
        TILE_GRID: TILE_GRID_LINEAGE,
        OVERLAY_OVERLAP: OVERLAY_OVERLAP_LINEAGE,
    }[table]
