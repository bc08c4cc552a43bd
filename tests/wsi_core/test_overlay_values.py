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
@pytest.mark.parametrize("overwrite", [False, True])
def test_codes_and_keys_equal_the_sorted_values(dtype, values, overwrite):
    """Also when the plane may be overwritten: a plane that is not two-valued, or not
    ``uint8``, is left as it was (the lookup-table path reads it after the two-value test)."""
    rng = np.random.default_rng(len(values))
    # Taller than the rows counted at once, so that the counts go in several parts.
    plane = rng.choice(np.array(values, dtype=dtype), size=(1301, 257))
    original = plane.copy()
    result = encode_values(plane, overwrite=overwrite)
    codes, keys = _by_sorting(original.view(np.uint8) if dtype is bool else original)
    assert result.keys == keys
    np.testing.assert_array_equal(result.codes, codes)
    assert result.codes.shape == plane.shape
    if not overwrite or len(values) > 2 or plane.dtype != np.uint8:
        np.testing.assert_array_equal(plane, original)


def test_a_third_value_in_the_last_row_is_found():
    """The two-value test goes row by row, stopping at the first row with a third value: a
    value met only at the end of the plane still sends it to the lookup table, unchanged
    though it may be overwritten."""
    plane = np.full((2000, 300), 255, dtype=np.uint8)
    plane[:1000] = 7
    plane[-1, -1] = 100
    original = plane.copy()
    result = encode_values(plane, overwrite=True)
    assert result.keys == ["7", "100", "255"]
    np.testing.assert_array_equal(plane, original)
    np.testing.assert_array_equal(result.codes, _by_sorting(original)[0])


@pytest.mark.parametrize(
    ("top", "rest"),
    [
        (255, [0, 255]),  # the first rows hold the greater value alone: coded 1, not 0
        (0, [0, 255]),
        (9, [9]),  # one value throughout
        (255, [0, 100, 255]),  # a third value after rows of the greater one
        (7, [3, 7]),
        (7, [3, 5]),  # the second value and a third in the same row
    ],
)
@pytest.mark.parametrize("first_other_row", [0, 1, 40])
def test_planes_whose_first_rows_hold_one_value(top, rest, first_other_row):
    """In place, the values are found as the rows are coded: rows of one value before the
    first other pixel are coded before it is known whether that value is the lesser. A
    third value puts every row back, however they were coded."""
    rng = np.random.default_rng(first_other_row)
    plane = np.full((60, 33), top, dtype=np.uint8)
    plane[first_other_row:] = rng.choice(np.array(rest, dtype=np.uint8), (60 - first_other_row, 33))
    original = plane.copy()
    result = encode_values(plane, overwrite=True)
    codes, keys = _by_sorting(original)
    assert result.keys == keys
    np.testing.assert_array_equal(result.codes, codes)
    if len(keys) > 2:
        np.testing.assert_array_equal(plane, original)


def test_grey_plus_alpha_is_coded_in_its_strided_plane():
    rng = np.random.default_rng(3)
    grey = np.full((50, 20), 200, dtype=np.uint8)
    grey[10:] = rng.choice(np.array([30, 200], dtype=np.uint8), (40, 20))
    region = np.stack([grey, np.full_like(grey, 255)], axis=-1)
    result = encode_values(region, overwrite=True)
    assert result.keys == ["30", "200"]
    np.testing.assert_array_equal(result.codes, grey == 200)
    assert (region[..., 1] == 255).all()  # the alpha samples are not written


def test_grey_stored_as_rgb_and_empty_regions():
    rng = np.random.default_rng(1)
    plane = rng.choice(np.array([0, 255], dtype=np.uint8), size=(40, 30))
    rgb = np.repeat(plane[..., None], 3, axis=-1)
    np.testing.assert_array_equal(encode_values(rgb).codes, plane // 255)
    assert encode_values(rgb).keys == ["0", "255"]
    empty = encode_values(np.zeros((0, 5), dtype=np.uint8))
    assert empty.keys == [] and empty.codes.shape == (0, 5)
