"""Tile pixels: 512 px RGB tiles read a batch at a time (``SlideReader.iter_tiles``, what
``read_tile``, ``read_slide_tiles`` and the export use), one process, one thread: tiles/s per
core.

Slides: a synthetic JPEG pyramid of 8193 x 6145 pixels in 256 px stored tiles (level 1 is
4096 x 3072, downsample 2.0002: not an integer), written once per run to a temporary folder;
and, when ``../shared/data`` is there, CMU-1-Small-Region (JPEG, 240 px stored tiles) and the
TCGA slide (JPEG 2000, level 1 at downsample 2.0005). Every tile of a 512 px grid
(``last="keep"``) is read.

Rows per slide and level, each the best of a few repeats (the machine is shared):

* the baseline: one ``openslide.OpenSlide.read_region`` per tile (OpenSlide's own tile cache
  helps it where tiles share stored tiles);
* the floor: reading and decoding every stored tile the grid meets, once, with tifffile and
  imagecodecs, and nothing else (no assembly, no copies);
* ``read_tile`` per tile through the project's reader (a batch of one each);
* ``iter_tiles``: ``ratio_vs_baseline`` is the speed-up over OpenSlide; the name carries the
  time relative to the floor (1.0x would be decode speed).

Before the batch reader, a local SVS read its tiles through ``read_region`` (the baseline's
figures) and a TIFF read by tifffile one tile at a time (the ``read_tile`` row's). Pixels
are checked equal to OpenSlide's at the integer levels before anything is timed.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import openslide
import tifffile

from wsi_core.slide import open_slide
from wsi_core.synthetic import write_pyramid_tiff
from wsi_core.tiling import grid_tile_array

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "slides"
SYNTHETIC = (8193, 6145)  # width, height of level 0: odd, so level 1's downsample is 2.0002
TILE = 512
REPEATS = 3


def synthetic_image(seed: int = 0) -> np.ndarray:
    """Tissue-like RGB: smooth blotches (a coarse random field upsampled) plus grain, so
    that JPEG keeps detail to decode, as in a scanned slide."""
    rng = np.random.default_rng(seed)
    width, height = SYNTHETIC
    coarse = rng.integers(90, 250, (height // 64 + 1, width // 64 + 1, 3), dtype=np.uint8)
    image = np.repeat(np.repeat(coarse, 64, axis=0), 64, axis=1)[:height, :width]
    grain = rng.integers(0, 24, (height, width), dtype=np.uint8)
    image -= grain[..., None]  # >= 90 - 23: no wrap-around
    return image


def _best(fn: Callable[[], Any]) -> float:
    """Best wall time of :data:`REPEATS` calls, in seconds."""
    best = float("inf")
    for _ in range(REPEATS):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def openslide_loop(path: Path, level: int, xs: np.ndarray, ys: np.ndarray) -> None:
    """The baseline: ``read_region`` per tile (level-0 location as ``read_tile`` computes
    it), converted to an RGB array as a training loop would."""
    with openslide.OpenSlide(str(path)) as slide:
        downsample = slide.level_downsamples[level]
        for x, y in zip(xs.tolist(), ys.tolist(), strict=True):
            location = (round(x * downsample), round(y * downsample))
            np.asarray(slide.read_region(location, level, (TILE, TILE)))[..., :3].copy()


def decode_floor(path: Path, level: int, xs: np.ndarray, ys: np.ndarray) -> int:
    """Read and decode each stored tile the grid meets, once; return how many."""
    with tifffile.TiffFile(path) as tif:
        page = tif.series[0].levels[level].keyframe
        across = -(-page.imagewidth // page.tilewidth)
        stored = set()
        for x, y in zip(xs.tolist(), ys.tolist(), strict=True):
            x1, y1 = min(x + TILE, page.imagewidth), min(y + TILE, page.imagelength)
            for row in range(y // page.tilelength, (y1 - 1) // page.tilelength + 1):
                for col in range(x // page.tilewidth, (x1 - 1) // page.tilewidth + 1):
                    stored.add(row * across + col)
        indices = sorted(stored)
        tables = {}
        if page.compression in (6, 7):
            tables = {"jpegtables": page.jpegtables, "jpegheader": page.jpegheader}
        segments = tif.filehandle.read_segments(
            [page.dataoffsets[i] for i in indices],
            [page.databytecounts[i] for i in indices],
            indices=indices,
            sort=True,
            flat=True,
        )
        for data, index in segments:
            page.decode(data, index, **tables)
    return len(indices)


def batch_read(path: Path, level: int, xs: np.ndarray, ys: np.ndarray) -> None:
    """The project's reader: one ``iter_tiles`` batch, each tile dropped once read."""
    with open_slide(path) as slide:
        for _ in slide.iter_tiles(xs, ys, TILE, TILE, level):
            pass


