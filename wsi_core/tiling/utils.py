"""Row helpers for tile and slide tables (``row_hash``); values are hashed as given, whatever
their unit."""

from __future__ import annotations

import datetime as _dt
import decimal
import hashlib
import json
import math
import os
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

# Bump if the canonical encoding below ever changes: every stored id would change with it.
_ENCODING_VERSION = "wsi_core.row_hash/1"


def _encode(value: Any) -> str:
    """A canonical text for ``value``: equal data gives equal text whatever its container
    types, numeric widths or dict key order; different types of scalar stay distinct."""
    for types, encode in _ENCODERS:
        if isinstance(value, types):
            return encode(value)
    # repr() of an arbitrary object may hold a memory address: refuse rather than hash that.
    raise TypeError(f"row_hash cannot encode a value of type {type(value).__name__}: {value!r}")


def _encode_float(value: float | np.floating) -> str:
    # repr of a Python float is the shortest text that round-trips the IEEE double, so it is
    # the same on every machine; float32 values widen exactly.
    number = float(value)
    return "d" + ("nan" if math.isnan(number) else repr(number))


def _encode_complex(value: complex | np.complexfloating) -> str:
    number = complex(value)
    return f"c{_encode(number.real)},{_encode(number.imag)}"


def _encode_numpy_scalar(value: np.generic) -> str:
    # datetime64 has no exact Python counterpart (nanoseconds); str_ and the rest do.
    return "T" + str(value) if isinstance(value, np.datetime64) else _encode(value.item())


def _encode_mapping(value: Mapping[Any, Any]) -> str:
    items = sorted((_encode(k), _encode(v)) for k, v in value.items())
    return "{" + ",".join(f"{k}:{v}" for k, v in items) + "}"


# (types, encoder), tried in order: the first match wins. bool comes before int (bool is an int
# subclass, but True and 1 are different cell values) and ndarray before the numpy scalars.
_ENCODERS: tuple[tuple[type | tuple[type, ...], Callable[[Any], str]], ...] = (
    (type(None), lambda value: "n"),
    ((bool, np.bool_), lambda value: "t" if value else "f"),
    ((int, np.integer), lambda value: f"i{int(value)}"),
    ((float, np.floating), _encode_float),
    ((complex, np.complexfloating), _encode_complex),
    (str, lambda value: "s" + json.dumps(value, ensure_ascii=True)),
    ((bytes, bytearray, memoryview), lambda value: "b" + bytes(value).hex()),
    (np.ndarray, lambda value: _encode(value.tolist())),
    (np.generic, _encode_numpy_scalar),
    (Mapping, _encode_mapping),
    ((list, tuple), lambda value: "[" + ",".join(_encode(v) for v in value) + "]"),
    ((set, frozenset), lambda value: "<" + ",".join(sorted(_encode(v) for v in value)) + ">"),
    ((_dt.datetime, _dt.date, _dt.time), lambda value: "T" + value.isoformat()),
    (_dt.timedelta, lambda value: f"D{value.days},{value.seconds},{value.microseconds}"),
    (decimal.Decimal, lambda value: "m" + str(value)),
    (os.PathLike, lambda value: _encode(os.fspath(value))),
)


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
