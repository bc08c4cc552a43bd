"""Brute-force oracles for the tiling kernels, written from SEMANTICS.md alone: plain loops,
no spatial index, no fast path. Shared by the annotation, overlay and geometry tests."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import shapely
from shapely.affinity import affine_transform
from shapely.geometry import Point, Polygon

from wsi_core.tiling import tile_overlay, tile_overlay_overlap


def oracle_areas(annotations, roi, coordinates, downsample) -> np.ndarray:
    """Per tile, area (level units) of union(annotation ∩ placed ROI): a plain loop over every
    annotation, no spatial index, no fast path."""
    dsx, dsy = (downsample, downsample) if np.ndim(downsample) == 0 else downsample
    polygons = [a for a in annotations if a.geom_type in ("Polygon", "MultiPolygon")]
    out = []
    for x, y in coordinates:
        placed = affine_transform(roi, [dsx, 0, 0, dsy, x * dsx, y * dsy])
        pieces = [shapely.intersection(a, placed) for a in polygons]
        union = shapely.union_all(pieces) if pieces else Polygon()
        out.append(union.area / (dsx * dsy))
    return np.array(out)


def oracle_counts(
    level_image: np.ndarray, roi, tile_x: int, tile_y: int, scale: tuple[float, float]
) -> Counter:
    """Counts of each value key among the pixels that the contract says a tile owns.

    Walks every pixel of the overlay level, keeps those inside the tile's rounded read window,
    on the image and with their centre (tested at ``c - 1e-6``) inside the ROI mapped into
    overlay pixels, and counts their values.
    """
    sx, sy = scale
    min_x, min_y, max_x, max_y = roi.bounds
    wx = math.floor((tile_x + min_x) * sx + 0.5)
    wy = math.floor((tile_y + min_y) * sy + 0.5)
    ww = math.floor((max_x - min_x) * sx + 0.5)
    wh = math.floor((max_y - min_y) * sy + 0.5)
    placed = shapely.affinity.scale(
        shapely.affinity.translate(roi, tile_x, tile_y), sx, sy, origin=(0, 0)
    )
    height, width = level_image.shape[:2]
    counts: Counter = Counter()
    for y in range(max(wy, 0), min(wy + wh, height)):
        for x in range(max(wx, 0), min(wx + ww, width)):
            if placed.contains(Point(x + 0.5 - 1e-6, y + 0.5 - 1e-6)):
                counts[pixel_key(level_image[y, x])] += 1
    return counts


def pixel_key(pixel) -> str:
    values = np.atleast_1d(pixel).tolist()
    if len(values) == 1 or len(set(values[:3])) == 1:
        return str(values[0])
    return ",".join(str(v) for v in values[:3])


def as_fractions(counts: Counter, keys) -> dict[str, float] | None:
    total = sum(counts.values())
    return {k: counts.get(k, 0) / total for k in keys} if total else None


def check_against_oracle(path, image, roi, tiles, tile_mpp, overlay_mpp_level):
    """Assert overlap and patches of every tile equal the oracle on ``image``."""
    scale = (tile_mpp / overlay_mpp_level, tile_mpp / overlay_mpp_level)
    xs = [t[0] for t in tiles]
    ys = [t[1] for t in tiles]
    overlap = tile_overlay_overlap(roi, str(path), xs, ys, tile_mpp, tile_mpp)
    patches = tile_overlay(roi, str(path), xs, ys, tile_mpp, tile_mpp)
    expected = [oracle_counts(image, roi, x, y, scale) for x, y in tiles]
    keys = sorted({k for c in expected for k in c}, key=lambda k: [float(p) for p in k.split(",")])
    assert any(e for e in expected), "test layout must put some tiles on the overlay"
    for (x, y), got, want, patch in zip(tiles, overlap, expected, patches, strict=True):
        assert got == as_fractions(want, keys), (x, y)
        counted = patch.data[~patch.mask]
        assert Counter(pixel_key(p) for p in counted) == want, (x, y)
    return overlap
