"""tile_overlay and tile_overlay_overlap against a brute-force per-pixel count (the oracle in
``kernel_oracles.py``, written from SEMANTICS.md alone)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from kernel_oracles import as_fractions, check_against_oracle, oracle_counts
from shapely.geometry import Point, Polygon, box

import wsi_core.tiling.overlay as overlay_module
from wsi_core.synthetic import write_pyramid_tiff
from wsi_core.tiling import overlay_kernels, tile_overlay, tile_overlay_overlap


def blobs(height: int, width: int, seed: int, values=(0, 255)) -> np.ndarray:
    """A label image of a few discs on a background, values drawn from ``values``."""
    rng = np.random.default_rng(seed)
    image = np.full((height, width), values[0], dtype=np.uint8)
    yy, xx = np.mgrid[:height, :width]
    for _ in range(12):
        cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(3, width / 4)
        image[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = rng.choice(values[1:])
    return image


@pytest.fixture
def mask_pyramid(tmp_path: Path):
    """A 0/255 mask at 4 um/px with three levels (4, 8, 16 um/px)."""
    image = blobs(300, 400, seed=1)
    path = write_pyramid_tiff(
        tmp_path / "mask.tiff", image, mpp=4.0, n_levels=3, resample="nearest"
    )
    return path, image


def level(image: np.ndarray, n: int) -> np.ndarray:
    return image[:: 2**n, :: 2**n]


def test_box_roi_16x_coarser_overlay_matches_oracle(mask_pyramid):
    path, image = mask_pyramid
    tiles = [(x, y) for y in range(0, 4800, 512) for x in range(0, 6400, 512)]
    check_against_oracle(path, image, box(0, 0, 512, 512), tiles, 0.25, 4.0)


def test_circle_roi_16x_coarser_overlay_matches_oracle(mask_pyramid):
    path, image = mask_pyramid
    roi = Point(256, 256).buffer(200, quad_segs=32)
    tiles = [(x, y) for y in range(-512, 5000, 448) for x in range(-256, 6600, 448)]
    check_against_oracle(path, image, roi, tiles, 0.25, 4.0)


def test_triangle_roi_exceeding_tile_on_coarser_level(mask_pyramid):
    """Tiles at 7.7 um/px pick level 1 (8 um/px); the ROI pokes out of the tile."""
    path, image = mask_pyramid
    roi = Polygon([(-10, 5), (70, 0), (30, 80)])
    tiles = [(x, y) for y in range(-40, 420, 37) for x in range(-30, 560, 41)]
    check_against_oracle(path, level(image, 1), roi, tiles, 7.7, 8.0)


def test_overlay_finer_than_tiles(mask_pyramid):
    """Tiles at 16 um/px on a 4 um/px overlay: each tile pixel covers 4x4 overlay pixels."""
    path, image = mask_pyramid
    roi = Point(8, 8).buffer(7.3)
    tiles = [(x, y) for y in range(0, 80, 16) for x in range(0, 100, 16)]
    # level 2 is 16 um/px: closest to the tiles, so the scale is 1 there
    check_against_oracle(path, level(image, 2), roi, tiles, 16.0, 16.0)
    with_override = tile_overlay_overlap(roi, str(path), [16], [16], 16.0, 16.0, overlay_mpp=16.0)
    # with a 16 um/px override, level 0 is 16 um/px: the tile reads full-resolution pixels
    assert with_override == [as_fractions(oracle_counts(image, roi, 16, 16, (1, 1)), ["0", "255"])]


def test_non_integer_scale_matches_oracle(tmp_path):
    image = blobs(200, 260, seed=5, values=(0, 1, 2, 3))
    path = write_pyramid_tiff(
        tmp_path / "labels.tiff", image, mpp=1.3, n_levels=1, resample="nearest"
    )
    roi = box(3.3, 4.1, 97.6, 88.2)
    tiles = [(x, y) for y in range(-50, 600, 61) for x in range(-50, 700, 67)]
    check_against_oracle(path, image, roi, tiles, 0.5, 1.3)


def test_grid_fast_path_equals_per_tile_masks(mask_pyramid):
    """A box ROI on a regular grid is counted by summed-area tables; the patches of
    tile_overlay (a rasterised mask per tile) must give exactly the same fractions."""
    path, _ = mask_pyramid
    roi = box(0, 0, 512, 512)
    grid = [(x, y) for y in range(0, 4800, 512) for x in range(0, 6400, 512)]
    xs, ys = zip(*grid, strict=True)
    fast = tile_overlay_overlap(roi, str(path), xs, ys, 0.25, 0.25)
    for patch, got in zip(tile_overlay(roi, str(path), xs, ys, 0.25, 0.25), fast, strict=True):
        values, counts = np.unique(patch.data[~patch.mask], return_counts=True)
        assert got == {str(v): c / counts.sum() for v, c in zip(values, counts, strict=True)} | {
            k: 0.0 for k in got if k not in {str(v) for v in values}
        }


def test_windows_are_clipped_not_shifted_on_every_side(tmp_path):
    """A marker column on each edge: a tile hanging off the image counts only the pixels it
    really covers, so the marker's fraction is 1/(covered width), never shifted."""
    image = np.zeros((64, 64), dtype=np.uint8)
    image[:, 0] = 1  # left
    image[:, 63] = 2  # right
    image[0, 1:63] = 3  # top
    image[63, 1:63] = 4  # bottom
    path = write_pyramid_tiff(
        tmp_path / "edges.tiff", image, mpp=1.0, n_levels=1, resample="nearest"
    )
    roi = box(0, 0, 16, 16)
    xs, ys = [-8, 56, 24, 24, -20], [24, 24, -8, 56, 80]
    left, right, top, bottom, off = tile_overlay_overlap(roi, str(path), xs, ys, 1.0, 1.0)
    assert left["1"] == pytest.approx(1 / 8) and left["0"] == pytest.approx(7 / 8)
    assert right["2"] == pytest.approx(1 / 8)
    assert top["3"] == pytest.approx(1 / 8)
    assert bottom["4"] == pytest.approx(1 / 8)
    assert off is None
    assert set(left) == {"0", "1", "2", "3", "4"} and left["2"] == 0.0
    patch = tile_overlay(roi, str(path), [-8], [24], 1.0, 1.0)[0]
    assert patch.data.shape == (16, 16) and patch.mask.shape == (16, 16)
    assert patch.mask[:, :8].all() and not patch.mask[:, 8:].any()
    assert (patch.data[:, 8] == 1).all()


