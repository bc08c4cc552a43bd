"""Polygon rules shared by the annotation parsers and the tiling kernels.

* Building polygons from rings as a file stores them (:func:`ring_array`,
  :func:`polygon_from_parts`, :func:`polygon_from_rings`, :func:`box_polygon`).
* The one repair rule: an invalid polygon goes through ``shapely.make_valid`` and keeps only
  its polygonal part; points and lines left over from collapsed spikes carry no area. The
  parsers apply it to one annotation at a time (:func:`finish_polygon`, which keeps the
  annotation one geometry), the kernels to arrays of polygon parts
  (:func:`valid_polygon_parts`).
* Polygonal parts of shapely results (:func:`explode_polygons`, :func:`polygonal_part`) and
  clipping them to a region of interest (:func:`clip_pieces`), or to a rectangle accurately
  however far away their vertices lie, up to 1e308 (:func:`clip_to_rect`).
* The one axis-aligned-rectangle test (:func:`is_axis_aligned_rectangle`), so that the
  coverage and overlay kernels send the same ROI down the same route.

Nothing here moves geometry between frames: every function works in whatever frame its inputs
share. The parsers pass level-0 pixels (x = column, y = row, as stored in the file); the
kernels pass level-0 pixels or tile-relative level coords.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from enum import Enum
from fractions import Fraction
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

# In clip_to_rect, an edge with an end further from the origin than this many times the
# rectangle's own scale has its crossings computed exactly: interpolating in floats from an
# end at 1e12 would be off by an ulp of 1e12 (1e-4), from an end at 1e300 by far more.
_FAR = 4.0


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
    return repair_polygons(explode_polygons(force_2d(geoms)))


def repair_polygons(polygons: np.ndarray) -> np.ndarray:
    """:func:`valid_polygon_parts` of an object array of non-empty 2-D Polygons (as
    :func:`explode_polygons` and :func:`force_2d` leave them): the valid ones, then the
    polygonal parts of the others repaired by ``make_valid``."""
    # Compiled by numba, which costs 120 MB and a third of a second to import: only here.
    from wsi_core.simple_rings import clearly_valid

    # GEOS checks only the polygons a fast sweep cannot prove valid (holes, near contacts).
    invalid = np.zeros(len(polygons), dtype=bool)
    unproven = np.flatnonzero(~clearly_valid(polygons))
    invalid[unproven] = ~shapely.is_valid(polygons[unproven])
    if not np.any(invalid):
        return polygons
    repaired = explode_polygons(shapely.make_valid(polygons[invalid]))
    return np.concatenate([polygons[~invalid], repaired])


# --------------------------------------------------------------------------------------------
# Polygonal parts and clipping


def force_2d(geoms: np.ndarray) -> np.ndarray:
    """The object array ``geoms`` with z and m dropped, rebuilding only the geometries that have
    them: ``shapely.force_2d`` rebuilds every geometry (0.4 us a polygon), while the check is
    about a hundred times cheaper."""
    extra = shapely.has_z(geoms) | shapely.has_m(geoms)
    if not np.any(extra):
        return geoms
    flat = geoms.copy()
    flat[extra] = shapely.force_2d(geoms[extra])
    return flat


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


def clip_to_rect(parts: np.ndarray, rect: tuple[float, float, float, float]) -> np.ndarray:
    """The valid Polygons ``parts`` cut to the rectangle ``rect = (x0, y0, x1, y1)``, as valid
    non-empty Polygons, all in one frame.

    Parts inside the rectangle come back unchanged (the same objects), parts outside it are
    dropped. Every ring of the others is clamped onto the rectangle (each point moved to the
    nearest point of the rectangle): inside the rectangle the polygon is unchanged, and where
    rings then run back and forth along a side, or a hole along its shell, ``make_valid``
    (structure: shells unioned, holes subtracted) makes it valid again.

    Unlike GEOS's clippers, which lose the digits of an edge with a far end (a vertex at 1e12
    moves the clipped edge by about 1e-4, one at 1e300 makes it garbage), this interpolates the
    points where an edge crosses a side in floats only between ends near the rectangle, and
    exactly otherwise.
    """
    if len(parts) == 0:
        return parts
    x0, y0, x1, y1 = rect
    bx0, by0, bx1, by1 = shapely.bounds(parts).T
    inside = (bx0 >= x0) & (by0 >= y0) & (bx1 <= x1) & (by1 <= y1)
    outside = (bx0 > x1) | (by0 > y1) | (bx1 < x0) | (by1 < y0)
    crossing = ~inside & ~outside
    if not np.any(crossing):
        return parts[inside]
    clamped = np.empty(int(crossing.sum()), dtype=object)
    clamped[:] = [_clamp_polygon(part, rect) for part in parts[crossing]]
    # Not the parsers' repair rule: "linework" (even-odd) would fill a hole clamped onto the
    # same side as its shell. "structure" makes each ring valid, unions the shells and
    # subtracts the holes, which is what a clamped polygon means.
    repaired = shapely.make_valid(clamped, method="structure", keep_collapsed=False)
    return np.concatenate([parts[inside], explode_polygons(repaired)])


def _clamp_polygon(polygon: Polygon, rect: tuple[float, float, float, float]) -> Polygon:
    """``polygon`` with every ring clamped onto ``rect`` (possibly invalid, see
    :func:`clip_to_rect`); an empty Polygon when its exterior collapses."""
    shell = _clamp_ring(np.asarray(polygon.exterior.coords)[:, :2], rect)
    if shell is None:
        return Polygon()
    holes = [_clamp_ring(np.asarray(ring.coords)[:, :2], rect) for ring in polygon.interiors]
    return Polygon(shell, [hole for hole in holes if hole is not None])


def _clamp_ring(ring: np.ndarray, rect: tuple[float, float, float, float]) -> np.ndarray | None:
    """A closed ring ``(n, 2)`` clamped onto ``rect``; None when fewer than 3 distinct points
    are left.

    Clamped, an edge is straight between the points where it crosses one of the four lines
    through the rectangle's sides, so each edge becomes its clamped start followed by its
    clamped crossings, in order along the edge.
    """
    start, end = ring[:-1], ring[1:]
    order_key, crossings = _side_crossings(start, end, rect)
    scale = max(abs(v) for v in (*rect, rect[2] - rect[0], rect[3] - rect[1]))
    far = np.maximum(np.abs(start).max(axis=1), np.abs(end).max(axis=1)) > _FAR * scale
    for i in np.flatnonzero(far):
        order_key[i], crossings[i] = _exact_side_crossings(start[i], end[i], rect)
    order = np.argsort(order_key, axis=1)
    order_key = np.take_along_axis(order_key, order, axis=1)
    crossings = np.take_along_axis(crossings, order[:, :, None], axis=1)
    points = np.concatenate([start[:, None, :], crossings], axis=1)
    present = np.concatenate([np.ones((len(start), 1), bool), np.isfinite(order_key)], axis=1)
    points = points[present]  # row by row: each edge's points stay in order
    points[:, 0] = np.clip(points[:, 0], rect[0], rect[2])
    points[:, 1] = np.clip(points[:, 1], rect[1], rect[3])
    # Runs of vertices clamped onto one corner collapse to one point.
    points = points[np.r_[True, np.any(points[1:] != points[:-1], axis=1)]]
    if len(points) > 1 and np.array_equal(points[0], points[-1]):
        points = points[:-1]
    if len(points) < 3:
        return None
    return np.concatenate([points, points[:1]])


def _side_lines(rect: tuple[float, float, float, float]) -> tuple[tuple[float, int], ...]:
    """The four lines through the sides of ``rect``, as (value, axis): x = x0, x = x1, y = y0,
    y = y1."""
    x0, y0, x1, y1 = rect
    return ((x0, 0), (x1, 0), (y0, 1), (y1, 1))


def _side_crossings(
    start: np.ndarray, end: np.ndarray, rect: tuple[float, float, float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Where each edge ``start -> end`` crosses each side line of ``rect``, strictly between its
    ends: the edge parameter ``(E, 4)`` (inf where it does not cross) and the point
    ``(E, 4, 2)``, in floats."""
    key = np.full((len(start), 4), np.inf)
    points = np.zeros((len(start), 4, 2))
    # Edges with ends near 1e308 may overflow here; they are far, and redone exactly.
    with np.errstate(all="ignore"):
        for k, (value, axis) in enumerate(_side_lines(rect)):
            other = 1 - axis
            t = (value - start[:, axis]) / (end[:, axis] - start[:, axis])
            crosses = (t > 0) & (t < 1)  # False for nan and inf: edges along the line
            key[crosses, k] = t[crosses]
            points[:, k, axis] = value
            points[crosses, k, other] = start[crosses, other] + t[crosses] * (
                end[crosses, other] - start[crosses, other]
            )
    return key, points


def _exact_side_crossings(
    start: np.ndarray, end: np.ndarray, rect: tuple[float, float, float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_side_crossings` of one edge in exact rational arithmetic, each point rounded
    once at the end. The parameters are replaced by their ranks: only their order is used."""
    a = [Fraction(float(v)) for v in start]
    b = [Fraction(float(v)) for v in end]
    found = []
    for k, (value, axis) in enumerate(_side_lines(rect)):
        other = 1 - axis
        if a[axis] == b[axis]:
            continue
        t = (Fraction(value) - a[axis]) / (b[axis] - a[axis])
        if 0 < t < 1:
            found.append((t, k, float(a[other] + t * (b[other] - a[other]))))
    key = np.full(4, np.inf)
    points = np.zeros((4, 2))
    for rank, (_, k, along) in enumerate(sorted(found)):
        value, axis = _side_lines(rect)[k]
        key[k] = rank
        points[k, axis] = value
        points[k, 1 - axis] = along
    return key, points


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