def one_by_one(path: Path, level: int, xs: np.ndarray, ys: np.ndarray) -> None:
    """``read_tile`` per tile: a batch of one each, so stored tiles shared by neighbouring
    tiles are decoded again (what every tifffile read did before batches)."""
    with open_slide(path) as slide:
        for x, y in zip(xs.tolist(), ys.tolist(), strict=True):
            slide.read_tile(x, y, TILE, TILE, level)


def check_pixels(path: Path, level: int, xs: np.ndarray, ys: np.ndarray) -> None:
    """At an integer downsample, a few tiles must equal OpenSlide's (else no figures)."""
    pick = np.linspace(0, len(xs) - 1, 5).astype(int)
    with open_slide(path) as slide, openslide.OpenSlide(str(path)) as plain:
        downsample = plain.level_downsamples[level]
        if downsample != round(downsample):
            return
        tiles = slide.read_tiles(xs[pick], ys[pick], TILE, TILE, level)
        for i, tile in zip(pick.tolist(), tiles, strict=True):
            location = (int(xs[i] * downsample), int(ys[i] * downsample))
            region = np.asarray(plain.read_region(location, level, (TILE, TILE)))
            inside = region[..., 3] == 255
            assert np.array_equal(tile[inside], region[..., :3][inside]), (path, level, i)


def measure(label: str, path: Path, level: int) -> list[dict]:
    """The three rows of one slide level."""
    with open_slide(path) as slide:
        size = slide.level_dimensions[level]
        downsample = slide.level_downsamples[level]
    tiles = grid_tile_array(size, TILE, TILE, last="keep")
    xs, ys = tiles[:, 0], tiles[:, 1]
    check_pixels(path, level, xs, ys)
    n = len(xs)
    where = f"{label} L{level} ds {downsample:.4f}"
    base = _best(lambda: openslide_loop(path, level, xs, ys))
    stored = decode_floor(path, level, xs, ys)
    floor = _best(lambda: decode_floor(path, level, xs, ys))
    ours = _best(lambda: batch_read(path, level, xs, ys))
    single = _best(lambda: one_by_one(path, level, xs, ys))
    return [
        {
            "name": f"pixels {where}: read_region (baseline)",
            "seconds": base,
            "tiles_per_s": n / base,
            "ratio_vs_baseline": 1.0,
        },
        {
            "name": f"pixels {where}: decode {stored} stored (floor)",
            "seconds": floor,
            "tiles_per_s": n / floor,
            "ratio_vs_baseline": base / floor,
        },
        {
            "name": f"pixels {where}: read_tile per tile",
            "seconds": single,
            "tiles_per_s": n / single,
            "ratio_vs_baseline": base / single,
        },
        {
            "name": f"pixels {where}: iter_tiles {ours / floor:.2f}x floor",
            "seconds": ours,
            "tiles_per_s": n / ours,
            "ratio_vs_baseline": base / ours,
        },
    ]


def run() -> list[dict]:
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = write_pyramid_tiff(
            Path(tmp) / "synthetic.tiff",
            synthetic_image(),
            0.25,
            2,
            subifds=False,  # a page pyramid: OpenSlide's generic-tiff reads both levels
            tile=(256, 256),
            compression="jpeg",
        )
        for level in (0, 1):
            rows += measure("synthetic", path, level)
    for name, label, levels in (
        ("CMU-1-Small-Region.svs", "CMU", (0,)),
        ("tcga-cr-7395-01a-01-ts1.svs", "TCGA j2k", (0, 1)),
    ):
        if not (SHARED / name).exists():
            rows.append({"name": f"pixels {label}", "seconds": 0.0, "note": "no shared data"})
            continue
        for level in levels:
            rows += measure(label, SHARED / name, level)
    return rows
