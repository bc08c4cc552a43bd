"""Overlay value codes: the two-value fast path (tissue masks) gives what sorting gives."""

from __future__ import annotations

import numpy as np
import pytest

from wsi_core.tiling.overlay_values import encode_values


def _by_sorting(plane: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """The definition: keys are the values present in order, codes index them."""
    values, inverse = np.unique(plane, return_inverse=True)
    return inverse.reshape(plane.shape), [str(int(v)) for v in values]


@pytest.mark.parametrize(
    ("dtype", "values"),
    [
        (np.uint8, [0, 255]),  # a tissue mask
        (np.uint8, [0, 1]),
        (np.uint8, [7, 200]),
        (np.uint8, [255]),  # all tissue
        (np.uint8, [0, 128, 255]),  # three values: the lookup-table path
        (np.uint16, [0, 65535]),
        (np.uint16, [3, 9, 4000]),
        (bool, [False, True]),
    ],
)
def test_codes_and_keys_equal_the_sorted_values(dtype, values):
    rng = np.random.default_rng(len(values))
    plane = rng.choice(np.array(values, dtype=dtype), size=(301, 257))
    result = encode_values(plane)
    codes, keys = _by_sorting(plane.view(np.uint8) if dtype is bool else plane)
    assert result.keys == keys
    np.testing.assert_array_equal(result.codes, codes)
    assert result.codes.shape == plane.shape


def test_grey_stored_as_rgb_and_empty_regions():
    rng = np.random.default_rng(1)
    plane = rng.choice(np.array([0, 255], dtype=np.uint8), size=(40, 30))
    rgb = np.repeat(plane[..., None], 3, axis=-1)
    np.testing.assert_array_equal(encode_values(rgb).codes, plane // 255)
    assert encode_values(rgb).keys == ["0", "255"]
    empty = encode_values(np.zeros((0, 5), dtype=np.uint8))
    assert empty.keys == [] and empty.codes.shape == (0, 5)
