"""Write real pyramidal TIFFs from numpy images (test fixtures, demo data, overlays).

Level ``i`` is level 0 downsampled by ``2**i``: its size is ``(H >> i, W >> i)`` (a trailing
row or column that does not fill a whole ``2**i`` block is dropped), and each pixel is the
block's mean (``resample="mean"``, rounded half up for integer images; equal to repeated exact
2x2 means) or its top-left pixel (``resample="nearest"``, ``image[::2**i, ::2**i]``, so mask
values stay exact).

The resolution is recorded as micrometres per pixel ``mpp`` of level 0; every level's
resolution tags describe that level's own pixels (``mpp * 2**i``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from wsi_core.resolution import MPP, as_mpp_pair

# Micrometres per TIFF ResolutionUnit (MILLIMETER and MICROMETER are DNG extensions that
# tifffile reads; OpenSlide only understands inch and centimetre).
_MICROMETRES_PER_UNIT = {
    "INCH": 25400.0,
    "CENTIMETER": 10_000.0,
    "MILLIMETER": 1000.0,
    "MICROMETER": 1.0,
}

# Beyond this many bytes of pixels the classic TIFF 4 GiB offsets may overflow.
_BIGTIFF_BYTES = 2**31


def pyramid_level(image: np.ndarray, level: int, resample: str = "mean") -> np.ndarray:
    """Level ``level`` of the pyramid of ``image`` ((H, W) or (H, W, C)), as written."""
    factor = 2**level
    height, width = image.shape[0] // factor, image.shape[1] // factor
    if height < 1 or width < 1:
        raise ValueError(
            f"level {level} of a {image.shape[1]}x{image.shape[0]} image would be empty"
        )
    if resample == "nearest":
        return np.ascontiguousarray(image[: height * factor : factor, : width * factor : factor])
    if resample != "mean":
        raise ValueError(f'resample must be "mean" or "nearest", not {resample!r}')
    if factor == 1:
        return image
    blocks = image[: height * factor, : width * factor].reshape(
        (height, factor, width, factor, *image.shape[2:])
    )
    mean = blocks.mean(axis=(1, 3), dtype=np.float64)
    if np.issubdtype(image.dtype, np.integer):
        mean = np.floor(mean + 0.5)
    return mean.astype(image.dtype)


def _resolution_unit(resolution_unit: str | None) -> str | None:
    """The TIFF ResolutionUnit name in upper case, or None for no physical resolution."""
    if resolution_unit is None:
        return None
    unit = str(resolution_unit).upper()
    if unit not in _MICROMETRES_PER_UNIT:
        raise ValueError(
            f"resolution_unit must be one of {sorted(_MICROMETRES_PER_UNIT)} or None, "
            f"not {resolution_unit!r}"
        )
    return unit


def _resolution_tags(unit: str | None, level: int, mpp_x: float, mpp_y: float) -> dict[str, Any]:
    """tifffile's resolution arguments for pyramid level ``level`` (downsample ``2**level``):
    the level's own pixels per ``unit``, from ``mpp_x, mpp_y`` micrometres per level-0 pixel."""
    if unit is None:
        return {"resolutionunit": "NONE"}
    scale = _MICROMETRES_PER_UNIT[unit] / 2**level
    return {"resolution": (scale / mpp_x, scale / mpp_y), "resolutionunit": unit}


def write_pyramid_tiff(
    path: str | os.PathLike[str],
    image: np.ndarray,
    mpp: MPP,
    n_levels: int,
    *,
    subifds: bool = True,
    tile: Sequence[int] | None = (256, 256),
    compression: str | None = "zlib",
    ome: bool = False,
    resolution_unit: str | None = "CENTIMETER",
    resample: str = "mean",
    description: str | None = None,
) -> Path:
    """Write ``image`` as a pyramidal TIFF of ``n_levels`` levels and return its path.

    * ``image``: ``(H, W)`` grey or ``(H, W, 3)`` RGB (``(H, W, 4)`` is written as RGB with
      unassociated alpha); a bool mask is stored as ``uint8`` 0/1.
    * ``mpp``: micrometres per level-0 pixel, float or ``(x, y)``.
    * ``subifds=True``: reduced levels are SubIFDs of level 0 (tifffile and OME readers see
      the pyramid; OpenSlide sees level 0 only). ``False``: each level is a further top-level
      page flagged reduced-resolution, the layout OpenSlide's generic-tiff reads as a pyramid.
    * ``tile``: ``(height, width)`` in pixels, multiples of 16; ``None`` writes strips
      (OpenSlide cannot read those).
    * ``compression``: any tifffile compression name (``"zlib"``, ``"jpeg"``, ``None``...).
    * ``ome``: also write OME-XML with ``PhysicalSizeX/Y`` in µm. OME-TIFF pyramids are
      SubIFDs by specification, so ``ome=True`` requires ``subifds=True``.
    * ``resolution_unit``: unit of the XResolution/YResolution tags: ``"INCH"``,
      ``"CENTIMETER"``, ``"MILLIMETER"`` or ``"MICROMETER"``; ``None`` writes no physical
      resolution (ResolutionUnit NONE).
    * ``resample``: ``"mean"`` for images, ``"nearest"`` for masks and label maps.
    * ``description``: ImageDescription of level 0 (not with ``ome=True``, whose OME-XML
      is the description).
    """
    image = np.asarray(image)
    if image.dtype == np.bool_:
        image = image.astype(np.uint8)
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise ValueError(f"image must be (H, W), (H, W, 3) or (H, W, 4), not {image.shape}")
    if int(n_levels) < 1:
        raise ValueError(f"n_levels must be at least 1, not {n_levels}")
    if ome and description is not None:
        raise ValueError("an OME-TIFF's description is its OME-XML: no description with ome=True")
    if ome and not subifds:
        raise ValueError("an OME-TIFF pyramid is stored as SubIFDs: use subifds=True with ome=True")
    mpp_x, mpp_y = as_mpp_pair(mpp)
    if not (mpp_x > 0 and mpp_y > 0):
        raise ValueError(f"mpp must be positive, not {mpp!r}")
    unit = _resolution_unit(resolution_unit)
    levels = [pyramid_level(image, i, resample) for i in range(int(n_levels))]

    path = Path(path)
    total_bytes = sum(level.nbytes for level in levels)
    photometric = "minisblack" if image.ndim == 2 else "rgb"
    extrasamples = ("unassalpha",) if image.ndim == 3 and image.shape[2] == 4 else None
    with tifffile.TiffWriter(path, bigtiff=total_bytes > _BIGTIFF_BYTES, ome=ome) as writer:
        for i, level in enumerate(levels):
            options: dict[str, Any] = {
                "photometric": photometric,
                "extrasamples": extrasamples,
                "tile": None if tile is None else tuple(int(t) for t in tile),
                "compression": compression,
                "metadata": None,
            }
            options.update(_resolution_tags(unit, i, mpp_x, mpp_y))
            if i == 0:
                if description is not None:
                    options["description"] = description
                if subifds and n_levels > 1:
                    options["subifds"] = int(n_levels) - 1
                if ome:
                    options["metadata"] = {
                        "axes": "YX" if image.ndim == 2 else "YXS",
                        "PhysicalSizeX": mpp_x,
                        "PhysicalSizeXUnit": "µm",
                        "PhysicalSizeY": mpp_y,
                        "PhysicalSizeYUnit": "µm",
                    }
            else:
                options["subfiletype"] = 1  # reduced-resolution image
            writer.write(level, **options)
    return path
