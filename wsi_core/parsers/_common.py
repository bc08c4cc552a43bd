"""What every annotation parser shares.

* reading a source (local path, fsspec URL, UPath, or an open stream) into memory;
* decoding JSON and (defused) XML into errors that name the file and the line/column;
* regex filters matched against the whole value (``re.fullmatch``);
* checking coordinates (polygons are built and repaired by :mod:`wsi_core.geometry`);
* the parser base class with ``get_class_polygons`` and ``class_labels``.

All coordinates are level-0 slide pixels (x = column, y = row), exactly as stored in the file.
"""

from __future__ import annotations

import json
import os
import re
import warnings
import xml.etree.ElementTree as ET
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any
from xml.parsers.expat import ErrorString

import defusedxml
import defusedxml.ElementTree as DefusedET
import fsspec
import numpy as np
from shapely.geometry import Point
from shapely.geometry.base import BaseGeometry

from wsi_core.errors import AnnotationError
from wsi_core.geometry import (
    Outcome,
    PolygonalGeometry,
    finish_polygon,
)

Source = str | os.PathLike[str] | IO[str] | IO[bytes]
"""A local path, an fsspec URL (``s3://…``, ``file://…``), a UPath, or an open stream."""

Pattern = str | re.Pattern[str]
"""A regular expression; it must match the *whole* value (``re.fullmatch``)."""

STREAM_NAME = "<stream>"


class InvalidGeometryWarning(UserWarning):
    """Some polygons of an annotation file were invalid and have been repaired or dropped."""


# --------------------------------------------------------------------------------------------
# Sources


def source_name(source: Any) -> str:
    """The name errors and warnings use for ``source``: its path or URL, or ``<stream>``."""
    if hasattr(source, "read"):
        name = getattr(source, "name", None)
        # A stream from os.fdopen has an int name, which says nothing to a reader.
        return name if isinstance(name, str) else STREAM_NAME
    if isinstance(source, os.PathLike):
        try:
            return os.fspath(source)
        except TypeError:
            pass
    return str(source)


def read_source(source: Any) -> tuple[str, bytes | str]:
    """Read the whole of ``source``; return ``(name, content)``.

    Content is bytes for paths and URLs (so the JSON and XML decoders can honour the file's own
    encoding) and whatever the stream gives for streams. Annotation files are small next to the
    slides they describe, so reading them whole is the simple and fast choice.
    """
    name = source_name(source)
    if hasattr(source, "read"):
        return name, source.read()
    if isinstance(source, str):
        if "://" in source:
            with fsspec.open(source, "rb") as handle:
                return name, handle.read()
        with open(source, "rb") as handle:
            return name, handle.read()
    if isinstance(source, os.PathLike):
        try:
            local = os.fspath(source)
        except TypeError:
            local = None
        if local is not None:
            with open(local, "rb") as handle:
                return name, handle.read()
    if hasattr(source, "open") and hasattr(source, "fs"):
        # A remote UPath: open it through its own filesystem so its storage options (credentials,
        # endpoint) are kept, which str(path) -> fsspec.open would lose.
        with source.open("rb") as handle:
            return name, handle.read()
    raise TypeError(
        "an annotation source must be a path, an fsspec URL or an open stream, "
        f"not {type(source).__name__}"
    )


def _strip_bom(text: str) -> str:
    return text[1:] if text.startswith("\ufeff") else text


def load_json(name: str, data: bytes | str) -> Any:
    """Decode JSON, raising :class:`AnnotationError` with the line and column on failure."""
    try:
        if isinstance(data, (bytes, bytearray)):
            # json.loads on bytes detects UTF-8 (with or without BOM), UTF-16 and UTF-32.
            return json.loads(data)
        return json.loads(_strip_bom(data))
    except json.JSONDecodeError as error:
        raise AnnotationError(
            name, f"malformed JSON at line {error.lineno}, column {error.colno}: {error.msg}"
        ) from None
    except UnicodeDecodeError as error:
        raise AnnotationError(
            name, f"not valid text at byte {error.start}: {error.reason}"
        ) from None
    except RecursionError:
        raise AnnotationError(name, "JSON nested too deeply to be an annotation file") from None


