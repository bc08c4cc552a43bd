"""near_pairs against brute force: pairs of segments from different groups whose boxes, widened
by the tolerance, overlap, each once (a long segment's box is that of its pieces, so every pair
that comes within the tolerance is among them); crowded cells reported instead of paired."""

from __future__ import annotations

import numpy as np
import pytest
import shapely

import wsi_core.tiling.segment_pairs as segment_pairs_module
from wsi_core.tiling.segment_pairs import Segments, near_pairs


def _brute_force(segments: Segments, group: np.ndarray, tol: float) -> set[tuple[int, int]]:
    ax, ay, bx, by = segments
    lo_x, hi_x = np.minimum(ax, bx) - tol, np.maximum(ax, bx) + tol
    lo_y, hi_y = np.minimum(ay, by) - tol, np.maximum(ay, by) + tol
    i, j = np.triu_indices(len(ax), k=1)
    meet = (
        (group[i] != group[j])
        & (lo_x[i] <= hi_x[j])
        & (lo_x[j] <= hi_x[i])
        & (lo_y[i] <= hi_y[j])
        & (lo_y[j] <= hi_y[i])
    )
    return set(zip(i[meet].tolist(), j[meet].tolist(), strict=True))


def _within(segments: Segments, tol: float) -> np.ndarray:
    """Distance between every two segments (square matrix) is at most ``tol``."""
    lines = shapely.linestrings(
        np.stack([np.c_[segments.ax, segments.ay], np.c_[segments.bx, segments.by]], axis=1)
    )
    return shapely.distance(lines[:, None], lines[None, :]) <= tol


def _random_segments(seed: int, n: int, long: bool = True) -> tuple[Segments, np.ndarray]:
    """``n`` segments as random walks of a few dozen steps per group (consecutive segments share
    their ends, as polygon edges do): steps of 0.5-4, some of them vertical or horizontal, and
    with ``long`` one in ten of 20-90, across many cells."""
    rng = np.random.default_rng(seed)
    group = np.repeat(np.arange(n // 30 + 1), 30)[:n]
    share = 0.1 if long else 0.0
    length = np.where(rng.random(n) < share, rng.uniform(20, 90, n), rng.uniform(0.5, 4, n))
    angle = rng.uniform(0, 2 * np.pi, n)
    angle[::7] = np.pi / 2  # vertical
    angle[3::11] = 0.0  # horizontal
    step = length[:, None] * np.c_[np.cos(angle), np.sin(angle)]
    start = rng.uniform(0, 100, (n, 2))
    a, b = np.empty((n, 2)), np.empty((n, 2))
    for k in range(n):
        # Within a group each segment starts where the one before it ends.
        a[k] = start[k] if k == 0 or group[k] != group[k - 1] else b[k - 1]
        b[k] = a[k] + step[k]
    return Segments(a[:, 0], a[:, 1], b[:, 0], b[:, 1]), group


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("tol", [0.0, 1e-9, 0.3])
def test_near_pairs_are_the_overlapping_boxes(seed, tol):
    """Short segments (one piece each): exactly the pairs whose boxes overlap."""
    segments, group = _random_segments(seed, 600, long=False)
    pairs = near_pairs(segments, group, tol)
    found = list(zip(pairs.i.tolist(), pairs.j.tolist(), strict=True))
    assert len(found) == len(set(found)), "a pair was reported twice"
    assert all(i < j for i, j in found)
    assert set(found) == _brute_force(segments, group, tol)
    assert len(pairs.crowded_groups) == 0


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("tol", [0.0, 0.3])
def test_long_segments_find_every_pair_within_the_tolerance(seed, tol):
    """With long segments too: every pair that comes within tol, none whose boxes miss."""
    segments, group = _random_segments(seed, 600)
    pairs = near_pairs(segments, group, tol)
    found = set(zip(pairs.i.tolist(), pairs.j.tolist(), strict=True))
    assert len(found) == len(pairs.i)
    near = _within(segments, tol)
    i, j = np.nonzero(np.triu(near, k=1) & (group[:, None] != group[None, :]))
    assert set(zip(i.tolist(), j.tolist(), strict=True)) <= found
    assert found <= _brute_force(segments, group, tol)


@pytest.mark.parametrize("tol", [0.0, 1e-9])
def test_segments_that_touch_exactly(tol):
    """The edges of a grid of unit squares, each square its own group: edges shared, corners
    shared, boxes that only touch. Every pair of different squares' edges that touch is
    found, once."""
    corners = np.array([(0, 0), (1, 0), (1, 1), (0, 1), (0, 0)], dtype=float)
    ax, ay, bx, by, group = [], [], [], [], []
    for k, (x, y) in enumerate((x, y) for x in range(6) for y in range(5)):
        ring = corners + np.array([x, y], dtype=float)
        ax += ring[:-1, 0].tolist()
        ay += ring[:-1, 1].tolist()
        bx += ring[1:, 0].tolist()
        by += ring[1:, 1].tolist()
        group += [k] * 4
    segments = Segments(*(np.array(v) for v in (ax, ay, bx, by)))
    pairs = near_pairs(segments, np.array(group), tol)
    found = list(zip(pairs.i.tolist(), pairs.j.tolist(), strict=True))
    assert len(found) == len(set(found))
    assert set(found) == _brute_force(segments, np.array(group), tol)


def test_groups_need_not_come_in_runs():
    segments, group = _random_segments(1, 400, long=False)
    shuffled = np.random.default_rng(0).permutation(group)
    pairs = near_pairs(segments, shuffled, 1e-9)
    found = set(zip(pairs.i.tolist(), pairs.j.tolist(), strict=True))
    assert found == _brute_force(segments, shuffled, 1e-9)


def test_crowded_cells_are_reported_not_paired(monkeypatch):
    """With at most 3 pieces a cell, the groups of the segments in fuller cells are reported;
    every pair outside them is still found."""
    monkeypatch.setattr(segment_pairs_module, "_CROWDED_CELL", 3)
    segments, group = _random_segments(2, 600, long=False)
    pairs = near_pairs(segments, group, 1e-9)
    assert len(pairs.crowded_groups) > 0
    crowded = np.isin(group, pairs.crowded_groups)
    expected = {
        (i, j) for i, j in _brute_force(segments, group, 1e-9) if not (crowded[i] or crowded[j])
    }
    found = set(zip(pairs.i.tolist(), pairs.j.tolist(), strict=True))
    assert expected <= found
    assert all(crowded[i] or crowded[j] or (i, j) in expected for i, j in found)
