"""Polygonal parts of shapely geometries, and clipping them to a region of interest.

Shared by the GEOS route of :mod:`wsi_core.tiling.annotations` and the GEOS fallback of
:mod:`wsi_core.tiling.rect_coverage`. These helpers work in whatever frame their geometries
share and do not move anything between frames: the callers pass level-0 geometries (kernel)
or tile-relative level coords (``tile_annotations``).
"""

from __future__ import annotations

import numpy as np
import shapely
from shapely import Geometry, Polygon

# shapely type ids
_POLYGON = 3
_MULTIPOLYGON = 6
_GEOMETRY_COLLECTION = 7
_COLLECTION_TYPES = (4, 5, _MULTIPOLYGON, _GEOMETRY_COLLECTION)  # Multi* and GeometryCollection


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


def polygonal_part(geometry: Geometry) -> Geometry:
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
    geoms: np.ndarray, roi: Geometry, rect: tuple[float, float, float, float] | None
) -> np.ndarray:
    """``geoms[i] ∩ roi``, all in one frame. ``rect`` is ``roi.bounds`` when the ROI is an
    axis-aligned rectangle, else None.

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
