"""The annotation parser base class and the entries it keeps.

A parser reads its source once, records one entry per annotation (its filterable fields, its
class label, and how to build its geometry) and answers queries from those entries. Geometry is
built and repaired (:func:`wsi_core.geometry.finish_polygon`) on first use. All coordinates are
level-0 slide pixels (x = column, y = row), exactly as stored in the file.
"""

from __future__ import annotations

import re
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from shapely.geometry import Point
from shapely.geometry.base import BaseGeometry

from wsi_core.geometry import Outcome, PolygonalGeometry, finish_polygon
from wsi_core.parsers.decode import load_json
from wsi_core.parsers.filters import Pattern, fullmatch
from wsi_core.parsers.source import Source, read_source


class InvalidGeometryWarning(UserWarning):
    """Some polygons of an annotation file were invalid and have been repaired or dropped."""


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
    ``storage_options`` go to fsspec when the source is a URL (endpoint, credentials; see
    :mod:`wsi_core.remote`).
    """

    path: str

    def __init__(self, source: Source, *, storage_options: Mapping[str, Any] | None = None) -> None:
        name, data = read_source(source, storage_options)
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
