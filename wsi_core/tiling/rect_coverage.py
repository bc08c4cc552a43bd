"""Exact coverage of axis-aligned rectangular tiles by a union of polygons (NumPy, compiled loops).

The fast route of :func:`wsi_core.tiling.annotations.annotation_coverage` for an axis-aligned
rectangular ROI. Everything here is at level 0: tile rectangles and polygon edges are in
level-0 pixels, and per-tile work is in coordinates local to each tile rectangle
R = [0, W] x [0, H] (level-0 pixels from the tile's (min x, min y) corner). Areas are level-0
square pixels; :meth:`RectCoverage.coverage` returns them as fractions of each tile's area.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import shapely
from numba import njit

from wsi_core.segments import Segments, segment_point
from wsi_core.tiling.tile_buckets import TileBuckets
from wsi_core.tiling.union_boundary import union_boundary

# Boundary pieces per compiled call of the per-tile terms, so that a long call reports its
# progress now and then.
_CHUNK_PIECES = 1 << 16


class RectCoverage:
    """Coverage of equal axis-aligned tile rectangles (level 0) by the union of polygons.

    The union's boundary is found once for the whole grid (:func:`union_boundary`: oriented
    segments, the union on their left, forming closed curves). Then for each tile
    R = [0, W] x [0, H] (local coords), by Green's theorem on U ∩ R, of whose boundary only the
    union's segments inside R and R's right side add to ∮ x dy:

        area(U ∩ R) = Σ_segments ∫_{segment ∩ R} x dy  +  W · |{y in [0, H] : (W+, y) in U}|.

    The first sum visits each segment once for each tile it touches. The second is read off the
    vertical line through the tiles' right sides: where the union's segments cross it, sorted
    by height, their running count of ins and outs tells whether the line is inside U at the
    tile's bottom, and the crossings within the tile cut that stretch. The cost grows with
    segments plus crossings plus tiles. Every term is continuous in the coordinates but one, a
    vertical piece on a tile's right side, which both terms decide alike at level 0; so
    rounding moves a result by rounding only, and no test decides a whole tile.

    The running counts along each line must stay 0 or 1 and end at 0; if they do not (the union
    boundary was not closed), the union is taken from GEOS instead, and if even that fails an
    error is raised rather than a wrong value returned.

    Memory: each piece of the boundary is matched to the tiles it touches (a hash of the tile
    origins) and its terms added in one compiled loop, so no (piece, tile) table is made.

    ``parts``: valid non-empty Polygons at level 0, best already cut to the tiles' surroundings
    (:func:`wsi_core.geometry.clip_to_rect`). ``bounds``: the ROI rectangle in the tile frame
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
        rx0, ry0, rx1, ry1 = bounds
        self.x0 = (origins[:, 0] + rx0) * ds[0]
        self.x1 = (origins[:, 0] + rx1) * ds[0]
        self.y0 = (origins[:, 1] + ry0) * ds[1]
        self.y1 = (origins[:, 1] + ry1) * ds[1]
        self.w = self.x1 - self.x0
        self.h = self.y1 - self.y0
        scale = max(float(np.abs(v).max()) for v in (self.x0, self.x1, self.y0, self.y1))
        if len(parts):
            scale = max(scale, float(np.abs(shapely.bounds(parts)).max()))
        # Coordinate differences are off by a few ulps of `scale`: edges of different polygons
        # closer than this are treated as touching (their group goes to GEOS).
        self.tol = 1e-9 * float(self.w.max() + self.h.max()) + 1e-12 * scale

    def coverage(self, done: Callable[[int], None] | None = None) -> np.ndarray:
        """Coverage fraction of every tile (area covered / tile area), float64 ``(N,)``; the
        per-segment terms are added for chunks of ``_CHUNK_PIECES`` boundary pieces, and
        ``done(tiles)`` hears of each chunk as the tiles' share of the work done (a tile's
        value is complete only after the last). A tile's value does not depend on the
        chunks: its terms are added in piece order."""
        if len(self.parts) == 0:
            return np.zeros(len(self.x0))
        # Both terms are taken on the same pieces: cut points are rounded, and a piece that
        # rounds onto a tile's right side must count there in both or in neither.
        pieces = self._boundary_pieces(by_geos=False)
        area = self._right_side_area(pieces)
        if area is None:
            pieces = self._boundary_pieces(by_geos=True)
            area = self._right_side_area(pieces)
            if area is None:
                raise RuntimeError(
                    "annotation coverage: the union of the annotations has no consistent "
                    "boundary even from GEOS; please report this input"
                )
        self._add_segment_terms(pieces, area, done)
        return area / (self.w * self.h)

    def _add_segment_terms(
        self, pieces: Segments, area: np.ndarray, done: Callable[[int], None] | None
    ) -> None:
        """Add to ``area`` (level-0 square pixels per tile) the ∫ x dy of the boundary
        ``pieces`` inside each tile, chunk of pieces by chunk."""
        cells = TileBuckets(self.x0, self.y0, float(self.w.max()), float(self.h.max())).cells()
        ax, ay, bx, by = (np.ascontiguousarray(v, dtype=np.float64) for v in pieces)
        tiles = (self.x0, self.y0, self.x1, self.w, self.h)
        n, reported = len(ax), 0
        for lo in range(0, n, _CHUNK_PIECES):
            hi = min(lo + _CHUNK_PIECES, n)
            _add_x_dy(lo, hi, ax, ay, bx, by, *cells, *tiles, self.tol, area)
            if done is not None:
                share = len(area) * hi // n
                done(share - reported)
                reported = share
        if done is not None and reported < len(area):
            done(len(area) - reported)

    def _boundary_pieces(self, by_geos: bool) -> Segments:
        """The union's boundary (:func:`union_boundary`) cut into pieces no larger than a tile,
        so that a box join finds the few tiles each touches."""
        segments = union_boundary(self.parts, self.tol, by_geos=by_geos)
        return _short_pieces(segments, float(self.w.min()), float(self.h.min()))

    def _right_side_area(self, segments: Segments) -> np.ndarray | None:
        """Per tile: W times the length of its right side inside the union (level-0 square
        pixels); None when the crossings along some line do not count up consistently."""
        lines = np.unique(self.x1)
        ax, ay, bx, by = (np.ascontiguousarray(v, dtype=np.float64) for v in segments)
        tiles = (np.searchsorted(lines, self.x1), self.y0, self.y1, self.w, self.h)
        area = np.empty(len(self.x1))
        return area if _right_sides(ax, ay, bx, by, lines, *tiles, area) else None


