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
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from shapely.geometry import Point
from shapely.geometry.base import BaseGeometry

from wsi_core.errors import AnnotationError, annotation_errors
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
    ``label_property`` says where the class label is (:attr:`LABEL_PROPERTY` when ``None``;
    which other values a format accepts is in its docstring; one it cannot honour raises
    :class:`~wsi_core.errors.AnnotationError` naming the file). ``storage_options`` go to
    fsspec when the source is a URL (endpoint, credentials; see :mod:`wsi_core.remote`).

    Failures: whatever goes wrong while reading the file or building its geometry is an
    :class:`~wsi_core.errors.AnnotationError` naming the file (one place decides this,
    :func:`wsi_core.errors.reported_as`); a missing file too. Other ``OSError`` (denied,
    network) propagate for retries. A wrong argument (a source of no supported kind, a
    ``label_property`` that is no string, a malformed regular expression) is the caller's
    and stays a ``TypeError`` / ``ValueError`` / ``re.error``.
    """

    path: str

    #: The format's name in messages.
    FORMAT: ClassVar[str] = "annotation"
    #: Where the class label is read from when ``label_property`` is None.
    LABEL_PROPERTY: ClassVar[str] = "name"

    def __init__(
        self,
        source: Source,
        *,
        label_property: str | None = None,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        check_label_property(label_property)
        name, data = read_source(source, storage_options)
        with annotation_errors(name, "cannot read the annotations"):
            self._start(name, label_property)
            self._load(data)

    def _start(self, name: str, label_property: str | None = None) -> None:
        self.path = name
        self._polygon_entries: list[PolygonEntry] = []
        self._point_entries: list[PointEntry] = []
        self._label_property = self._use_label_property(label_property)

    def _use_label_property(self, label_property: str | None) -> str | None:
        """The label property this parser reads (``None``: the format's default).

        This base accepts only :attr:`LABEL_PROPERTY` itself; formats with a choice override it.
        """
        if label_property is None or label_property == self.LABEL_PROPERTY:
            return None
        raise AnnotationError(
            self.path,
            f"{self.FORMAT} files keep the class label in {self.LABEL_PROPERTY!r}; "
            f"label_property={label_property!r} cannot be read from them",
        )

    @classmethod
    def _from_data(
        cls, name: str, data: bytes | str, label_property: str | None = None
    ) -> AnnotationParser:
        """Build a parser from already-read content (used by ``open_annotations``, which
        reports the failures)."""
        parser = cls.__new__(cls)
        parser._start(name, label_property)
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
            # 1 is here, 2 _polygons, 3 the public query, 4 its caller.
            warnings.warn(
                f"{self.path}: {'; '.join(details)}", InvalidGeometryWarning, stacklevel=4
            )
        return geometries

    def _polygons(self, select: Callable[[], Iterable[PolygonEntry]]) -> list[PolygonalGeometry]:
        """The valid geometries of the entries ``select()`` gives, failures reported against
        the file (a public query's patterns are compiled before, as the caller's)."""
        with annotation_errors(self.path, "cannot build the polygons"):
            return self._emit(select())

    def _points(self, select: Callable[[], Iterable[PointEntry]]) -> list[Point]:
        """The points of the entries ``select()`` gives, failures reported against the file."""
        with annotation_errors(self.path, "cannot select the points"):
            return [entry.point for entry in select()]

    def _kept(self) -> list[PolygonEntry]:
        """The polygon entries whose geometry keeps an area after repair."""
        with annotation_errors(self.path, "cannot build the polygons"):
            return [entry for entry in self._polygon_entries if entry.result()[0] is not None]

    def get_class_polygons(self, pattern: Pattern) -> list[PolygonalGeometry]:
        """Polygons whose class label matches the whole of ``pattern`` (level-0 pixels).

        The class label is the format's class field (ASAP ``PartOfGroup``; GeoJSON
        ``classification.name``, else ``name``; Darwin and EMPAIA ``name``), or what
        ``label_property`` named. Polygons without a label never match.
        """
        regex = re.compile(pattern)
        return self._polygons(
            lambda: [e for e in self._polygon_entries if fullmatch(regex, e.label)]
        )

    def class_labels(self) -> list[str]:
        """The distinct class labels of the polygons, sorted (polygons without one are skipped).

        A polygon whose repair leaves no area is not a polygon any more and adds no label.
        """
        return sorted({entry.label for entry in self._kept() if entry.label is not None})

    def label_counts(self) -> dict[str | None, int]:
        """How many polygons carry each class label: labels sorted, then ``None`` for the
        polygons without one (when there are any).

        Counts what :meth:`get_class_polygons` chooses from, so a caller can report the labels
        that no configured class matched: a polygon whose repair leaves no area is not
        counted, and neither are points (nor V7 Darwin's box-only annotations).
        """
        counts = Counter(entry.label for entry in self._kept())
        labelled = {label: counts[label] for label in sorted(k for k in counts if k is not None)}
        return labelled | ({None: counts[None]} if None in counts else {})


class JSONAnnotationParser(AnnotationParser):
    """Base of the JSON formats: decode once, then read the document."""

    def _load(self, data: bytes | str) -> None:
        self._load_document(load_json(self.path, data))

    @classmethod
    def _from_document(
        cls, name: str, document: Any, label_property: str | None = None
    ) -> AnnotationParser:
        """Build a parser from an already-decoded document (used by ``open_annotations``,
        which reports the failures)."""
        parser = cls.__new__(cls)
        parser._start(name, label_property)
        parser._load_document(document)
        return parser

    @abstractmethod
    def _load_document(self, document: Any) -> None:
        """Fill ``_polygon_entries`` and ``_point_entries`` from the decoded JSON."""


def check_label_property(label_property: Any) -> None:
    """``ValueError`` unless ``label_property`` is ``None`` or a non-empty string (a wrong
    argument is the caller's; whether the file's format can honour it is the parser's)."""
    if label_property is not None and (not isinstance(label_property, str) or not label_property):
        raise ValueError(
            f"label_property must be a non-empty string or None, not {label_property!r}"
        )


def label_or_none(value: Any) -> str | None:
    """A class label: a non-empty string, else ``None``."""
    return value if isinstance(value, str) and value != "" else None
