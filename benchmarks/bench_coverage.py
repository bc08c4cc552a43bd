"""Annotation coverage on the PERFORMANCE.md case: a 40000 x 30000 slide at 0.25 um/px (level 0,
downsample 1) tiled in 4661 tiles of 512 px (``last="keep"``), 300 star-shaped polygons of 24-96
vertices and radius 150-5000 px, many of them overlapping (seeded, so every run measures the
same input).

Rows: the per-tile baseline (the seed library's approach, written out below), then
``tile_annotations`` and ``annotation_coverage``. ``ratio_vs_baseline`` is the speed-up: baseline
seconds / these seconds. Each time is the best of a few repeats, as the machine is shared. All
three must agree to 1e-9 in coverage or the benchmark fails.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import shapely
from shapely.geometry import Polygon, box

from wsi_core.tiling import annotation_coverage, grid_tile_array, tile_annotations

SLIDE = (40000, 30000)  # level-0 pixels at 0.25 um/px
TILE = 512
N_POLYGONS = 300
REPEATS = 3


def star_polygons(seed: int = 0, n: int = N_POLYGONS) -> list[Polygon]:
    """Star-shaped polygons (vertices at sorted random angles, jittered radii), level 0.

    The radius is log-uniform in 150-5000 px, so sizes span small foci to large regions; the
    centres are uniform over the slide, so large polygons overlap each other often.
    """
    rng = np.random.default_rng(seed)
    polygons = []
    for _ in range(n):
        cx, cy = rng.uniform(0, SLIDE[0]), rng.uniform(0, SLIDE[1])
        radius = float(np.exp(rng.uniform(np.log(150), np.log(5000))))
        k = int(rng.integers(24, 97))
        angles = np.sort(rng.uniform(0, 2 * np.pi, k))
        radii = radius * rng.uniform(0.45, 1.0, k)
        polygons.append(Polygon(np.c_[cx + radii * np.cos(angles), cy + radii * np.sin(angles)]))
    return polygons


def baseline(
    polygons: list[Polygon], roi: Polygon, coordinates: np.ndarray, downsample: float
) -> np.ndarray:
    """Per tile: place the ROI at level 0, STRtree query, intersect, union (seed library)."""
    geoms = np.asarray(polygons, dtype=object)
    tree = shapely.STRtree(geoms)
    out = np.empty(len(coordinates))
    for i, (x, y) in enumerate(coordinates.tolist()):
        placed = shapely.affinity.affine_transform(
            roi, [downsample, 0, 0, downsample, x * downsample, y * downsample]
        )
        nearby = geoms[tree.query(placed, predicate="intersects")]
        out[i] = shapely.union_all(shapely.intersection(nearby, placed)).area / placed.area
    return out


def _timed(fn: Callable[[], np.ndarray]) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def _best_time(fn: Callable[[], np.ndarray]) -> tuple[float, np.ndarray]:
    """The shortest of ``REPEATS`` wall times of ``fn`` (seconds), and its last result."""
    runs = [_timed(fn) for _ in range(REPEATS)]
    return min(seconds for seconds, _ in runs), runs[-1][1]


def run() -> list[dict[str, Any]]:
    """Time the three approaches; rows ``{name, seconds, tiles_per_s, ratio_vs_baseline}``."""
    polygons = star_polygons()
    roi = box(0, 0, TILE, TILE)
    coordinates = grid_tile_array(SLIDE, TILE, TILE, last="keep")
    downsample = 1.0
    n = len(coordinates)

    cases = {
        "coverage: per-tile STRtree+intersect+union (baseline)": lambda: baseline(
            polygons, roi, coordinates, downsample
        ),
        "coverage: tile_annotations (areas)": lambda: (
            np.array([g.area for g in tile_annotations(polygons, roi, coordinates, downsample)])
            / roi.area
        ),
        "coverage: annotation_coverage (vectorised)": lambda: annotation_coverage(
            polygons, roi, coordinates, downsample
        ),
    }
    rows: list[dict[str, Any]] = []
    results: list[np.ndarray] = []
    for name, fn in cases.items():
        seconds, values = _best_time(fn)
        results.append(values)
        rows.append({"name": name, "seconds": seconds, "tiles_per_s": n / seconds})
    for row in rows:
        row["ratio_vs_baseline"] = rows[0]["seconds"] / row["seconds"]

    reference = results[0]
    for row, values in zip(rows[1:], results[1:], strict=True):
        worst = float(np.max(np.abs(values - reference)))
        if worst > 1e-9:
            raise AssertionError(f"{row['name']} differs from the baseline by {worst:.3g}")
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)
