"""Parquet tables in hive layout, and the materialization metadata that describes them.

``{output_root}/{asset}/slide={key}/part-0.parquet``: ``pyarrow.dataset``, duckdb, polars
and pandas read a whole asset as one table (the folder adds a ``slide`` column). Every file
carries ``wsi_tiles.*`` entries in its Parquet key-value metadata; a file without them is not
ours and is never overwritten.
"""

from __future__ import annotations

import hashlib
import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from dagster import (
    AssetKey,
    DataVersion,
    MaterializeResult,
    MetadataValue,
    TableColumn,
    TableColumnDep,
    TableColumnLineage,
    TableSchema,
)

from . import storage

PART_FILE = "part-0.parquet"
OWNER_KEY = b"wsi_tiles.asset"
SLIDE_KEY = b"wsi_tiles.slide"
PREVIEW_ROWS = 5


class ForeignFileError(RuntimeError):
    """An output path is taken by a file this project did not write."""


class MissingUpstreamError(RuntimeError):
    """The upstream table of a slide has not been materialized."""


def part_uri(output_root: str, asset: str, key: str) -> str:
    """Where ``asset``'s table for slide ``key`` lives."""
    return storage.join(output_root, asset, f"slide={key}", PART_FILE)


def asset_root(output_root: str, asset: str) -> str:
    """The folder holding every slide's table of ``asset`` (one dataset)."""
    return storage.join(output_root, asset)


def to_parquet_bytes(table: pa.Table, asset: str, key: str) -> bytes:
    """``table`` as Parquet bytes, marked as written by this project for ``asset``/``key``."""
    marked = table.replace_schema_metadata(
        {**(table.schema.metadata or {}), OWNER_KEY: asset.encode(), SLIDE_KEY: key.encode()}
    )
    sink = io.BytesIO()
    pq.write_table(marked, sink, compression="zstd")
    return sink.getvalue()


def _owner(uri: str) -> bytes | None:
    """The ``wsi_tiles.asset`` mark of an existing Parquet file (None if unmarked/unreadable)."""
    try:
        fs, path = storage.filesystem(uri)
        with fs.open(path, "rb") as handle:
            metadata = pq.read_schema(handle).metadata or {}
    except Exception:
        return None
    return metadata.get(OWNER_KEY)


def write_table(output_root: str, asset: str, key: str, table: pa.Table) -> tuple[str, str]:
    """Write one slide's table atomically; return its URI and a content hash (data version).

    Raises ``ForeignFileError`` rather than replace a file that this project did not write.
    """
    uri = part_uri(output_root, asset, key)
    if storage.exists(uri) and _owner(uri) != asset.encode():
        raise ForeignFileError(
            f"{uri}: a file not written by wsi_tiles is in the way; move it, then re-run"
        )
    data = to_parquet_bytes(table, asset, key)
    storage.write_bytes_atomic(uri, data)
    return uri, hashlib.sha256(data).hexdigest()[:16]


def read_table(output_root: str, asset: str, key: str) -> pa.Table:
    """One slide's table of ``asset``; ``MissingUpstreamError`` when it is not there yet."""
    uri = part_uri(output_root, asset, key)
    if not storage.exists(uri):
        raise MissingUpstreamError(
            f"{uri}: no {asset} table for slide {key!r}; materialize {asset} for it first"
        )
    fs, path = storage.filesystem(uri)
    with fs.open(path, "rb") as handle:
        return pq.read_table(handle)


def column_schema(schema: pa.Schema, descriptions: Mapping[str, str]) -> TableSchema:
    """Dagster ``TableSchema`` of an Arrow schema, with per-column descriptions."""
    return TableSchema(
        columns=[
            TableColumn(
                name=field.name, type=str(field.type), description=descriptions.get(field.name)
            )
            for field in schema
        ]
    )


def column_lineage(deps: Mapping[str, Sequence[tuple[str, str]]]) -> TableColumnLineage:
    """Column lineage from ``{column: [(upstream asset, upstream column), ...]}``."""
    return TableColumnLineage(
        deps_by_column={
            column: [
                TableColumnDep(asset_key=AssetKey(asset), column_name=name) for asset, name in pairs
            ]
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
    head = table.slice(0, rows).to_pylist()
    names = table.column_names
    lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    lines += ["| " + " | ".join(_cell(row[name]) for name in names) + " |" for row in head]
    if table.num_rows > rows:
        lines.append(f"\n({table.num_rows - rows} more rows)")
    return "\n".join(lines)


def materialize_result(
    *,
    table: pa.Table,
    uri: str,
    content_hash: str,
    descriptions: Mapping[str, str],
    lineage: Mapping[str, Sequence[tuple[str, str]]],
    params: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
) -> MaterializeResult:
    """The result of one slide's materialization: table metadata, URI, parameters, preview.

    The data version is the hash of the Parquet bytes, so a re-run that writes the same table
    leaves downstream tables fresh.
    """
    metadata: dict[str, Any] = {
        "dagster/row_count": MetadataValue.int(table.num_rows),
        "dagster/partition_row_count": MetadataValue.int(table.num_rows),
        "dagster/column_schema": MetadataValue.table_schema(
            column_schema(table.schema, descriptions)
        ),
        "dagster/column_lineage": MetadataValue.column_lineage(column_lineage(lineage)),
    }
    metadata["dagster/uri"] = MetadataValue.path(uri)
    metadata["parameters"] = MetadataValue.json(dict(params))
    metadata["preview"] = MetadataValue.md(markdown_preview(table))
    metadata.update(extra or {})
    return MaterializeResult(metadata=metadata, data_version=DataVersion(content_hash))
