"""Tissue detection on a slide's low-resolution picture: colour rules, Otsu, morphology.

The method, in the order it runs (every size is in micrometres and converted to pixels at the
picture's resolution, so the result does not depend on the level a slide happens to have):

1. **Colour.** Each pixel's HSV saturation, value and hue (as scikit-image's ``rgb2hsv``).
   Stained tissue is coloured; background is not, whatever its brightness.
2. **Dark pixels** (value below ``dark_value``) are not candidates: slide-glass edges and
   cover-slip borders, black pen, label and out-of-focus debris appear as near-black, low
   saturation pixels whose HSV saturation is noise.
3. **Pen marks**: pixels whose hue lies in ``pen_hue`` (degrees; by default 70-240,
   yellow-green through blue) and whose saturation exceeds ``min_saturation`` (the lowest
   tissue threshold, so that a stroke's pale fringe is not left behind as tissue) are not
   tissue. Haematoxylin and eosin lie outside that arc (eosin pink near 330-350 degrees,
   haematoxylin purple near 260-300); blue, green and cyan marker ink and tissue-marking dye
   lie inside it, and black ink is dark (rule 2).
4. **Otsu threshold** on the saturation of the remaining pixels splits coloured tissue from
   colourless background, white or grey alike. The threshold is clamped to
   ``[min_saturation, max_saturation]``: on an empty slide Otsu would split noise, on a slide
   that is nearly all tissue it would split pale from dark tissue.
5. **Closing** with a disk of radius ``closing_um`` joins tissue torn into fragments at this
   resolution (loose stroma, fat, tears narrower than about twice the radius); pen pixels are
   removed again afterwards so that closing cannot draw them back in.
6. **Holes** smaller than ``max_hole_um2`` are filled (lumina, fat cells, dark nuclei clusters
   excluded by rule 2); larger openings stay background.
7. **Small objects** below ``min_object_um2`` are dropped (dust, debris, specks of ink).

Limits, said plainly: tissue under a pen stroke is lost with the stroke; red or pink ink looks
like eosin and is kept; IHC slides whose counterstain is blue (hue near 220 degrees) fall in the
pen arc, so pass ``pen_hue=None`` for them; unstained or very pale tissue (saturation below
``min_saturation``) and tissue darker than ``dark_value`` are missed unless enclosed by tissue;
bubbles and folds are kept as tissue when coloured.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from skimage.filters import threshold_otsu
from skimage.morphology import closing, disk, remove_small_holes, remove_small_objects

#: Picture pixels converted to HSV at a time (a few float32 temporaries each).
HSV_ROWS_PIXELS = 2**21


@dataclass(frozen=True)
class TissueParameters:
    """What :func:`classify_tissue` does (the rules are in the module docstring).

    * ``target_mpp``: resolution the picture is read at, micrometres per pixel.
    * ``min_saturation``, ``max_saturation``: the clamp of the Otsu threshold on HSV
      saturation (0-1). Background on the real slides tried is below 0.03, stained tissue
      mostly 0.2-0.6; 0.15 keeps pale stroma.
    * ``dark_value``: HSV value (0-1) below which a pixel is dark, never a candidate.
    * ``pen_hue``: ``(low, high)`` hue arc in degrees treated as ink; None: no pen rule.
    * ``closing_um``: radius of the closing disk, micrometres.
    * ``max_hole_um2``: holes smaller than this are filled, square micrometres.
    * ``min_object_um2``: tissue pieces smaller than this are dropped, square micrometres
      (20,000 um2 is a square of about 140 um, a third of a 512 px tile at 0.5 um/px).
    """

    target_mpp: float = 8.0
    min_saturation: float = 0.05
    max_saturation: float = 0.15
    dark_value: float = 0.2
    pen_hue: tuple[float, float] | None = (70.0, 240.0)
    closing_um: float = 32.0
    max_hole_um2: float = 50_000.0
    min_object_um2: float = 20_000.0

    def __post_init__(self) -> None:
        if not self.target_mpp > 0:
            raise ValueError(f"target_mpp must be positive, not {self.target_mpp!r}")
        if not 0 <= self.min_saturation <= self.max_saturation <= 1:
            raise ValueError(
                "saturations must satisfy 0 <= min_saturation <= max_saturation <= 1, not "
                f"{self.min_saturation!r} and {self.max_saturation!r}"
            )
        for name in ("closing_um", "max_hole_um2", "min_object_um2"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, not {getattr(self, name)!r}")
        if self.pen_hue is not None:
            hues = tuple(float(value) for value in self.pen_hue)
            if len(hues) != 2 or not 0 <= hues[0] <= hues[1] <= 360:
                raise ValueError(f"pen_hue must be (low, high) degrees in 0..360, not {hues!r}")
            object.__setattr__(self, "pen_hue", hues)  # a JSON list becomes the tuple


@dataclass(frozen=True)
class Classification:
    """A tissue mask (bool ``(height, width)``) and what decided it: the saturation
    threshold used (None when no pixel was a candidate), and the pixel counts of pen and
    dark pixels set aside."""

    mask: np.ndarray
    threshold: float | None
    pen_pixels: int
    dark_pixels: int


def classify_tissue(
    rgb: np.ndarray, mpp: tuple[float, float], parameters: TissueParameters
) -> Classification:
    """Tissue in ``rgb`` (``uint8`` ``(height, width, 3)``) whose pixels are ``mpp``
    micrometres wide ``(x, y)``; see the module docstring for the method."""
    saturation, dark, pen = _colour_rules(rgb, parameters)
    candidates = ~(dark | pen)
    if not candidates.any():
        empty = np.zeros(rgb.shape[:2], dtype=bool)
        return Classification(empty, None, int(pen.sum()), int(dark.sum()))
    threshold = _threshold(saturation[candidates], parameters)
    tissue = candidates & (saturation > threshold)
    tissue = _clean(tissue, pen, mpp, parameters)
    return Classification(tissue, threshold, int(pen.sum()), int(dark.sum()))


def _colour_rules(
    rgb: np.ndarray, parameters: TissueParameters
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Saturation (float32), dark pixels and pen pixels of ``rgb``, in row bands so that the
    float temporaries stay small."""
    height, width = rgb.shape[:2]
    saturation = np.empty((height, width), dtype=np.float32)
    dark = np.empty((height, width), dtype=bool)
    pen = np.zeros((height, width), dtype=bool)
    rows = max(1, HSV_ROWS_PIXELS // max(1, width))
    for y in range(0, height, rows):
        band = slice(y, y + rows)
        hsv = saturation_value_hue(rgb[band])
        saturation[band] = hsv.saturation
        dark[band] = hsv.value < parameters.dark_value
        if parameters.pen_hue is not None:
            low, high = parameters.pen_hue
            pen[band] = (
                (hsv.hue >= low)
                & (hsv.hue <= high)
                & (hsv.saturation > parameters.min_saturation)
                & ~dark[band]
            )
    return saturation, dark, pen


class HSV(NamedTuple):
    """HSV of an RGB picture: saturation and value in [0, 1], hue in degrees [0, 360)
    (0 where the pixel is grey), all float32."""

    saturation: np.ndarray
    value: np.ndarray
    hue: np.ndarray


def saturation_value_hue(rgb: np.ndarray) -> HSV:
    """The HSV of ``rgb`` (``uint8`` ``(..., 3)``), as ``skimage.color.rgb2hsv`` defines it
    (hue in degrees here), in float32: rgb2hsv works in float64 and is several times slower
    on the megapixel pictures this module sees."""
    red, green, blue = (rgb[..., i].astype(np.float32) for i in range(3))
    top = np.maximum(np.maximum(red, green), blue)
    chroma = top - np.minimum(np.minimum(red, green), blue)
    grey = chroma == 0
    safe = np.where(grey, 1, chroma)
    hue = np.where(
        top == red,
        ((green - blue) / safe) % 6,
        np.where(top == green, (blue - red) / safe + 2, (red - green) / safe + 4),
    )
    hue = np.where(grey, 0, hue * 60)
    saturation = chroma / np.where(top == 0, 1, top)
    return HSV(saturation, top / 255, hue.astype(np.float32))


def _threshold(saturation: np.ndarray, parameters: TissueParameters) -> float:
    """Otsu's threshold of the candidates' saturation, clamped (see the module docstring)."""
    if saturation.min() == saturation.max():  # Otsu is undefined on one value
        otsu = float(saturation[0])
    else:
        otsu = float(threshold_otsu(saturation))
    return float(np.clip(otsu, parameters.min_saturation, parameters.max_saturation))


def _clean(
    tissue: np.ndarray, pen: np.ndarray, mpp: tuple[float, float], parameters: TissueParameters
) -> np.ndarray:
    """Closing, pen removed again, small holes filled, small objects dropped."""
    pixel_um = float(np.sqrt(mpp[0] * mpp[1]))
    radius = round(parameters.closing_um / pixel_um)
    if radius > 0:
        tissue = closing(tissue, disk(radius), mode="ignore")
    tissue &= ~pen
    pixel_area = mpp[0] * mpp[1]
    holes = round(parameters.max_hole_um2 / pixel_area)
    objects = round(parameters.min_object_um2 / pixel_area)
    if holes > 0:
        tissue = fill_holes_below(tissue, holes)
    if objects > 0:
        tissue = drop_objects_below(tissue, objects)
    return tissue


# scikit-image 0.26 renamed min_size and area_threshold to max_size ("that size or smaller");
# 0.24 and 0.25, the last ones for Python 3.10, know only the old names ("smaller than").
_MAX_SIZE = "max_size" in inspect.signature(remove_small_objects).parameters


def fill_holes_below(mask: np.ndarray, pixels: int) -> np.ndarray:
    """``mask`` with every background region of fewer than ``pixels`` pixels, enclosed by
    the mask (4-connected), filled."""
    if _MAX_SIZE:
        return remove_small_holes(mask, max_size=pixels - 1)
    return remove_small_holes(mask, area_threshold=pixels)


def drop_objects_below(mask: np.ndarray, pixels: int) -> np.ndarray:
    """``mask`` without its 4-connected regions of fewer than ``pixels`` pixels."""
    if _MAX_SIZE:
        return remove_small_objects(mask, max_size=pixels - 1)
    return remove_small_objects(mask, min_size=pixels)
