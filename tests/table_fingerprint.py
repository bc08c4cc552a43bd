"""Value fingerprints of Arrow tables: the same values, names and types give the same digest,
whatever Parquet writer, compression or pyarrow version produced them.

Used to prove that tables written after a refactoring equal, value for value, the tables
written before it (``tests/golden/*.json``). Floats are written with ``repr`` (exact round
trip), map columns as lists of pairs, so a digest changes only when a value does.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pyarrow as pa

#: Columns that hold where the files were on the machine that wrote them, not table content.
MACHINE_COLUMNS = frozenset({"uri"})


def _canonical(value: Any) -> Any:
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return [_canonical(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _canonical(item) for key, item in sorted(value.items())}
    return value


def fingerprint(table: pa.Table) -> dict[str, Any]:
    """Rows, column names and types, and one sha256 per column of its canonical values."""
    columns = {}
    for name in table.column_names:
        if name in MACHINE_COLUMNS:
            continue
        text = json.dumps(_canonical(table[name].to_pylist()), separators=(",", ":"))
        columns[name] = {
            "type": str(table.schema.field(name).type),
            "sha256": hashlib.sha256(text.encode()).hexdigest(),
        }
    return {"rows": table.num_rows, "columns": columns}
