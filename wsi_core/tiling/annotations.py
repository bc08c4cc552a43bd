"""Annotation geometry and coverage per tile: the public API, and its GEOS route.

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
rounding, far below 1e-9): for an axis-aligned rectangular ROI (exactly one, as
:func:`wsi_core.geometry.is_axis_aligned_rectangle` decides for the overlay kernel too) the
kernel in :mod:`wsi_core.tiling.rect_coverage`, for any other ROI the GEOS route in this
module.

Only polygonal annotation parts carry area: points and lines are ignored, geometry
collections contribute their polygons, and an invalid polygon is repaired with ``make_valid``
(keeping its polygonal part) rather than allowed to crash an intersection. Overlapping
annotations count once (the union is measured).

Memory is bounded by the work, not by the tile count: annotations are first cut to the tiles'
surroundings (so a vertex at 1e12 costs what one at the grid's edge does), and every route
works through the tiles in batches sized by the annotation vertices or edges they meet.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TypeAlias

import numpy as np
import shapely
from shapely import Geometry, MultiPolygon, Polygon

from wsi_core.geometry import (
    clip_pieces,
    clip_to_rect,
    explode_polygons,
    force_2d,
    is_axis_aligned_rectangle,
    polygonal_part,
    repair_polygons,
    valid_polygon_parts,
)
from wsi_core.progress import Progress, Throttled
from wsi_core.tiling.ragged import bounded_chunks, sum_by
from wsi_core.tiling.tile_buckets import TileBuckets

Downsample: TypeAlias = float | Sequence[float] | np.ndarray

# Batches of tiles on the GEOS routes: about this many annotation vertices met per batch (the
# pieces cut from them cost some 100 bytes a vertex), each tile counting for at least
# _TILE_VERTICES (its placed ROI and its result), so a batch holds 4096 tiles at most.
_BATCH_VERTICES = 1 << 20
_TILE_VERTICES = 256

# GEOS checks validity in exact arithmetic that overflows for coordinates near 1e300 (is_valid
# raises); up to here it is sound (tested up to 1e200).
_GEOS_SAFE = 1e100


# --------------------------------------------------------------------------------------------
# Input normalisation


def _polygon_parts(annotations: Iterable[Geometry | None]) -> np.ndarray:
    """The annotations as an object array of valid, non-empty 2-D Polygons (level 0).

    Multi-part geometries and collections are exploded; points and lines are dropped; invalid
    polygons are repaired with ``make_valid`` and their polygonal part kept
    (:func:`~wsi_core.geometry.valid_polygon_parts`).
    """
    return valid_polygon_parts(_geometry_array(annotations))


def _geometry_array(annotations: Iterable[Geometry | None]) -> np.ndarray:
    """The annotations as an object array, None left out; TypeError for a non-geometry."""
    items = [g for g in annotations if g is not None]
    for g in items:
        if not isinstance(g, Geometry):
            raise TypeError(f"annotations must be shapely geometries, got {type(g).__name__}")
    geoms = np.empty(len(items), dtype=object)
    geoms[:] = items
    return geoms


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
    values = np.asarray(downsample, dtype=np.float64)
    if values.ndim == 0:
        dsx = dsy = float(values)
    else:
        dsx, dsy = (float(v) for v in values)
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


def _grid_rect(
    roi: Geometry, origins: np.ndarray, ds: tuple[float, float]
) -> tuple[float, float, float, float]:
    """The level-0 rectangle holding every tile's placed ROI, widened on each side by the
    grid's own larger extent (one ROI size at least): annotations reaching beyond it are cut
    to it before any per-edge work. The margin keeps the edges made by the cut well away from
    every tile, and leaves uncut the annotations that merely overhang the grid, as annotations
    at a slide's border do (cut edges of overlapping annotations would run along each other)."""
    rx0, ry0, rx1, ry1 = roi.bounds
    x0 = (origins[:, 0].min() + rx0) * ds[0]
    y0 = (origins[:, 1].min() + ry0) * ds[1]
    x1 = (origins[:, 0].max() + rx1) * ds[0]
    y1 = (origins[:, 1].max() + ry1) * ds[1]
    margin = max(x1 - x0, y1 - y0)
    return x0 - margin, y0 - margin, x1 + margin, y1 + margin


