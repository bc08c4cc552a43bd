"""Index arithmetic of wsi_core.tiling.ragged against plain Python."""

from __future__ import annotations

import numpy as np
import pytest

from wsi_core.tiling.ragged import connected_groups


def _components_by_search(n: int, a: np.ndarray, b: np.ndarray) -> list[int]:
    """Each node's smallest component member, by depth-first search."""
    neighbours: list[list[int]] = [[] for _ in range(n)]
    for u, v in zip(a.tolist(), b.tolist(), strict=True):
        neighbours[u].append(v)
        neighbours[v].append(u)
    group = [-1] * n
    for start in range(n):
        if group[start] >= 0:
            continue
        stack, members = [start], []
        group[start] = start
        while stack:
            node = stack.pop()
            members.append(node)
            for other in neighbours[node]:
                if group[other] < 0:
                    group[other] = start
                    stack.append(other)
        for node in members:
            group[node] = min(members)
    return group


@pytest.mark.parametrize("seed", range(20))
def test_connected_groups_match_a_search(seed):
    """Random graphs from isolated nodes to one component, and long shuffled paths (the case
    that needs the most rounds of hooking)."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 400))
    if seed % 4 == 0:  # a path through the nodes in random order
        order = rng.permutation(n)
        a, b = order[:-1], order[1:]
    else:
        links = int(rng.integers(0, 2 * n))
        a, b = rng.integers(0, n, links), rng.integers(0, n, links)
    assert connected_groups(n, a, b).tolist() == _components_by_search(n, a, b)


def test_connected_groups_without_links_and_with_self_links():
    assert connected_groups(3, np.array([], dtype=int), np.array([], dtype=int)).tolist() == [
        0,
        1,
        2,
    ]
    assert connected_groups(3, np.array([2, 1]), np.array([2, 0])).tolist() == [0, 0, 2]
