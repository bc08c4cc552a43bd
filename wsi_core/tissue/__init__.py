"""Tissue masks for slides that have none: detection on a low-resolution level, and the
mask file that ``overlay_overlap`` reads like a user's own mask.

* :func:`detect_tissue`: slide in, :class:`TissueMask` out (method and limits in
  :mod:`wsi_core.tissue.detect`).
* :func:`classify_tissue`: the same method on an RGB picture whose resolution is known.
* :func:`read_low_resolution`: a slide's picture near a target resolution, read in bounded
  bands.
* :func:`write_tissue_mask`: the mask as a small pyramidal TIFF with its resolution.
"""

from wsi_core.tissue.detect import Classification, TissueParameters, classify_tissue
from wsi_core.tissue.lowres import LowResolution, read_low_resolution
from wsi_core.tissue.mask_file import (
    TISSUE_MASK,
    TISSUE_VALUE,
    mask_description,
    read_tissue_mask,
    write_tissue_mask,
)
from wsi_core.tissue.slide_mask import TissueMask, detect_tissue

__all__ = [
    "TISSUE_MASK",
    "TISSUE_VALUE",
    "Classification",
    "LowResolution",
    "TissueMask",
    "TissueParameters",
    "classify_tissue",
    "detect_tissue",
    "mask_description",
    "read_low_resolution",
    "read_tissue_mask",
    "write_tissue_mask",
]
