"""Straight segments: a table of them for NumPy, and the scalar geometry that the kernels'
compiled loops (numba) share.

Segments are four coordinate arrays ``ax, ay, bx, by`` (the compiled helpers take an index into
them), in whatever frame the caller uses (level-0 pixels in the kernels); distances come back
in that frame's unit.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit


class Segments(NamedTuple):
    """Straight segments ``(ax, ay) -> (bx, by)``, one per row."""

    ax: np.ndarray
    ay: np.ndarray
    bx: np.ndarray
    by: np.ndarray

    def take(self, rows: np.ndarray) -> Segments:
        """The segments at ``rows`` (an index or a mask)."""
        return Segments(self.ax[rows], self.ay[rows], self.bx[rows], self.by[rows])


@njit(cache=True, nogil=True, inline="always")
def segment_point(ax: float, ay: float, bx: float, by: float, t: float) -> tuple[float, float]:
    """The point at parameter ``t`` (0 at a, 1 at b) along one segment: exactly b at 1, and
    exactly on the line of a vertical or horizontal segment."""
    if t == 1:
        return bx, by
    return ax + t * (bx - ax), ay + t * (by - ay)


@njit(cache=True, nogil=True, inline="always")
def point_segment_distance(
    px: float, py: float, s: int, ax: np.ndarray, ay: np.ndarray, bx: np.ndarray, by: np.ndarray
) -> float:
    """Distance from point ``(px, py)`` to segment ``s`` (not of zero length)."""
    dx, dy = bx[s] - ax[s], by[s] - ay[s]
    t = min(max(((px - ax[s]) * dx + (py - ay[s]) * dy) / (dx * dx + dy * dy), 0.0), 1.0)
    ex, ey = ax[s] + t * dx - px, ay[s] + t * dy - py
    return np.sqrt(ex * ex + ey * ey)


@njit(cache=True, nogil=True)
def end_distance(
    a: int, b: int, ax: np.ndarray, ay: np.ndarray, bx: np.ndarray, by: np.ndarray
) -> float:
    """The least distance from an end of segment ``a`` or ``b`` to the other segment: the
    distance between them wherever they do not cross."""
    return min(
        point_segment_distance(ax[a], ay[a], b, ax, ay, bx, by),
        point_segment_distance(bx[a], by[a], b, ax, ay, bx, by),
        point_segment_distance(ax[b], ay[b], a, ax, ay, bx, by),
        point_segment_distance(bx[b], by[b], a, ax, ay, bx, by),
    )
