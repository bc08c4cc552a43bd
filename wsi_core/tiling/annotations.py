"""Annotation geometry per tile, and the vectorised annotation-coverage kernel.

Frames and units:

- Annotations live at level 0 (level-0 pixels).
- ``coordinates`` are tile origins in level coords (pixels of the level being tiled); ``roi`` is
  one polygon in the tile's own frame (level coords relative to the tile origin), e.g.
  ``box(0, 0, tile_extent_x, tile_extent_y)``.
- ``downsample`` is level-0 pixels per level pixel (a float, or an ``(x, y)`` pair).
- The ROI of the tile at origin ``o`` covers ``(roi + o) * downsample`` at level 0.

:func:`tile_annotations` returns geometry in the ROI's frame (tile-relative level coords), so
``geometry.area / roi.area`` is the tile's coverage; :func:`annotation_coverage` returns those
fractions for all tiles at once, computed by a faster route that gives the same numbers (to
rounding, far below 1e-9).

Only polygonal annotation parts carry area: points and lines are ignored, geometry
collections contribute their polygons, and an invalid polygon is repaired with ``make_valid``
(keeping its polygonal part) rather than allowed to crash an intersection. Overlapping
annotations count once (the union is measured).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Union

import numpy as np
import shapely
from shapely import Geometry, MultiPolygon, Polygon

Downsample = Union[float, Sequence[float], np.ndarray]

_POLYGON = 3  # shapely type ids
_COLLECTION_TYPES = (4, 5, 6, 7)  # Multi* and GeometryCollection
_CHUNK_TILES = 4096  # tiles per batch in tile_annotations: bounds memory for huge grids

# Edges per batch in the edge-by-edge fallback: keeps its temporaries to tens of MB.
_CLAMP_CHUNK_EDGES = 1 << 20

# Relative slack below which a per-tile area counts as empty or as the whole ROI. It decides only
# which tiles need a union; the effect on a coverage value is at most this much.
_AREA_EPS = 1e-12


# --------------------------------------------------------------------------------------------
# Input normalisation


def _polygon_parts(annotations: Iterable[Geometry | None]) -> np.ndarray:
    """The annotations as an object array of valid, non-empty 2-D Polygons (level 0).

    Multi-part geometries and collections are exploded; points and lines are dropped; invalid
    polygons are repaired with ``make_valid`` and their polygonal part kept.
    """
    items = [g for g in annotations if g is not None]
    for g in items:
        if not isinstance(g, Geometry):
            raise TypeError(f"annotations must be shapely geometries, got {type(g).__name__}")
    geoms = np.empty(len(items), dtype=object)
    geoms[:] = items
    geoms = _explode_polygons(shapely.force_2d(geoms))
    invalid = ~shapely.is_valid(geoms)
    if np.any(invalid):
        repaired = _explode_polygons(shapely.make_valid(geoms[invalid]))
        geoms = np.concatenate([geoms[~invalid], repaired])
    return geoms


def _explode_polygons(geoms: np.ndarray) -> np.ndarray:
    """Non-empty Polygon members of ``geoms``, collections flattened at any depth."""
    while True:
        types = shapely.get_type_id(geoms)
        nested = np.isin(types, _COLLECTION_TYPES)
        if not np.any(nested):
            break
        geoms = np.concatenate([geoms[~nested], shapely.get_parts(geoms[nested])])
    keep = (shapely.get_type_id(geoms) == _POLYGON) & ~shapely.is_empty(geoms)
    return geoms[keep]


def _as_origins(coordinates: Iterable[Sequence[float]] | np.ndarray) -> np.ndarray:
    """Tile origins (level coords) as a float64 ``(N, 2)`` array."""
    if not isinstance(coordinates, np.ndarray) and not hasattr(coordinates, "__len__"):
        coordinates = list(coordinates)  # a generator of pairs
    origins = np.asarray(coordinates, dtype=np.float64)
    if origins.size == 0:
        return origins.reshape(0, 2)
    if origins.ndim != 2 or origins.shape[1] != 2:
        raise ValueError(f"coordinates must be (N, 2) tile origins, got shape {origins.shape}")
    if not np.all(np.isfinite(origins)):
        raise ValueError("coordinates must be finite")
    return origins


def _as_downsample(downsample: Downsample) -> tuple[float, float]:
    """``(x, y)`` level-0 pixels per level pixel."""
    if np.ndim(downsample) == 0:
        dsx = dsy = float(downsample)  # type: ignore[arg-type]
    else:
        dsx, dsy = (float(v) for v in downsample)  # type: ignore[union-attr]
    if not (np.isfinite(dsx) and np.isfinite(dsy) and dsx > 0 and dsy > 0):
        raise ValueError(f"downsample must be positive, got {downsample!r}")
    return dsx, dsy


def _check_roi(roi: Geometry) -> Geometry:
    """The ROI, 2-D; ValueError unless it is a valid polygon with a positive area."""
    if not isinstance(roi, (Polygon, MultiPolygon)) or roi.is_empty:
        raise ValueError(f"roi must be a non-empty Polygon or MultiPolygon, got {roi!r:.80}")
    if not roi.is_valid:
        raise ValueError(f"roi must be a valid polygon: {shapely.is_valid_reason(roi)}")
    if not roi.area > 0:
        raise ValueError("roi must have a positive area")
    return shapely.force_2d(roi)


def _is_axis_aligned_rectangle(roi: Geometry) -> bool:
    if not isinstance(roi, Polygon) or len(roi.interiors):
        return False
    x0, y0, x1, y1 = roi.bounds
    box_area = (x1 - x0) * (y1 - y0)
    # A polygon inside its bounding box with the box's area is the box.
    return abs(roi.area - box_area) <= 1e-12 * box_area


def _polygonal(geometry: Geometry) -> Geometry:
    """The polygonal part of an overlay result; an empty Polygon if it has none."""
    type_id = shapely.get_type_id(geometry)
    if type_id in (3, 6):
        return geometry if not geometry.is_empty else Polygon()
    if type_id == 7:
        polygons = _explode_polygons(np.asarray(shapely.get_parts(geometry), dtype=object))
        if len(polygons) == 0:
            return Polygon()
        return polygons[0] if len(polygons) == 1 else shapely.union_all(polygons)
    return Polygon()


def _place_rois(roi: Geometry, origins: np.ndarray, ds: tuple[float, float]) -> np.ndarray:
    """The ROI of every tile at level 0: ``(roi + origin) * downsample``, vectorised."""
    n = len(origins)
    copies = np.full(n, roi, dtype=object)
    per_copy = shapely.get_num_coordinates(roi)
    scale = np.array(ds)

    def place(coords: np.ndarray) -> np.ndarray:
        return (coords + np.repeat(origins, per_copy, axis=0)) * scale

    return shapely.transform(copies, place)


# --------------------------------------------------------------------------------------------
# Per-tile pieces (GEOS): used by tile_annotations and the general-ROI coverage path


class _Index:
    """Annotation parts (from :func:`_polygon_parts`) with their STRtree, prepared for
    repeated predicates."""

    def __init__(self, parts: np.ndarray) -> None:
        self.parts = parts
        shapely.prepare(parts)
        self.tree = shapely.STRtree(parts)


def _intersecting_pairs(index: _Index, placed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(tile, part) pairs whose geometries intersect, sorted by tile then part."""
    if len(index.parts) == 0 or len(placed) == 0:
        empty = np.empty(0, dtype=np.intp)
        return empty, empty
    tiles, parts = index.tree.query(placed, predicate="intersects")
    order = np.lexsort((parts, tiles))
    return tiles[order], parts[order]