def test_grey_as_rgb_equals_one_channel_and_colour_keys(tmp_path):
    grey = blobs(128, 128, seed=3)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    p1 = write_pyramid_tiff(tmp_path / "grey.tiff", grey, mpp=2.0, n_levels=2, resample="nearest")
    p3 = write_pyramid_tiff(tmp_path / "rgb.tiff", rgb, mpp=2.0, n_levels=2, resample="nearest")
    roi = Point(32, 32).buffer(30)
    xs, ys = [0, 64, 64, 100], [0, 0, 64, 90]
    assert tile_overlay_overlap(roi, str(p1), xs, ys, 2.0, 2.0) == tile_overlay_overlap(
        roi, str(p3), xs, ys, 2.0, 2.0
    )
    colour = rgb.copy()
    colour[grey == 255] = (200, 30, 60)
    pc = write_pyramid_tiff(
        tmp_path / "colour.tiff", colour, mpp=2.0, n_levels=1, resample="nearest"
    )
    got = tile_overlay_overlap(roi, str(pc), xs, ys, 2.0, 2.0)
    want = tile_overlay_overlap(roi, str(p1), xs, ys, 2.0, 2.0)
    for g, w in zip(got, want, strict=True):
        assert set(g) == {"0", "200,30,60"}
        assert g["200,30,60"] == w["255"] and g["0"] == w["0"]


def test_several_overlays_and_mpps_in_one_call(tmp_path):
    a = blobs(100, 100, seed=7)
    b = blobs(100, 100, seed=8, values=(0, 7))
    pa_ = write_pyramid_tiff(tmp_path / "a.tiff", a, mpp=1.0, n_levels=2, resample="nearest")
    pb = write_pyramid_tiff(tmp_path / "b.tiff", b, mpp=1.0, n_levels=2, resample="nearest")
    roi = box(0, 0, 20, 20)
    got = tile_overlay_overlap(
        roi, [str(pa_), str(pb), str(pa_)], [0, 20, 10], [0, 20, 10], [1.0, 1.0, 2.0], 1.0
    )
    assert set(got[0]) == {"0", "7", "255"}
    assert got[0] == as_fractions(oracle_counts(a, roi, 0, 0, (1, 1)), ["0", "7", "255"])
    assert got[1] == as_fractions(oracle_counts(b, roi, 20, 20, (1, 1)), ["0", "7", "255"])
    # mpp (2.0, 1.0) sits between levels 0 and 1 equally in sum of distances: the finer wins
    assert got[2] == as_fractions(oracle_counts(a, roi, 10, 10, (2.0, 1.0)), ["0", "7", "255"])


