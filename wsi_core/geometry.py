"""Polygon rules shared by the annotation parsers and the tiling kernels.

* Building polygons from rings as a file stores them (:func:`ring_array`,
  :func:`polygon_from_parts`, :func:`polygon_from_rings`, :func:`box_polygon`).
* The one repair rule: an invalid polygon goes through ``shapely.make_valid`` and keeps only
  its polygonal part; points and lines left over from collapsed spikes carry no area. The
  parsers apply it to one annotation at a time (:func:`finish_polygon`, which keeps the
  annotation one geometry), the kernels to arrays of polygon parts
  (:func:`valid_polygon_parts`).
* Polygonal parts of shapely results (:func:`explode_polygons`, :func:`polygonal_part`) and
  clipping them to a region of interest (:func:`clip_pieces`).
* The one axis-aligned-rectangle test (:func:`is_axis_aligned_rectangle`), so that the
  coverage and overlay kernels send the same ROI down the same route.

Nothing here moves geometry between frames: every function works in whatever frame its inputs
share. The parsers pass level-0 pixels (x = column, y = row, as stored in the file); the
kernels pass level-0 pixels or tile-relative level coords.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from enum import Enum
from typing import TypeAlias

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry

PolygonalGeometry: TypeAlias = Polygon | MultiPolygon

# shapely type ids
_POLYGON = 3
_MULTIPOLYGON = 6
_GEOMETRY_COLLECTION = 7
_COLLECTION_TYPES = (4, 5, _MULTIPOLYGON, _GEOMETRY_COLLECTION)  # Multi* and GeometryCollection


# --------------------------------------------------------------------------------------------
# Building polygons from rings


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


def box_polygon(x: float, y: float, width: float, height: float) -> Polygon:
    """An axis-aligned box from its top-left corner, vertices clockwise on screen (y down)."""
    return Polygon([(x, y), (x + width, y), (x + width, y + height), (x, y + height)])


# --------------------------------------------------------------------------------------------
# Repair


class Outcome(Enum):
    """What :func:`finish_polygon` did to a polygon."""

    KEPT = "kept"
    REPAIRED = "repaired"
    DROPPED = "dropped"


def _polygonal_parts(geometry: BaseGeometry) -> Iterator[Polygon]:
    """The non-empty Polygons of ``geometry``, depth first, in the order they are stored."""
    if isinstance(geometry, Polygon):
        if not geometry.is_empty:
            yield geometry
    elif hasattr(geometry, "geoms"):
        for part in geometry.geoms:
            yield from _polygonal_parts(part)


def _polygonal(geometry: BaseGeometry) -> PolygonalGeometry | None:
    """The polygonal parts of ``geometry`` as one Polygon or MultiPolygon (not unioned)."""
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


def valid_polygon_parts(geoms: np.ndarray) -> np.ndarray:
    """The members of the object array ``geoms`` as valid, non-empty 2-D Polygons.

    Multi-part geometries and collections are exploded; points and lines are dropped; each
    invalid polygon is repaired by the rule of :func:`finish_polygon` (``make_valid``, keep
    the polygonal part). Parts stay separate, so they may overlap: callers that measure area
    take their union. The valid parts come first, then the repaired ones.
    """
    geoms = explode_polygons(shapely.force_2d(geoms))
    invalid = ~shapely.is_valid(geoms)
    if np.any(invalid):
        repaired = explode_polygons(shapely.make_valid(geoms[invalid]))
        geoms = np.concatenate([geoms[~invalid], repaired])
    return geoms


# --------------------------------------------------------------------------------------------
# Polygonal parts and clipping


def explode_polygons(geoms: np.ndarray) -> np.ndarray:
    """Non-empty Polygon members of ``geoms``, collections flattened at any depth."""
    while True:
        types = shapely.get_type_id(geoms)
        nested = np.isin(types, _COLLECTION_TYPES)
        if not np.any(nested):
            break
        geoms = np.concatenate([geoms[~nested], shapely.get_parts(geoms[nested])])
    keep = (shapely.get_type_id(geoms) == _POLYGON) & ~shapely.is_empty(geoms)
    return geoms[keep]


def polygonal_part(geometry: BaseGeometry) -> BaseGeometry:
    """The polygonal part of an overlay result; an empty Polygon if it has none."""
    type_id = shapely.get_type_id(geometry)
    if type_id in (_POLYGON, _MULTIPOLYGON):
        return geometry if not geometry.is_empty else Polygon()
    if type_id == _GEOMETRY_COLLECTION:
        polygons = explode_polygons(np.asarray(shapely.get_parts(geometry), dtype=object))
        if len(polygons) == 0:
            return Polygon()
        return polygons[0] if len(polygons) == 1 else shapely.union_all(polygons)
    return Polygon()


def clip_pieces(
    geoms: np.ndarray, roi: BaseGeometry, rect: tuple[float, float, float, float] | None
) -> np.ndarray:
    """``geoms[i] ∩ roi``, all in one frame. ``rect`` is ``roi.bounds`` when
    :func:`is_axis_aligned_rectangle` holds for the ROI, else None.

    With a rectangle GEOS's rectangle clipper is used (several times faster); its output is
    checked and any invalid piece redone exactly.
    """
    if rect is None:
        return shapely.intersection(geoms, roi)
    pieces = np.empty(len(geoms), dtype=object)
    pieces[:] = [shapely.clip_by_rect(g, *rect) for g in geoms]
    bad = ~shapely.is_valid(pieces)
    if np.any(bad):
        pieces[bad] = shapely.intersection(geoms[bad], roi)
    return pieces


# --------------------------------------------------------------------------------------------
# Rectangles


def is_axis_aligned_rectangle(geometry: BaseGeometry) -> bool:
    """Whether ``geometry`` is exactly one axis-aligned rectangle of positive area (any frame).

    True for a valid Polygon without holes whose point set is its bounding box: extra
    vertices along the sides, either orientation, a repeated closing vertex and a z coordinate
    do not matter. The test is exact, with no tolerance: a polygon that only nearly fills its
    bounding box (a corner moved by 1e-13, a slit narrower than a pixel) is not a rectangle,
    because the rectangle routes of the coverage and overlay kernels compute on the bounding
    box and would count what lies outside the polygon. Invalid polygons are never rectangles.
    """
    if not isinstance(geometry, Polygon) or geometry.is_empty or len(geometry.interiors):
        return False
    min_x, min_y, max_x, max_y = geometry.bounds
    if not (max_x > min_x and max_y > min_y) or not geometry.is_valid:
        return False
    return bool(geometry.equals(shapely.box(min_x, min_y, max_x, max_y)))