def _clip_pieces(
    geoms: np.ndarray, roi: Geometry, rect: tuple[float, float, float, float] | None
) -> np.ndarray:
    """``geoms[i] ∩ roi``. With an axis-aligned rectangle ROI, GEOS's rectangle clipper is used
    (several times faster); its output is checked and any invalid piece redone exactly."""
    if rect is None:
        return shapely.intersection(geoms, roi)
    pieces = np.empty(len(geoms), dtype=object)
    pieces[:] = [shapely.clip_by_rect(g, *rect) for g in geoms]
    bad = ~shapely.is_valid(pieces)
    if np.any(bad):
        pieces[bad] = shapely.intersection(geoms[bad], roi)
    return pieces


def _union_by_tile(
    tiles: np.ndarray, pieces: np.ndarray, n_tiles: int
) -> np.ndarray:
    """Per tile, the polygonal union of its pieces (``tiles`` sorted); None where it has none."""
    out = np.full(n_tiles, None, dtype=object)
    if len(tiles) == 0:
        return out
    starts = np.flatnonzero(np.r_[True, tiles[1:] != tiles[:-1]])
    ends = np.r_[starts[1:], len(tiles)]
    single = ends - starts == 1
    out[tiles[starts[single]]] = pieces[starts[single]]
    for s, e in zip(starts[~single], ends[~single]):
        polygonal = [_polygonal(p) for p in pieces[s:e]]
        out[tiles[s]] = shapely.union_all([p for p in polygonal if not p.is_empty])
    return out


def _tile_geometries(
    index: _Index, roi: Geometry, origins: np.ndarray, ds: tuple[float, float]
) -> list[Geometry]:
    """Union of the annotations ∩ ROI for each tile, in tile-relative level coords."""
    n = len(origins)
    placed = _place_rois(roi, origins, ds)
    tiles, parts = _intersecting_pairs(index, placed)
    result: list[Geometry] = [Polygon()] * n
    if len(tiles) == 0:
        return result
    inside = shapely.contains_properly(index.parts[parts], placed[tiles])
    full = np.zeros(n, dtype=bool)
    full[tiles[inside]] = True
    boundary = ~full[tiles]
    tiles, parts = tiles[boundary], parts[boundary]

    # Bring only the candidate annotations into the tile frame (not the ROI to level 0) so that
    # the ROI's own edges come back exactly.
    candidates = index.parts[parts]
    scale = np.array(ds)
    offsets = np.repeat(origins[tiles], shapely.get_num_coordinates(candidates), axis=0)
    local = shapely.transform(candidates, lambda c: c / scale - offsets)
    rect = roi.bounds if _is_axis_aligned_rectangle(roi) else None
    pieces = _clip_pieces(local, roi, rect)
    unions = _union_by_tile(tiles, pieces, n)
    for i in range(n):
        if full[i]:
            result[i] = roi
        elif unions[i] is not None:
            result[i] = _polygonal(unions[i])
    return result


def tile_annotations(
    annotations: Iterable[Geometry | None],
    roi: Polygon | MultiPolygon,
    coordinates: Iterable[Sequence[float]] | np.ndarray,
    downsample: Downsample,
) -> Iterator[Geometry]:
    """For each tile origin, the union of the annotations' intersections with the ROI placed at
    that tile, as a shapely geometry in tile-relative level coords (the ROI's frame).

    ``annotations``: any iterable of shapely geometries at level 0 (a generator is fine; it is
    read once). ``roi``: polygon in the tile frame (level coords). ``coordinates``: ``(N, 2)``
    tile origins (x, y) in level coords, any array-like or iterable of pairs. ``downsample``:
    level-0 pixels per level pixel (float or ``(x, y)``).

    Yields one geometry per origin, in order: a Polygon or MultiPolygon, an empty Polygon where
    no annotation covers the ROI. ``geometry.area / roi.area`` is the tile's coverage.
    Overlapping annotations count once; points and lines contribute nothing. A tile wholly
    inside an annotation yields ``roi`` itself. An STRtree restricts each tile to nearby
    annotations. Arguments are checked when this is called; tiles are computed in batches as
    the iterator is consumed.
    """
    roi = _check_roi(roi)
    ds = _as_downsample(downsample)
    origins = _as_origins(coordinates)
    index = _Index(_polygon_parts(annotations))
    return _iterate_tiles(index, roi, origins, ds)


def _iterate_tiles(
    index: _Index, roi: Geometry, origins: np.ndarray, ds: tuple[float, float]
) -> Iterator[Geometry]:
    for start in range(0, len(origins), _CHUNK_TILES):
        yield from _tile_geometries(index, roi, origins[start : start + _CHUNK_TILES], ds)


