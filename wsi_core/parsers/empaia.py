"""EMPAIA app annotations (``{"items": [{"name", "type", "coordinates"}, …]}``), level-0 pixels."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from functools import partial
from typing import Any

import numpy as np
from shapely.geometry import Point

from wsi_core.errors import AnnotationError
from wsi_core.geometry import PolygonalGeometry, box_polygon, polygon_from_parts, ring_array
from wsi_core.parsers.base import JSONAnnotationParser, PointEntry, PolygonEntry, label_or_none
from wsi_core.parsers.decode import finite_xy
from wsi_core.parsers.filters import Pattern, compile_filters, field_value, filter_entries


class EMPAIAParser(JSONAnnotationParser):
    """Annotations of an EMPAIA JSON file, as shapely geometry in level-0 pixels.

    ``type: "polygon"`` items (``coordinates`` = ``[[x, y], …]``, one ring) and
    ``type: "rectangle"`` items (``upper_left`` ``[x, y]``, ``width``, ``height``) are polygons;
    ``type: "point"`` items (``coordinates`` = ``[x, y]``) are points. Items that are
    themselves collections (they hold ``items``) are read recursively; other types (lines,
    arrows, circles) are ignored. The class label and the only filter is the item ``name``
    (``label_property`` may only be ``"name"``).
    """

    FORMAT = "EMPAIA JSON"
    LABEL_PROPERTY = "name"

    def _load_document(self, document: Any) -> None:
        if not isinstance(document, Mapping) or not isinstance(document.get("items"), list):
            raise AnnotationError(
                self.path, "not an EMPAIA annotation file: no 'items' list at the top level"
            )
        self._items(document["items"], "items")

    def _items(self, items: list[Any], where: str) -> None:
        for index, item in enumerate(items):
            place = f"{where}[{index}]"
            if not isinstance(item, Mapping):
                raise AnnotationError(self.path, f"{place} is not an object")
            if isinstance(item.get("items"), list):
                self._items(item["items"], f"{place}.items")
                continue
            kind = item.get("type")
            fields = {"name": item.get("name")}
            label = label_or_none(item.get("name"))
            if kind == "polygon":
                ring = self._ring(item.get("coordinates"), f"{place}.coordinates")
                build = partial(polygon_from_parts, [(ring, [])])
                self._polygon_entries.append(PolygonEntry(fields, label, build))
            elif kind == "rectangle":
                x, y = self._xy(item.get("upper_left"), f"{place}.upper_left")
                width, height = finite_xy(self.path, place, item.get("width"), item.get("height"))
                build = partial(box_polygon, x, y, width, height)
                self._polygon_entries.append(PolygonEntry(fields, label, build))
            elif kind == "point":
                x, y = self._xy(item.get("coordinates"), f"{place}.coordinates")
                self._point_entries.append(PointEntry(fields, label, Point(x, y)))

    def _xy(self, value: Any, where: str) -> tuple[float, float]:
        """A position ``[x, y]`` in level-0 pixels."""
        if not isinstance(value, list) or len(value) < 2:
            raise AnnotationError(self.path, f"{where} is not a position [x, y]")
        return finite_xy(self.path, where, value[0], value[1])

    def _ring(self, value: Any, where: str) -> np.ndarray | None:
        """A list of positions as an ``(n, 2)`` ring of level-0 pixels, or ``None``."""
        if not isinstance(value, list):
            raise AnnotationError(self.path, f"{where} is not a list of positions")
        points = [self._xy(position, f"{where}[{i}]") for i, position in enumerate(value)]
        return ring_array(np.array(points, dtype=np.float64).reshape(-1, 2))

    def get_polygons(self, name: Pattern | None = None) -> Iterator[PolygonalGeometry]:
        """Polygons (and rectangles) in file order, level-0 pixels.

        ``name`` is a regular expression matched against the whole item name. Invalid polygons
        are repaired (one :class:`InvalidGeometryWarning` per call).
        """
        patterns = compile_filters({"name": name})
        return iter(
            self._polygons(partial(filter_entries, self._polygon_entries, patterns, field_value))
        )

    def get_points(self, name: Pattern | None = None) -> Iterator[Point]:
        """Points, level-0 pixels; ``name`` filters as in :meth:`get_polygons`."""
        patterns = compile_filters({"name": name})
        return iter(
            self._points(partial(filter_entries, self._point_entries, patterns, field_value))
        )
