"""V7 Darwin JSON annotations (Darwin JSON 2.0, and the older 1.0 layout); level-0 pixels."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from functools import partial
from typing import Any

import numpy as np
from shapely.geometry import Point

from wsi_core.errors import AnnotationError
from wsi_core.geometry import PolygonalGeometry, box_polygon, polygon_from_rings, ring_array
from wsi_core.parsers.base import JSONAnnotationParser, PointEntry, PolygonEntry, label_or_none
from wsi_core.parsers.decode import finite_xy
from wsi_core.parsers.filters import Pattern, compile_filters, field_value, filter_entries

# The members that make an annotation a point: V7's "keypoint", and "point" as some exports
# (and hand-written files) spell it.
_POINT_KINDS = ("keypoint", "point")


class Darwin7JSONParser(JSONAnnotationParser):
    """Annotations of a V7 Darwin JSON file, as shapely geometry in level-0 pixels.

    * ``polygon.paths`` (2.0) is a list of rings of ``{x, y}``. V7 does not say which ring is
      a hole, so nesting decides: a ring inside an odd number of other rings is a hole of its
      smallest container, every other ring is an exterior. A multi-part region is therefore one
      MultiPolygon (or a Polygon with holes), never an invalid polygon. The 1.0
      ``polygon.path`` (one ring) and ``complex_polygon.path`` (list of rings) are read the same
      way.
    * ``bounding_box`` ``{x, y, w, h}`` (top-left corner, width, height) of an annotation that
      has no polygon is a box. Boxes are *not* polygons by default: V7 attaches a bounding box
      to every annotation and box-only classes are usually cell detections, not regions, so
      mixing them into region coverage would be wrong. Ask for them with
      ``get_polygons(include_boxes=True)``. A polygon annotation's own ``bounding_box`` is
      never returned.
    * ``keypoint`` ``{x, y}`` is a point, and so is ``point`` ``{x, y}`` (the spelling of some
      exports), under the same rules: an object with finite ``x`` and ``y``, whatever else the
      annotation has. Other types (tags, lines, ellipses, masks) are ignored, as is the slot an
      annotation belongs to.

    The class label and the only filter is the annotation ``name`` (``label_property`` may
    only be ``"name"``).
    """

    FORMAT = "V7 Darwin JSON"
    LABEL_PROPERTY = "name"

    def _start(self, name: str, label_property: str | None = None) -> None:
        super()._start(name, label_property)
        self._box_entries: list[PolygonEntry] = []

    def _load_document(self, document: Any) -> None:
        if not isinstance(document, Mapping) or not isinstance(document.get("annotations"), list):
            raise AnnotationError(
                self.path, "not a V7 Darwin JSON file: no 'annotations' list at the top level"
            )
        for index, annotation in enumerate(document["annotations"]):
            where = f"annotations[{index}]"
            if not isinstance(annotation, Mapping):
                raise AnnotationError(self.path, f"{where} is not an object")
            name = label_or_none(annotation.get("name"))
            fields = {"name": annotation.get("name")}
            rings = self._rings(annotation, where)
            if rings is not None:
                build = partial(polygon_from_rings, rings)
                self._polygon_entries.append(PolygonEntry(fields, name, build))
            elif isinstance(annotation.get("bounding_box"), Mapping):
                box = annotation["bounding_box"]
                place = f"{where}.bounding_box"
                x, y = finite_xy(self.path, place, box.get("x"), box.get("y"))
                width, height = finite_xy(self.path, place, box.get("w"), box.get("h"))
                self._box_entries.append(
                    PolygonEntry(fields, name, partial(box_polygon, x, y, width, height))
                )
            for kind in _POINT_KINDS:
                point = annotation.get(kind)
                if isinstance(point, Mapping):
                    x, y = finite_xy(self.path, f"{where}.{kind}", point.get("x"), point.get("y"))
                    self._point_entries.append(PointEntry(fields, name, Point(x, y)))

    def _rings(self, annotation: Mapping[str, Any], where: str) -> list[np.ndarray | None] | None:
        """The rings of a (complex) polygon annotation, or ``None`` when it has none."""
        if isinstance(annotation.get("complex_polygon"), Mapping):
            paths = annotation["complex_polygon"].get("path")
            return self._path_list(paths, f"{where}.complex_polygon.path")
        polygon = annotation.get("polygon")
        if not isinstance(polygon, Mapping):
            return None
        if "paths" in polygon:
            return self._path_list(polygon["paths"], f"{where}.polygon.paths")
        path = polygon.get("path")
        place = f"{where}.polygon.path"
        if isinstance(path, list) and path and isinstance(path[0], list):
            return self._path_list(path, place)
        return [self._ring(path, place)]

    def _path_list(self, paths: Any, where: str) -> list[np.ndarray | None]:
        """A list of paths as rings of level-0 pixels (``None`` for a degenerate ring)."""
        if not isinstance(paths, list):
            raise AnnotationError(self.path, f"{where} is not a list of paths")
        return [self._ring(path, f"{where}[{i}]") for i, path in enumerate(paths)]

    def _ring(self, path: Any, where: str) -> np.ndarray | None:
        """One path of ``{x, y}`` points as an ``(n, 2)`` ring of level-0 pixels, or ``None``."""
        if not isinstance(path, list):
            raise AnnotationError(self.path, f"{where} is not a list of points")
        points = []
        for i, point in enumerate(path):
            if not isinstance(point, Mapping):
                raise AnnotationError(self.path, f"{where}[{i}] is not a point {{x, y}}")
            points.append(finite_xy(self.path, f"{where}[{i}]", point.get("x"), point.get("y")))
        return ring_array(np.array(points, dtype=np.float64).reshape(-1, 2))

    def get_polygons(
        self, name: Pattern | None = None, *, include_boxes: bool = False
    ) -> Iterator[PolygonalGeometry]:
        """Polygon annotations in file order, level-0 pixels; with ``include_boxes`` also the
        box-only annotations (after the polygons, in file order).

        ``name`` is a regular expression matched against the whole annotation name. Invalid
        polygons are repaired (one :class:`InvalidGeometryWarning` per call).
        """
        patterns = compile_filters({"name": name})
        entries = self._polygon_entries + (self._box_entries if include_boxes else [])
        return iter(self._polygons(partial(filter_entries, entries, patterns, field_value)))

    def get_points(self, name: Pattern | None = None) -> Iterator[Point]:
        """Keypoints, level-0 pixels; ``name`` filters as in :meth:`get_polygons`."""
        patterns = compile_filters({"name": name})
        return iter(
            self._points(partial(filter_entries, self._point_entries, patterns, field_value))
        )
