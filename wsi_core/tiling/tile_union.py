"""Area of the union of several polygons inside each tile, from their edges in the tile only.

Used by :mod:`wsi_core.tiling.rect_coverage` for tiles that several polygons cover partly.
Everything is at level 0, in coordinates local to each tile: tile t is ``[0, w[t]] x [0, h[t]]``
in level-0 pixels from the tile's (min x, min y) corner; areas are level-0 square pixels.
"""

from __future__ import annotations

import numpy as np

from wsi_core.tiling.ragged import (
    bounded_chunks,
    group_bounds,
    pairs_within_groups,
    ragged_expand,
    segmented_cumsum,
    sum_by,
)

# Item pairs per chunk in TileUnion's pair stages: each pair costs about 200 bytes of
# temporaries, so a chunk needs some 200 MB at most.
_PAIR_BUDGET = 1 << 20


class TileUnion:
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

    Pairs of items are formed within one tile (segment against segment) or within one
    horizontal band of it (``_BANDS`` per tile; midpoint against segment), so the work grows
    with the square of a tile's edges: the caller sends crowded tiles to GEOS instead. Each pair
    stage runs in chunks of about ``_PAIR_BUDGET`` pairs, so memory stays bounded even so.

    ``segments``: (tile, part, weight, x0, y0, x1, y1) of each polygon edge clipped to its tile,
    ``weight`` the ring's orientation sign. ``crossings``: (tile, part, y, sign) where an edge
    crosses the line x = W inside the tile. ``pairs``: (tile, part, inside) for every polygon
    partly covering a tile, ascending, ``inside`` 1.0 when the corner (W, 0) is in the polygon.
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
        self.seg_start, self.seg_count = group_bounds(self.tile, self.n)
        # Only segments with dy != 0 carry area.
        self.carrier = np.flatnonzero(self.y0 != self.y1)
        tile, part, y, sign = crossings
        order = np.lexsort((y, tile))
        self.ev_tile, self.ev_part, self.ev_y, self.ev_sign = (
            tile[order],
            part[order],
            y[order],
            sign[order],
        )
        self.ev_start, self.ev_count = group_bounds(self.ev_tile, self.n)
        pair_tile, pair_part, inside = pairs
        self.n_parts = n_parts
        self.pair_key = pair_tile * n_parts + pair_part  # ascending
        self.pair_inside = inside
        self.inside_total = sum_by(pair_tile, inside, self.n)
        self.failed = np.zeros(self.n, dtype=bool)
        self._band_members()

    def _band(self, tile: np.ndarray, y: np.ndarray) -> np.ndarray:
        """The horizontal band of ``tile`` that holds tile-local ``y`` (level-0 pixels)."""
        band = np.floor(y / self.band_height[tile]).astype(np.int64)
        return np.clip(band, 0, self._BANDS - 1)

    def _band_members(self) -> None:
        """Segments listed under every band of their tile that their y-range (± tol) meets."""
        lo = self._band(self.tile, self.ymin - self.tol)
        hi = self._band(self.tile, self.ymax + self.tol)
        seg, k = ragged_expand(hi - lo + 1)
        keys = self.tile[seg] * self._BANDS + lo[seg] + k
        order = np.argsort(keys, kind="stable")
        self.member = seg[order]
        self.band_start, self.band_count = group_bounds(keys[order], self.n * self._BANDS)

    def _pairs_in_band(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(item, segment) for each item's band key and every segment listed in that band."""
        item, member = pairs_within_groups(keys, self.band_start, self.band_count)
        return item, self.member[member]

    def area(self) -> tuple[np.ndarray, np.ndarray]:
        """Per tile, the union's area inside it (level-0 square pixels), and whether that value
        is unreliable (the caller then recomputes the tile another way)."""
        split_seg, split_t = self._crossing_points()
        sub_seg, ta, tb = self._pieces(split_seg, split_t)
        x0, y0, x1, y1 = self.x0[sub_seg], self.y0[sub_seg], self.x1[sub_seg], self.y1[sub_seg]
        ax, ay = x0 * (1 - ta) + x1 * ta, y0 * (1 - ta) + y1 * ta
        bx, by = x0 * (1 - tb) + x1 * tb, y0 * (1 - tb) + y1 * tb
        keep = self._outside_others(sub_seg, 0.5 * (ax + bx), 0.5 * (ay + by))
        contribution = self.weight[sub_seg] * 0.5 * (ax + bx) * (by - ay)
        area = sum_by(self.tile[sub_seg][keep], contribution[keep], self.n)
        area += self.w * self._right_border_covered()
        return area, self.failed

    def _crossing_points(self) -> tuple[np.ndarray, np.ndarray]:
        """Where other polygons' edges cross each area-carrying segment: (segment, parameter
        along it), carriers taken in chunks of about ``_PAIR_BUDGET`` pairs. Flags tiles where
        two polygons' edges overlap along a line."""
        found_seg, found_t = [np.empty(0, np.int64)], [np.empty(0)]
        # Each carrier is paired with every segment of its tile.
        pairs = self.seg_count[self.tile[self.carrier]]
        for start, stop in bounded_chunks(pairs, _PAIR_BUDGET):
            seg, t = self._crossings_of(self.carrier[start:stop])
            found_seg.append(seg)
            found_t.append(t)
        return np.concatenate(found_seg), np.concatenate(found_t)

    def _crossings_of(self, carrier: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`_crossing_points` of the segments ``carrier``."""
        x0, y0, x1, y1, tol = self.x0, self.y0, self.x1, self.y1, self.tol
        # Every other segment of the tile (long edges span most bands, so bands gain nothing).
        left, right = pairs_within_groups(self.tile[carrier], self.seg_start, self.seg_count)
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
            ~parallel & (t >= -slack_t) & (t <= 1 + slack_t) & (u >= -slack_u) & (u <= 1 + slack_u)
        )
        return left[hit], np.clip(t[hit], 0.0, 1.0)

    def _pieces(
        self, split_seg: np.ndarray, split_t: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The pieces between consecutive split points of each carrier: (segment, t0, t1)."""
        carrier = self.carrier
        seg = np.concatenate([carrier, carrier, split_seg])
        t = np.concatenate([np.zeros(len(carrier)), np.ones(len(carrier)), split_t])
        order = np.lexsort((t, seg))
        seg, t = seg[order], t[order]
        step = (seg[1:] == seg[:-1]) & (t[1:] > t[:-1])
        return seg[:-1][step], t[:-1][step], t[1:][step]

    def _outside_others(self, sub_seg: np.ndarray, mx: np.ndarray, my: np.ndarray) -> np.ndarray:
        """Whether each midpoint ``(mx, my)`` (tile-local) lies in none of the tile's other
        polygons: their status at the corner (W, 0), then the crossings between there and the
        midpoint."""
        tile, part = self.tile[sub_seg], self.part[sub_seg]
        own = self.pair_inside[np.searchsorted(self.pair_key, tile * self.n_parts + part)]
        count = self.inside_total[tile] - own  # other polygons' status at the corner (W, 0)
        count += self._ray_crossings(tile, part, mx, my)
        count += self._border_crossings_below(tile, part, my)
        return np.abs(count) < 0.5

    def _ray_crossings(
        self, tile: np.ndarray, part: np.ndarray, mx: np.ndarray, my: np.ndarray
    ) -> np.ndarray:
        """Per midpoint, the signed crossings by other polygons' edges of the ray from it to the
        right border, midpoints taken in chunks of about ``_PAIR_BUDGET`` pairs. Flags tiles
        where a midpoint lies within ``tol`` of such an edge."""
        keys = tile * self._BANDS + self._band(tile, my)
        out = np.zeros(len(mx))
        for start, stop in bounded_chunks(self.band_count[keys], _PAIR_BUDGET):
            batch = slice(start, stop)
            out[batch] = self._ray_crossings_of(
                keys[batch], tile[batch], part[batch], mx[batch], my[batch]
            )
        return out

    def _ray_crossings_of(
        self, keys: np.ndarray, tile: np.ndarray, part: np.ndarray, mx: np.ndarray, my: np.ndarray
    ) -> np.ndarray:
        """:meth:`_ray_crossings` of some midpoints, ``keys`` their bands."""
        tol = self.tol
        item, seg = self._pairs_in_band(keys)
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
        return sum_by(item[crossing], np.sign(sy[crossing]) * self.weight[seg[crossing]], len(mx))

    def _border_crossings_below(
        self, tile: np.ndarray, part: np.ndarray, my: np.ndarray
    ) -> np.ndarray:
        """Per midpoint, the signed crossings of the right border by other polygons below the
        midpoint's height, midpoints taken in chunks of about ``_PAIR_BUDGET`` pairs. Flags tiles
        where such a crossing is within ``tol`` of that height."""
        out = np.zeros(len(my))
        for start, stop in bounded_chunks(self.ev_count[tile], _PAIR_BUDGET):
            batch = slice(start, stop)
            out[batch] = self._border_crossings_of(tile[batch], part[batch], my[batch])
        return out

    def _border_crossings_of(
        self, tile: np.ndarray, part: np.ndarray, my: np.ndarray
    ) -> np.ndarray:
        """:meth:`_border_crossings_below` of some midpoints."""
        item, ev = pairs_within_groups(tile, self.ev_start, self.ev_count)
        other = self.ev_part[ev] != part[item]
        item, ev = item[other], ev[other]
        self.failed[tile[item[np.abs(self.ev_y[ev] - my[item]) <= self.tol]]] = True
        below = self.ev_y[ev] < my[item]
        return sum_by(item[below], self.ev_sign[ev[below]], len(my))

    def _right_border_covered(self) -> np.ndarray:
        """Per tile, the length of the right border {x = W, 0 <= y <= H} inside the union,
        approached from outside (x = W+): the corner statuses, then one step per crossing."""
        ys, tile, step = self.ev_y, self.ev_tile, self.ev_sign
        level = self.inside_total[tile] + segmented_cumsum(step, tile, self.n)
        last = np.r_[tile[1:] != tile[:-1], True] if len(tile) else np.zeros(0, dtype=bool)
        following = np.where(last, self.h[tile], np.r_[ys[1:], 0.0][: len(ys)])
        covered = sum_by(tile, np.where(level > 0.5, following - ys, 0.0), self.n)
        first = self.h.copy()
        has = self.ev_count > 0
        first[has] = ys[self.ev_start[has]]
        covered += np.where(self.inside_total > 0.5, first, 0.0)
        return covered
