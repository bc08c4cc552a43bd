"""Synthetic slide pictures with known tissue, for the tissue-mask tests and benchmark.

H&E-like tissue (eosin pink mixed with haematoxylin purple, speckled) in discs whose centres
and radii are known, on a white or grey background, with optional marker-pen strokes (blue,
green, black) and a dark slide-glass edge. Sizes are in pixels of the picture (level 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

EOSIN = (232, 150, 200)
HAEMATOXYLIN = (120, 70, 160)
WHITE = (242, 242, 242)
GREY = (185, 185, 185)
BLUE_PEN = (40, 60, 170)
GREEN_PEN = (40, 150, 70)
BLACK_PEN = (25, 25, 30)
#: A slide-glass edge scans near-black with a colour fringe (chromatic aberration), which gives
#: it a purple hue and a high HSV saturation: only its darkness tells it from tissue.
GLASS_EDGE = (30, 20, 38)


@dataclass(frozen=True)
class Disc:
    """A tissue disc: centre ``(cx, cy)`` and radius ``r``, picture pixels."""

    cx: float
    cy: float
    r: float


@dataclass(frozen=True)
class Stroke:
    """A straight stroke of ``colour`` from ``start`` to ``end`` (picture pixels, not the
    same point), ``width`` wide: a pen mark, or in the background colour a crack or lumen."""

    start: tuple[float, float]
    end: tuple[float, float]
    width: float
    colour: tuple[int, int, int]


def inside_discs(discs: Sequence[Disc], xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """True where the point ``(xs, ys)`` lies inside any disc."""
    inside = np.zeros(np.broadcast(xs, ys).shape, dtype=bool)
    for disc in discs:
        inside |= (xs - disc.cx) ** 2 + (ys - disc.cy) ** 2 < disc.r**2
    return inside


def truth_mask(discs: Sequence[Disc], shape: tuple[int, int], pixel: float) -> np.ndarray:
    """The discs on a grid of ``shape`` (height, width) whose pixels are ``pixel`` picture
    pixels wide: True where a grid pixel's centre lies inside a disc."""
    ys = (np.arange(shape[0])[:, None] + 0.5) * pixel
    xs = (np.arange(shape[1])[None, :] + 0.5) * pixel
    return inside_discs(discs, xs, ys)


def _on_stroke(stroke: Stroke, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    (x0, y0), (x1, y1) = stroke.start, stroke.end
    dx, dy = x1 - x0, y1 - y0
    t = np.clip(((xs - x0) * dx + (ys - y0) * dy) / (dx * dx + dy * dy), 0, 1)
    return (xs - x0 - t * dx) ** 2 + (ys - y0 - t * dy) ** 2 <= (stroke.width / 2) ** 2


def he_picture(
    shape: tuple[int, int],
    discs: Sequence[Disc],
    *,
    background: tuple[int, int, int] = WHITE,
    strokes: Sequence[Stroke] = (),
    glass_edge: int = 0,
    seed: int = 0,
) -> np.ndarray:
    """An RGB ``uint8`` picture of ``shape`` (height, width): stained tissue in ``discs`` on
    ``background`` (with +-3 grey-level noise), pen ``strokes`` drawn over everything, and a
    band of ``GLASS_EDGE`` colour ``glass_edge`` pixels wide down the left edge."""
    rng = np.random.default_rng(seed)
    height, width = shape
    ys, xs = np.mgrid[:height, :width]
    picture = np.empty((height, width, 3), dtype=np.float32)
    picture[...] = background
    tissue = inside_discs(discs, xs + 0.5, ys + 0.5)
    mix = rng.uniform(0.0, 1.0, int(tissue.sum())).astype(np.float32)[:, None]
    picture[tissue] = (1 - mix) * np.array(EOSIN, np.float32) + mix * np.array(HAEMATOXYLIN)
    picture += rng.normal(0, 3, picture.shape).astype(np.float32)
    for stroke in strokes:
        picture[_on_stroke(stroke, xs + 0.5, ys + 0.5)] = stroke.colour
    if glass_edge:
        picture[:, :glass_edge] = GLASS_EDGE
    return np.clip(picture + 0.5, 0, 255).astype(np.uint8)