@njit(cache=True, nogil=True, inline="always")
def _canonical(
    ax: float, ay: float, bx: float, by: float
) -> tuple[float, float, float, float, bool]:
    """A segment's ends ordered by (x, y), and whether they were turned: a segment and its
    reverse (an edge two polygons share) then give bit-identical points."""
    flip = bx < ax or (bx == ax and by < ay)
    if flip:
        return bx, by, ax, ay, True
    return ax, ay, bx, by, False


@njit(cache=True, nogil=True)
def _right_sides(
    ax: np.ndarray,
    ay: np.ndarray,
    bx: np.ndarray,
    by: np.ndarray,
    lines: np.ndarray,
    tile_line: np.ndarray,
    y0: np.ndarray,
    y1: np.ndarray,
    w: np.ndarray,
    h: np.ndarray,
    area: np.ndarray,
) -> bool:
    """:meth:`RectCoverage._right_side_area` on columns, into ``area``; False if inconsistent.

    The segments cross the vertical lines ``x = lines[k]`` (ascending) where exactly one end
    lies right of a line (points on it count as left of it), so a closed curve crosses every
    line an even number of times; each crossing is +1 where the union begins above it, -1
    where it ends. Taken up each line (ties in segment order), the running count must be 0 or
    1 after the last crossing at any one point, and end at 0. Tile ``t`` on line
    ``tile_line[t]``: the count after the crossings at or below ``y0[t]`` says whether its
    right side starts inside, and each crossing up to ``y1[t]`` adds its jump times the
    stretch from it to the top."""
    n_lines = len(lines)
    start = np.zeros(n_lines + 1, dtype=np.int64)
    for write in (False, True):
        if write:
            start = np.cumsum(start)
            fill = start[:-1].copy()
            y = np.empty(start[-1])
            jump = np.empty(start[-1])
        for s in range(len(ax)):
            # From the left end: an edge two polygons share, once each way, crosses at one y.
            lx, ly, rx, ry, _ = _canonical(ax[s], ay[s], bx[s], by[s])
            first = np.searchsorted(lines, lx, side="left")
            stop = np.searchsorted(lines, rx, side="left")
            for k in range(first, stop):
                if not write:
                    start[k + 1] += 1
                    continue
                t = (lines[k] - lx) / (rx - lx)
                y[fill[k]] = segment_point(lx, ly, rx, ry, t)[1]
                jump[fill[k]] = np.sign(bx[s] - ax[s])
                fill[k] += 1
    running = np.empty(len(y))
    for k in range(n_lines):
        a, b = start[k], start[k + 1]
        order = np.argsort(y[a:b], kind="mergesort")  # stable: ties in segment order
        y[a:b], jump[a:b] = y[a:b][order], jump[a:b][order]
        inside = 0.0
        for c in range(a, b):
            inside += jump[c]
            running[c] = inside
            # Crossings at one point (a vertex on the line) come in any order: check the count
            # after the last of them.
            settled = c == b - 1 or y[c + 1] != y[c]
            if settled and inside * (inside - 1) != 0:  # neither 0 nor 1
                return False
        if inside != 0:
            return False
    for t in range(len(area)):
        a, b = start[tile_line[t]], start[tile_line[t] + 1]
        below = a + np.searchsorted(y[a:b], y0[t], side="right")
        upto = a + np.searchsorted(y[a:b], y1[t], side="right")
        at_bottom = running[below - 1] if below > a else 0.0
        cut = 0.0
        for c in range(below, upto):
            cut += jump[c] * (y1[t] - y[c])
        area[t] = w[t] * (at_bottom * h[t] + cut)
    return True


