"""Overlay overlap on the PERFORMANCE.md case: a 40000 x 30000 slide at 0.25 um/px tiled in
4661 tiles of 512 px, against a deflate-compressed 0/255 tissue mask at 4 um/px (2500 x 1875).

The baseline is the seed library's approach: per tile, read the window, rasterise the ROI,
``np.unique`` the unmasked values. The floor is one plain decode of the overlay level the
tiles map to (the level closest to the tiles' resolution, as ``tile_overlay_overlap`` picks
it; the mask's only level here): open the TIFF with tifffile and decode that page whole into
a NumPy array, nothing else. The aim is ``tile_overlay_overlap`` within 1.5x the floor. Rows
for ``overlap_fractions`` time the matrix form that the tables and the Ray expression use (the
same counts, without one Python dict per tile).

Each row is its best of several calls: the baseline (seconds) of 3, the others of 10.
``ratio_vs_baseline`` is the speed-up (baseline seconds over the row's); ``ratio_vs_floor`` is
the slow-down (the row's seconds over the floor's, 1.0 being decode speed).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import shapely
import tifffile
from shapely.geometry import Point, box

from wsi_core.slide import open_slide
from wsi_core.synthetic import write_pyramid_tiff
from wsi_core.tiling import grid_tile_array, overlap_fractions, tile_overlay_overlap

SLIDE = (40000, 30000)
TILE = 512
TILE_MPP = 0.25
MASK_MPP = 4.0
# The rows that take milliseconds (the kernel's and the floor's) are the best of this many
# calls, as the machine is shared; the baseline (seconds) of three.
FAST_REPEATS = 10


def tissue_mask(seed: int = 0) -> np.ndarray:
    """A 0/255 mask of overlapping discs, 1875 x 2500 pixels."""
    rng = np.random.default_rng(seed)
    h, w = 1875, 2500
    mask = np.zeros((h, w), dtype=np.uint8)
    yy, xx = np.ogrid[:h, :w]
    for _ in range(40):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(40, 400)
        mask[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = 255
    return mask


def baseline(path: str, roi, xs: np.ndarray, ys: np.ndarray) -> list[dict[str, float]]:
    """Per tile: one read, one rasterised mask, one np.unique."""
    out = []
    with open_slide(path) as slide:
        level = slide.closest_level(TILE_MPP)
        scale = TILE_MPP / slide.slide_resolution(level)[0]
        width, height = slide.level_dimensions[level]
        min_x, min_y, max_x, _ = roi.bounds  # a square ROI: one size for both axes
        size = int(np.floor((max_x - min_x) * scale + 0.5))
        for x, y in zip(xs.tolist(), ys.tolist(), strict=True):
            wx, wy = (
                int(np.floor((x + min_x) * scale + 0.5)),
                int(np.floor((y + min_y) * scale + 0.5)),
            )
            x0, y0 = max(wx, 0), max(wy, 0)
            x1, y1 = min(wx + size, width), min(wy + size, height)
            data = slide.read_level_region(level, x0, y0, x1 - x0, y1 - y0)
            placed = shapely.affinity.scale(
                shapely.affinity.translate(roi, x, y), scale, scale, origin=(0, 0)
            )
            cx, cy = np.meshgrid(np.arange(x0, x1) + 0.5, np.arange(y0, y1) + 0.5)
            inside = shapely.contains_xy(placed, cx, cy)
            values, counts = np.unique(data[inside], return_counts=True)
            total = counts.sum()
            out.append(
                {str(v): c / total for v, c in zip(values.tolist(), counts.tolist(), strict=True)}
            )
    return out


def overlay_level(path: str) -> int:
    """The overlay level ``tile_overlay_overlap`` reads for tiles at ``TILE_MPP``."""
    with open_slide(path) as slide:
        return slide.closest_level(TILE_MPP)


def plain_decode(path: str, level: int) -> np.ndarray:
    """Open the TIFF and decode the page of overlay level ``level`` whole with tifffile (the
    floor); the level is one page, its series level's key frame."""
    with tifffile.TiffFile(path) as tif:
        return tif.series[0].levels[level].keyframe.asarray()


def timed(fn, *args, repeat: int = 3):
    """Best wall time of ``repeat`` calls (the first pays for lazy imports), and the result."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn(*args)
        best = min(best, time.perf_counter() - start)
    return best, result


def run() -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        path = str(
            write_pyramid_tiff(
                Path(tmp) / "mask.tiff", tissue_mask(), mpp=MASK_MPP, n_levels=1, resample="nearest"
            )
        )
        tiles = grid_tile_array(SLIDE, TILE, TILE, last="keep")
        xs, ys = tiles[:, 0], tiles[:, 1]
        square = box(0, 0, TILE, TILE)
        circle = Point(TILE / 2, TILE / 2).buffer(TILE / 2, quad_segs=32)
        base_s, base = timed(baseline, path, square, xs, ys)
        rows = [("overlay: per-tile read + mask + unique (baseline)", base_s)]
        fast_s, fast = timed(
            tile_overlay_overlap, square, path, xs, ys, TILE_MPP, TILE_MPP, repeat=FAST_REPEATS
        )
        for b, f in zip(base, fast, strict=True):
            assert all(abs(f.get(k, 0.0) - v) < 1e-12 for k, v in b.items()), (b, f)
        rows.append(("overlay: tile_overlay_overlap, box ROI (block sums)", fast_s))
        circ_s, _ = timed(
            tile_overlay_overlap, circle, path, xs, ys, TILE_MPP, TILE_MPP, repeat=FAST_REPEATS
        )
        rows.append(("overlay: tile_overlay_overlap, circle ROI (masks)", circ_s))
        # The matrix form, which the overlay_overlap table and the Ray expression use: the same
        # counts without a Python dict per tile.
        for name, roi in (("box", square), ("circle", circle)):
            table_s, table = timed(
                overlap_fractions, roi, path, xs, ys, TILE_MPP, TILE_MPP, repeat=FAST_REPEATS
            )
            if roi is square:
                assert table.rows() == fast
            rows.append((f"overlay: overlap_fractions, {name} ROI (the tables' matrix)", table_s))
        level = overlay_level(path)
        floor_s, decoded = timed(plain_decode, path, level, repeat=FAST_REPEATS)
        with open_slide(path) as slide:
            assert decoded.shape[1::-1] == slide.level_dimensions[level], decoded.shape
        rows.append(("overlay: one plain decode of the overlay level (floor)", floor_s))
    n = len(xs)
    return [
        {
            "name": name,
            "seconds": s,
            "tiles_per_s": n / s,
            "ratio_vs_baseline": base_s / s,
            "ratio_vs_floor": s / floor_s,
        }
        for name, s in rows
    ]
