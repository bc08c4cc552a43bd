"""Asset checks, one evaluation per slide partition.

Each check is a pure function of Arrow tables (easy to test on a corrupted table) wrapped in a
partitioned ``@asset_check`` that reads the slide's Parquet files. Partitioned asset checks
are a preview feature in Dagster 1.13; the preview warning is silenced where they are built.
"""

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetKey,
    asset_check,
)

from .config import WSISettings
from .keys import ANNOTATION_COVERAGE, OVERLAY_OVERLAP, SLIDE_METADATA, TILE_GRID
from .partitions import slides_partitions
from .tables import MissingUpstreamError, read_table

#: Tolerance for "in [0, 1]" and "sums to 1" (float64 sums of per-pixel fractions).
TOLERANCE = 1e-9
SUM_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Verdict:
    """Outcome of one check on one slide."""

    passed: bool
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)


def coverage_in_unit_interval(coverage: pa.Table) -> Verdict:
    """Every non-null ``coverage_*`` value lies in [0, 1] (nulls mean "no annotation file")."""
    bad: dict[str, int] = {}
    for name in coverage.column_names:
        if name.startswith("coverage_"):
            values = coverage[name].to_numpy(zero_copy_only=False).astype(np.float64)
            outside = ~np.isnan(values) & ((values < -TOLERANCE) | (values > 1 + TOLERANCE))
            outside |= np.isinf(values)
            if outside.any():
                bad[name] = int(outside.sum())
    if bad:
        return Verdict(False, f"coverage outside [0, 1] in {bad}", {"tiles_outside": bad})
    return Verdict(True, "every coverage is in [0, 1] or null")


def fractions_sum_to_one(overlap: pa.Table) -> Verdict:
    """Per tile, the overlay fractions are in [0, 1] and sum to 1 (null tiles excepted), and
    ``tissue_fraction`` is in [0, 1]."""
    rows = overlap["fractions"].to_pylist()  # per tile: [(value, fraction), ...] or None
    sums = np.array([sum(share for _, share in row) for row in rows if row is not None], np.float64)
    shares = np.array([share for row in rows if row is not None for _, share in row], np.float64)
    off = np.abs(sums - 1.0) > SUM_TOLERANCE
    negative_or_big = int(((shares < -TOLERANCE) | (shares > 1 + TOLERANCE)).sum())
    tissue = overlap["tissue_fraction"].to_numpy(zero_copy_only=False).astype(np.float64)
    tissue_bad = int((~np.isnan(tissue) & ((tissue < -TOLERANCE) | (tissue > 1 + TOLERANCE))).sum())
    metadata = {
        "tiles_not_summing_to_1": int(off.sum()),
        "fractions_outside_0_1": negative_or_big,
        "tissue_fraction_outside_0_1": tissue_bad,
    }
    if off.any() or negative_or_big or tissue_bad:
        return Verdict(False, f"overlay fractions inconsistent: {metadata}", metadata)
    return Verdict(True, "every tile's fractions sum to 1 (or the tile is null)", metadata)


def tiles_inside_slide(grid: pa.Table, slide_metadata: pa.Table) -> Verdict:
    """Every tile origin lies inside the chosen level, and every row is on that level.

    Origins, not whole tiles: with ``last="keep"`` the last tile of a row may reach past the
    edge (the reader fills that part with background), but never starts there.
    """
    meta = slide_metadata.to_pylist()[0]
    width, height = int(meta["extent_x"]), int(meta["extent_y"])
    x = grid["tile_x"].to_numpy()
    y = grid["tile_y"].to_numpy()
    outside = (x < 0) | (y < 0) | (x >= width) | (y >= height)
    levels = set(grid["level"].to_pylist())
    metadata = {"tiles_outside": int(outside.sum()), "extent": [width, height]}
    if outside.any() or (levels and levels != {meta["level"]}):
        return Verdict(
            False,
            f"{int(outside.sum())} tile origins outside the {width}x{height} level "
            f"or wrong level {sorted(levels)}",
            metadata,
        )
    return Verdict(True, f"every tile origin is inside the {width}x{height} level", metadata)


def rows_match_grid(table: pa.Table, grid: pa.Table) -> Verdict:
    """A per-tile table has exactly the tile grid's rows, in the same order."""
    metadata = {"rows": table.num_rows, "tile_grid_rows": grid.num_rows}
    if table.num_rows != grid.num_rows:
        return Verdict(False, f"{table.num_rows} rows but tile_grid has {grid.num_rows}", metadata)
    same = all(table[name].equals(grid[name]) for name in ("tile_x", "tile_y"))
    if not same:
        return Verdict(False, "tile coordinates differ from tile_grid", metadata)
    return Verdict(True, f"{grid.num_rows} rows, same tiles as tile_grid", metadata)


def _result(verdict: Verdict) -> AssetCheckResult:
    return AssetCheckResult(
        passed=verdict.passed, description=verdict.description, metadata=verdict.metadata
    )


def _missing(error: MissingUpstreamError) -> AssetCheckResult:
    return AssetCheckResult(passed=False, description=str(error))


def _check(
    asset: str, name: str, needs: tuple[str, ...], rule: Callable[..., Verdict], doc: str
) -> AssetChecksDefinition:
    """A partitioned asset check on ``asset`` that applies ``rule`` to the tables ``needs``."""

    def evaluate(context: AssetCheckExecutionContext, settings: WSISettings) -> AssetCheckResult:
        try:
            tables = [
                read_table(settings.output_root, table, context.partition_key) for table in needs
            ]
        except MissingUpstreamError as error:
            return _missing(error)
        return _result(rule(*tables))

    evaluate.__name__ = name
    others = [AssetKey(table) for table in needs if table != asset]
    return asset_check(
        asset=AssetKey(asset),
        name=name,
        description=doc,
        partitions_def=slides_partitions,
        additional_deps=others,
    )(evaluate)


def build() -> list[AssetChecksDefinition]:
    """All checks (partitioned asset checks are a Dagster preview feature: warning silenced)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [
            _check(
                ANNOTATION_COVERAGE,
                "coverage_in_unit_interval",
                (ANNOTATION_COVERAGE,),
                coverage_in_unit_interval,
                "Every coverage value is in [0, 1] (or null).",
            ),
            _check(
                OVERLAY_OVERLAP,
                "fractions_sum_to_one",
                (OVERLAY_OVERLAP,),
                fractions_sum_to_one,
                "Per tile, overlay fractions sum to 1 (or the tile is null).",
            ),
            _check(
                TILE_GRID,
                "tiles_inside_slide",
                (TILE_GRID, SLIDE_METADATA),
                tiles_inside_slide,
                "Every tile origin lies inside the chosen level.",
            ),
            _check(
                ANNOTATION_COVERAGE,
                "rows_match_tile_grid",
                (ANNOTATION_COVERAGE, TILE_GRID),
                rows_match_grid,
                "One row per tile of tile_grid, same tiles, same order.",
            ),
            _check(
                OVERLAY_OVERLAP,
                "rows_match_tile_grid",
                (OVERLAY_OVERLAP, TILE_GRID),
                rows_match_grid,
                "One row per tile of tile_grid, same tiles, same order.",
            ),
        ]