# --------------------------------------------------------------------------------------------
# Coverage kernel


def annotation_coverage(
    annotations: Iterable[Geometry | None],
    roi: Polygon | MultiPolygon,
    coordinates: Iterable[Sequence[float]] | np.ndarray,
    downsample: Downsample,
) -> np.ndarray:
    """Coverage fraction of every tile: ``area(union(annotations) ∩ placed ROI) / area(ROI)``.

    Same arguments and frames as :func:`tile_annotations`; returns a float64 array ``(N,)`` in
    ``[0, 1]`` equal to ``geometry.area / roi.area`` of the geometries it yields, to rounding.

    For an axis-aligned rectangular ROI (the usual tile box) a NumPy kernel computes each
    tile's area exactly (Green's theorem) from only the annotation edges near that tile plus one
    point-in-polygon test per (tile, nearby polygon), so its cost grows with edges plus tiles,
    not edges times tiles; where several polygons partly cover one tile, the boundary of their
    union inside the tile is found the same way. GEOS is used only where rounding could make
    that ambiguous (an edge through a tile corner, shared or touching edges of different
    polygons): such tiles are unioned by GEOS. Any other ROI shape takes the GEOS route: one
    bulk ``STRtree.query(predicate="intersects")``, a ``contains_properly`` fast path,
    vectorised intersections, and a union only where several polygons meet.
    """
    roi = _check_roi(roi)
    ds = _as_downsample(downsample)
    origins = _as_origins(coordinates)
    parts = _polygon_parts(annotations)
    n = len(origins)
    if n == 0 or len(parts) == 0:
        return np.zeros(n, dtype=np.float64)
    if _is_axis_aligned_rectangle(roi):
        coverage = _RectCoverage(parts, roi.bounds, origins, ds).coverage()
    else:
        coverage = _general_coverage(parts, roi, origins, ds)
    return np.clip(coverage, 0.0, 1.0)


def _general_coverage(
    parts: np.ndarray, roi: Geometry, origins: np.ndarray, ds: tuple[float, float]
) -> np.ndarray:
    """GEOS route for any ROI shape, at level 0."""
    index = _Index(parts)
    n = len(origins)
    placed = _place_rois(roi, origins, ds)
    roi_area = roi.area * ds[0] * ds[1]
    tiles, part_ids = _intersecting_pairs(index, placed)
    coverage = np.zeros(n, dtype=np.float64)
    if len(tiles) == 0:
        return coverage
    inside = shapely.contains_properly(parts[part_ids], placed[tiles])
    full = np.zeros(n, dtype=bool)
    full[tiles[inside]] = True
    boundary = ~full[tiles]
    tiles, part_ids = tiles[boundary], part_ids[boundary]
    pieces = shapely.intersection(parts[part_ids], placed[tiles])
    unions = _union_by_tile(tiles, pieces, n)
    has = np.array([u is not None for u in unions], dtype=bool)
    if np.any(has):
        coverage[has] = shapely.area(unions[has].astype(object)) / roi_area
    coverage[full] = 1.0
    return coverage


# --------------------------------------------------------------------------------------------
# Rectangle-ROI kernel (NumPy). Everything below works at level 0, in coordinates local to
# each tile rectangle R = [0, W] x [0, H] (level-0 pixels from the tile's (min x, min y) corner).