def load_xml(name: str, data: bytes | str) -> ET.Element:
    """Parse XML with defusedxml: no entity declarations, no external references.

    Raises :class:`AnnotationError` naming the file and, for malformed XML, the line and the
    1-based column; an entity or external-reference document (billion laughs, XXE) is refused.
    """
    if isinstance(data, str):
        data = _strip_bom(data)
    try:
        return DefusedET.fromstring(
            data, forbid_dtd=False, forbid_entities=True, forbid_external=True
        )
    except ET.ParseError as error:
        line, column = error.position
        reason = ErrorString(error.code) if error.code else str(error)
        raise AnnotationError(
            name, f"malformed XML at line {line}, column {column + 1}: {reason}"
        ) from None
    except defusedxml.DefusedXmlException as error:
        raise AnnotationError(
            name,
            f"refused unsafe XML ({type(error).__name__}: {error}); entity declarations and "
            "external references are not allowed in annotation files",
        ) from None


# --------------------------------------------------------------------------------------------
# Filters


def compile_filters(filters: Mapping[Any, Pattern | None]) -> list[tuple[Any, re.Pattern[str]]]:
    """Compile the patterns of ``filters``; a ``None`` pattern means "do not filter on this"."""
    return [(key, re.compile(pattern)) for key, pattern in filters.items() if pattern is not None]


def fullmatch(pattern: re.Pattern[str], value: Any) -> bool:
    """Whether ``pattern`` matches the whole of ``value``.

    ``None`` (missing) never matches. Numbers match their decimal text and booleans their JSON
    spelling (``true``/``false``), so ``isLocked="true"`` works; lists and objects never match.
    """
    if value is None:
        return False
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (int, float)):
        text = str(value)
    else:
        return False
    return pattern.fullmatch(text) is not None


# --------------------------------------------------------------------------------------------
# Geometry


def finite_xy(name: str, where: str, x: Any, y: Any) -> tuple[float, float]:
    """``(x, y)`` as floats, or an :class:`AnnotationError` naming the place."""
    for value in (x, y):
        # bool is an int subclass; True as a coordinate is a broken file, not 1.0.
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise AnnotationError(name, f"{where}: coordinate {value!r} is not a number")
    fx, fy = float(x), float(y)
    if not (np.isfinite(fx) and np.isfinite(fy)):
        raise AnnotationError(name, f"{where}: coordinate ({x!r}, {y!r}) is not finite")
    return fx, fy


# --------------------------------------------------------------------------------------------
# Entries and the base class


@dataclass(eq=False)
class PolygonEntry:
    """One polygonal annotation: its filterable fields, its class label, and how to build it.

    The geometry is built and repaired on first use and then cached, so repeated queries on one
    parser neither rebuild nor re-repair.
    """

    fields: Mapping[str, Any]
    label: str | None
    build: Callable[[], BaseGeometry | None]
    _result: tuple[PolygonalGeometry | None, Outcome] | None = field(default=None, repr=False)

    def result(self) -> tuple[PolygonalGeometry | None, Outcome]:
        if self._result is None:
            self._result = finish_polygon(self.build())
        return self._result


@dataclass(eq=False)
class PointEntry:
    """One point annotation (level-0 pixels) with its filterable fields and class label."""

    fields: Mapping[str, Any]
    label: str | None
    point: Point