def test_mismatched_lengths_raise():
    with pytest.raises(ValueError, match="length"):
        tile_overlay_overlap(box(0, 0, 1, 1), "x.tiff", [0, 1], [0, 1, 2], 1.0, 1.0)


def test_missing_overlay_names_the_file(tmp_path):
    missing = tmp_path / "nope_tissue_mask.tiff"
    with pytest.raises(Exception, match=r"nope_tissue_mask\.tiff"):
        tile_overlay_overlap(box(0, 0, 1, 1), str(missing), [0], [0], 1.0, 1.0)


def test_real_mask_aligned_with_cmu_small_region(shared_data):
    """LUNA's mask lies on the CMU-1-Small-Region level-0 grid and holds 89 foreground pixels
    in x 1-5, y 2-30; the file records no resolution, so the slide's is passed."""
    mask = shared_data / "masks" / "mask_full_res.tif"
    roi = box(0, 0, 256, 256)
    xs, ys = zip(*[(x, y) for y in range(0, 2967, 256) for x in range(0, 2220, 256)], strict=True)
    got = tile_overlay_overlap(roi, str(mask), xs, ys, 0.499, 0.499, overlay_mpp=0.499)
    assert got[0] == {"0": (256**2 - 89) / 256**2, "1": 89 / 256**2}
    assert all(g == {"0": 1.0, "1": 0.0} for g in got[1:] if g is not None)
    # tiles on the bottom and right edges count only the pixels on the image
    last_row = [g for (x, y), g in zip(zip(xs, ys, strict=True), got, strict=True) if y == 2816]
    assert last_row and all(g is not None for g in last_row)


def test_real_histolab_tissue_mask_matches_oracle(shared_data, tmp_path):
    """histolab's tissue mask for the TCGA slide, about 10x coarser, written as a TIFF."""
    tissue = np.load(shared_data / "masks" / "tissue-mask-tcga-cr-7395.npy").astype(np.uint8) * 255
    path = write_pyramid_tiff(
        tmp_path / "tcga_tissue_mask.tiff", tissue, mpp=5.0, n_levels=1, resample="nearest"
    )
    tiles = [(x, y) for y in range(0, 3567, 512) for x in range(0, 4443, 512)]
    overlap = check_against_oracle(path, tissue, box(0, 0, 512, 512), tiles, 0.5, 5.0)
    mean_tissue = np.mean([o["255"] for o in overlap if o is not None])
    assert 0.5 < mean_tissue < 0.9  # the mask is 69 % tissue


def test_pixel_centres_on_roi_edges_follow_the_window_rounding(tmp_path):
    """ROI box(8, 8, 24, 24) at 1/16 scale has edges at 0.5 and 1.5 overlay pixels: the centre
    on the left/top edge (pixel 0) is out, the one on the right/bottom edge (pixel 1) is in,
    exactly the pixel that the window floor(v + 0.5) reads. Box and polygon paths agree."""
    image = np.zeros((4, 4), dtype=np.uint8)
    image[1, 1] = 9
    path = write_pyramid_tiff(
        tmp_path / "tie.tiff", image, mpp=16.0, n_levels=1, resample="nearest"
    )
    square = box(8, 8, 24, 24)
    assert tile_overlay_overlap(square, str(path), [0], [0], 1.0, 1.0) == [{"9": 1.0}]
    diamond_ish = Polygon([(8, 8), (24, 8), (24, 24), (16, 24.0000001), (8, 24)])
    assert tile_overlay_overlap(diamond_ish, str(path), [0], [0], 1.0, 1.0) == [{"9": 1.0}]
    patch = tile_overlay(square, str(path), [0], [0], 1.0, 1.0)[0]
    assert patch.data.tolist() == [[9]] and patch.mask.tolist() == [[False]]


