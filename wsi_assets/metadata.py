"""Materialization metadata of a stored table: what the Dagster UI shows for each slide.

First the slide's picture with this table drawn over it (a PNG in markdown, a few hundred
KiB), the slide's file beside its partition key, and a preview of the rows worth seeing
(highest coverage or tissue first; every field of ``slide_metadata``, one per line). Then
flat figures (:func:`wsi_core.tables.figures.table_figures`) as numbers, which the Plots tab
charts across materializations. Then row count, column schema with descriptions, column
lineage, URI, the parameters, and the facts the table step reported (which file was read, or
where it was looked for, what it held). The data version is the hash of the stored bytes, so a
re-run that writes the same table leaves the tables below it current.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg
import pyarrow as pa

from wsi_assets.pipeline.settings import Settings
from wsi_assets.pipeline.steps import Built
from wsi_core.pictures import fitted_png
from wsi_core.tables import SLIDE_METADATA
from wsi_core.tables.figures import ranked, table_figures
from wsi_core.tables.schemas import Lineage, descriptions, lineage
from wsi_core.tissue import TISSUE_MASK

PREVIEW_ROWS = 5
#: The copy of a table's picture in its materialization event is at most this large: each
#: event is stored whole in the event log (1 MB a slide at full size on real H&E slides).
EMBEDDED_PICTURE_BYTES = 96 * 1024
#: Longest text in a cell of the one-row-per-field preview of ``slide_metadata``.
FIELD_TEXT = 200


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


def _cell(value: Any, longest: int = 40) -> str:
    """A table cell as markdown text of at most ``longest`` characters."""
    if value is None:
        return "null"
    if isinstance(value, float):
        return "NaN" if math.isnan(value) else f"{value:.6g}"
    if isinstance(value, list):
        if value and isinstance(value[0], tuple):  # a map column: list of (key, value)
            return "{" + ", ".join(f"{k}: {_cell(v)}" for k, v in value) + "}"
        return "[" + ", ".join(_cell(item) for item in value) + "]"
    text = str(value).replace("|", "\\|")
    return (text[: longest - 3] + "...") if len(text) > longest else text


def markdown_preview(table: pa.Table, rows: int = PREVIEW_ROWS, order: str = "") -> str:
    """The first ``rows`` rows as a markdown table; ``order`` says how they were chosen."""
    names = table.column_names
    lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    for row in table.slice(0, rows).to_pylist():
        lines.append("| " + " | ".join(_cell(row[name]) for name in names) + " |")
    if table.num_rows > rows:
        lines.append(f"\n({table.num_rows - rows} more rows{f'; {order}' if order else ''})")
    return "\n".join(lines)


def fields_preview(table: pa.Table) -> str:
    """The first row as a two-column markdown table, one line per field (the first field,
    the slide's key, as its header), so that a wide one-row table (``slide_metadata``) shows
    every field rather than the first few."""
    if table.num_rows == 0:
        return markdown_preview(table)
    lines = [
        f"| {name} | {_cell(value, FIELD_TEXT)} |" for name, value in table.to_pylist()[0].items()
    ]
    return "\n".join([lines[0], "|---|---|", *lines[1:]])


def table_preview(built: Built, classes: Sequence[str]) -> str:
    """The preview of ``built``'s table: every field of ``slide_metadata``; the rows worth
    seeing first of the others (:func:`wsi_core.tables.figures.ranked`)."""
    if built.table == SLIDE_METADATA:
        return fields_preview(built.data)
    rows, order = ranked(built.table, built.data, classes)
    return markdown_preview(rows, order=order)


def picture_markdown(built: Built) -> str | None:
    """The table's picture embedded in markdown (a data URI, scaled down to at most
    ``EMBEDDED_PICTURE_BYTES``; the full one is at ``picture_uri``), with its caption (None
    when the step drew none)."""
    if built.picture is None:
        return None
    embedded = fitted_png(built.picture.png, EMBEDDED_PICTURE_BYTES)
    encoded = base64.b64encode(embedded).decode("ascii")
    alt = f"{built.table} of {built.key}"
    return f"![{alt}](data:image/png;base64,{encoded})\n\n{built.picture.caption}"


#: Significant digits of the flat figures: the UI prints floats in full.
FIGURE_DIGITS = 6


def figure_values(built: Built, classes: Sequence[str]) -> dict[str, dg.MetadataValue]:
    """The table's flat figures as top-level numbers (the Plots tab charts them), floats to
    ``FIGURE_DIGITS`` significant digits."""
    values: dict[str, dg.MetadataValue] = {}
    for name, value in table_figures(built.table, built.data, classes).items():
        if isinstance(value, int):
            values[name] = dg.MetadataValue.int(value)
        else:
            values[name] = dg.MetadataValue.float(float(f"{value:.{FIGURE_DIGITS}g}"))
    return values


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


def mask_metadata(built: Built) -> dict[str, Any]:
    """What the UI shows about a slide's tissue mask: its picture over the slide, what the
    detection found (one row, one field per line), the tissue fraction as a figure, where
    it is stored, and the step's facts (parameters, provenance)."""
    metadata: dict[str, Any] = {}
    picture = picture_markdown(built)
    if picture is not None:
        metadata["picture"] = dg.MetadataValue.md(picture)
    metadata["preview"] = dg.MetadataValue.md(fields_preview(built.data))
    metadata["dagster/uri"] = dg.MetadataValue.path(built.stored.uri)
    if built.picture_uri is not None:
        metadata["picture_uri"] = dg.MetadataValue.path(built.picture_uri)
    for name, value in built.facts.items():
        metadata[name] = fact_value(name, value)
    return metadata


def table_metadata(built: Built, settings: Settings) -> dict[str, Any]:
    """Everything the UI shows about one stored table (or tissue mask) of one slide."""
    if built.table == TISSUE_MASK:
        return mask_metadata(built)
    classes = settings.label_classes
    metadata: dict[str, Any] = {}
    picture = picture_markdown(built)
    if picture is not None:
        metadata["picture"] = dg.MetadataValue.md(picture)
    if "slide" in built.facts:
        metadata["slide"] = dg.MetadataValue.text(str(built.facts["slide"]))
    metadata["preview"] = dg.MetadataValue.md(table_preview(built, list(classes)))
    metadata.update(figure_values(built, list(classes)))
    metadata |= {
        "dagster/row_count": dg.MetadataValue.int(built.data.num_rows),
        "dagster/partition_row_count": dg.MetadataValue.int(built.data.num_rows),
        "dagster/column_schema": dg.MetadataValue.table_schema(
            column_schema(built.data.schema, descriptions(built.table, classes))
        ),
        "dagster/column_lineage": dg.MetadataValue.column_lineage(
            column_lineage(lineage(built.table, classes))
        ),
        "dagster/uri": dg.MetadataValue.path(built.stored.uri),
    }
    if built.picture_uri is not None:
        metadata["picture_uri"] = dg.MetadataValue.path(built.picture_uri)
    facts = dict(built.facts)
    looked_for = facts.pop("looked_for", None)
    facts.pop("slide", None)  # shown above
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
