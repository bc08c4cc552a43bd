"""A slide's picture at a coarse resolution, read from its coarsest useful pyramid level.

The level read is the one closest to the target resolution
(:func:`~wsi_core.resolution.closest_level`). When that level is still finer than the target by
half again or more (a slide without a coarse pyramid level, such as a one-level scan), it is
read in row bands of at most ``band_pixels`` pixels and each band is reduced by an integer
factor with block means, so at no time is more than one band of the full-resolution level in
memory. A level of more than ``max_read_pixels`` pixels is refused rather than decoded: at tens
of megapixels per second that would take minutes, not the seconds a tissue mask should cost.

Units: ``mpp`` is micrometres per pixel, ``(x, y)``; the picture's pixel ``(i, j)`` covers the
level pixels ``[j * factor, (j + 1) * factor)`` by ``[i * factor, (i + 1) * factor)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from wsi_core.errors import SlideError
from wsi_core.reader import SlideReader
from wsi_core.resolution import MPP, as_mpp_pair, closest_level

#: Most level pixels decoded for one picture: 2**30 (about a gigapixel, 3 GiB of RGB read in
#: bands). Slides with a pyramid never come near it; a one-level 100,000 x 80,000 scan does.
MAX_READ_PIXELS = 2**30
#: Most level pixels held at once while reducing a level band by band (48 MiB of RGB).
BAND_PIXELS = 2**24
#: A level this much finer than the target (or more) is reduced by an integer factor.
REDUCE_FROM = 1.5


@dataclass(frozen=True)
class LowResolution:
    """A slide's RGB picture (``uint8``, ``(height, width, 3)``) at resolution ``mpp``
    (micrometres per picture pixel, ``(x, y)``): pyramid level ``level`` reduced by the
    integer ``factor`` (1: the level as stored)."""

    rgb: np.ndarray
    mpp: tuple[float, float]
    level: int
    factor: int


def level_mpp(slide: SlideReader, level: int, base_mpp: tuple[float, float]) -> tuple[float, float]:
    """Micrometres per pixel of ``level`` on each axis, from the level's size against level
    0's (exact per axis, where ``level_downsamples`` averages the two)."""
    width0, height0 = slide.level_dimensions[0]
    width, height = slide.level_dimensions[level]
    return base_mpp[0] * width0 / width, base_mpp[1] * height0 / height


def reduction_factor(source_mpp: tuple[float, float], target_mpp: float) -> int:
    """The integer factor that brings ``source_mpp`` nearest to ``target_mpp`` (micrometres
    per pixel): 1 unless the source is finer by ``REDUCE_FROM`` or more."""
    finest = min(source_mpp)
    if target_mpp / finest < REDUCE_FROM:
        return 1
    return max(1, round(target_mpp / finest))


def read_low_resolution(
    slide: SlideReader,
    target_mpp: float,
    *,
    base_mpp: MPP | None = None,
    max_read_pixels: int = MAX_READ_PIXELS,
    band_pixels: int = BAND_PIXELS,
) -> LowResolution:
    """The RGB picture of ``slide`` nearest to ``target_mpp`` micrometres per pixel.

    ``base_mpp`` is the level-0 resolution to use (micrometres per pixel); None: the slide's
    own (:class:`~wsi_core.errors.MissingMPPError` when it records none). Pixels outside the
    scanned area (transparent in OpenSlide) read as white. A level of more than
    ``max_read_pixels`` pixels raises :class:`~wsi_core.errors.SlideError` naming the slide.
    """
    if not target_mpp > 0:
        raise ValueError(f"target_mpp must be positive, not {target_mpp!r}")
    base = as_mpp_pair(slide.mpp if base_mpp is None else base_mpp)
    level = closest_level(slide.level_downsamples, base, target_mpp)
    width, height = slide.level_dimensions[level]
    if width * height > max_read_pixels:
        raise SlideError(
            slide.path,
            f"its level closest to {target_mpp:g} um/px is level {level}, {width} x {height} "
            f"pixels, more than the {max_read_pixels:,} a tissue mask may read; the slide "
            "needs a coarser pyramid level (a pyramidal copy, e.g. with vips or bfconvert)",
        )
    source_mpp = level_mpp(slide, level, base)
    factor = reduction_factor(source_mpp, target_mpp)
    rgb = _read_reduced(slide, level, factor, band_pixels)
    return LowResolution(rgb, (source_mpp[0] * factor, source_mpp[1] * factor), level, factor)


def _read_reduced(slide: SlideReader, level: int, factor: int, band_pixels: int) -> np.ndarray:
    """Level ``level`` read in row bands, each reduced by block means of ``factor`` pixels;
    the last row and column of blocks may be partial (they average the pixels they have)."""
    width, height = slide.level_dimensions[level]
    out = np.empty((math.ceil(height / factor), math.ceil(width / factor), 3), dtype=np.uint8)
    # Whole blocks per band, at least one row of blocks whatever the budget.
    band_rows = max(1, band_pixels // max(1, width * factor)) * factor
    for y in range(0, height, band_rows):
        rows = min(band_rows, height - y)
        band = slide.read_tile(0, y, width, rows, level, background=255)
        out[y // factor : (y + rows + factor - 1) // factor] = _block_means(band, factor)
    return out


def _block_means(band: np.ndarray, factor: int) -> np.ndarray:
    """``band`` (``(h, w, 3)`` uint8) reduced by means of ``factor`` x ``factor`` blocks,
    rounded to the nearest integer; partial blocks at the end average their own pixels."""
    if factor == 1:
        return band
    height, width = band.shape[:2]
    rows, cols = math.ceil(height / factor), math.ceil(width / factor)
    if (rows * factor, cols * factor) != (height, width):
        band = np.pad(band, ((0, rows * factor - height), (0, cols * factor - width), (0, 0)))
    # Rows first, then columns, each over a contiguous axis: about ten times faster than
    # skimage's block_reduce, which sums both block axes of a strided view at once.
    sums = band.reshape(rows, factor, -1).sum(axis=1, dtype=np.uint32)
    sums = sums.reshape(rows, cols, factor, 3).sum(axis=2)
    counts = np.outer(
        np.minimum(factor, height - factor * np.arange(rows)),
        np.minimum(factor, width - factor * np.arange(cols)),
    )[..., None]
    return ((2 * sums + counts) // (2 * counts)).astype(np.uint8)
