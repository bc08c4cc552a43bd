"""Exact coverage of axis-aligned rectangular tiles by a union of polygons (NumPy kernel).

The fast route of :func:`wsi_core.tiling.annotations.annotation_coverage` for an axis-aligned
rectangular ROI. Everything here is at level 0: tile rectangles and polygon edges are in
level-0 pixels, and per-tile work is in coordinates local to each tile rectangle
R = [0, W] x [0, H] (level-0 pixels from the tile's (min x, min y) corner). Areas are level-0
square pixels; :meth:`RectCoverage.coverage` returns them as fractions of each tile's area.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import shapely

from wsi_core.geometry import clip_pieces, polygonal_part
from wsi_core.tiling.ragged import at_most, bounded_chunks, group_bounds, ragged_expand, sum_by
from wsi_core.tiling.tile_buckets import TileBuckets
from wsi_core.tiling.tile_union import TileUnion

# Edges per batch in the edge-by-edge fallback: keeps its temporaries to tens of MB.
_CLAMP_CHUNK_EDGES = 1 << 20

# (edge piece, tile) rows plus (polygon, tile) pairs per chunk of tiles. A row costs about
# 300 bytes of temporaries, so a chunk stays near 100 MB however dense the polygons.
_CHUNK_ROWS = 1 << 18
# ... and at most this many tiles, so that a long call reports its progress now and then.
_CHUNK_TILES = 1 << 15

# A tile where several polygons meet goes to GEOS rather than to TileUnion when their union
# has more clipped edges than this in it: TileUnion's pair work grows with the square of a
# tile's edges, a GEOS union with the edges times their logarithm.
_UNION_MAX_SEGMENTS = 128

# Polygons per GEOS union: a tile with more is unioned half by half (_geos_union_area).
_GEOS_UNION_PARTS = 4096

# Relative slack below which a per-tile area counts as empty or as the whole ROI. It decides only
# which tiles need a union; the effect on a coverage value is at most this much.
_AREA_EPS = 1e-12


class _EdgeTerms:
    """Per (tile, edge) row, in tile-local coords: the edge clipped to the closed tile, its
    crossing of the line x = W, its share of the area formula, and whether it passes within
    ``tol`` of the corner (W, 0)."""

    def __init__(
        self,
        ax: np.ndarray,
        ay: np.ndarray,
        bx: np.ndarray,
        by: np.ndarray,
        w: np.ndarray,
        h: np.ndarray,
        tol: float,
    ) -> None:
        dx, dy = bx - ax, by - ay
        with np.errstate(divide="ignore", invalid="ignore"):
            # Liang-Barsky clip to the closed tile.
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


class _Rows(NamedTuple):
    """(tile, edge piece) rows: every short edge piece that comes near a tile."""

    tile: np.ndarray
    edge: np.ndarray  # index of the polygon edge the piece was cut from
    part: np.ndarray  # polygon of that edge
    weight: np.ndarray  # orientation weight of the edge's ring
    terms: _EdgeTerms


class _Pairs(NamedTuple):
    """(tile, polygon) pairs that can cover something, ascending by tile then polygon."""

    tile: np.ndarray
    part: np.ndarray
    inside: np.ndarray  # 1.0 where the tile corner (W, 0) is inside the polygon, else 0.0
    tile_area: np.ndarray  # W · H, level-0 square pixels
    area: np.ndarray  # area(polygon ∩ tile), level-0 square pixels
    ambiguous: np.ndarray  # area came from the corner-free fallback
    of_row: np.ndarray  # the pair of each row of the _Rows it was built from


class _ByTile:
    """(item, tile) matches from a box join, sorted by tile so that a range of tiles is one
    slice."""

    def __init__(self, item: np.ndarray, tile: np.ndarray, n_tiles: int) -> None:
        order = np.argsort(tile, kind="stable")  # keeps each tile's items in join order
        self.item, self.tile = item[order], tile[order]
        self.start, self.count = group_bounds(self.tile, n_tiles)

    def take(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        """(item, tile) of tiles ``lo..hi-1``."""
        first, last = self.start[lo], self.start[hi - 1] + self.count[hi - 1]
        return self.item[first:last], self.tile[first:last]


class RectCoverage:
    """Coverage of equal axis-aligned tile rectangles (level 0) by the union of polygons.

    For one polygon P and a tile R = [0, W] x [0, H] (local coords), by Green's theorem on
    P ∩ R (of R's sides only the right one adds to ∮ x dy):

        area(P ∩ R) = Σ_edges ∫_{edge ∩ R} x dy  +  W · ∫_0^H [(W+, y) ∈ P] dy
                    = Σ_edges ∫_{edge ∩ R} x dy  +  W · (H · s0 + Σ d · (H - y_c)),

    s0 = 1 when the corner (W, 0) is inside P, the sum running over edges that cross the line
    x = W at a height y_c in [0, H], d = ±1 by direction (orientation-corrected per ring). Only
    edges touching R appear, so each edge is visited once per tile it touches, and a tile deep
    inside or outside a polygon costs one point-in-polygon test: edges plus tiles, not edges
    times tiles. Long edges are cut into pieces spanning at most one tile in x and in y, so that
    a box join finds the few tiles each piece touches.

    Where several polygons cover part of one tile, the same formula is applied to the boundary
    of their union (:class:`~wsi_core.tiling.tile_union.TileUnion`): each clipped edge is split
    where other polygons' edges cross it and the stretches inside another polygon are dropped
    (a point's status from a ray to the right border plus the crossings on that border), and the
    right-border term uses the union's coverage of the border. This too involves only the edges
    in the tile. Its pair work grows with the square of the tile's edges, so a tile crowded
    with polygons (a field of cells) is unioned by GEOS instead.

    Rounding can make those tests ambiguous only when a tile corner, or a test point, lies
    within ``tol`` of an annotation edge, or edges of different polygons run along each other;
    such (tile, polygon) pairs use an edge-by-edge formula that needs no corner test (the
    oriented boundary clamped onto R), and such union tiles are unioned by GEOS.

    Memory: the joins of edge pieces and polygons to tiles are kept as index pairs only; the
    per-row work is done for chunks of tiles of about ``_CHUNK_ROWS`` rows, so its temporaries
    are bounded whatever the density of polygons per tile.

    ``parts``: valid non-empty Polygons at level 0, best already cut to the tiles' surroundings
    (:func:`wsi_core.geometry.clip_to_rect`): an edge costs one piece per tile it spans, and
    ``tol`` grows with the largest coordinate. ``bounds``: the ROI rectangle in the tile frame
    (level coords). ``origins``: ``(N, 2)`` tile origins in level coords. ``ds``: ``(x, y)``
    level-0 pixels per level pixel.
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
            float(np.abs(self.x0).max()),
            float(np.abs(self.x1).max()),
            float(np.abs(self.y0).max()),
            float(np.abs(self.y1).max()),
            float(np.abs(self.ex0).max(initial=0.0)),
            float(np.abs(self.ey0).max(initial=0.0)),
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
        signed = sum_by(ring, cross, len(rings))
        # Turns a ring's oriented integral into +area for an exterior, -area for a hole.
        ring_weight = np.sign(signed) * np.where(exterior, 1.0, -1.0)
        self.ex0, self.ey0, self.ex1, self.ey1 = ax, ay, bx, by
        self.edge_part = ring_part[ring]
        self.edge_weight = ring_weight[ring]
        # Rings come part by part, so each part's edges are one contiguous run.
        self.part_first, self.part_count = group_bounds(self.edge_part, len(self.parts))

    def coverage(self, done: Callable[[int], None] | None = None) -> np.ndarray:
        """Coverage fraction of every tile (area covered / tile area), float64 ``(N,)``,
        computed for chunks of tiles with about ``_CHUNK_ROWS`` rows and pairs each, and
        ``_CHUNK_TILES`` tiles at most; ``done(tiles)`` hears of each chunk. A tile's value
        does not depend on the chunk it is in."""
        coverage = np.zeros(len(self.x0))
        if len(self.ex0) == 0:
            return coverage
        pieces, near_pieces, near_parts = self._joins()
        chunks = bounded_chunks(near_pieces.count + near_parts.count, _CHUNK_ROWS)
        for lo, hi in at_most(chunks, _CHUNK_TILES):
            rows = self._rows(pieces, *near_pieces.take(lo, hi))
            pairs = self._pairs(*near_parts.take(lo, hi), rows)
            coverage[lo:hi] = self._chunk_coverage(lo, hi, rows, pairs)
            if done is not None:
                done(hi - lo)
        return coverage

    def _joins(self) -> tuple[tuple[np.ndarray, ...], _ByTile, _ByTile]:
        """The edge pieces (:meth:`_short_edges`), and which pieces and which polygons' boxes
        come near each tile: index pairs only, for all tiles at once."""
        n = len(self.x0)
        buckets = TileBuckets(self.x0, self.y0, float(self.w.max()), float(self.h.max()))
        pieces = self._short_edges()
        sx0, sy0, sx1, sy1, _ = pieces
        lo_x, lo_y = np.minimum(sx0, sx1), np.minimum(sy0, sy1)
        hi_x, hi_y = np.maximum(sx0, sx1), np.maximum(sy0, sy1)
        near_pieces = _ByTile(*buckets.join(lo_x, lo_y, hi_x, hi_y, self.tol), n)
        pbx0, pby0, pbx1, pby1 = shapely.bounds(self.parts).T
        near_parts = _ByTile(*buckets.join(pbx0, pby0, pbx1, pby1, 2 * self.tol), n)
        return pieces, near_pieces, near_parts

    def _short_edges(self) -> tuple[np.ndarray, ...]:
        """Edges cut into pieces spanning at most one tile width and height, so that each touches
        only a few tiles; consecutive pieces share their endpoint exactly. Returns level-0
        ``(x0, y0, x1, y1)`` of each piece and the edge it was cut from."""
        dx, dy = self.ex1 - self.ex0, self.ey1 - self.ey0
        pieces = np.maximum(
            np.maximum(np.ceil(np.abs(dx) / self.w.min()), np.ceil(np.abs(dy) / self.h.min())), 1
        ).astype(np.int64)
        edge, k = ragged_expand(pieces)
        n = pieces[edge].astype(np.float64)
        t0, t1 = k / n, (k + 1) / n
        ax, ay, bx, by = self.ex0[edge], self.ey0[edge], self.ex1[edge], self.ey1[edge]
        return (
            ax * (1 - t0) + bx * t0,
            ay * (1 - t0) + by * t0,
            ax * (1 - t1) + bx * t1,
            ay * (1 - t1) + by * t1,
            edge,
        )

    def _rows(self, pieces: tuple[np.ndarray, ...], piece: np.ndarray, tile: np.ndarray) -> _Rows:
        """The rows of edge ``piece`` near ``tile``, with their terms in that tile's local
        coords (``pieces`` from :meth:`_short_edges`)."""
        sx0, sy0, sx1, sy1, s_edge = pieces
        edge = s_edge[piece]
        terms = _EdgeTerms(
            sx0[piece] - self.x0[tile],
            sy0[piece] - self.y0[tile],
            sx1[piece] - self.x0[tile],
            sy1[piece] - self.y0[tile],
            self.w[tile],
            self.h[tile],
            self.tol,
        )
        return _Rows(tile, edge, self.edge_part[edge], self.edge_weight[edge], terms)

    def _pairs(self, part: np.ndarray, tile: np.ndarray, rows: _Rows) -> _Pairs:
        """Every (tile, polygon) pair whose boxes meet (``part`` near ``tile``, from the box join)
        or that shares a row, with area(polygon ∩ tile) by the one-polygon formula; pairs with an
        edge near the corner (W, 0) use the corner-free fallback instead."""
        n_parts = len(self.parts)
        row_keys = rows.tile * n_parts + rows.part
        keys = np.union1d(tile * n_parts + part, row_keys)
        pair_tile, pair_part = keys // n_parts, keys % n_parts
        inside = shapely.contains_xy(
            self.parts[pair_part], self.x1[pair_tile], self.y0[pair_tile]
        ).astype(np.float64)
        of_row = np.searchsorted(keys, row_keys)
        wh = self.w[pair_tile] * self.h[pair_tile]
        area = wh * inside + sum_by(of_row, rows.terms.term * rows.weight, len(keys))
        ambiguous = np.zeros(len(keys), dtype=bool)
        ambiguous[of_row[rows.terms.near_corner]] = True
        if np.any(ambiguous):
            area[ambiguous] = self._clamped_area(pair_tile[ambiguous], pair_part[ambiguous])
        return _Pairs(pair_tile, pair_part, inside, wh, area, ambiguous, of_row)

    def _chunk_coverage(self, lo: int, hi: int, rows: _Rows, pairs: _Pairs) -> np.ndarray:
        """Coverage of tiles ``lo..hi-1`` from their rows and pairs."""
        coverage, shared = self._single_coverage(lo, hi, pairs)
        if np.any(shared):
            self._shared_coverage(lo, coverage, rows, pairs, shared)
        return coverage

    def _single_coverage(self, lo: int, hi: int, pairs: _Pairs) -> tuple[np.ndarray, np.ndarray]:
        """Coverage of tiles ``lo..hi-1`` where one polygon covers the tile wholly, or only one
        covers it partly (0 elsewhere); and the mask of pairs in tiles several polygons cover
        partly."""
        n_tiles = hi - lo
        local = pairs.tile - lo
        area, wh = pairs.area, pairs.tile_area
        full_pair = area >= (1 - _AREA_EPS) * wh
        partial = (area > _AREA_EPS * wh) & ~full_pair
        full = np.zeros(n_tiles, dtype=bool)
        full[local[full_pair]] = True
        partial &= ~full[local]
        n_partial = np.bincount(local[partial], minlength=n_tiles)
        coverage = np.zeros(n_tiles)
        single = partial & (n_partial[local] == 1)
        coverage[local[single]] = area[single] / wh[single]
        coverage[full] = 1.0
        shared = partial & (n_partial[local] > 1)
        return coverage, shared

    def _shared_coverage(
        self, lo: int, coverage: np.ndarray, rows: _Rows, pairs: _Pairs, shared: np.ndarray
    ) -> None:
        """Fill in ``coverage`` (of tiles ``lo..``) where several polygons cover a tile partly
        (``shared`` pairs): the union's area from edges, or from GEOS where that is unreliable
        or the tile is crowded."""
        union_tiles = np.unique(pairs.tile[shared])
        shared_rows = shared[pairs.of_row]
        segments = np.bincount(
            rows.tile[shared_rows & rows.terms.clipped] - lo, minlength=len(coverage)
        )
        # GEOS takes the tiles where any pair was ambiguous, and the crowded ones.
        to_geos = segments > _UNION_MAX_SEGMENTS
        to_geos[pairs.tile[shared & pairs.ambiguous] - lo] = True
        by_edges = union_tiles[~to_geos[union_tiles - lo]]
        if len(by_edges):
            row_mask = shared_rows & ~to_geos[rows.tile - lo]
            pair_mask = shared & ~to_geos[pairs.tile - lo]
            area, failed = self._union_area(by_edges, rows, row_mask, pairs, pair_mask)
            coverage[by_edges - lo] = area / (self.w[by_edges] * self.h[by_edges])
            to_geos[by_edges[failed] - lo] = True
        redo = union_tiles[to_geos[union_tiles - lo]]
        if len(redo):
            coverage[redo - lo] = self._geos_union(redo, pairs.tile[shared], pairs.part[shared])

    def _union_area(
        self,
        union_tiles: np.ndarray,
        rows: _Rows,
        row_mask: np.ndarray,
        pairs: _Pairs,
        pair_mask: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Area (level 0) of the union of several polygons in each of ``union_tiles``
        (ascending), and whether that result is unreliable (then GEOS redoes it).

        ``row_mask`` selects the rows, and ``pair_mask`` the pairs, of the polygons that partly
        cover those tiles."""
        local = np.searchsorted(union_tiles, rows.tile[row_mask])
        part, weight = rows.part[row_mask], rows.weight[row_mask]
        terms = rows.terms
        clipped, counted = terms.clipped[row_mask], terms.counted[row_mask]
        px0, py0 = terms.px0[row_mask][clipped], terms.py0[row_mask][clipped]
        px1, py1 = terms.px1[row_mask][clipped], terms.py1[row_mask][clipped]
        union = TileUnion(
            w=self.w[union_tiles],
            h=self.h[union_tiles],
            tol=self.tol,
            segments=(local[clipped], part[clipped], weight[clipped], px0, py0, px1, py1),
            crossings=(
                local[counted],
                part[counted],
                terms.y_cross[row_mask][counted],
                terms.direction[row_mask][counted] * weight[counted],
            ),
            pairs=(
                np.searchsorted(union_tiles, pairs.tile[pair_mask]),
                pairs.part[pair_mask],
                pairs.inside[pair_mask],
            ),
            n_parts=len(self.parts),
        )
        return union.area()

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
            parts = self.parts[pair_part[first[i] : last[i]]]
            out[i] = _geos_union_area(parts, rect) / (self.w[t] * self.h[t])
        return out

    def _clamped_area(self, tiles: np.ndarray, parts: np.ndarray) -> np.ndarray:
        """area(part ∩ tile), level-0 square pixels, from all of the part's edges (no corner
        test), in chunks of about ``_CLAMP_CHUNK_EDGES`` edges."""
        out = np.zeros(len(tiles))
        counts = self.part_count[parts]
        for start, stop in bounded_chunks(counts, _CLAMP_CHUNK_EDGES):
            pair, k = ragged_expand(counts[start:stop])
            edge = self.part_first[parts[start:stop]][pair] + k
            tile = tiles[start:stop][pair]
            contribution = _clamped_terms(
                self.ex0[edge] - self.x0[tile],
                self.ey0[edge] - self.y0[tile],
                self.ex1[edge] - self.x0[tile],
                self.ey1[edge] - self.y0[tile],
                self.w[tile],
                self.h[tile],
            )
            out[start:stop] = sum_by(pair, contribution * self.edge_weight[edge], stop - start)
        return out


def _geos_union_area(parts: np.ndarray, rect: tuple[float, float, float, float]) -> float:
    """area(union(parts) ∩ rect), level-0 square pixels, by GEOS.

    With more than ``_GEOS_UNION_PARTS`` polygons the rectangle is halved and each half done
    alone, so no single union holds all the polygons of a huge tile.
    """
    if len(parts) > _GEOS_UNION_PARTS:
        halves = _halves(parts, rect)
        if halves is not None:
            return sum(_geos_union_area(members, half) for members, half in halves)
    x0, y0, x1, y1 = rect
    bx0, by0, bx1, by1 = shapely.bounds(parts).T
    # Polygons inside the rectangle (most cells in a tile) need no clipping.
    inside = (bx0 >= x0) & (by0 >= y0) & (bx1 <= x1) & (by1 <= y1)
    pieces = clip_pieces(parts[~inside], shapely.box(*rect), rect)
    polygonal = [p for p in (polygonal_part(g) for g in pieces) if not p.is_empty]
    return float(shapely.union_all([*parts[inside], *polygonal]).area)


def _halves(
    parts: np.ndarray, rect: tuple[float, float, float, float]
) -> list[tuple[np.ndarray, tuple[float, float, float, float]]] | None:
    """``rect`` (level 0) cut in two across its longer side, each half with the polygons whose
    boxes meet it; None when that splits nothing (every polygon spans the cut)."""
    x0, y0, x1, y1 = rect
    if x1 - x0 >= y1 - y0:
        mid = 0.5 * (x0 + x1)
        halves = [(x0, y0, mid, y1), (mid, y0, x1, y1)]
    else:
        mid = 0.5 * (y0 + y1)
        halves = [(x0, y0, x1, mid), (x0, mid, x1, y1)]
    bx0, by0, bx1, by1 = shapely.bounds(parts).T
    split = [
        (parts[(bx0 <= hx1) & (bx1 >= hx0) & (by0 <= hy1) & (by1 >= hy0)], (hx0, hy0, hx1, hy1))
        for hx0, hy0, hx1, hy1 in halves
    ]
    if all(len(members) < len(parts) for members, _ in split):
        return split
    return None


def _clamped_terms(
    ax: np.ndarray,
    ay: np.ndarray,
    bx: np.ndarray,
    by: np.ndarray,
    w: np.ndarray,
    h: np.ndarray,
) -> np.ndarray:
    """Per edge (tile-local coords): ∫ X dY along the edge with each point clamped onto the tile
    [0, w] x [0, h].

    Summed over a closed ring this is the ring's oriented area inside the tile: clamping moves
    stretches outside onto the tile border without sweeping over any point inside it. Between
    the parameters where x or y crosses a tile side the clamped point moves linearly, so the
    trapezoid rule over those breakpoints is exact.
    """
    dx, dy = bx - ax, by - ay
    with np.errstate(divide="ignore", invalid="ignore"):
        raw = (-ax / dx, (w - ax) / dx, -ay / dy, (h - ay) / dy)
    # Non-crossings (nan, inf) become harmless breakpoints at 0.
    a, b, c, d = (np.clip(np.nan_to_num(t, nan=0.0, posinf=0.0, neginf=0.0), 0.0, 1.0) for t in raw)
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
