"""A per-slide summary of the stored tables, for people: level, mpp, size, tiles, mean
coverage per class, mean tissue fraction."""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from wsi_assets.pipeline.tables import TableStore
from wsi_core.tables import ANNOTATION_COVERAGE, OVERLAY_OVERLAP, SLIDE_METADATA, TILE_GRID


def summary_rows(store: TableStore) -> list[dict[str, object]]:
    """One row per slide with a ``slide_metadata`` table."""
    meta = store.dataset(SLIDE_METADATA)
    if meta is None:
        return []
    grid, coverage, overlap = (
        store.dataset(name) for name in (TILE_GRID, ANNOTATION_COVERAGE, OVERLAY_OVERLAP)
    )
    rows = []
    for slide in meta.to_pylist():
        key = slide["slide_key"]
        row: dict[str, object] = {
            "slide": key,
            "level": slide["level"],
            "mpp": round(slide["mpp_x"], 3),
            "size": f"{slide['extent_x']}x{slide['extent_y']}",
            "tiles": _count(grid, key),
        }
        row.update(_means(coverage, key, "coverage_"))
        row.update(_means(overlap, key, "tissue_fraction"))
        rows.append(row)
    return rows


def _count(table: pa.Table | None, key: str) -> int:
    if table is None:
        return 0
    return int(pc.sum(pc.equal(table["slide_key"], key)).as_py() or 0)


def _means(table: pa.Table | None, key: str, prefix: str) -> dict[str, object]:
    """Mean of each column starting with ``prefix`` over the slide's tiles ('-' if unmeasured)."""
    if table is None:
        return {}
    rows = table.filter(pc.equal(table["slide_key"], key))
    means: dict[str, object] = {}
    for column in rows.column_names:
        if column.startswith(prefix):
            value = pc.mean(rows[column]).as_py()  # nulls skipped; all null: nothing measured
            means[column] = "-" if value is None else round(float(value), 3)
    return means


def format_table(rows: Sequence[dict[str, object]]) -> str:
    """Rows as a fixed-width text table."""
    if not rows:
        return "(no slides)"
    columns = list(dict.fromkeys(name for row in rows for name in row))
    cells = [[str(row.get(name, "")) for name in columns] for row in rows]
    widths = [max(len(name), *(len(line[i]) for line in cells)) for i, name in enumerate(columns)]
    lines = ["  ".join(name.ljust(width) for name, width in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * width for width in widths))
    lines += [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
        for line in cells
    ]
    return "\n".join(lines)
