"""GeoJSON annotations (QuPath 0.2 to 0.5, Digital Slide Archive and other tools).

Coordinates are level-0 slide pixels, x = column, y = row, as QuPath writes them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from functools import partial
from typing import Any

import numpy as np
from shapely.geometry import Point

from wsi_core.errors import AnnotationError
from wsi_core.geometry import PolygonalGeometry, polygon_from_parts, ring_array
from wsi_core.parsers.base import JSONAnnotationParser, PointEntry, PolygonEntry, label_or_none
from wsi_core.parsers.decode import MAX_COORDINATE, finite_xy
from wsi_core.parsers.filters import Pattern, compile_filters, filter_entries
from wsi_core.parsers.source import Source

GEOMETRY_TYPES = frozenset(
    {
        "Point",
        "MultiPoint",
        "LineString",
        "MultiLineString",
        "Polygon",
        "MultiPolygon",
        "GeometryCollection",
    }
)

_MISSING: Any = object()

FilterKey = str | tuple[str, ...]


def _lookup_path(value: Any, parts: Sequence[str]) -> Any:
    """Follow exact keys ``parts`` through nested objects."""
    parent: str | None = None
    for index, part in enumerate(parts):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif _is_string_classification(value, parent, parts[index:]):
            return value
        else:
            return _MISSING
        parent = part
    return value


def _is_string_classification(value: Any, parent: str | None, rest: Sequence[str]) -> bool:
    # Legacy exports write "classification": "Tumor"; the string is the classification's name.
    return isinstance(value, str) and parent == "classification" and list(rest) == ["name"]


def _lookup_split(value: Any, key: str, separator: str, parent: str | None = None) -> Any:
    """Find ``key`` in nested objects, reading ``separator`` as a nesting step where needed.

    A literal key always wins; otherwise every split at ``separator`` is tried, left to right,
    so ``object_type_name`` finds ``{"object_type": {"name": …}}`` and ``odd.key.x`` finds
    ``{"odd.key": {"x": …}}``.
    """
    if isinstance(value, Mapping):
        if key in value:
            return value[key]
        for match in re.finditer(re.escape(separator), key):
            head, tail = key[: match.start()], key[match.end() :]
            if head and tail and head in value:
                found = _lookup_split(value[head], tail, separator, head)
                if found is not _MISSING:
                    return found
    elif _is_string_classification(value, parent, [key]):
        return value
    return _MISSING


def keyword_value(properties: Mapping[str, Any], key: str) -> Any:
    """The value a keyword filter ``key`` names in ``properties`` (``_MISSING`` if none).

    A literal property name wins; otherwise ``__`` separates nesting levels
    (``classification__name``); otherwise single ``_`` are tried as nesting (compatibility:
    ``classification_name`` when no property has that name).
    """
    if "__" in key:
        return _lookup_split(properties, key, "__")
    return _lookup_split(properties, key, "_")


def dotted_value(properties: Mapping[str, Any], key: FilterKey) -> Any:
    """The value a ``filters`` mapping key names: a dotted path, or a tuple of exact keys.

    Keys that themselves contain dots are found too (a literal key wins over a split).
    """
    if isinstance(key, tuple):
        return _lookup_path(properties, key)
    return _lookup_split(properties, key, ".")


def _json_kind(value: Any) -> str:
    """What JSON calls the type of a decoded ``value`` ("array", "object", ...)."""
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return "null" if value is None else "string"


def _without_missing(value: Any) -> Any:
    return None if value is _MISSING else value


class GeoJSONParser(JSONAnnotationParser):
    """Annotations of a GeoJSON file, as shapely geometry in level-0 pixels.

    Accepts a ``FeatureCollection``, a bare list of Features (QuPath 0.2 style), a single
    ``Feature`` or a bare geometry. ``Polygon`` and ``MultiPolygon`` (with holes) are polygons;
    ``Point`` and ``MultiPoint`` give one point each; members of a ``GeometryCollection`` are
    taken one by one (a polygonal member is one polygon). Lines are ignored, and so is the
    QuPath cell ``nucleusGeometry``: a cell is its ``geometry`` (the cell boundary).
    Vertices keep the file's order and orientation; a third coordinate (z) is dropped.

    Class label: ``properties.classification.name`` (QuPath 0.2 ``{name, colorRGB}``, 0.4+
    ``{name, color}``; a plain string ``classification`` is the name; a derived class given as
    ``names`` is joined with ``": "`` as QuPath shows it), else ``properties.name``. Pass
    ``label_property`` (a dotted path into ``properties`` such as ``"label"``, nested keys
    found as in ``filters``) to read the class from that property alone instead, e.g. for
    Digital Slide Archive exports. ``class_property`` is its earlier name, still accepted.
    """

    FORMAT = "GeoJSON"
    LABEL_PROPERTY = "classification.name"

    def __init__(
        self,
        source: Source,
        *,
        class_property: str | None = None,
        label_property: str | None = None,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        if class_property is not None and label_property not in (None, class_property):
            raise ValueError(
                f"class_property={class_property!r} and label_property={label_property!r} "
                "name the same setting; pass label_property alone"
            )
        super().__init__(
            source,
            label_property=label_property if class_property is None else class_property,
            storage_options=storage_options,
        )

    def _use_label_property(self, label_property: str | None) -> str | None:
        """Any dotted path into ``properties`` may hold the class (``None``: the QuPath rule,
        ``classification.name`` else ``name``; a path given, even that one, is read alone)."""
        return label_property

    # Reading -----------------------------------------------------------------------------

    def _load_document(self, document: Any) -> None:
        for where, feature in self._features(document):
            properties = feature.get("properties")
            if properties is None:
                properties = {}
            if not isinstance(properties, Mapping):
                raise AnnotationError(self.path, f"{where}.properties is not an object")
            label = self._label(properties)
            self._geometry(feature.get("geometry"), f"{where}.geometry", properties, label)

    def _features(self, document: Any) -> list[tuple[str, Mapping[str, Any]]]:
        if isinstance(document, list):
            items = [(f"[{i}]", item) for i, item in enumerate(document)]
        elif isinstance(document, Mapping):
            kind = document.get("type")
            if kind is not None and not isinstance(kind, str):
                raise AnnotationError(
                    self.path,
                    f"not GeoJSON: the top-level 'type' is a JSON {_json_kind(kind)}, not a string",
                )
            if kind == "FeatureCollection" or (kind is None and "features" in document):
                features = document.get("features")
                if not isinstance(features, list):
                    raise AnnotationError(self.path, "FeatureCollection 'features' is not a list")
                items = [(f"features[{i}]", item) for i, item in enumerate(features)]
            elif kind == "Feature":
                items = [("Feature", document)]
            elif kind in GEOMETRY_TYPES:
                items = [("document", {"type": "Feature", "geometry": document, "properties": {}})]
            else:
                found = f"type {kind!r}" if kind is not None else f"keys {sorted(document)[:5]}"
                raise AnnotationError(
                    self.path,
                    "not GeoJSON: expected a FeatureCollection, a Feature or a list of "
                    f"Features, found an object with {found}",
                )
        else:
            raise AnnotationError(
                self.path, f"not GeoJSON: the document is a JSON {type(document).__name__}"
            )
        for where, item in items:
            if not isinstance(item, Mapping) or not (
                item.get("type") == "Feature" or "geometry" in item
            ):
                raise AnnotationError(self.path, f"not GeoJSON: {where} is not a Feature")
        return items

    def _label(self, properties: Mapping[str, Any]) -> str | None:
        if self._label_property is not None:
            return label_or_none(_without_missing(dotted_value(properties, self._label_property)))
        classification = properties.get("classification")
        if isinstance(classification, str):
            label = label_or_none(classification)
        elif isinstance(classification, Mapping):
            label = label_or_none(classification.get("name"))
            names = classification.get("names")
            if (
                label is None
                and isinstance(names, list)
                and names
                and all(isinstance(n, str) for n in names)
            ):
                label = ": ".join(names)
        else:
            label = None
        return label if label is not None else label_or_none(properties.get("name"))

    def _geometry(
        self, geometry: Any, where: str, properties: Mapping[str, Any], label: str | None
    ) -> None:
        if geometry is None:
            return
        if not isinstance(geometry, Mapping):
            raise AnnotationError(self.path, f"{where} is not a GeoJSON geometry object")
        kind = geometry.get("type")
        coordinates = geometry.get("coordinates")
        if kind == "Polygon":
            parts = [self._polygon(coordinates, f"{where}.coordinates")]
            self._polygon_entries.append(
                PolygonEntry(properties, label, partial(polygon_from_parts, parts))
            )
        elif kind == "MultiPolygon":
            polygons = self._list(coordinates, f"{where}.coordinates")
            parts = [self._polygon(p, f"{where}.coordinates[{i}]") for i, p in enumerate(polygons)]
            self._polygon_entries.append(
                PolygonEntry(properties, label, partial(polygon_from_parts, parts))
            )
        elif kind == "Point":
            x, y = self._position(coordinates, f"{where}.coordinates")
            self._point_entries.append(PointEntry(properties, label, Point(x, y)))
        elif kind == "MultiPoint":
            for i, position in enumerate(self._list(coordinates, f"{where}.coordinates")):
                x, y = self._position(position, f"{where}.coordinates[{i}]")
                self._point_entries.append(PointEntry(properties, label, Point(x, y)))
        elif kind == "GeometryCollection":
            members = self._list(geometry.get("geometries"), f"{where}.geometries")
            for i, member in enumerate(members):
                self._geometry(member, f"{where}.geometries[{i}]", properties, label)
        elif kind in ("LineString", "MultiLineString"):
            return
        else:
            raise AnnotationError(self.path, f"{where}: unknown geometry type {kind!r}")

    def _list(self, value: Any, where: str) -> list[Any]:
        if not isinstance(value, list):
            raise AnnotationError(self.path, f"{where} is not a list")
        return value

    def _position(self, position: Any, where: str) -> tuple[float, float]:
        """A GeoJSON position ``[x, y(, z)]`` as ``(x, y)`` in level-0 pixels."""
        if not isinstance(position, list) or len(position) < 2:
            raise AnnotationError(self.path, f"{where} is not a position [x, y]")
        return finite_xy(self.path, where, position[0], position[1])

    def _ring(self, ring: Any, where: str) -> np.ndarray | None:
        """A linear ring as an ``(n, 2)`` array of level-0 pixels, or ``None`` if degenerate."""
        positions = self._list(ring, where)
        # Fast path: a rectangular list of numbers converts in one step.
        try:
            array = np.asarray(positions)
        except ValueError:  # ragged: some positions carry z
            array = None
        if (
            array is not None
            and array.ndim == 2
            and array.shape[1] >= 2
            and array.dtype.kind in "iuf"
            and np.isfinite(array[:, :2]).all()
            and (np.abs(array[:, :2]) <= MAX_COORDINATE).all()
        ):
            return ring_array(array[:, :2])
        # Otherwise the slow path names the position at fault.
        points = [self._position(p, f"{where}[{i}]") for i, p in enumerate(positions)]
        return ring_array(np.array(points, dtype=np.float64).reshape(-1, 2))

    def _polygon(self, rings: Any, where: str) -> tuple[np.ndarray | None, list[np.ndarray | None]]:
        """Polygon coordinates as ``(shell, holes)`` rings of level-0 pixels."""
        rings = self._list(rings, where)
        if not rings:
            return None, []
        arrays = [self._ring(ring, f"{where}[{i}]") for i, ring in enumerate(rings)]
        return arrays[0], arrays[1:]

    # Queries -----------------------------------------------------------------------------

    @staticmethod
    def _patterns(
        filters: Mapping[FilterKey, Pattern | None] | None, keywords: Mapping[str, Pattern | None]
    ) -> list[tuple[tuple[str, FilterKey], re.Pattern[str]]]:
        keyed = [("keyword", key, pattern) for key, pattern in compile_filters(keywords)]
        if filters:
            keyed += [("dotted", key, pattern) for key, pattern in compile_filters(filters)]
        return [((style, key), pattern) for style, key, pattern in keyed]

    @staticmethod
    def _value(properties: Mapping[str, Any], styled_key: tuple[str, FilterKey]) -> Any:
        style, key = styled_key
        # Keyword filters come from **kwargs, so their keys are always str.
        if style == "keyword" and isinstance(key, str):
            return _without_missing(keyword_value(properties, key))
        return _without_missing(dotted_value(properties, key))

    def get_polygons(
        self,
        filters: Mapping[FilterKey, Pattern | None] | None = None,
        **properties: Pattern | None,
    ) -> Iterator[PolygonalGeometry]:
        """Polygons and MultiPolygons, in file order, level-0 pixels.

        Keyword filters name properties, nesting with ``__``
        (``classification__name="Tumor.*"``, ``name="UT"``); ``filters`` maps dotted paths
        (``{"classification.name": "Tumor.*"}``) or tuples of exact keys to patterns, for
        property names no keyword can spell. Every pattern must match the whole value
        (``re.fullmatch``); a missing value never matches; all filters must hold. Invalid
        polygons are repaired (one :class:`InvalidGeometryWarning` per call).
        """
        patterns = self._patterns(filters, properties)
        return iter(
            self._polygons(partial(filter_entries, self._polygon_entries, patterns, self._value))
        )

    def get_points(
        self,
        filters: Mapping[FilterKey, Pattern | None] | None = None,
        **properties: Pattern | None,
    ) -> Iterator[Point]:
        """Points (one per ``MultiPoint`` member), level-0 pixels; filters as in get_polygons."""
        patterns = self._patterns(filters, properties)
        return iter(
            self._points(partial(filter_entries, self._point_entries, patterns, self._value))
        )
