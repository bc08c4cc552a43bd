"""The tissue mask as a file: a small pyramidal TIFF that ``overlay_overlap`` reads exactly like
a user's own mask.

Values are ``uint8`` ``0`` (background) and ``255`` (tissue), the convention of the demo
masks and of most tissue masks users bring: ``overlay_overlap`` keys them ``"0"`` and ``"255"``
(so the seeds' ``row["tissue_overlap"].get("255", 0.0)`` reads the tissue fraction), its
``tissue_fraction`` counts every value but 0, and the file shows as a black-and-white image in
any viewer (0/1 would look black).

Layout (:func:`wsi_core.synthetic.write_pyramid_tiff`): 256 x 256 tiles, deflate, reduced levels
as SubIFDs taken by nearest neighbour (values stay exactly 0 or 255) down to about 256 pixels,
and the resolution in the TIFF resolution tags (pixels per centimetre, which OpenSlide and
tifffile both read), each level's for its own pixels. ``open_slide`` reads it with tifffile.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

import numpy as np
import tifffile

from wsi_core.slide import open_slide
from wsi_core.synthetic import write_pyramid_tiff
from wsi_core.tissue.slide_mask import TissueMask

#: The mask's name wherever the pipeline stores or shows it (output folder, asset).
TISSUE_MASK = "tissue_mask"
#: Stored value of tissue pixels; background is 0.
TISSUE_VALUE = 255
#: Reduced levels are added until the coarsest is at most this many pixels on its long side.
SMALLEST_LEVEL = 256


def mask_levels(shape: tuple[int, ...]) -> int:
    """How many pyramid levels a mask of ``shape`` (height, width) gets: halvings until its
    long side is at most ``SMALLEST_LEVEL``, never one that would be empty."""
    height, width = shape[:2]
    levels = 1
    while max(height, width) >> (levels - 1) > SMALLEST_LEVEL and min(height, width) >> levels:
        levels += 1
    return levels


def write_tissue_mask(
    path: str | os.PathLike[str], tissue: TissueMask, description: str | None = None
) -> Path:
    """Write ``tissue`` to ``path`` (a local file, replaced if present) and return the path;
    ``description`` becomes the TIFF's ImageDescription (what made the mask, for example).

    The caller decides where and how atomically (see :mod:`wsi_assets.pipeline`); this
    function only writes the bytes.
    """
    if tissue.mask.ndim != 2 or tissue.mask.size == 0:
        raise ValueError(f"{path}: a tissue mask must be a non-empty 2-D array")
    values = np.where(tissue.mask, TISSUE_VALUE, 0).astype(np.uint8)
    return write_pyramid_tiff(
        path,
        values,
        tissue.mpp,
        mask_levels(values.shape),
        subifds=True,
        tile=(256, 256),
        compression="zlib",
        resample="nearest",
        description=description,
    )


def mask_description(source: str | os.PathLike[str] | BinaryIO) -> str | None:
    """The ImageDescription of a mask file's first page (a path or an open binary file),
    None when it has none."""
    with tifffile.TiffFile(source) as tif:
        tag = tif.pages.first.tags.get("ImageDescription")
        return None if tag is None else str(tag.value)


def read_tissue_mask(path: str | os.PathLike[str]) -> tuple[np.ndarray, tuple[float, float]]:
    """The mask at level 0 of a mask file as bool ``(height, width)`` (True where the value is
    not 0), and its recorded resolution in micrometres per pixel ``(x, y)``."""
    with open_slide(path) as reader:
        width, height = reader.level_dimensions[0]
        values = reader.read_level_region(0, 0, 0, width, height)
        if values.ndim == 3:
            values = values.max(axis=2)
        return values != 0, reader.mpp
