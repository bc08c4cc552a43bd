"""``mask_picture``: a tissue mask drawn over a slide's thumbnail, pixel for pixel where the
mask says tissue, and nowhere else."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from wsi_core.pictures import RAMP, TISSUE_ALPHA, Thumbnail, mask_picture


def test_tissue_is_tinted_exactly_where_the_mask_is() -> None:
    # a 400 x 300 px thumbnail of a 4000 x 3000 px slide; mask pixels of 100 level-0 pixels
    # (40 x 30), so each mask pixel is 10 x 10 thumbnail pixels
    grey = np.full((300, 400, 3), 200, np.uint8)
    thumbnail = Thumbnail(grey, (4000, 3000), 2)
    mask = np.zeros((30, 40), bool)
    mask[5:12, 20:33] = True
    picture = mask_picture(thumbnail, mask, (100.0, 100.0), "slide.svs", "a test mask")
    drawn = np.asarray(Image.open(io.BytesIO(picture.png)).convert("RGB"))[:300, :400]
    expected = np.repeat(np.repeat(mask, 10, axis=0), 10, axis=1)
    tinted = np.abs(drawn.astype(int) - 200).sum(axis=2) > 6  # beyond the palette's rounding
    np.testing.assert_array_equal(tinted, expected)
    colour = 200 * (1 - TISSUE_ALPHA) + np.asarray(RAMP[-1]) * TISSUE_ALPHA
    assert np.abs(drawn[expected].mean(axis=0) - colour).max() < 4
    assert picture.legend == (("tissue", RAMP[-1]),)
    assert picture.caption == "slide.svs: a test mask"


def test_a_mask_shorter_than_the_slide_leaves_the_rest_untouched() -> None:
    """The mask's last row and column may stop short of the slide's edge: beyond it, the
    thumbnail is not tinted (and nothing is read out of bounds)."""
    thumbnail = Thumbnail(np.full((100, 100, 3), 90, np.uint8), (1000, 1000), 0)
    mask = np.ones((8, 8), bool)  # 8 mask pixels of 100 level-0 pixels: 800 of 1000
    picture = mask_picture(thumbnail, mask, (100.0, 100.0))
    drawn = np.asarray(Image.open(io.BytesIO(picture.png)).convert("RGB"))[:100, :100]
    tinted = np.abs(drawn.astype(int) - 90).sum(axis=2) > 6
    assert tinted[:80, :80].all() and not tinted[80:, :].any() and not tinted[:, 80:].any()
    assert "100.0% tissue" in picture.caption