class AnnotationParser(ABC):
    """Base of the annotation parsers.

    A parser reads its whole source when constructed (so a malformed or wrong-format file fails
    at once, with an :class:`~wsi_core.errors.AnnotationError` naming it) and then answers any
    number of queries. Geometry is in level-0 pixels, as stored in the file.

    ``path`` is the file's path or URL (``"<stream>"`` for an unnamed stream).
    """

    path: str

    def __init__(self, source: Source) -> None:
        name, data = read_source(source)
        self._start(name)
        self._load(data)

    def _start(self, name: str) -> None:
        self.path = name
        self._polygon_entries: list[PolygonEntry] = []
        self._point_entries: list[PointEntry] = []

    @classmethod
    def _from_data(cls, name: str, data: bytes | str) -> AnnotationParser:
        """Build a parser from already-read content (used by ``open_annotations``)."""
        parser = cls.__new__(cls)
        parser._start(name)
        parser._load(data)
        return parser

    @abstractmethod
    def _load(self, data: bytes | str) -> None:
        """Decode ``data`` and fill ``_polygon_entries`` and ``_point_entries``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!r})"

    # Shared by every format ------------------------------------------------------------------

    def _emit(self, entries: Iterable[PolygonEntry]) -> list[PolygonalGeometry]:
        """The valid geometries of ``entries``; one warning for all repairs of this call."""
        geometries: list[PolygonalGeometry] = []
        repaired = dropped = 0
        for entry in entries:
            geometry, outcome = entry.result()
            if outcome is Outcome.REPAIRED:
                repaired += 1
            elif outcome is Outcome.DROPPED:
                dropped += 1
            if geometry is not None:
                geometries.append(geometry)
        if repaired or dropped:
            details = []
            if repaired:
                details.append(f"repaired {repaired} invalid polygon(s) with shapely.make_valid")
            if dropped:
                details.append(f"dropped {dropped} polygon(s) with no area")
            warnings.warn(
                f"{self.path}: {'; '.join(details)}", InvalidGeometryWarning, stacklevel=3
            )
        return geometries

    def get_class_polygons(self, pattern: Pattern) -> list[PolygonalGeometry]:
        """Polygons whose class label matches the whole of ``pattern`` (level-0 pixels).

        The class label is the format's class field (ASAP ``PartOfGroup``; GeoJSON
        ``classification.name``, else ``name``; Darwin and EMPAIA ``name``). Polygons without a
        label never match.
        """
        regex = re.compile(pattern)
        return self._emit(e for e in self._polygon_entries if fullmatch(regex, e.label))

    def class_labels(self) -> list[str]:
        """The distinct class labels of the polygons, sorted (polygons without one are skipped).

        A polygon whose repair leaves no area is not a polygon any more and adds no label.
        """
        return sorted(
            {
                entry.label
                for entry in self._polygon_entries
                if entry.label is not None and entry.result()[0] is not None
            }
        )


class JSONAnnotationParser(AnnotationParser):
    """Base of the JSON formats: decode once, then read the document."""

    def _load(self, data: bytes | str) -> None:
        self._load_document(load_json(self.path, data))

    @classmethod
    def _from_document(cls, name: str, document: Any) -> AnnotationParser:
        """Build a parser from an already-decoded document (used by ``open_annotations``)."""
        parser = cls.__new__(cls)
        parser._start(name)
        parser._load_document(document)
        return parser

    @abstractmethod
    def _load_document(self, document: Any) -> None:
        """Fill ``_polygon_entries`` and ``_point_entries`` from the decoded JSON."""


def label_or_none(value: Any) -> str | None:
    """A class label: a non-empty string, else ``None``."""
    return value if isinstance(value, str) and value != "" else None


def filter_entries(
    entries: Iterable[Any],
    patterns: Sequence[tuple[Any, re.Pattern[str]]],
    value_of: Callable[[Mapping[str, Any], Any], Any],
) -> list[Any]:
    """The entries where every ``(key, pattern)`` fullmatches ``value_of(fields, key)``."""
    if not patterns:
        return list(entries)
    return [
        entry
        for entry in entries
        if all(fullmatch(pattern, value_of(entry.fields, key)) for key, pattern in patterns)
    ]


def field_value(fields: Mapping[str, Any], key: Any) -> Any:
    """Plain lookup for the fixed-field formats (ASAP, Darwin, EMPAIA)."""
    return fields.get(key)