def _ragged_expand(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For ``counts[i]`` items in group i: (group index, index within group) of every item."""
    counts = np.asarray(counts, dtype=np.int64)
    group = np.repeat(np.arange(len(counts)), counts)
    starts = np.cumsum(counts) - counts
    within = np.arange(len(group), dtype=np.int64) - starts[group]
    return group, within


def _group_bounds(sorted_ids: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Start and count of each id 0..n-1 in an ascending id array."""
    count = np.bincount(sorted_ids, minlength=n)
    return np.cumsum(count) - count, count


def _sum_by(groups: np.ndarray, weights: np.ndarray, n: int) -> np.ndarray:
    """float64 sums of ``weights`` per group 0..n-1 (bincount, but float even when empty)."""
    return np.bincount(groups, weights=weights, minlength=n).astype(np.float64, copy=False)


def _pairs_within_groups(
    left_group: np.ndarray, group_start: np.ndarray, group_count: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """All (left item, right item) combinations where the right items are the members of the
    left item's group (rows of an array sorted by group)."""
    counts = group_count[left_group]
    left = np.repeat(np.arange(len(counts)), counts)
    # Index of each item's first partner minus where its run starts in the output.
    offset = group_start[left_group] - (np.cumsum(counts) - counts)
    right = np.arange(len(left), dtype=np.int64) + np.repeat(offset, counts)
    return left, right


class _TileBuckets:
    """Equal-size tile rectangles hashed by origin into cells of one tile size, so that the
    tiles a set of boxes touches are found without building any geometry."""

    def __init__(self, x0: np.ndarray, y0: np.ndarray, width: float, height: float) -> None:
        self.x0, self.y0, self.w, self.h = x0, y0, width, height
        self.gx, self.gy = float(x0.min()), float(y0.min())
        cx, cy = self._cell_x(x0), self._cell_y(y0)
        self.ncx, self.ncy = int(cx.max()) + 1, int(cy.max()) + 1
        keys = cx * self.ncy + cy
        self.order = np.argsort(keys, kind="stable")
        self.sorted_keys = keys[self.order]
        self.dense = self.ncx * self.ncy <= 8 * len(x0) + 1024
        if self.dense:  # a regular grid: look cells up directly instead of by binary search
            self.cell_start, self.cell_count = _group_bounds(
                self.sorted_keys, self.ncx * self.ncy
            )

    def _cell_x(self, x: np.ndarray) -> np.ndarray:
        return np.floor((x - self.gx) / self.w).astype(np.int64)

    def _cell_y(self, y: np.ndarray) -> np.ndarray:
        return np.floor((y - self.gy) / self.h).astype(np.int64)

    def join(
        self, bx0: np.ndarray, by0: np.ndarray, bx1: np.ndarray, by1: np.ndarray, margin: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """(box, tile) pairs where box ``[bx0, bx1] x [by0, by1]`` comes within ``margin`` of the
        closed tile rectangle ``[x0, x0 + w] x [y0, y0 + h]``."""
        # A tile qualifies when its origin lies in [b0 - size - margin, b1 + margin]. The same
        # float values feed the cell range and the final test, and floor is monotonic, so no
        # qualifying tile is missed.
        lo_x, hi_x = bx0 - self.w - margin, bx1 + margin
        lo_y, hi_y = by0 - self.h - margin, by1 + margin
        cx0 = np.maximum(self._cell_x(lo_x), 0)
        cx1 = np.minimum(self._cell_x(hi_x), self.ncx - 1)
        cy0 = np.maximum(self._cell_y(lo_y), 0)
        cy1 = np.minimum(self._cell_y(hi_y), self.ncy - 1)
        nx = np.maximum(cx1 - cx0 + 1, 0)
        ny = np.maximum(cy1 - cy0 + 1, 0)
        box, k = _ragged_expand(nx * ny)
        keys = (cx0[box] + k // ny[box]) * self.ncy + cy0[box] + k % ny[box]
        if self.dense:
            first, count = self.cell_start[keys], self.cell_count[keys]
        else:
            first = np.searchsorted(self.sorted_keys, keys, side="left")
            count = np.searchsorted(self.sorted_keys, keys, side="right") - first
        slot, j = _ragged_expand(count)
        box = box[slot]
        tile = self.order[first[slot] + j]
        tx, ty = self.x0[tile], self.y0[tile]
        hit = (tx >= lo_x[box]) & (tx <= hi_x[box]) & (ty >= lo_y[box]) & (ty <= hi_y[box])
        return box[hit], tile[hit]


class _EdgeTerms:
    """Per (tile, edge) row, in tile-local coords: the edge clipped to the closed tile, its
    crossing of the line x = W, its share of the area formula, and whether it passes within
    ``tol`` of the corner (W, 0)."""

    def __init__(
        self, ax: np.ndarray, ay: np.ndarray, bx: np.ndarray, by: np.ndarray,
        w: np.ndarray, h: np.ndarray, tol: float,
    ) -> None:
        dx, dy = bx - ax, by - ay
        with np.errstate(divide="ignore", invalid="ignore"):
            # Liang–Barsky clip to the closed tile.
            enter_x = np.where(dx > 0, -ax / dx, (w - ax) / dx)
            leave_x = np.where(dx > 0, (w - ax) / dx, -ax / dx)
            enter_x = np.where(dx == 0, np.where((ax >= 0) & (ax <= w), -np.inf, np.inf), enter_x)
            leave_x = np.where(dx == 0, np.inf, leave_x)
            enter_y = np.where(dy > 0, -ay / dy, (h - ay) / dy)
            leave_y = np.where(dy > 0, (h - ay) / dy, -ay / dy)
            enter_y = np.where(dy == 0, np.where((ay >= 0) & (ay <= h), -np.inf, np.inf), enter_y)
            leave_y = np.where(dy == 0, np.inf, leave_y)
            t0 = np.maximum(np.maximum(enter_x, enter_y), 0.0)
            t1 = np.minimum(np.minimum(leave_x, leave_y), 1.0)
            self.clipped = t1 > t0
            # lerp form: exact original vertices at t = 0 and t = 1.
            self.px0 = np.clip(ax * (1 - t0) + bx * t0, 0, w)
            self.py0 = np.clip(ay * (1 - t0) + by * t0, 0, h)
            self.px1 = np.clip(ax * (1 - t1) + bx * t1, 0, w)
            self.py1 = np.clip(ay * (1 - t1) + by * t1, 0, h)
            inner = np.where(self.clipped, 0.5 * (self.px0 + self.px1) * (self.py1 - self.py0), 0)

            # Crossing of the vertical line x = W; points on the line count as left of it.
            crosses = (ax > w) != (bx > w)
            self.y_cross = ay + (w - ax) * (dy / dx)
            self.counted = crosses & (self.y_cross >= 0) & (self.y_cross <= h)
            self.direction = np.sign(dx)
            right = np.where(self.counted, w * self.direction * (h - self.y_cross), 0.0)
            self.term = inner + right

            u = np.clip(((w - ax) * dx - ay * dy) / (dx * dx + dy * dy), 0.0, 1.0)
            self.near_corner = np.hypot(ax + u * dx - w, ay + u * dy) <= tol


class _RectCoverage:
    """Coverage of equal axis-aligned tile rectangles (level 0) by the union of polygons.

    For one polygon P and a tile R = [0, W] x [0, H] (local coords), by Green's theorem on
    P ∩ R (of R's sides only the right one adds to ∮ x dy):

        area(P ∩ R) = Σ_edges ∫_{edge ∩ R} x dy  +  W · ∫_0^H [(W+, y) ∈ P] dy
                    = Σ_edges ∫_{edge ∩ R} x dy  +  W · (H · s0 + Σ σ · (H - y_c)),

    s0 = 1 when the corner (W, 0) is inside P, the sum running over edges that cross the line
    x = W at a height y_c in [0, H], σ = ±1 by direction (orientation-corrected per ring). Only
    edges touching R appear, so each edge is visited once per tile it touches, and a tile deep
    inside or outside a polygon costs one point-in-polygon test: edges plus tiles, not edges
    times tiles. Long edges are cut into pieces spanning at most one tile in x and in y, so that
    a box join finds the few tiles each piece touches.

    Where several polygons cover part of one tile, the same formula is applied to the boundary
    of their union: each clipped edge is split where other polygons' edges cross it and the
    stretches inside another polygon are dropped (a point's status from a ray to the right
    border plus the crossings on that border), and the right-border term uses the union's
    coverage of the border. This too involves only the edges in the tile.

    Rounding can make those tests ambiguous only when a tile corner, or a test point, lies
    within ``tol`` of an annotation edge, or edges of different polygons run along each other;
    such (tile, polygon) pairs use an edge-by-edge formula that needs no corner test (the
    oriented boundary clamped onto R), and such union tiles are unioned by GEOS.
    """

    def __init__(
        self,
        parts: np.ndarray,
        bounds: tuple[float, float, float, float],
        origins: np.ndarray,
        ds: tuple[float, float],
    ) -> None:
        self.parts = parts
        shapely.prepare(parts)  # contains_xy per (tile, part) pair
        rx0, ry0, rx1, ry1 = bounds
        self.x0 = (origins[:, 0] + rx0) * ds[0]
        self.x1 = (origins[:, 0] + rx1) * ds[0]
        self.y0 = (origins[:, 1] + ry0) * ds[1]
        self.y1 = (origins[:, 1] + ry1) * ds[1]
        self.w = self.x1 - self.x0
        self.h = self.y1 - self.y0
        self._edges()
        scale = max(
            float(np.abs(self.x0).max()), float(np.abs(self.x1).max()),
            float(np.abs(self.y0).max()), float(np.abs(self.y1).max()),
            float(np.abs(self.ex0).max(initial=0.0)), float(np.abs(self.ey0).max(initial=0.0)),
        )
        # Local coordinates are off by a few ulps of `scale`. Whatever lies within `tol` of a
        # test point is treated as ambiguous, and box joins reach `tol` beyond each tile.
        self.tol = 1e-9 * float(self.w.max() + self.h.max()) + 1e-12 * scale

    def _edges(self) -> None:
        """Polygon edges at level 0, with each ring's orientation weight."""
        rings, ring_part = shapely.get_rings(self.parts, return_index=True)
        exterior = np.r_[True, ring_part[1:] != ring_part[:-1]]
        coords, coord_ring = shapely.get_coordinates(rings, return_index=True)
        same = coord_ring[:-1] == coord_ring[1:]
        ax, ay = coords[:-1, 0][same], coords[:-1, 1][same]
        bx, by = coords[1:, 0][same], coords[1:, 1][same]
        ring = coord_ring[:-1][same]
        nonzero = (ax != bx) | (ay != by)
        ax, ay, bx, by, ring = ax[nonzero], ay[nonzero], bx[nonzero], by[nonzero], ring[nonzero]
        # Shoelace about each ring's first vertex keeps the sign reliable far from the origin.
        first = np.minimum(np.searchsorted(ring, np.arange(len(rings))), max(len(ax) - 1, 0))
        ox, oy = (ax[first], ay[first]) if len(ax) else (np.zeros(len(rings)),) * 2
        cross = (ax - ox[ring]) * (by - oy[ring]) - (bx - ox[ring]) * (ay - oy[ring])
        signed = _sum_by(ring, cross, len(rings))
        # Turns a ring's oriented integral into +area for an exterior, -area for a hole.
        ring_weight = np.sign(signed) * np.where(exterior, 1.0, -1.0)
        self.ex0, self.ey0, self.ex1, self.ey1 = ax, ay, bx, by
        self.edge_part = ring_part[ring]
        self.edge_weight = ring_weight[ring]
        # Rings come part by part, so each part's edges are one contiguous run.
        self.part_first, self.part_count = _group_bounds(self.edge_part, len(self.parts))

    def _short_edges(self) -> tuple[np.ndarray, ...]:
        """Edges cut into pieces spanning at most one tile width and height, so that each touches
        only a few tiles; consecutive pieces share their endpoint exactly."""
        dx, dy = self.ex1 - self.ex0, self.ey1 - self.ey0
        pieces = np.maximum(
            np.maximum(np.ceil(np.abs(dx) / self.w.min()), np.ceil(np.abs(dy) / self.h.min())), 1
        ).astype(np.int64)
        edge, k = _ragged_expand(pieces)
        n = pieces[edge].astype(np.float64)
        t0, t1 = k / n, (k + 1) / n
        ax, ay, bx, by = self.ex0[edge], self.ey0[edge], self.ex1[edge], self.ey1[edge]
        return (
            ax * (1 - t0) + bx * t0, ay * (1 - t0) + by * t0,
            ax * (1 - t1) + bx * t1, ay * (1 - t1) + by * t1,
            edge,
        )

    def coverage(self) -> np.ndarray:
        n_tiles, n_parts = len(self.x0), len(self.parts)
        if len(self.ex0) == 0:
            return np.zeros(n_tiles)
        buckets = _TileBuckets(self.x0, self.y0, float(self.w.max()), float(self.h.max()))

        # Edge pieces near each tile, and their terms.
        sx0, sy0, sx1, sy1, s_edge = self._short_edges()
        piece, tile = buckets.join(
            np.minimum(sx0, sx1), np.minimum(sy0, sy1),
            np.maximum(sx0, sx1), np.maximum(sy0, sy1), self.tol,
        )
        edge = s_edge[piece]
        terms = _EdgeTerms(
            sx0[piece] - self.x0[tile], sy0[piece] - self.y0[tile],
            sx1[piece] - self.x0[tile], sy1[piece] - self.y0[tile],
            self.w[tile], self.h[tile], self.tol,
        )
        weight = self.edge_weight[edge]
        row_keys = tile * n_parts + self.edge_part[edge]

        # Every (tile, part) pair whose boxes meet can cover something.
        pbx0, pby0, pbx1, pby1 = shapely.bounds(self.parts).T
        part, ptile = buckets.join(pbx0, pby0, pbx1, pby1, 2 * self.tol)
        keys = np.union1d(ptile * n_parts + part, row_keys)
        pair_tile, pair_part = keys // n_parts, keys % n_parts
        inside = shapely.contains_xy(
            self.parts[pair_part], self.x1[pair_tile], self.y0[pair_tile]
        ).astype(np.float64)
        row_pair = np.searchsorted(keys, row_keys)
        wh = self.w[pair_tile] * self.h[pair_tile]
        area = wh * inside + _sum_by(row_pair, terms.term * weight, len(keys))
        ambiguous = np.zeros(len(keys), dtype=bool)
        ambiguous[row_pair[terms.near_corner]] = True
        if np.any(ambiguous):
            area[ambiguous] = self._clamped_area(pair_tile[ambiguous], pair_part[ambiguous])

        # Per tile: covered by one polygon, partly covered by one, or by several.
        full_pair = area >= (1 - _AREA_EPS) * wh
        partial = (area > _AREA_EPS * wh) & ~full_pair
        full = np.zeros(n_tiles, dtype=bool)
        full[pair_tile[full_pair]] = True
        partial &= ~full[pair_tile]
        n_partial = np.bincount(pair_tile[partial], minlength=n_tiles)
        coverage = np.zeros(n_tiles)
        single = partial & (n_partial[pair_tile] == 1)
        coverage[pair_tile[single]] = area[single] / wh[single]
        coverage[full] = 1.0

        shared = partial & (n_partial[pair_tile] > 1)
        if np.any(shared):
            union_tiles = np.unique(pair_tile[shared])
            # A union tile falls back to GEOS if any of its pairs was ambiguous.
            unsure = np.zeros(n_tiles, dtype=bool)
            unsure[pair_tile[shared & ambiguous]] = True
            rows = shared[row_pair] & ~unsure[tile]
            pairs = shared & ~unsure[pair_tile]
            union_area, failed = self._union_area(
                union_tiles, tile[rows], self.edge_part[edge[rows]], weight[rows],
                _select(terms, rows), pair_tile[pairs], pair_part[pairs], inside[pairs],
            )
            failed |= unsure[union_tiles]
            coverage[union_tiles] = union_area / (self.w[union_tiles] * self.h[union_tiles])
            if np.any(failed):
                redo = union_tiles[failed]
                coverage[redo] = self._geos_union(redo, pair_tile[shared], pair_part[shared])
        return coverage

    def _clamped_area(self, tiles: np.ndarray, parts: np.ndarray) -> np.ndarray:
        """area(part ∩ tile) from all of the part's edges (no corner test), in chunks."""
        out = np.zeros(len(tiles))
        counts = self.part_count[parts]
        running = np.cumsum(counts)
        budget = _CLAMP_CHUNK_EDGES
        start = 0
        while start < len(tiles):
            done = running[start - 1] if start else 0
            stop = max(start + 1, int(np.searchsorted(running, done + budget, side="right")))
            pair, k = _ragged_expand(counts[start:stop])
            edge = self.part_first[parts[start:stop]][pair] + k
            tile = tiles[start:stop][pair]
            contribution = _clamped_terms(
                self.ex0[edge] - self.x0[tile], self.ey0[edge] - self.y0[tile],
                self.ex1[edge] - self.x0[tile], self.ey1[edge] - self.y0[tile],
                self.w[tile], self.h[tile],
            )
            out[start:stop] = _sum_by(pair, contribution * self.edge_weight[edge], stop - start)
            start = stop
        return out

    def _geos_union(
        self, tiles: np.ndarray, pair_tile: np.ndarray, pair_part: np.ndarray
    ) -> np.ndarray:
        """Coverage of ``tiles`` by GEOS: union of the clipped pieces of the polygons that
        partly cover them (``pair_tile`` ascending)."""
        out = np.empty(len(tiles))
        first = np.searchsorted(pair_tile, tiles, side="left")
        last = np.searchsorted(pair_tile, tiles, side="right")
        for i, t in enumerate(tiles):
            rect = (self.x0[t], self.y0[t], self.x1[t], self.y1[t])
            ids = pair_part[first[i] : last[i]]
            pieces = _clip_pieces(self.parts[ids], shapely.box(*rect), rect)
            polygonal = [p for p in (_polygonal(g) for g in pieces) if not p.is_empty]
            out[i] = shapely.union_all(polygonal).area / (self.w[t] * self.h[t])
        return out

    def _union_area(
        self,
        union_tiles: np.ndarray,
        row_tile: np.ndarray,
        row_part: np.ndarray,
        row_weight: np.ndarray,
        terms: dict[str, np.ndarray],
        pair_tile: np.ndarray,
        pair_part: np.ndarray,
        pair_inside: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Area (level 0) of the union of several polygons in each of ``union_tiles``
        (ascending), and whether that result is unreliable (then GEOS redoes it).

        Rows are (tile, edge piece) of the polygons that partly cover those tiles; pairs are
        their (tile, polygon) pairs, ascending, with the corner status."""
        local = np.searchsorted(union_tiles, row_tile)
        clipped, counted = terms["clipped"], terms["counted"]
        union = _TileUnion(
            w=self.w[union_tiles],
            h=self.h[union_tiles],
            tol=self.tol,
            segments=(
                local[clipped], row_part[clipped], row_weight[clipped],
                terms["px0"][clipped], terms["py0"][clipped],
                terms["px1"][clipped], terms["py1"][clipped],
            ),
            crossings=(
                local[counted], row_part[counted], terms["y_cross"][counted],
                terms["direction"][counted] * row_weight[counted],
            ),
            pairs=(np.searchsorted(union_tiles, pair_tile), pair_part, pair_inside),
            n_parts=len(self.parts),
        )
        return union.area()


class _TileUnion:
    """Area of the union of several polygons inside each of n tiles, from their edges in the
    tile only (tile-local coords, tile t = [0, w[t]] x [0, h[t]], level 0).

    By Green's theorem, as for one polygon: area = Σ ∫ x dy over the union's boundary inside
    the tile + W · (length of the right border inside the union). The union's boundary inside
    the tile is each polygon's clipped edges minus the stretches inside another polygon: every
    clipped edge is split where another polygon's edge crosses it, and each piece is kept when
    its midpoint lies in no other polygon (crossings of the ray from the midpoint to the right
    border, plus that polygon's status on the border). The border's coverage follows from the
    corner statuses and the border crossings, sorted.

    A tile is reported unreliable where rounding could decide a test: a midpoint, or a border
    crossing, within ``tol`` of another polygon's edge, or edges of two polygons running along
    each other (a shared boundary).

    Pairs of items are only formed within one horizontal band of a tile (``_BANDS`` per tile),
    which keeps the all-pairs work small in busy tiles.
    """

    _BANDS = 8

    def __init__(
        self,
        w: np.ndarray,
        h: np.ndarray,
        tol: float,
        segments: tuple[np.ndarray, ...],
        crossings: tuple[np.ndarray, ...],
        pairs: tuple[np.ndarray, np.ndarray, np.ndarray],
        n_parts: int,
    ) -> None:
        self.n, self.w, self.h, self.tol = len(w), w, h, tol
        self.band_height = h / self._BANDS
        tile, part, weight, x0, y0, x1, y1 = segments
        order = np.argsort(tile, kind="stable")
        self.tile, self.part, self.weight = tile[order], part[order], weight[order]
        self.x0, self.y0, self.x1, self.y1 = x0[order], y0[order], x1[order], y1[order]
        self.xmin, self.xmax = np.minimum(self.x0, self.x1), np.maximum(self.x0, self.x1)
        self.ymin, self.ymax = np.minimum(self.y0, self.y1), np.maximum(self.y0, self.y1)
        self.seg_start, self.seg_count = _group_bounds(self.tile, self.n)
        tile, part, y, sign = crossings
        order = np.lexsort((y, tile))
        self.ev_tile, self.ev_part, self.ev_y, self.ev_sign = (
            tile[order], part[order], y[order], sign[order]
        )
        self.ev_start, self.ev_count = _group_bounds(self.ev_tile, self.n)
        pair_tile, pair_part, inside = pairs
        self.n_parts = n_parts
        self.pair_key = pair_tile * n_parts + pair_part  # ascending
        self.pair_inside = inside
        self.inside_total = _sum_by(pair_tile, inside, self.n)
        self.failed = np.zeros(self.n, dtype=bool)
        self._band_members()

    def _band(self, tile: np.ndarray, y: np.ndarray) -> np.ndarray:
        band = np.floor(y / self.band_height[tile]).astype(np.int64)
        return np.clip(band, 0, self._BANDS - 1)

    def _band_members(self) -> None:
        """Segments listed under every band of their tile that their y-range (± tol) meets."""
        lo = self._band(self.tile, self.ymin - self.tol)
        hi = self._band(self.tile, self.ymax + self.tol)
        seg, k = _ragged_expand(hi - lo + 1)
        keys = self.tile[seg] * self._BANDS + lo[seg] + k
        order = np.argsort(keys, kind="stable")
        self.member = seg[order]
        self.band_start, self.band_count = _group_bounds(keys[order], self.n * self._BANDS)

    def _pairs_in_band(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(item, segment) for each item's band key and every segment listed in that band."""
        item, member = _pairs_within_groups(keys, self.band_start, self.band_count)
        return item, self.member[member]

    def area(self) -> tuple[np.ndarray, np.ndarray]:
        split_seg, split_t = self._crossing_points()
        sub_seg, ta, tb = self._pieces(split_seg, split_t)
        x0, y0, x1, y1 = self.x0[sub_seg], self.y0[sub_seg], self.x1[sub_seg], self.y1[sub_seg]
        ax, ay = x0 * (1 - ta) + x1 * ta, y0 * (1 - ta) + y1 * ta
        bx, by = x0 * (1 - tb) + x1 * tb, y0 * (1 - tb) + y1 * tb
        keep = self._outside_others(sub_seg, 0.5 * (ax + bx), 0.5 * (ay + by))
        contribution = self.weight[sub_seg] * 0.5 * (ax + bx) * (by - ay)
        area = _sum_by(self.tile[sub_seg][keep], contribution[keep], self.n)
        area += self.w * self._right_border_covered()
        return area, self.failed

    def _crossing_points(self) -> tuple[np.ndarray, np.ndarray]:
        """Where other polygons' edges cross each area-carrying segment (dy != 0): (segment,
        parameter along it). Flags tiles where two polygons' edges overlap along a line."""
        x0, y0, x1, y1, tol = self.x0, self.y0, self.x1, self.y1, self.tol
        carrier = np.flatnonzero(y0 != y1)
        # Every other segment of the tile (long edges span most bands, so bands gain nothing).
        left, right = _pairs_within_groups(self.tile[carrier], self.seg_start, self.seg_count)
        left = carrier[left]
        near = (
            (self.ymin[left] <= self.ymax[right] + tol)
            & (self.ymin[right] <= self.ymax[left] + tol)
            & (self.xmin[left] <= self.xmax[right] + tol)
            & (self.xmin[right] <= self.xmax[left] + tol)
            & (self.part[left] != self.part[right])
        )
        left, right = left[near], right[near]
        rx, ry = x1[left] - x0[left], y1[left] - y0[left]
        sx, sy = x1[right] - x0[right], y1[right] - y0[right]
        qx, qy = x0[right] - x0[left], y0[right] - y0[left]
        denom = rx * sy - ry * sx
        r_len, s_len = np.hypot(rx, ry), np.hypot(sx, sy)
        parallel = np.abs(denom) <= 1e-12 * r_len * s_len
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (qx * sy - qy * sx) / denom
            u = (qx * ry - qy * rx) / denom
            offset = np.abs(qx * ry - qy * rx) / r_len
            ta = (qx * rx + qy * ry) / (r_len * r_len)
            tb = ((qx + sx) * rx + (qy + sy) * ry) / (r_len * r_len)
            slack_t, slack_u = tol / r_len, tol / s_len
        # On one line and overlapping for more than a point: a shared boundary.
        overlap = np.minimum(np.maximum(ta, tb), 1.0) - np.maximum(np.minimum(ta, tb), 0.0)
        shared = parallel & (offset <= tol) & (overlap * r_len > tol)
        self.failed[self.tile[left[shared]]] = True
        hit = (
            ~parallel
            & (t >= -slack_t) & (t <= 1 + slack_t)
            & (u >= -slack_u) & (u <= 1 + slack_u)
        )
        return left[hit], np.clip(t[hit], 0.0, 1.0)

    def _pieces(
        self, split_seg: np.ndarray, split_t: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The pieces between consecutive split points of each carrier: (segment, t0, t1)."""
        carrier = np.flatnonzero(self.y0 != self.y1)
        seg = np.concatenate([carrier, carrier, split_seg])
        t = np.concatenate([np.zeros(len(carrier)), np.ones(len(carrier)), split_t])
        order = np.lexsort((t, seg))
        seg, t = seg[order], t[order]
        step = (seg[1:] == seg[:-1]) & (t[1:] > t[:-1])
        return seg[:-1][step], t[:-1][step], t[1:][step]

    def _outside_others(self, sub_seg: np.ndarray, mx: np.ndarray, my: np.ndarray) -> np.ndarray:
        """Whether each midpoint lies in none of the tile's other polygons."""
        tol = self.tol
        tile, part = self.tile[sub_seg], self.part[sub_seg]
        own = self.pair_inside[np.searchsorted(self.pair_key, tile * self.n_parts + part)]
        count = self.inside_total[tile] - own  # other polygons' status at the corner (W, 0)

        # Crossings of the ray from the midpoint to the right border.
        item, seg = self._pairs_in_band(tile * self._BANDS + self._band(tile, my))
        py = my[item]
        keep = (
            (self.ymin[seg] <= py + tol)
            & (self.ymax[seg] >= py - tol)
            & (self.xmax[seg] >= mx[item] - tol)
            & (self.part[seg] != part[item])
        )
        item, seg, py = item[keep], seg[keep], py[keep]
        px = mx[item]
        x0, y0, x1, y1 = self.x0[seg], self.y0[seg], self.x1[seg], self.y1[seg]
        sx, sy = x1 - x0, y1 - y0
        with np.errstate(divide="ignore", invalid="ignore"):
            u = np.clip(((px - x0) * sx + (py - y0) * sy) / (sx * sx + sy * sy), 0.0, 1.0)
            x_at = x0 + (py - y0) * (sx / sy)
        touching = np.hypot(x0 + u * sx - px, y0 + u * sy - py) <= tol
        self.failed[tile[item[touching]]] = True
        crossing = ((y0 <= py) != (y1 <= py)) & (x_at > px)
        count += _sum_by(
            item[crossing], np.sign(sy[crossing]) * self.weight[seg[crossing]], len(mx)
        )

        # Other polygons' crossings of the right border below the midpoint's height.
        item, ev = _pairs_within_groups(tile, self.ev_start, self.ev_count)
        other = self.ev_part[ev] != part[item]
        item, ev = item[other], ev[other]
        self.failed[tile[item[np.abs(self.ev_y[ev] - my[item]) <= tol]]] = True
        below = self.ev_y[ev] < my[item]
        count += _sum_by(item[below], self.ev_sign[ev[below]], len(mx))
        return np.abs(count) < 0.5

    def _right_border_covered(self) -> np.ndarray:
        """Per tile, the length of the right border {x = W, 0 <= y <= H} inside the union,
        approached from outside (x = W+): the corner statuses, then one step per crossing."""
        ys, tile, step = self.ev_y, self.ev_tile, self.ev_sign
        level = self.inside_total[tile] + _segmented_cumsum(step, tile, self.n)
        last = np.r_[tile[1:] != tile[:-1], True] if len(tile) else np.zeros(0, dtype=bool)
        following = np.where(last, self.h[tile], np.r_[ys[1:], 0.0][: len(ys)])
        covered = _sum_by(tile, np.where(level > 0.5, following - ys, 0.0), self.n)
        first = self.h.copy()
        has = self.ev_count > 0
        first[has] = ys[self.ev_start[has]]
        covered += np.where(self.inside_total > 0.5, first, 0.0)
        return covered


def _segmented_cumsum(values: np.ndarray, groups: np.ndarray, n: int) -> np.ndarray:
    """Inclusive running sum of ``values`` restarting at each group (``groups`` ascending)."""
    total = np.cumsum(values)
    start, _ = _group_bounds(groups, n)
    before = np.where(start > 0, total[np.maximum(start - 1, 0)], 0.0) if len(total) else 0.0
    return total - np.asarray(before)[groups] if len(total) else total


def _select(terms: _EdgeTerms, rows: np.ndarray) -> dict[str, np.ndarray]:
    names = ("clipped", "px0", "py0", "px1", "py1", "counted", "y_cross", "direction")
    return {name: getattr(terms, name)[rows] for name in names}


def _clamped_terms(
    ax: np.ndarray, ay: np.ndarray, bx: np.ndarray, by: np.ndarray,
    w: np.ndarray, h: np.ndarray,
) -> np.ndarray:
    """Per edge: ∫ X dY along the edge with each point clamped onto the tile [0, w] x [0, h].

    Summed over a closed ring this is the ring's oriented area inside the tile: clamping moves
    stretches outside onto the tile border without sweeping over any point inside it. Between
    the parameters where x or y crosses a tile side the clamped point moves linearly, so the
    trapezoid rule over those breakpoints is exact.
    """
    dx, dy = bx - ax, by - ay
    with np.errstate(divide="ignore", invalid="ignore"):
        raw = (-ax / dx, (w - ax) / dx, -ay / dy, (h - ay) / dy)
    # Non-crossings (nan, inf) become harmless breakpoints at 0.
    a, b, c, d = (np.clip(np.nan_to_num(t, nan=0.0, posinf=0.0, neginf=0.0), 0.0, 1.0)
                  for t in raw)
    # Sort the four breakpoints with a five-comparator network.
    a, b = np.minimum(a, b), np.maximum(a, b)
    c, d = np.minimum(c, d), np.maximum(c, d)
    a, c = np.minimum(a, c), np.maximum(a, c)
    b, d = np.minimum(b, d), np.maximum(b, d)
    b, c = np.minimum(b, c), np.maximum(b, c)
    total = np.zeros_like(ax)
    px, py = np.clip(ax, 0, w), np.clip(ay, 0, h)
    for t in (a, b, c, d, None):
        if t is None:
            qx, qy = np.clip(bx, 0, w), np.clip(by, 0, h)
        else:
            qx, qy = np.clip(ax * (1 - t) + bx * t, 0, w), np.clip(ay * (1 - t) + by * t, 0, h)
        total += (px + qx) * (qy - py)
        px, py = qx, qy
    return 0.5 * total
