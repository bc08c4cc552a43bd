"""Row helpers for tile and slide tables."""

from __future__ import annotations

import datetime as _dt
import decimal
import hashlib
import json
import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

# Bump if the canonical encoding below ever changes: every stored id would change with it.
_ENCODING_VERSION = "wsi_core.row_hash/1"


def _encode(value: Any) -> str:
    """A canonical text for ``value``: equal data gives equal text whatever its container
    types, numeric widths or dict key order; different types of scalar stay distinct."""
    if value is None:
        return "n"
    # bool before int: bool is an int subclass, but True and 1 are different cell values.
    if isinstance(value, (bool, np.bool_)):
        return "t" if value else "f"
    if isinstance(value, (int, np.integer)):
        return f"i{int(value)}"
    if isinstance(value, (float, np.floating)):
        # repr of a Python float is the shortest text that round-trips the IEEE double, so
        # it is the same on every machine; float32 values widen exactly.
        number = float(value)
        return "d" + ("nan" if math.isnan(number) else repr(number))
    if isinstance(value, (complex, np.complexfloating)):
        number = complex(value)
        return f"c{_encode(number.real)},{_encode(number.imag)}"
    if isinstance(value, str):
        return "s" + json.dumps(value, ensure_ascii=True)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "b" + bytes(value).hex()
    if isinstance(value, np.ndarray):
        return _encode(value.tolist())
    if isinstance(value, np.generic):  # datetime64, str_ and other numpy scalars
        return _encode(value.item()) if not isinstance(value, np.datetime64) else "T" + str(value)
    if isinstance(value, Mapping):
        items = sorted((_encode(k), _encode(v)) for k, v in value.items())
        return "{" + ",".join(f"{k}:{v}" for k, v in items) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_encode(v) for v in value) + "]"
    if isinstance(value, (set, frozenset)):
        return "<" + ",".join(sorted(_encode(v) for v in value)) + ">"
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return "T" + value.isoformat()
    if isinstance(value, _dt.timedelta):
        return f"D{value.days},{value.seconds},{value.microseconds}"
    if isinstance(value, decimal.Decimal):
        return "m" + str(value)
    if isinstance(value, os.PathLike):
        return _encode(os.fspath(value))
    # repr() of an arbitrary object may hold a memory address: refuse rather than hash that.
    raise TypeError(f"row_hash cannot encode a value of type {type(value).__name__}: {value!r}")


def row_hash(row: Mapping[str, Any], column: str = "id") -> dict[str, Any]:
    """``row`` with ``row[column]`` set to a deterministic SHA-256 hex digest of its content.

    The digest depends only on the data: dict key order does not matter, a Python ``int`` and
    a numpy ``int64`` (or any numpy integer) of the same value hash alike, as do Python and
    numpy floats, and numpy arrays hash like the nested lists they hold. Tuples hash like
    lists. An ``int`` and a ``float`` of the same value (``1`` vs ``1.0``), and ``True`` vs
    ``1``, hash differently: they are different cell types. Any ``column`` already in the row
    is left out of the digest, so hashing twice gives the same id. The digest is the same on
    every machine and Python version.

    Returns a new dict (the input is not modified), so it works as ``Dataset.map(row_hash)``.
    """
    content = {key: value for key, value in row.items() if key != column}
    canonical = _ENCODING_VERSION + "\n" + _encode(content)
    digest = hashlib.sha256(canonical.encode("ascii")).hexdigest()
    return {**content, column: digest}
