"""grid_tiles / grid_tile_array: golden table, brute-force agreement, validation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from wsi_core.tiling import grid_tile_array, grid_tiles

# SEMANTICS.md golden table: (S, T, s) -> origins for keep, shift, drop.
GOLDEN = [
    ((5, 2, 2), [0, 2, 4], [0, 2, 3], [0, 2]),
    ((11, 4, 3), [0, 3, 6, 9], [0, 3, 6, 7], [0, 3, 6]),
    ((1024, 512, 512), [0, 512], [0, 512], [0, 512]),
    ((100, 512, 512), [0], [0], []),
]


def brute_axis(slide: int, tile: int, stride: int, last: str) -> list[int]:
    """Origins along one axis, enumerated one by one from the rules in SEMANTICS.md."""
    origins: list[int] = []
    i = 0
    if last == "drop":
        while i * stride + tile <= slide:  # the whole tile fits
            origins.append(i * stride)
            i += 1
        return origins
    # keep / shift: a next tile is needed while the previous one stops short of the edge.
    while i * stride < slide and (i == 0 or (i - 1) * stride + tile < slide):
        origins.append(i * stride)
        i += 1
    if last == "shift":
        # The ceil(q) + 1 count holds even where stride > tile would leave a last origin
        # at or past the edge; that last tile is moved back to the edge.
        if i > 0 and i * stride >= slide and (i - 1) * stride + tile < slide:
            origins.append(i * stride)
        if origins:
            origins[-1] = max(slide - tile, 0)
    return origins


def brute_grid(slide, tile, stride, last) -> np.ndarray:
    axes = [brute_axis(s, t, d, last) for s, t, d in zip(slide, tile, stride, strict=True)]
    rows = []
    # x fastest: iterate the last axis in the outer loop.
    for combo in itertools.product(*axes[::-1]):
        rows.append(combo[::-1])
    return np.array(rows, dtype=np.int64).reshape(-1, len(slide))


@pytest.mark.parametrize(("sts", "keep", "shift", "drop"), GOLDEN)
def test_golden_table(sts, keep, shift, drop):
    s, t, d = sts
    for last, expected in (("keep", keep), ("shift", shift), ("drop", drop)):
        got = [int(o[0]) for o in grid_tiles(s, t, d, last=last)]
        assert got == expected, (sts, last)
        assert grid_tile_array(s, t, d, last=last)[:, 0].tolist() == expected


def test_brute_axis_matches_golden_table():
    # The oracle itself must reproduce the contract before it is trusted below.
    for (s, t, d), keep, shift, drop in GOLDEN:
        assert brute_axis(s, t, d, "keep") == keep
        assert brute_axis(s, t, d, "shift") == shift
        assert brute_axis(s, t, d, "drop") == drop


def test_counts_follow_floor_and_ceil():
    rng = np.random.default_rng(1)
    for _ in range(500):
        t = int(rng.integers(1, 50))
        s = int(rng.integers(t, 400))  # S >= T so q >= 0
        d = int(rng.integers(1, 60))
        q = (s - t) / d
        assert len(list(grid_tiles(s, t, d, "drop"))) == int(np.floor(q)) + 1
        assert len(list(grid_tiles(s, t, d, "shift"))) == int(np.ceil(q)) + 1
        # keep drops only a ceil(q) tile that would start at or past the edge (stride > tile)
        keep = grid_tile_array(s, t, d, "keep")[:, 0]
        assert len(keep) == int(np.ceil(q)) + 1 - int(int(np.ceil(q)) * d >= s)


@pytest.mark.parametrize("last", ["keep", "shift", "drop"])
@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_matches_brute_force(last, ndim):
    rng = np.random.default_rng(ndim * 10 + len(last))
    for _ in range(150):
        slide = rng.integers(0, 90, ndim)
        tile = rng.integers(1, 40, ndim)
        stride = rng.integers(1, 50, ndim)  # includes stride > tile and tile > slide
        expected = brute_grid(slide, tile, stride, last)
        got_array = grid_tile_array(slide.tolist(), tile.tolist(), stride.tolist(), last)
        got_iter = list(grid_tiles(slide.tolist(), tile.tolist(), stride.tolist(), last))
        assert got_array.dtype == np.int64
        assert got_array.shape == (len(expected), ndim)
        np.testing.assert_array_equal(got_array, expected)
        assert len(got_iter) == len(expected)
        if got_iter:
            np.testing.assert_array_equal(np.array(got_iter), expected)


def test_brute_force_includes_the_hard_cases():
    # tile larger than slide, stride larger than tile, empty slide
    assert brute_axis(10, 20, 5, "keep") == [0]
    assert brute_axis(10, 20, 5, "shift") == [0]
    assert brute_axis(10, 20, 5, "drop") == []
    assert brute_axis(10, 2, 5, "keep") == [0, 5]
    assert brute_axis(10, 2, 5, "shift") == [0, 5, 8]
    assert brute_axis(10, 2, 5, "drop") == [0, 5]
    assert brute_axis(0, 2, 2, "keep") == []
    assert brute_axis(0, 2, 5, "shift") == []


def test_better_than_reference_edges():
    # shift never negative, keep never starts at or beyond S, drop with T > S yields none
    assert grid_tile_array(100, 512, 512, "shift").tolist() == [[0]]
    assert grid_tile_array(100, 512, 64, "shift").tolist() == [[0]]
    assert grid_tile_array(100, 512, 64, "keep").tolist() == [[0]]
    assert grid_tile_array(10, 2, 5, "keep")[:, 0].tolist() == [0, 5]  # reference adds 10
    assert grid_tile_array(100, 512, 512, "drop").shape == (0, 1)
    for last in ("keep", "shift"):
        for s, t, d in [(7, 3, 5), (9, 2, 4), (13, 1, 6)]:
            origins = grid_tile_array(s, t, d, last)[:, 0]
            assert (origins >= 0).all() and (origins < s).all()


def test_order_x_fastest_and_unpacking():
    tiles = list(grid_tiles((5, 4), (2, 2), (2, 2), last="drop"))
    assert [tuple(int(v) for v in o) for o in tiles] == [(0, 0), (2, 0), (0, 2), (2, 2)]
    xs, ys = [], []
    for x, y in grid_tiles((1024, 600), 512, 512):
        xs.append(int(x))
        ys.append(int(y))
    assert xs == [0, 512, 0, 512] and ys == [0, 0, 512, 512]
    array = np.array(list(grid_tiles((1024, 600), 512, 512)))
    assert array.shape == (4, 2) and array.dtype == np.int64
    np.testing.assert_array_equal(array, grid_tile_array((1024, 600), 512, 512))


def test_each_yielded_array_is_independent():
    tiles = list(grid_tiles((6, 6), 2, 2))
    tiles[0][0] = 99
    assert tiles[1].tolist() == [2, 0]
    assert all(t.dtype == np.int64 and t.shape == (2,) for t in tiles)


def test_scalars_broadcast_and_numpy_inputs():
    a = grid_tile_array((10, 6), 4, 3, "keep")
    b = grid_tile_array(np.array([10, 6]), (np.int64(4), 4), np.array([3, 3]), "keep")
    np.testing.assert_array_equal(a, b)
    assert a[:, 0].tolist() == [0, 3, 6, 0, 3, 6]
    assert a[:, 1].tolist() == [0, 0, 0, 3, 3, 3]
    assert grid_tile_array(10.0, 4.0, 3.0).tolist() == [[0], [3], [6]]  # whole floats accepted


def test_three_axes_order():
    grid = grid_tile_array((4, 4, 4), 2, 2, "drop")
    assert grid.shape == (8, 3)
    assert grid[:3].tolist() == [[0, 0, 0], [2, 0, 0], [0, 2, 0]]
    assert grid[4].tolist() == [0, 0, 2]


def test_lazy_iteration_of_large_grid():
    it = grid_tiles((10**7, 10**7), 1, 1)  # 10^14 tiles: must not be materialised
    assert next(it).tolist() == [0, 0]
    assert next(it).tolist() == [1, 0]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"slide_extent": 10, "tile_extent": 0, "stride": 1}, "tile_extent must be positive"),
        ({"slide_extent": 10, "tile_extent": -2, "stride": 1}, "tile_extent must be positive"),
        ({"slide_extent": 10, "tile_extent": 2, "stride": 0}, "stride must be positive"),
        (
            {"slide_extent": (10, 10), "tile_extent": (2, -1), "stride": 1},
            "tile_extent must be positive",
        ),
        ({"slide_extent": -1, "tile_extent": 2, "stride": 1}, "slide_extent must not be negative"),
        (
            {"slide_extent": (10, 10, 10), "tile_extent": (2, 2), "stride": 1},
            "different numbers of axes",
        ),
        ({"slide_extent": 10.5, "tile_extent": 2, "stride": 1}, "must be whole numbers"),
        ({"slide_extent": "10", "tile_extent": 2, "stride": 1}, "must be integers"),
    ],
)
def test_invalid_arguments_raise_eagerly(kwargs, message):
    with pytest.raises(ValueError, match=message):
        grid_tiles(**kwargs)  # raised at the call, not on first next()
    with pytest.raises(ValueError, match=message):
        grid_tile_array(**kwargs)


def test_unknown_last_raises():
    with pytest.raises(ValueError, match="last"):
        grid_tiles(100, 10, 10, last="pad")
    with pytest.raises(ValueError, match="last"):
        grid_tile_array(100, 10, 10, last="KEEP")
