"""Annotation coverage on the PERFORMANCE.md case: a 40000 x 30000 slide at 0.25 um/px tiled in
512 px tiles (``last="keep"``) at level 0 (4661 tiles) and at level 1 (downsample 4, 300 tiles),
300 star-shaped polygons of 24-96 vertices and radius 150-5000 px, many of them overlapping
(seeded, so every run measures the same input).

Rows: the per-tile baseline (the seed library's approach, written out below), then
``tile_annotations`` and ``annotation_coverage``. ``ratio_vs_baseline`` is the speed-up: baseline
seconds / these seconds. Each time is the best of a few repeats, as the machine is shared: the
baseline and ``tile_annotations`` (tenths of a second) of 3, ``annotation_coverage``
(milliseconds, which one busy moment can double) of 10. All three must agree to 1e-9 in
coverage or the benchmark fails.

Then dense fields, where memory is the point: 20,000 cells (star-shaped, radius 10-20 px, 8-30
vertices) and 76,000 squares of 6-16 px (like the 50 MB GeoJSON that once asked for 15 GiB),
both uniform over 4096 x 4096 level-0 px, 256 px tiles at level 0 and level 1. Each runs
``annotation_coverage`` once in a fresh child process, which reports the seconds and its peak
resident memory (VmHWM), and the peak before the call (interpreter, imports, polygons).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import shapely
from shapely.geometry import Polygon, box

from wsi_core.tiling import annotation_coverage, grid_tile_array, tile_annotations

SLIDE = (40000, 30000)  # level-0 pixels at 0.25 um/px
TILE = 512
# Level -> downsample of the benchmark slide's pyramid (level 1: a 512 px tile spans 2048
# level-0 px, so more tiles cross annotation boundaries).
LEVELS = {0: 1.0, 1: 4.0}
N_POLYGONS = 300
REPEATS = 3
FAST_REPEATS = 10  # for the rows that take milliseconds

FIELD_EXTENT = 4096  # level-0 pixels on a side of the dense fields
FIELDS = {"cells": 20_000, "squares": 76_000}  # polygons per field


def star_polygons(
    seed: int = 0, n: int = N_POLYGONS, slide: tuple[int, int] = SLIDE
) -> list[Polygon]:
    """Star-shaped polygons (vertices at sorted random angles, jittered radii), level 0.

    The radius is log-uniform in 150-5000 px, so sizes span small foci to large regions; the
    centres are uniform over the ``slide`` (width, height in level-0 pixels), so large polygons
    overlap each other often.
    """
    rng = np.random.default_rng(seed)
    polygons = []
    for _ in range(n):
        cx, cy = rng.uniform(0, slide[0]), rng.uniform(0, slide[1])
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


def _best_time(fn: Callable[[], np.ndarray], repeats: int = REPEATS) -> tuple[float, np.ndarray]:
    """The shortest of ``repeats`` wall times of ``fn`` (seconds), and its last result."""
    runs = [_timed(fn) for _ in range(repeats)]
    return min(seconds for seconds, _ in runs), runs[-1][1]


def run() -> list[dict[str, Any]]:
    """Time the three approaches at levels 0 and 1, then the dense fields; rows ``{name,
    seconds, tiles_per_s, ratio_vs_baseline}`` (the fields: ``{name, seconds, note}``)."""
    polygons = star_polygons()
    rows = [row for level in LEVELS for row in _level_rows(polygons, level)]
    return rows + [_field_row(field, level) for field in FIELDS for level in (0, 1)]


def _level_rows(polygons: list[Polygon], level: int) -> list[dict[str, Any]]:
    """The three approaches on the benchmark slide's level ``level`` (512 px tiles)."""
    downsample = LEVELS[level]
    roi = box(0, 0, TILE, TILE)
    size = (int(SLIDE[0] / downsample), int(SLIDE[1] / downsample))
    coordinates = grid_tile_array(size, TILE, TILE, last="keep")
    n = len(coordinates)

    cases: dict[str, tuple[Callable[[], np.ndarray], int]] = {
        "per-tile STRtree+intersect+union (baseline)": (
            lambda: baseline(polygons, roi, coordinates, downsample),
            REPEATS,
        ),
        "tile_annotations (areas)": (
            lambda: (
                np.array([g.area for g in tile_annotations(polygons, roi, coordinates, downsample)])
                / roi.area
            ),
            REPEATS,
        ),
        "annotation_coverage (vectorised)": (
            lambda: annotation_coverage(polygons, roi, coordinates, downsample),
            FAST_REPEATS,
        ),
    }
    rows: list[dict[str, Any]] = []
    results: list[np.ndarray] = []
    for name, (fn, repeats) in cases.items():
        seconds, values = _best_time(fn, repeats)
        results.append(values)
        rows.append(
            {
                "name": f"coverage level {level} ({n} tiles): {name}",
                "seconds": seconds,
                "tiles_per_s": n / seconds,
            }
        )
    for row in rows:
        row["ratio_vs_baseline"] = rows[0]["seconds"] / row["seconds"]

    reference = results[0]
    for row, values in zip(rows[1:], results[1:], strict=True):
        worst = float(np.max(np.abs(values - reference)))
        if worst > 1e-9:
            raise AssertionError(f"{row['name']} differs from the baseline by {worst:.3g}")
    return rows


