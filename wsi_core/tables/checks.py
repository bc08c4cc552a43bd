"""Consistency rules of the four tables, as pure functions of Arrow tables.

Each rule returns a :class:`Verdict`; the Dagster layer turns verdicts into asset check
results, and any other engine can apply the same rules to the tables it writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

#: Tolerance for "in [0, 1]" and for "sums to 1" (float64 sums of per-pixel fractions).
TOLERANCE = 1e-9
SUM_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Verdict:
    """The outcome of one rule on one slide's table(s)."""

    passed: bool
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)


def _outside_unit_interval(values: np.ndarray) -> np.ndarray:
    """Mask of the non-NaN values outside [0, 1] (and infinities)."""
    outside = ~np.isnan(values) & ((values < -TOLERANCE) | (values > 1 + TOLERANCE))
    return outside | np.isinf(values)


def coverage_in_unit_interval(coverage: pa.Table) -> Verdict:
    """Every non-null ``coverage_*`` value lies in [0, 1] (null means "no annotation file")."""
    bad: dict[str, int] = {}
    for name in coverage.column_names:
        if name.startswith("coverage_"):
            values = coverage[name].to_numpy(zero_copy_only=False).astype(np.float64)
            outside = _outside_unit_interval(values)
            if outside.any():
                bad[name] = int(outside.sum())
    if bad:
        return Verdict(False, f"coverage outside [0, 1] in {bad}", {"tiles_outside": bad})
    return Verdict(True, "every coverage is in [0, 1] or null")


def fractions_sum_to_one(overlap: pa.Table) -> Verdict:
    """Per tile, the overlay fractions are in [0, 1] and sum to 1 (null tiles excepted), and
    ``tissue_fraction`` is in [0, 1]."""
    rows = [row for row in overlap["fractions"].to_pylist() if row is not None]
    sums = np.array([sum(share for _, share in row) for row in rows], np.float64)
    shares = np.array([share for row in rows for _, share in row], np.float64)
    off = np.abs(sums - 1.0) > SUM_TOLERANCE
    bad_shares = int(((shares < -TOLERANCE) | (shares > 1 + TOLERANCE)).sum())
    tissue = overlap["tissue_fraction"].to_numpy(zero_copy_only=False).astype(np.float64)
    bad_tissue = int(_outside_unit_interval(tissue).sum())
    metadata = {
        "tiles_not_summing_to_1": int(off.sum()),
        "fractions_outside_0_1": bad_shares,
        "tissue_fraction_outside_0_1": bad_tissue,
    }
    if off.any() or bad_shares or bad_tissue:
        return Verdict(False, f"overlay fractions inconsistent: {metadata}", metadata)
    return Verdict(True, "every tile's fractions sum to 1 (or the tile is null)", metadata)


def tiles_inside_slide(grid: pa.Table, slide_metadata: pa.Table) -> Verdict:
    """Every tile origin lies inside the chosen level, and every row is on that level.

    Origins, not whole tiles: with ``last="keep"`` the last tile of a row may reach past the
    edge (the reader fills that part with background), but it never starts there.
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
    if not all(table[name].equals(grid[name]) for name in ("tile_x", "tile_y")):
        return Verdict(False, "tile coordinates differ from tile_grid", metadata)
    return Verdict(True, f"{grid.num_rows} rows, same tiles as tile_grid", metadata)


def labels_match_classes(unmatched: dict[str, int] | None) -> Verdict:
    """Every labelled polygon of the annotation file counts for a class column.

    ``unmatched`` maps each label that no class pattern matches (``"(no label)"`` for
    polygons without one) to its number of polygons; None: no annotation file. Polygons that
    match nothing are most often a class-name or label-property setting that does not fit
    the file (0.0 coverage everywhere, a wrong table), so this is worth a warning.
    """
    if not unmatched:
        return Verdict(True, "every labelled polygon counts for a class (or there is no file)")
    listing = ", ".join(f"{label} ({count})" for label, count in sorted(unmatched.items()))
    return Verdict(
        False,
        f"polygons whose label matches no class: {listing}; set WSI_LABEL_CLASSES "
        "(or WSI_LABEL_PROPERTY)",
        {"labels_matching_no_class": dict(unmatched)},
    )