def test_masks_are_cached_per_placement_and_bounded(mask_pyramid):
    """Tiles on a regular grid share a few sub-pixel placements: one mask each, reused, in a
    bounded cache; a shared mask is read-only, and patches get arrays of their own."""
    path, image = mask_pyramid
    roi = Point(256, 256).buffer(200, quad_segs=32)
    tiles = [(x, y) for y in range(0, 4800, 512) for x in range(0, 6400, 512)]
    overlay_module._rasterise.cache_clear()
    check_against_oracle(path, image, roi, tiles, 0.25, 4.0)
    info = overlay_module._rasterise.cache_info()
    assert info.maxsize == overlay_module.MASK_CACHE_SIZE
    # counting looks a mask up once per placement, tile_overlay's patches once per tile
    assert 0 < info.currsize == info.misses < 4 and info.hits >= len(tiles)
    shared = overlay_module._rasterise(roi.wkb, (1 / 16, 1 / 16), 0.0, 0.0, 32, 32)
    assert not shared.flags.writeable
    patch = tile_overlay(roi, str(path), [512], [512], 0.25, 0.25)[0]
    assert patch.mask.flags.writeable
    patch.mask[:] = True  # the caller's to change; the cached mask is untouched
    assert shared is overlay_module._rasterise(roi.wkb, (1 / 16, 1 / 16), 0.0, 0.0, 32, 32)
    assert not shared.all()


def test_mask_cache_is_bounded(mask_pyramid):
    path, _ = mask_pyramid
    roi = Point(8, 8).buffer(7.3)
    overlay_module._rasterise.cache_clear()
    # At 1.2345 um/px on the 4 um/px level every tile has its own sub-pixel placement.
    xs = list(range(overlay_module.MASK_CACHE_SIZE + 50))
    tile_overlay_overlap(roi, str(path), xs, 0, 1.2345, 1.2345)
    info = overlay_module._rasterise.cache_info()
    assert info.misses > overlay_module.MASK_CACHE_SIZE
    assert info.currsize == overlay_module.MASK_CACHE_SIZE


def greedy_bands(rows, x0, x1, y0, y1, budget):
    """The banding rule one row at a time: grow the band while its union window fits."""
    bands, start = [], 0
    while start < len(rows):
        left, right, top, bottom = (
            x0[rows[start]],
            x1[rows[start]],
            y0[rows[start]],
            y1[rows[start]],
        )
        stop = start + 1
        while stop < len(rows):
            r = rows[stop]
            grown = (max(right, x1[r]) - min(left, x0[r])) * (max(bottom, y1[r]) - top)
            if grown > budget:
                break
            left, right, bottom = min(left, x0[r]), max(right, x1[r]), max(bottom, y1[r])
            stop += 1
        bands.append(list(rows[start:stop]))
        start = stop
    return bands


@pytest.mark.parametrize(
    ("budget", "fewest", "most"),
    [(1, 3000, 3000), (900, 2, 2999), (40_000, 2, 2999), (10**9, 1, 1)],
)
def test_bands_follow_the_greedy_rule(monkeypatch, budget, fewest, most):
    """Vectorised banding splits exactly where growing the band one row at a time would:
    from one band per window (and windows over the budget alone) to one band for all."""
    rng = np.random.default_rng(4)
    x0 = rng.integers(0, 500, 3000)
    y0 = rng.integers(0, 800, 3000)
    x1, y1 = x0 + rng.integers(1, 40, 3000), y0 + rng.integers(1, 40, 3000)
    rows = np.argsort(y0, kind="stable")
    monkeypatch.setattr(overlay_module, "READ_BUDGET_PIXELS", budget)
    got = [band.tolist() for band in overlay_module._bands(rows, x0, x1, y0, y1)]
    assert got == greedy_bands(rows, x0, x1, y0, y1, budget)
    assert sorted(r for band in got for r in band) == list(range(3000))
    assert fewest <= len(got) <= most


