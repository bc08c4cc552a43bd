"""Materialization metadata of a stored table: what the Dagster UI shows for each slide.

Row count, column schema with descriptions, column lineage, URI, the parameters, a preview,
and the facts the table step reported (which file was read, or where it was looked for, what
it held). The data version is the hash of the stored bytes, so a re-run that writes the same
table leaves the tables below it current.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import dagster as dg
import pyarrow as pa

from wsi_assets.pipeline.settings import Settings
from wsi_assets.pipeline.steps import Built
from wsi_core.tables.schemas import Lineage, descriptions, lineage

PREVIEW_ROWS = 5


def column_schema(schema: pa.Schema, described: Mapping[str, str]) -> dg.TableSchema:
    """The Dagster schema of an Arrow schema, with per-column descriptions."""
    return dg.TableSchema(
        columns=[
            dg.TableColumn(name=f.name, type=str(f.type), description=described.get(f.name))
            for f in schema
        ]
    )


def column_lineage(deps: Lineage) -> dg.TableColumnLineage:
    """Column lineage from ``{column: [(upstream table, upstream column), ...]}``."""
    return dg.TableColumnLineage(
        deps_by_column={
            column: [dg.TableColumnDep(asset_key=dg.AssetKey(t), column_name=c) for t, c in pairs]
            for column, pairs in deps.items()
            if pairs
        }
    )


def _cell(value: Any) -> str:
    """A table cell as short markdown text."""
    if value is None:
        return "null"
    if isinstance(value, float):
        return "NaN" if math.isnan(value) else f"{value:.6g}"
    if isinstance(value, list):
        if value and isinstance(value[0], tuple):  # a map column: list of (key, value)
            return "{" + ", ".join(f"{k}: {_cell(v)}" for k, v in value) + "}"
        return "[" + ", ".join(_cell(item) for item in value) + "]"
    text = str(value)
    return (text[:37] + "...") if len(text) > 40 else text.replace("|", "\\|")


def markdown_preview(table: pa.Table, rows: int = PREVIEW_ROWS) -> str:
    """The first ``rows`` rows as a markdown table."""
    names = table.column_names
    lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    for row in table.slice(0, rows).to_pylist():
        lines.append("| " + " | ".join(_cell(row[name]) for name in names) + " |")
    if table.num_rows > rows:
        lines.append(f"\n({table.num_rows - rows} more rows)")
    return "\n".join(lines)


#: Facts that name an input file (None: there is none).
FILE_FACTS = frozenset({"slide_file", "annotation_file", "overlay_file"})


def fact_value(name: str, value: Any) -> dg.MetadataValue:
    """A step fact as a metadata value: file names as paths, structures as JSON."""
    if name in FILE_FACTS and value:
        return dg.MetadataValue.path(value)
    if isinstance(value, bool):
        return dg.MetadataValue.bool(value)
    if isinstance(value, int):
        return dg.MetadataValue.int(value)
    if isinstance(value, float):
        return dg.MetadataValue.float(value)
    if isinstance(value, str):
        return dg.MetadataValue.text(value)
    return dg.MetadataValue.json(value)


def table_metadata(built: Built, settings: Settings) -> dict[str, Any]:
    """Everything the UI shows about one stored table of one slide."""
    classes = settings.label_classes
    metadata: dict[str, Any] = {
        "dagster/row_count": dg.MetadataValue.int(built.data.num_rows),
        "dagster/partition_row_count": dg.MetadataValue.int(built.data.num_rows),
        "dagster/column_schema": dg.MetadataValue.table_schema(
            column_schema(built.data.schema, descriptions(built.table, classes))
        ),
        "dagster/column_lineage": dg.MetadataValue.column_lineage(
            column_lineage(lineage(built.table, classes))
        ),
        "dagster/uri": dg.MetadataValue.path(built.stored.uri),
        "preview": dg.MetadataValue.md(markdown_preview(built.data)),
    }
    facts = dict(built.facts)
    looked_for = facts.pop("looked_for", None)
    for name, value in facts.items():
        if name in FILE_FACTS and value is None:  # say plainly where nothing was found
            places = ", ".join(looked_for or [])
            metadata[name] = dg.MetadataValue.text(f"none found; looked for: {places}")
        else:
            metadata[name] = fact_value(name, value)
    return metadata


def materialize_result(
    built: Built, settings: Settings, checks: list[dg.AssetCheckResult] | None = None
) -> dg.MaterializeResult:
    """The result of one slide's materialization of one table."""
    return dg.MaterializeResult(
        asset_key=built.table,
        metadata=table_metadata(built, settings),
        data_version=dg.DataVersion(built.stored.content_hash),
        check_results=checks or [],
    )