# --------------------------------------------------------------------------------------------
# Dense fields


def cell_polygons(n: int, extent: float, seed: int = 0) -> np.ndarray:
    """``n`` star-shaped cells (level 0) of radius 10-20 px and 8-30 vertices, centres uniform
    over ``[0, extent]^2``; vertex angles are jittered but increasing, so every cell is valid."""
    rng = np.random.default_rng(seed)
    k = rng.integers(8, 31, n)
    cell = np.repeat(np.arange(n), k)
    j = np.arange(len(cell)) - np.repeat(np.cumsum(k) - k, k)
    angle = (j + rng.uniform(-0.3, 0.3, len(cell))) * 2 * np.pi / k[cell]
    radius = rng.uniform(10, 20, n)[cell] * rng.uniform(0.75, 1.0, len(cell))
    centre = rng.uniform(0, extent, (n, 2))[cell]
    xy = centre + radius[:, None] * np.c_[np.cos(angle), np.sin(angle)]
    return shapely.polygons(shapely.linearrings(xy, indices=cell))


def square_polygons(n: int, extent: float, seed: int = 0) -> np.ndarray:
    """``n`` axis-aligned squares (level 0) of 6-16 px, corners uniform over ``[0, extent]^2``."""
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, extent, (n, 2))
    side = rng.uniform(6, 16, n)
    return shapely.box(xy[:, 0], xy[:, 1], xy[:, 0] + side, xy[:, 1] + side)


def _peak_mb() -> float:
    """This process's peak resident memory, MB (VmHWM; ru_maxrss where /proc is missing)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_field(field: str, level: int) -> dict[str, Any]:
    """One dense-field case in this process: seconds, peak MB before and after, tiles."""
    make = cell_polygons if field == "cells" else square_polygons
    polygons = make(FIELDS[field], FIELD_EXTENT)
    downsample = 2.0**level
    coordinates = grid_tile_array((int(FIELD_EXTENT / downsample),) * 2, 256, 256)
    before = _peak_mb()
    start = time.perf_counter()
    annotation_coverage(polygons, box(0, 0, 256, 256), coordinates, downsample)
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "peak_mb": _peak_mb(),
        "before_mb": before,
        "tiles": len(coordinates),
    }


def _field_row(field: str, level: int) -> dict[str, Any]:
    """Run :func:`measure_field` in a child process, so that its peak memory is its own."""
    child = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_coverage", field, str(level)],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(child.stdout)
    return {
        "name": f"coverage: {FIELDS[field]:,} {field}, 256 px tiles, level {level}",
        "seconds": result["seconds"],
        "note": (
            f"peak {result['peak_mb']:.0f} MB ({result['before_mb']:.0f} MB before the call),"
            f" {result['tiles']} tiles"
        ),
    }


if __name__ == "__main__":
    if len(sys.argv) == 3:  # a child of _field_row
        print(json.dumps(measure_field(sys.argv[1], int(sys.argv[2]))))
    else:
        for row in run():
            print(row)