def _parts_near_grid(
    annotations: Iterable[Geometry | None],
    roi: Geometry,
    origins: np.ndarray,
    ds: tuple[float, float],
) -> np.ndarray:
    """:func:`_polygon_parts` cut to :func:`_grid_rect` (level 0). Inside every tile they are
    unchanged; only the far parts of polygons that reach beyond the grid are gone.

    GEOS cannot check the validity of a polygon with a vertex near 1e300 (its exact arithmetic
    overflows), so polygons with a vertex beyond ``_GEOS_SAFE`` are cut first and repaired
    after, by :func:`~wsi_core.geometry.clip_to_rect`; for a valid polygon the order makes no
    difference.
    """
    geoms = _geometry_array(annotations)
    if len(origins) == 0:
        return geoms[:0]  # no tile, nothing to measure
    rect = _grid_rect(roi, origins, ds)
    polygons = explode_polygons(force_2d(geoms))
    huge = np.abs(shapely.bounds(polygons)).max(axis=1, initial=0.0) > _GEOS_SAFE
    parts = repair_polygons(polygons[~huge])
    return np.concatenate([clip_to_rect(parts, rect), clip_to_rect(polygons[huge], rect)])


def _tile_batches(
    parts: np.ndarray, roi: Geometry, origins: np.ndarray, ds: tuple[float, float]
) -> Iterator[tuple[int, int]]:
    """Ranges ``[start, stop)`` of tiles whose ROIs' bounding boxes meet about
    ``_BATCH_VERTICES`` annotation vertices together (see ``_TILE_VERTICES``)."""
    n = len(origins)
    vertices = np.zeros(n)
    if n and len(parts):
        rx0, ry0, rx1, ry1 = roi.bounds
        buckets = TileBuckets(
            (origins[:, 0] + rx0) * ds[0],
            (origins[:, 1] + ry0) * ds[1],
            (rx1 - rx0) * ds[0],
            (ry1 - ry0) * ds[1],
        )
        bx0, by0, bx1, by1 = shapely.bounds(parts).T
        part, tile = buckets.join(bx0, by0, bx1, by1, 0.0)
        counts = shapely.get_num_coordinates(parts)[part]
        vertices = sum_by(tile, counts, n)
    return bounded_chunks(vertices + _TILE_VERTICES, _BATCH_VERTICES)


def _place_rois(roi: Geometry, origins: np.ndarray, ds: tuple[float, float]) -> np.ndarray:
    """The ROI of every tile at level 0: ``(roi + origin) * downsample``, vectorised."""
    n = len(origins)
    copies = np.full(n, roi, dtype=object)
    per_copy = shapely.get_num_coordinates(roi)
    scale = np.array(ds)

    def place(coords: np.ndarray) -> np.ndarray:
        """Tile-relative level coords -> level-0 pixels, copy by copy."""
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