def _short_pieces(segments: Segments, width: float, height: float) -> Segments:
    """Segments cut into pieces spanning at most ``width`` in x and ``height`` in y (level 0),
    so that a box join finds the few tiles each touches; consecutive pieces share their
    endpoint exactly, and an edge that two polygons share, once each way, is cut at the same
    points both times."""
    ax, ay, bx, by = (np.ascontiguousarray(v, dtype=np.float64) for v in segments)
    return Segments(*_cut_short(ax, ay, bx, by, width, height))


@njit(cache=True, nogil=True)
def _cut_short(
    ax: np.ndarray, ay: np.ndarray, bx: np.ndarray, by: np.ndarray, width: float, height: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_short_pieces` on columns: segment s in ``n`` equal pieces, the points at
    ``k / n`` along its canonical direction, listed in its own direction."""
    count = np.empty(len(ax), dtype=np.int64)
    for s in range(len(ax)):
        across = max(np.ceil(abs(bx[s] - ax[s]) / width), np.ceil(abs(by[s] - ay[s]) / height))
        count[s] = max(int(across), 1)
    total = count.sum()
    out_ax, out_ay, out_bx, out_by = (
        np.empty(total),
        np.empty(total),
        np.empty(total),
        np.empty(total),
    )
    p = 0
    for s in range(len(ax)):
        n = count[s]
        if n == 1:
            out_ax[p], out_ay[p], out_bx[p], out_by[p] = ax[s], ay[s], bx[s], by[s]
            p += 1
            continue
        lx, ly, rx, ry, flip = _canonical(ax[s], ay[s], bx[s], by[s])
        for k in range(n):
            first = n - k if flip else k
            last = first - 1 if flip else first + 1
            out_ax[p], out_ay[p] = segment_point(lx, ly, rx, ry, first / n)
            out_bx[p], out_by[p] = segment_point(lx, ly, rx, ry, last / n)
            p += 1
    return out_ax, out_ay, out_bx, out_by


@njit(cache=True, nogil=True)
def _add_x_dy(
    lo: int,
    hi: int,
    ax: np.ndarray,
    ay: np.ndarray,
    bx: np.ndarray,
    by: np.ndarray,
    gx: float,
    gy: float,
    cell_w: float,
    cell_h: float,
    ncx: int,
    ncy: int,
    order: np.ndarray,
    sorted_keys: np.ndarray,
    cell_start: np.ndarray,
    x0: np.ndarray,
    y0: np.ndarray,
    x1: np.ndarray,
    w: np.ndarray,
    h: np.ndarray,
    margin: float,
    area: np.ndarray,
) -> None:
    """Add to ``area`` the ∫ x dy of pieces ``lo..hi-1`` (ax, ay, bx, by) inside each tile
    they touch: the tiles whose origins lie within ``margin`` plus one cell of a piece's box,
    found by the hash of :class:`~wsi_core.tiling.tile_buckets.TileBuckets` (``gx`` to
    ``cell_start``, see :meth:`~wsi_core.tiling.tile_buckets.TileBuckets.cells`), as its
    ``join`` finds them. All in level-0 pixels."""
    for p in range(lo, hi):
        # A tile qualifies when its origin lies in [box0 - cell - margin, box1 + margin].
        lo_x, hi_x = min(ax[p], bx[p]) - cell_w - margin, max(ax[p], bx[p]) + margin
        lo_y, hi_y = min(ay[p], by[p]) - cell_h - margin, max(ay[p], by[p]) + margin
        cx0 = max(int(np.floor((lo_x - gx) / cell_w)), 0)
        cx1 = min(int(np.floor((hi_x - gx) / cell_w)), ncx - 1)
        cy0 = max(int(np.floor((lo_y - gy) / cell_h)), 0)
        cy1 = min(int(np.floor((hi_y - gy) / cell_h)), ncy - 1)
        for cx in range(cx0, cx1 + 1):
            for cy in range(cy0, cy1 + 1):
                key = cx * ncy + cy
                if len(cell_start):
                    first, stop = cell_start[key], cell_start[key + 1]
                else:
                    first = np.searchsorted(sorted_keys, key, side="left")
                    stop = np.searchsorted(sorted_keys, key, side="right")
                for slot in range(first, stop):
                    t = order[slot]
                    if x0[t] >= lo_x and x0[t] <= hi_x and y0[t] >= lo_y and y0[t] <= hi_y:
                        area[t] += _clipped_x_dy(p, t, ax, ay, bx, by, x0, y0, x1, w, h)


@njit(cache=True, nogil=True, inline="always")
def _clipped_x_dy(
    p: int,
    t: int,
    ax: np.ndarray,
    ay: np.ndarray,
    bx: np.ndarray,
    by: np.ndarray,
    x0: np.ndarray,
    y0: np.ndarray,
    x1: np.ndarray,
    w: np.ndarray,
    h: np.ndarray,
) -> float:
    """The ∫ x dy along segment ``p``'s part inside tile ``t`` (Liang-Barsky clipping in
    tile-local level-0 pixels, R = [0, w] x [0, h] from the tile's corner ``(x0, y0)``); 0
    where it misses the tile.

    A vertical segment on the tile's right side counts only where it does not reach right of
    that side at level 0 (``x1``, the side's level-0 x): local coordinates can round a segment
    an ulp right of the side onto it, and the right-side counts, which decide at level 0, must
    see the same segment."""
    lax, lay = ax[p] - x0[t], ay[p] - y0[t]
    lbx, lby = bx[p] - x0[t], by[p] - y0[t]
    width, height = w[t], h[t]
    dx, dy = lbx - lax, lby - lay
    if dx == 0:
        inside = lax >= 0 and lax <= width and not max(ax[p], bx[p]) > x1[t]
        enter_x, leave_x = (-np.inf if inside else np.inf), np.inf
    elif dx > 0:
        enter_x, leave_x = -lax / dx, (width - lax) / dx
    else:
        enter_x, leave_x = (width - lax) / dx, -lax / dx
    if dy == 0:
        enter_y, leave_y = (-np.inf if lay >= 0 and lay <= height else np.inf), np.inf
    elif dy > 0:
        enter_y, leave_y = -lay / dy, (height - lay) / dy
    else:
        enter_y, leave_y = (height - lay) / dy, -lay / dy
    t0 = max(enter_x, enter_y, 0.0)
    t1 = min(leave_x, leave_y, 1.0)
    if not t1 > t0:
        return 0.0
    # lerp form: exact original vertices at t = 0 and t = 1.
    px0 = min(max(lax * (1 - t0) + lbx * t0, 0.0), width)
    py0 = min(max(lay * (1 - t0) + lby * t0, 0.0), height)
    px1 = min(max(lax * (1 - t1) + lbx * t1, 0.0), width)
    py1 = min(max(lay * (1 - t1) + lby * t1, 0.0), height)
    return 0.5 * (px0 + px1) * (py1 - py0)
