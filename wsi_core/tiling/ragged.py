"""Index arithmetic for ragged groups held in flat NumPy arrays.

A group is a run of rows that share an id (ids ``0..n-1``, the rows sorted by id), or a count of
items per group. These helpers deal in row indices and counts only, no coordinates: values that
are summed keep whatever unit the caller gives them (in the coverage kernel, level-0 pixels or
level-0 square pixels).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


def ragged_expand(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For ``counts[i]`` items in group i: (group index, index within group) of every item."""
    counts = np.asarray(counts, dtype=np.int64)
    group = np.repeat(np.arange(len(counts)), counts)
    starts = np.cumsum(counts) - counts
    within = np.arange(len(group), dtype=np.int64) - starts[group]
    return group, within


def group_bounds(sorted_ids: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Start and count of each id 0..n-1 in an ascending id array."""
    count = np.bincount(sorted_ids, minlength=n)
    return np.cumsum(count) - count, count


def sum_by(groups: np.ndarray, weights: np.ndarray, n: int) -> np.ndarray:
    """float64 sums of ``weights`` per group 0..n-1 (bincount, but float even when empty)."""
    return np.bincount(groups, weights=weights, minlength=n).astype(np.float64, copy=False)


def bounded_chunks(counts: np.ndarray, budget: float) -> Iterator[tuple[int, int]]:
    """Consecutive index ranges ``[start, stop)`` of items whose ``counts`` add up to at most
    ``budget``; an item whose count alone exceeds the budget makes a range of its own.

    This is how the kernels bound memory: ``counts`` is the size of the temporary arrays an
    item will need (rows, pairs, vertices), so every range needs about ``budget`` at most.
    """
    running = np.cumsum(counts)
    start = 0
    while start < len(running):
        done = running[start - 1] if start else 0
        stop = int(np.searchsorted(running, done + budget, side="right"))
        stop = max(stop, start + 1)
        yield start, stop
        start = stop


def connected_groups(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """For nodes 0..n-1 linked by undirected links ``(a[i], b[i])``: each node's group, the
    smallest node of its connected component.

    Roots are hooked under the smallest root they are linked to, then every node is pointed at
    its root by pointer jumping; rounds repeat until no link joins two groups (a few rounds,
    each linear in nodes plus links).
    """
    group = np.arange(n)
    while True:
        ga, gb = group[a], group[b]
        apart = ga != gb
        if not np.any(apart):
            return group
        np.minimum.at(group, np.maximum(ga[apart], gb[apart]), np.minimum(ga[apart], gb[apart]))
        while True:
            up = group[group]
            if np.array_equal(up, group):
                break
            group = up
