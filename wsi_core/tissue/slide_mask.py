"""``detect_tissue``: the tissue mask of one slide, from its low-resolution picture."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wsi_core.reader import SlideReader
from wsi_core.resolution import MPP
from wsi_core.tissue.detect import TissueParameters, classify_tissue
from wsi_core.tissue.lowres import MAX_READ_PIXELS, read_low_resolution


@dataclass(frozen=True)
class TissueMask:
    """A slide's tissue mask.

    ``mask`` is bool ``(height, width)``, True on tissue; one mask pixel is ``mpp``
    micrometres wide ``(x, y)`` and covers ``factor`` x ``factor`` pixels of pyramid level
    ``level`` (the last row and column may cover fewer), so mask pixel ``(i, j)`` starts at
    level-0 pixel ``(j * mpp[0] / base_mpp[0], i * mpp[1] / base_mpp[1])``. ``threshold`` is
    the saturation threshold used (None when nothing could be tissue); ``pen_pixels`` and
    ``dark_pixels`` count the mask pixels set aside as ink or as dark.
    """

    mask: np.ndarray
    mpp: tuple[float, float]
    level: int
    factor: int
    threshold: float | None
    pen_pixels: int
    dark_pixels: int

    @property
    def tissue_fraction(self) -> float:
        """Fraction of the mask's pixels that are tissue."""
        return float(self.mask.mean()) if self.mask.size else 0.0


def detect_tissue(
    slide: SlideReader,
    parameters: TissueParameters | None = None,
    *,
    base_mpp: MPP | None = None,
    max_read_pixels: int = MAX_READ_PIXELS,
) -> TissueMask:
    """The tissue mask of ``slide``, computed at about ``parameters.target_mpp`` micrometres
    per pixel from the pyramid level nearest to it (see
    :func:`~wsi_core.tissue.lowres.read_low_resolution` and :mod:`wsi_core.tissue.detect`).

    ``base_mpp`` is the level-0 resolution to use (micrometres per pixel), for slides that
    record none; None: the slide's own.
    """
    parameters = parameters or TissueParameters()
    picture = read_low_resolution(
        slide, parameters.target_mpp, base_mpp=base_mpp, max_read_pixels=max_read_pixels
    )
    found = classify_tissue(picture.rgb, picture.mpp, parameters)
    return TissueMask(
        found.mask,
        picture.mpp,
        picture.level,
        picture.factor,
        found.threshold,
        found.pen_pixels,
        found.dark_pixels,
    )