def _boundary_pairs(index: _Index, placed: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For tiles whose ROIs are ``placed`` (level 0): which tiles lie wholly inside one
    annotation part, and the (tile, part) pairs that meet the other tiles, sorted by tile then
    part. The ``contains_properly`` test spares whole tiles any clipping."""
    full = np.zeros(len(placed), dtype=bool)
    tiles, parts = _intersecting_pairs(index, placed)
    if len(tiles) == 0:
        return full, tiles, parts
    inside = shapely.contains_properly(index.parts[parts], placed[tiles])
    full[tiles[inside]] = True
    boundary = ~full[tiles]
    return full, tiles[boundary], parts[boundary]


def _union_by_tile(tiles: np.ndarray, pieces: np.ndarray, n_tiles: int) -> np.ndarray:
    """Per tile, the polygonal union of its pieces (``tiles`` sorted); None where it has none."""
    out = np.full(n_tiles, None, dtype=object)
    if len(tiles) == 0:
        return out
    starts = np.flatnonzero(np.r_[True, tiles[1:] != tiles[:-1]])
    ends = np.r_[starts[1:], len(tiles)]
    single = ends - starts == 1
    out[tiles[starts[single]]] = pieces[starts[single]]
    for s, e in zip(starts[~single], ends[~single], strict=True):
        polygonal = [polygonal_part(p) for p in pieces[s:e]]
        out[tiles[s]] = shapely.union_all([p for p in polygonal if not p.is_empty])
    return out


def _tile_geometries(
    index: _Index, roi: Geometry, origins: np.ndarray, ds: tuple[float, float]
) -> list[Geometry]:
    """Union of the annotations ∩ ROI for each tile, in tile-relative level coords."""
    n = len(origins)
    full, tiles, parts = _boundary_pairs(index, _place_rois(roi, origins, ds))
    result: list[Geometry] = [Polygon()] * n
    if len(tiles) == 0 and not np.any(full):
        return result

    # Bring only the candidate annotations into the tile frame (not the ROI to level 0) so that
    # the ROI's own edges come back exactly.
    candidates = index.parts[parts]
    scale = np.array(ds)
    offsets = np.repeat(origins[tiles], shapely.get_num_coordinates(candidates), axis=0)
    local = shapely.transform(candidates, lambda c: c / scale - offsets)
    rect = roi.bounds if is_axis_aligned_rectangle(roi) else None
    pieces = clip_pieces(local, roi, rect)
    unions = _union_by_tile(tiles, pieces, n)
    for i in range(n):
        if full[i]:
            result[i] = roi
        elif unions[i] is not None:
            result[i] = polygonal_part(unions[i])
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
    index = _Index(_parts_near_grid(annotations, roi, origins, ds))
    return _iterate_tiles(index, roi, origins, ds)


def _iterate_tiles(
    index: _Index, roi: Geometry, origins: np.ndarray, ds: tuple[float, float]
) -> Iterator[Geometry]:
    """:func:`_tile_geometries` batch by batch (:func:`_tile_batches`), so neither a huge grid
    nor a dense one ever holds all its pieces and results."""
    for start, stop in _tile_batches(index.parts, roi, origins, ds):
        yield from _tile_geometries(index, roi, origins[start:stop], ds)


# --------------------------------------------------------------------------------------------
# Coverage


def annotation_coverage(
    annotations: Iterable[Geometry | None],
    roi: Polygon | MultiPolygon,
    coordinates: Iterable[Sequence[float]] | np.ndarray,
    downsample: Downsample,
    *,
    progress: Progress | None = None,
) -> np.ndarray:
    """Coverage fraction of every tile: ``area(union(annotations) ∩ placed ROI) / area(ROI)``.

    Same arguments and frames as :func:`tile_annotations`; returns a float64 array ``(N,)`` in
    ``[0, 1]`` equal to ``geometry.area / roi.area`` of the geometries it yields, to rounding.
    ``progress(done, total)`` hears of the tiles measured, batch by batch (see
    :class:`~wsi_core.progress.Throttled`).

    For an axis-aligned rectangular ROI (the usual tile box) a compiled kernel computes each
    tile's area exactly (Green's theorem): the boundary of the annotations' union is found once
    for the whole grid (edges cut where other annotations' edges cross them, the pieces inside
    another annotation dropped; GEOS unions the groups whose edges touch or run along each
    other), then each tile sums that boundary's terms inside it, and reads whether its right
    side lies in the union from running counts of crossings along the vertical line through it.
    The cost grows with edges plus crossings plus tiles, not edges times tiles. Any other ROI
    shape takes the GEOS route: one bulk ``STRtree.query(predicate="intersects")`` per batch of
    tiles, a ``contains_properly`` fast path, vectorised intersections, and a union only where
    several polygons meet.

    Memory stays bounded (a few hundred MB for 20,000 cells or 76,000 small squares on a
    4096 x 4096 region, at any level) and a vertex far outside the grid, even at 1e300, costs
    no more than one at its edge.
    """
    roi = _check_roi(roi)
    ds = _as_downsample(downsample)
    origins = _as_origins(coordinates)
    parts = _parts_near_grid(annotations, roi, origins, ds)
    n = len(origins)
    reporter = Throttled(progress, n)
    if n == 0 or len(parts) == 0:
        reporter.finish()
        return np.zeros(n, dtype=np.float64)
    if is_axis_aligned_rectangle(roi):
        # Compiled by numba, which costs 120 MB and a third of a second to import: only here.
        from wsi_core.tiling.rect_coverage import RectCoverage

        coverage = RectCoverage(parts, roi.bounds, origins, ds).coverage(reporter.add)
    else:
        coverage = _general_coverage(parts, roi, origins, ds, reporter.add)
    reporter.finish()
    return np.clip(coverage, 0.0, 1.0)


def _general_coverage(
    parts: np.ndarray,
    roi: Geometry,
    origins: np.ndarray,
    ds: tuple[float, float],
    done: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Coverage fractions by GEOS for any ROI shape: the ROIs are placed at level 0 and
    intersected with the annotation parts (level 0) there, batch by batch
    (:func:`_tile_batches`); ``done(tiles)`` hears of each batch."""
    index = _Index(parts)
    coverage = np.zeros(len(origins), dtype=np.float64)
    for start, stop in _tile_batches(parts, roi, origins, ds):
        coverage[start:stop] = _batch_coverage(index, roi, origins[start:stop], ds)
        if done is not None:
            done(stop - start)
    return coverage


def _batch_coverage(
    index: _Index, roi: Geometry, origins: np.ndarray, ds: tuple[float, float]
) -> np.ndarray:
    """:func:`_general_coverage` of one batch of tiles."""
    n = len(origins)
    placed = _place_rois(roi, origins, ds)
    roi_area = roi.area * ds[0] * ds[1]  # level-0 square pixels
    full, tiles, part_ids = _boundary_pairs(index, placed)
    coverage = np.zeros(n, dtype=np.float64)
    pieces = shapely.intersection(index.parts[part_ids], placed[tiles])
    unions = _union_by_tile(tiles, pieces, n)
    has = np.array([u is not None for u in unions], dtype=bool)
    if np.any(has):
        coverage[has] = shapely.area(unions[has]) / roi_area
    coverage[full] = 1.0
    return coverage