@pytest.mark.parametrize("roi", [box(0, 0, 512, 512), Point(256, 256).buffer(200)])
def test_many_small_reads_count_as_one_read(mask_pyramid, monkeypatch, roi):
    """A budget of a few tile windows splits the grid into many bands (reads of the overlay);
    the counts are those of one read of the whole level."""
    path, _ = mask_pyramid
    tiles = [(x, y) for y in range(-256, 4800, 384) for x in range(-256, 6400, 384)]
    xs, ys = zip(*tiles, strict=True)
    whole = tile_overlay_overlap(roi, str(path), xs, ys, 0.25, 0.25)
    bands = []
    split = overlay_module._bands
    monkeypatch.setattr(
        overlay_module, "_bands", lambda *args: (bands.append(b) or b for b in split(*args))
    )
    monkeypatch.setattr(overlay_module, "READ_BUDGET_PIXELS", 3 * 32 * 32)
    assert tile_overlay_overlap(roi, str(path), xs, ys, 0.25, 0.25) == whole
    assert len(bands) > 40  # one read would hold all 252 tiles
    assert sum(f is not None for f in whole) > 100


@pytest.mark.parametrize("height", [255, 256, 65535, 65536, 140_000])
def test_range_counts_of_strips_taller_than_their_dtype_would_hold(height):
    """Rows are added into 16-bit counts per column, flushed every ``STRIP_ROWS`` rows: a
    full column of ``height`` ones counts ``height``, not ``height`` modulo 65536."""
    present = np.ones((height, 3), dtype=np.uint8)
    present[0, 1] = 0
    x0, x1 = np.array([0, 1, 0, 2]), np.array([1, 3, 3, 2])
    y0, y1 = np.array([0, 0, 1, 0]), np.array([height, height, height, height])
    counts = overlay_kernels.range_counts(present, x0, x1, y0, y1)
    assert counts.tolist() == [height, 2 * height - 1, 3 * height - 3, 0]


@pytest.mark.parametrize("strided", [False, True])
def test_range_counts_equal_brute_force_sums(strided):
    """Random ranges, empty ones and ones on the plane's edges included; also over a strided
    plane (one channel of an RGB region)."""
    rng = np.random.default_rng(2)
    present = (rng.random((300, 200)) < 0.4).view(np.uint8)
    if strided:
        present = np.repeat(present[..., None], 3, axis=-1)[..., 1]
    x0, x1 = np.sort(rng.integers(0, 201, (2, 500)), axis=0)
    y0, y1 = np.sort(rng.integers(0, 301, (2, 500)), axis=0)
    x0[:5], x1[:5], y0[:5], y1[:5] = 0, 200, 0, 300
    x1[5:10] = x0[5:10]  # empty
    counts = overlay_kernels.range_counts(present, x0, x1, y0, y1)
    expected = [
        int(present[a:b, c:d].sum())
        for a, b, c, d in zip(y0.tolist(), y1.tolist(), x0.tolist(), x1.tolist(), strict=True)
    ]
    assert counts.tolist() == expected


def test_rows_of_a_call_that_counts_no_pixel_and_of_mixed_tiles(mask_pyramid):
    """Every tile off the overlay: no key is met and every row is None. Otherwise rows keep
    the tiles' order, with None only for the tiles off the overlay."""
    path, image = mask_pyramid
    roi = box(0, 0, 512, 512)
    assert tile_overlay_overlap(roi, str(path), [-9000, 90000], [0, 0], 0.25, 0.25) == [None, None]
    got = tile_overlay_overlap(roi, str(path), [-9000, 0, 90000, 512], [0, 0, 0, 0], 0.25, 0.25)
    keys = ["0", "255"]
    assert got == [
        None,
        as_fractions(oracle_counts(image, roi, 0, 0, (1 / 16, 1 / 16)), keys),
        None,
        as_fractions(oracle_counts(image, roi, 512, 0, (1 / 16, 1 / 16)), keys),
    ]
    assert got[1]["0"] + got[1]["255"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    "roi",
    [
        Point(40, 40).buffer(37),  # counted as its box less the corners
        Polygon([(0, 0), (90, 80), (85, 90)]),  # a sliver: counted from its own pixels
    ],
)
def test_masked_counts_of_several_values_and_placements_match_oracle(tmp_path, roi):
    """Four values, a non-integral scale (many sub-pixel placements) and tiles hanging off
    every edge of the overlay or missing it."""
    image = blobs(200, 260, seed=6, values=(0, 1, 2, 3))
    path = write_pyramid_tiff(
        tmp_path / "labels.tiff", image, mpp=1.3, n_levels=1, resample="nearest"
    )
    tiles = [(x, y) for y in range(-120, 760, 53) for x in range(-120, 800, 59)]
    overlap = check_against_oracle(path, image, roi, tiles, 0.5, 1.3)
    assert sum(o is None for o in overlap) > 10 and sum(o is not None for o in overlap) > 100


