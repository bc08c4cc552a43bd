"""ASAP XML annotations (CAMELYON16/17 and the ASAP viewer); coordinates in level-0 pixels."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from xml.etree.ElementTree import Element

import numpy as np
from shapely.geometry import Point

from wsi_core.errors import AnnotationError
from wsi_core.geometry import PolygonalGeometry, polygon_from_parts, ring_array
from wsi_core.parsers.base import AnnotationParser, PointEntry, PolygonEntry, label_or_none
from wsi_core.parsers.decode import check_coordinate, load_xml
from wsi_core.parsers.filters import Pattern, compile_filters, field_value, filter_entries

_POLYGON_TYPES = frozenset({"polygon", "spline", "rectangle"})
_POINT_TYPES = frozenset({"point", "dot", "pointset"})


class ASAPParser(AnnotationParser):
    """Annotations of an ASAP XML file, as shapely geometry in level-0 pixels.

    Layout: ``ASAP_Annotations/Annotations/Annotation`` with attributes ``Name``, ``Type`` and
    ``PartOfGroup``, holding ``Coordinates/Coordinate`` elements with ``Order``, ``X`` and ``Y``.

    * Vertices are taken in ``Order`` order (document order when any ``Order`` is missing).
    * ``Polygon``, ``Spline`` and ``Rectangle`` annotations are polygons. A ``Spline`` is its
      control points joined by straight edges (ASAP's curve through them is not reproduced).
    * ``Point``, ``Dot`` and ``PointSet`` annotations are points, one per coordinate.
      Other types (``Measurement`` lines, …) are ignored.
    * Decimal commas (``X="123,45"``, written by ASAP under some locales) are accepted.
    * ``PartOfGroup="None"`` is how ASAP writes "in no group": it counts as missing, so it is
      no class label and matches no ``part_of_group`` filter.
    * The class label is ``PartOfGroup``; ``label_property`` names another attribute of the
      ``Annotation`` element to read it from instead (``"Name"``, say, for files whose
      annotations are named by class). An empty attribute is no label.
    * XML is parsed with defusedxml: documents declaring entities or external references are
      refused with :class:`~wsi_core.errors.AnnotationError`.
    """

    FORMAT = "ASAP XML"
    LABEL_PROPERTY = "PartOfGroup"

    def _use_label_property(self, label_property: str | None) -> str | None:
        """Any attribute of ``Annotation`` may hold the class (``None``: ``PartOfGroup``)."""
        return None if label_property == self.LABEL_PROPERTY else label_property

    def _load(self, data: bytes | str) -> None:
        root = load_xml(self.path, data)
        if root.tag != "ASAP_Annotations":
            raise AnnotationError(
                self.path,
                f"not an ASAP annotation file: the root element is <{root.tag}>, "
                "expected <ASAP_Annotations>",
            )
        for index, annotation in enumerate(root.iterfind("Annotations/Annotation")):
            kind = (annotation.get("Type") or "").strip().lower()
            if kind not in _POLYGON_TYPES and kind not in _POINT_TYPES:
                continue
            name = annotation.get("Name")
            group = annotation.get("PartOfGroup")
            if group in ("None", ""):
                group = None
            fields = {"name": name, "part_of_group": group}
            if self._label_property is not None:
                label = label_or_none(annotation.get(self._label_property))
            else:
                label = group
            where = f"Annotation #{index}" + (f" ({name!r})" if name is not None else "")
            vertices = self._vertices(annotation, where)
            if kind in _POLYGON_TYPES:
                ring = ring_array(vertices)
                self._polygon_entries.append(
                    PolygonEntry(fields, label, partial(polygon_from_parts, [(ring, [])]))
                )
            else:
                for x, y in vertices.tolist():
                    self._point_entries.append(PointEntry(fields, label, Point(x, y)))

    def _vertices(self, annotation: Element, where: str) -> np.ndarray:
        """The annotation's ``(n, 2)`` vertices in ``Order`` order."""
        orders: list[int | None] = []
        points: list[tuple[float, float]] = []
        for position, coordinate in enumerate(annotation.iterfind("Coordinates/Coordinate")):
            place = f"{where}, Coordinate #{position}"
            order = coordinate.get("Order")
            if order is None:
                orders.append(None)
            else:
                try:
                    orders.append(int(order.strip()))
                except ValueError:
                    raise AnnotationError(
                        self.path, f"{place}: Order {order!r} is not an integer"
                    ) from None
            points.append(
                (self._number(coordinate, "X", place), self._number(coordinate, "Y", place))
            )
        known = [order for order in orders if order is not None]
        if points and len(known) == len(points):
            # sorted() is stable, so duplicated Order values keep document order.
            points = [
                p for _, p in sorted(zip(known, points, strict=True), key=lambda pair: pair[0])
            ]
        return np.array(points, dtype=np.float64).reshape(-1, 2)

    def _number(self, coordinate: Element, attribute: str, place: str) -> float:
        """The ``X`` or ``Y`` attribute of a ``Coordinate`` (level-0 pixels) as a finite float
        within :data:`~wsi_core.parsers.decode.MAX_COORDINATE`."""
        text = coordinate.get(attribute)
        if text is None:
            raise AnnotationError(self.path, f"{place}: no {attribute} attribute")
        cleaned = text.strip()
        # A lone comma is a decimal comma; with a dot as well it could be a thousands separator,
        # which would silently scale the slide, so that is refused below.
        if "," in cleaned and "." not in cleaned and cleaned.count(",") == 1:
            cleaned = cleaned.replace(",", ".")
        try:
            value = float(cleaned)
        except ValueError:
            raise AnnotationError(
                self.path, f"{place}: {attribute}={text[:40]!r} is not a number"
            ) from None
        return check_coordinate(self.path, place, value, f"{attribute}={text[:40]!r}")

    def get_polygons(
        self, name: Pattern | None = None, part_of_group: Pattern | None = None
    ) -> Iterator[PolygonalGeometry]:
        """Polygons (``Polygon``, ``Spline``, ``Rectangle``), in file order, level-0 pixels.

        ``name`` and ``part_of_group`` are regular expressions matched against the whole
        ``Name`` / ``PartOfGroup`` (``re.fullmatch``); ``None`` does not filter. Invalid polygons
        are repaired (one :class:`InvalidGeometryWarning` per call).
        """
        patterns = compile_filters({"name": name, "part_of_group": part_of_group})
        return iter(
            self._polygons(partial(filter_entries, self._polygon_entries, patterns, field_value))
        )

    def get_points(
        self, name: Pattern | None = None, part_of_group: Pattern | None = None
    ) -> Iterator[Point]:
        """Points (``Point``, ``Dot``, one per ``PointSet`` coordinate), level-0 pixels.

        Filters as in :meth:`get_polygons`.
        """
        patterns = compile_filters({"name": name, "part_of_group": part_of_group})
        return iter(
            self._points(partial(filter_entries, self._point_entries, patterns, field_value))
        )
