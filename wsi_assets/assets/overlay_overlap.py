"""``overlay_overlap``: per tile, the fraction of the ROI's overlay pixels holding each value.

Computed by ``wsi_core.tiling.tile_overlay_overlap`` on the slide's overlay (e.g. a tissue
mask; found through ``WSISettings.overlay_templates``). Stored as

* ``fractions``: ``map<string, double>``, value -> fraction (``"0"``, ``"255"``; ``"r,g,b"`` for
  colour overlays). Every tile has every value seen in the slide (0.0 where absent); the
  fractions of a tile sum to 1. A map keeps one schema for all slides, whatever values their
  overlays hold, so the whole asset reads as one table.
* ``tissue_fraction``: convenience column, the fraction of pixels whose value is not 0 (not
  black): the tissue fraction for a 0/255 tissue mask.

Null ``fractions`` and ``tissue_fraction``: the tile's ROI has no overlay pixel (it lies off
the overlay), or the slide has no overlay file at all; the latter is also stated in the
materialization (``overlay_file: none found``, ``measured: false``). Nothing is ever a fake 0.
"""

from typing import Any

import numpy as np
import pyarrow as pa
from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    MaterializeResult,
    MetadataValue,
    asset,
)
from shapely.geometry.base import BaseGeometry

from .. import storage
from ..config import WSISettings
from ..keys import OVERLAY_FILE, OVERLAY_OVERLAP, TILE_GRID
from ..partitions import slides_partitions
from ..tables import materialize_result
from ._common import (
    GROUP,
    KEY_COLUMNS,
    RETRY,
    TILE_KEY_DESCRIPTIONS,
    TILE_KEY_FIELDS,
    about_file,
    code_version,
    companion,
    load,
    roi_polygon,
    save,
    slide_entry,
)

REVISION = "1"
BACKGROUND_VALUES = frozenset({"0", "0,0,0"})

SCHEMA = pa.schema(
    [
        *TILE_KEY_FIELDS,
        ("fractions", pa.map_(pa.string(), pa.float64())),
        ("tissue_fraction", pa.float64()),
    ]
)

DESCRIPTIONS = {
    **TILE_KEY_DESCRIPTIONS,
    "fractions": "overlay value -> fraction of the ROI's overlay pixels (sums to 1); null when "
    "no overlay pixel lies under the ROI or the slide has no overlay",
    "tissue_fraction": "fraction of the ROI's overlay pixels whose value is not 0; null as above",
}

_INPUTS = ["tile_x", "tile_y", "mpp_x", "mpp_y", "tile_extent_x", "tile_extent_y"]
LINEAGE = {
    **{name: [(TILE_GRID, name)] for name in KEY_COLUMNS},
    "fractions": [(TILE_GRID, column) for column in _INPUTS],
    "tissue_fraction": [(TILE_GRID, column) for column in _INPUTS],
}


def measure(
    grid: pa.Table, overlay_path: str, roi: BaseGeometry, overlay_mpp: float | None
) -> list[dict[str, float] | None]:
    """Value fractions for every tile of ``grid`` from the overlay at ``overlay_path`` (a
    local path, or a URL ``open_slide`` reads)."""
    from wsi_core.tiling import tile_overlay_overlap

    if grid.num_rows == 0:
        return []
    return tile_overlay_overlap(
        roi,
        overlay_path,
        grid["tile_x"].to_numpy(),
        grid["tile_y"].to_numpy(),
        float(grid["mpp_x"][0].as_py()),
        float(grid["mpp_y"][0].as_py()),
        overlay_mpp=overlay_mpp,
    )


def tissue_fraction(fractions: dict[str, float] | None) -> float | None:
    """Sum of the fractions of every value that is not 0 (None stays None)."""
    if fractions is None:
        return None
    return float(sum(share for value, share in fractions.items() if value not in BACKGROUND_VALUES))


def overlap_table(grid: pa.Table, fractions: list[dict[str, float] | None] | None) -> pa.Table:
    """The output table; ``fractions=None`` (no overlay file) gives null columns."""
    rows = [None] * grid.num_rows if fractions is None else fractions
    maps = [None if row is None else list(row.items()) for row in rows]
    columns: dict[str, Any] = {name: grid[name] for name in KEY_COLUMNS}
    columns["fractions"] = pa.array(maps, pa.map_(pa.string(), pa.float64()))
    columns["tissue_fraction"] = pa.array([tissue_fraction(row) for row in rows], pa.float64())
    return pa.table(columns, schema=SCHEMA)


def summary(table: pa.Table) -> dict[str, Any]:
    """Mean tissue fraction and number of tiles without overlay pixels (UI metadata)."""
    values = table["tissue_fraction"].to_numpy(zero_copy_only=False).astype(np.float64)
    measured = values[~np.isnan(values)]
    return {
        "mean_tissue_fraction": float(measured.mean()) if len(measured) else None,
        "tiles_with_tissue": int((measured > 0).sum()),
        "tiles_without_overlay_pixels": int(np.isnan(values).sum()),
    }


def build(settings: WSISettings) -> AssetsDefinition:
    """The ``overlay_overlap`` asset; its code version follows the ROI and overlay settings."""

    @asset(
        name=OVERLAY_OVERLAP,
        partitions_def=slides_partitions,
        deps=[AssetKey(TILE_GRID), OVERLAY_FILE],
        group_name=GROUP,
        kinds={"parquet"},
        retry_policy=RETRY,
        code_version=code_version(REVISION, settings.overlay_params()),
        description="Per tile: fraction of the ROI's overlay pixels per overlay value (map), "
        "and tissue_fraction (value != 0); null where the slide has no overlay.",
    )
    def overlay_overlap(context: AssetExecutionContext, settings: WSISettings) -> MaterializeResult:
        key = context.partition_key
        entry = slide_entry(settings, key)
        grid = load(settings, TILE_GRID, key)
        found, facts = companion(context, settings.overlay_templates, entry, key, "overlay")
        fractions = None
        if found is not None:
            with about_file(found, "overlay"):
                roi = roi_polygon(settings)
                fractions = storage.read_slide_file(
                    found, lambda path: measure(grid, path, roi, settings.overlay_mpp)
                )
            seen = sorted({value for row in fractions if row for value in row})
            facts["overlay_values"] = MetadataValue.json(seen)
        table = overlap_table(grid, fractions)
        uri, digest = save(settings, OVERLAY_OVERLAP, key, table)
        facts["measured"] = MetadataValue.bool(found is not None)
        facts["overlap_summary"] = MetadataValue.json(summary(table))
        return materialize_result(
            table=table,
            uri=uri,
            content_hash=digest,
            descriptions=DESCRIPTIONS,
            lineage=LINEAGE,
            params={**settings.overlay_params(), "tile_extent": settings.tile_extent},
            extra=facts,
        )

    return overlay_overlap