@pytest.mark.parametrize("values", [(0, 255), (0, 1, 2, 3)])
def test_windows_of_one_value_are_counted_without_gathering(tmp_path, monkeypatch, values):
    """A window whose box holds one value is counted as the size of the mask's part on the
    overlay, wholly on it or hanging off it; only windows on a value's edge are gathered.
    Both routes must give the oracle's counts."""
    image = blobs(200, 260, seed=3, values=values)
    path = write_pyramid_tiff(tmp_path / "blobs.tiff", image, mpp=2.0, n_levels=1)
    gathered = []
    placement_counts = overlay_kernels.placement_counts

    def counting(*args):
        counts, windows = placement_counts(*args)
        gathered.append(windows)
        return counts, windows

    monkeypatch.setattr(overlay_kernels, "placement_counts", counting)
    roi = Point(64, 64).buffer(60, quad_segs=16)
    tiles = [(x, y) for y in range(-64, 1640, 64) for x in range(-64, 2100, 64)]
    check_against_oracle(path, image, roi, tiles, 0.25, 2.0)
    assert 0 < sum(gathered) < len(tiles) / 2


def test_table_rows_equal_one_dict_per_row_each_its_own():
    """Every row as ``dict(zip(keys, fractions))`` (``None`` where not counted), keys in
    order, and no two rows one object (a caller may change one)."""
    counts = np.array([[5, 0, 0], [0, 0, 7], [1, 2, 0], [0, 0, 0], [0, 3, 0], [0, 0, 9], [2, 2, 2]])
    table = overlay_module._fractions(counts, {"0": 0, "7": 1, "255": 2})
    rows = table.rows()
    expected = [
        dict(zip(table.keys, row, strict=True)) if counted else None
        for row, counted in zip(table.fractions.tolist(), table.counted.tolist(), strict=True)
    ]
    assert rows == expected
    assert [list(row) if row else row for row in rows] == [
        list(row) if row else row for row in expected
    ]  # key order too
    assert len({id(row) for row in rows if row is not None}) == len(rows) - 1
    rows[0]["0"] = 0.5
    assert table.rows()[0] == {"0": 1.0, "7": 0.0, "255": 0.0}


def test_the_cached_rectangle_test_agrees_with_the_geometry_one():
    """The ROI's shape is tested once per WKB: the round trip keeps what
    is_axis_aligned_rectangle looks at (vertices along the sides, z, a corner moved by
    1e-13, holes, orientation)."""
    from shapely import force_3d
    from shapely.geometry import MultiPolygon

    from wsi_core.geometry import is_axis_aligned_rectangle

    rois = [
        box(0, 0, 512, 512),
        box(0, 0, 512, 512, ccw=False),
        Polygon([(0, 0), (256, 0), (512, 0), (512, 512), (0, 512)]),
        force_3d(box(1, 2, 3, 4)),
        Polygon([(0, 0), (512, 0), (512, 512), (0, 512 + 1e-13)]),
        box(0, 0, 10, 10).difference(box(4, 4, 6, 6)),
        MultiPolygon([box(0, 0, 1, 1), box(2, 2, 3, 3)]),
        Point(5, 5).buffer(3),
    ]
    expected = [True, True, True, True, False, False, False, False]
    assert [is_axis_aligned_rectangle(roi) for roi in rois] == expected
    assert [overlay_module._is_rectangle(roi.wkb) for roi in rois] == expected


def test_clip_ranges_equal_numpy_clipping():
    """Ranges placed off either side of the region, across it and reversed by rounding come
    out as NumPy's clip gives them, never reversed."""
    rng = np.random.default_rng(4)
    origin = rng.integers(-80, 140, 2000)
    start = rng.integers(-3, 40, 2000)
    stop = start + rng.integers(-2, 40, 2000)
    first, last = overlay_kernels.clip_ranges(origin, start, stop, 100)
    expected_first = np.clip(origin + start, 0, 100)
    expected_last = np.maximum(np.clip(origin + stop, 0, 100), expected_first)
    assert first.tolist() == expected_first.tolist()
    assert last.tolist() == expected_last.tolist()
