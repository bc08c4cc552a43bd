"""What every annotation parser shares.

* reading a source (local path, fsspec URL, UPath, or an open stream) into memory;
* decoding JSON and (defused) XML into errors that name the file and the line/column;
* regex filters matched against the whole value (``re.fullmatch``);
* turning rings into *valid* shapely polygons, repairing invalid ones with ``make_valid``;
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
from enum import Enum
from typing import IO, Any
from xml.parsers.expat import ErrorString

import defusedxml
import defusedxml.ElementTree as DefusedET
import fsspec
import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Point, Polygon
from shapely.geometry.base import BaseGeometry

from wsi_core.errors import AnnotationError

Source = str | os.PathLike[str] | IO[str] | IO[bytes]
"""A local path, an fsspec URL (``s3://…``, ``file://…``), a UPath, or an open stream."""

PolygonalGeometry = Polygon | MultiPolygon

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


def ring_array(points: np.ndarray) -> np.ndarray | None:
    """An ``(n, 2)`` float64 ring, or ``None`` when it has fewer than 3 distinct vertices.

    A repeated closing vertex is allowed and kept (shapely accepts both spellings, and keeping it
    keeps the file's vertex list unchanged).
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    body = points[:-1] if len(points) > 1 and np.array_equal(points[0], points[-1]) else points
    if len(body) < 3:
        return None
    return points


def polygon_from_parts(
    parts: Sequence[tuple[np.ndarray | None, Sequence[np.ndarray | None]]],
) -> PolygonalGeometry | None:
    """A Polygon (one part) or MultiPolygon from ``(shell, holes)`` parts, vertices as given.

    Parts without a usable shell are left out; holes with fewer than 3 vertices enclose nothing
    and are left out. Returns ``None`` when nothing is left. The result may be invalid; see
    :func:`finish_polygon`.
    """
    polygons = [
        Polygon(shell, [hole for hole in holes if hole is not None])
        for shell, holes in parts
        if shell is not None
    ]
    if not polygons:
        return None
    if len(polygons) == 1:
        return polygons[0]
    return MultiPolygon(polygons)


def polygon_from_rings(rings: Sequence[np.ndarray | None]) -> PolygonalGeometry | None:
    """Assemble unordered rings into polygons by containment (even-odd nesting).

    A ring inside an odd number of other rings is a hole of its smallest container; a ring
    inside an even number (including none) is an exterior, so an island inside a hole is a
    separate part. Rings keep their file order and orientation; exteriors come out in file
    order. Rings that are themselves invalid, or that overlap without nesting, cannot be sorted
    this way: then all rings are returned as one (invalid) MultiPolygon, and ``make_valid``
    (linework) in :func:`finish_polygon` resolves it with the same even-odd rule.
    """
    usable = [ring for ring in rings if ring is not None]
    if not usable:
        return None
    if len(usable) == 1:
        return Polygon(usable[0])
    polygons = [Polygon(ring) for ring in usable]
    if not all(polygon.is_valid for polygon in polygons):
        return MultiPolygon(polygons)
    areas = np.array([polygon.area for polygon in polygons])
    count = len(polygons)
    containers: list[list[int]] = [[] for _ in range(count)]
    outer, inner = shapely.STRtree(polygons).query(polygons, predicate="contains")
    for j, i in zip(outer.tolist(), inner.tolist(), strict=True):
        # Identical rings contain each other; the earlier one is taken as the container.
        if i != j and (areas[j] > areas[i] or (areas[j] == areas[i] and j < i)):
            containers[i].append(j)
    depth = [len(found) for found in containers]
    holes: dict[int, list[int]] = {i: [] for i in range(count) if depth[i] % 2 == 0}
    for i in range(count):
        if depth[i] % 2 == 1:
            exterior_containers = [j for j in containers[i] if depth[j] % 2 == 0]
            if not exterior_containers:
                return MultiPolygon(polygons)
            parent = min(exterior_containers, key=lambda j: areas[j])
            holes[parent].append(i)
    parts = [(usable[i], [usable[h] for h in sorted(holes[i])]) for i in sorted(holes)]
    return polygon_from_parts(parts)


class Outcome(Enum):
    """What :func:`finish_polygon` did to a polygon."""

    KEPT = "kept"
    REPAIRED = "repaired"
    DROPPED = "dropped"


def _polygonal_parts(geometry: BaseGeometry) -> Iterable[Polygon]:
    if isinstance(geometry, Polygon):
        if not geometry.is_empty:
            yield geometry
    elif hasattr(geometry, "geoms"):
        for part in geometry.geoms:
            yield from _polygonal_parts(part)


def _polygonal(geometry: BaseGeometry) -> PolygonalGeometry | None:
    polygons = list(_polygonal_parts(geometry))
    if not polygons:
        return None
    if len(polygons) == 1:
        return polygons[0]
    return MultiPolygon(polygons)


def finish_polygon(raw: BaseGeometry | None) -> tuple[PolygonalGeometry | None, Outcome]:
    """Return a valid Polygon/MultiPolygon for ``raw`` and what was done to it.

    A valid polygon is returned as it is (same vertices, same order). An invalid one goes through
    ``shapely.make_valid`` and only its polygonal part is kept (lines and points from collapsed
    spikes carry no area). Nothing left means the polygon is dropped.
    """
    if raw is None or raw.is_empty:
        return None, Outcome.DROPPED
    if raw.is_valid:
        return raw, Outcome.KEPT
    fixed = _polygonal(shapely.make_valid(raw))
    if fixed is not None and not fixed.is_valid:
        # Polygonal parts of a GeometryCollection can share edges; their union cannot.
        fixed = _polygonal(shapely.unary_union(list(_polygonal_parts(fixed))))
    if fixed is None or fixed.is_empty:
        return None, Outcome.DROPPED
    return fixed, Outcome.REPAIRED


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


def box_polygon(x: float, y: float, width: float, height: float) -> Polygon:
    """An axis-aligned box from its top-left corner, vertices clockwise on screen (y down)."""
    return Polygon([(x, y), (x + width, y), (x + width, y + height), (x, y + height)])


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
