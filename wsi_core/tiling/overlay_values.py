"""Overlay pixel values as small integer codes with string keys.

A pixel's key depends on the pixel alone, so the same colour has the same key in every tile
and every file: one-channel values key as ``"0"``, ``"255"`` (``"0.5"`` for floats); RGB
pixels whose three channels are equal key as that one value, so a grey mask stored as RGB
counts exactly as the same mask stored as one channel; other RGB pixels key as ``"r,g,b"``.
An alpha channel is ignored (the read window is clipped to the image, where it is opaque).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class ValueCodes(NamedTuple):
    """``codes[y, x]`` indexes ``keys``: unsigned or ``intp`` integers in ``[0, len(keys))``."""

    codes: np.ndarray
    keys: list[str]


def encode_values(region: np.ndarray, *, overwrite: bool = False) -> ValueCodes:
    """Code the pixels of a ``(h, w)`` or ``(h, w, channels)`` overlay region.

    With ``overwrite``, a ``uint8`` plane of at most two values (a tissue mask) is coded in
    its own memory, which the caller gives up: the codes are then a view of ``region``. A
    region-sized temporary fewer is a region's worth of page faults fewer."""
    if region.ndim == 2:
        return _encode_single(region, overwrite)
    channels = region.shape[2]
    if channels < 3:  # grey, or grey plus alpha
        return _encode_single(region[..., 0], overwrite)
    rgb = region[..., :3]
    if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
        return _encode_single(rgb[..., 0], overwrite)
    return _encode_rgb(rgb)


def _encode_single(plane: np.ndarray, overwrite: bool = False) -> ValueCodes:
    """Codes of a one-channel ``(h, w)`` plane, keys in value order; in the plane's memory
    when ``overwrite`` allows it (see :func:`encode_values`)."""
    if plane.dtype == bool:
        plane = plane.view(np.uint8)
    if plane.dtype in (np.uint8, np.uint16):
        two = _two_values(plane, overwrite and plane.dtype == np.uint8)
        if two is not None:
            return two
        # A lookup table over the whole value range beats sorting for the common mask dtypes.
        present = np.flatnonzero(np.bincount(plane.ravel(), minlength=1))
        keys = [str(int(v)) for v in present]
        if np.array_equal(present, np.arange(present.size)):  # values are already 0..K-1
            return ValueCodes(plane, keys)
        lut = np.zeros(int(present[-1]) + 1, dtype=np.uint8 if present.size <= 256 else np.intp)
        lut[present] = np.arange(present.size)
        return ValueCodes(lut[plane], keys)
    values, inverse = np.unique(plane, return_inverse=True)
    return ValueCodes(inverse.reshape(plane.shape).astype(np.intp), [_key(v) for v in values])


def _two_values(plane: np.ndarray, in_place: bool = False) -> ValueCodes | None:
    """Codes of an unsigned plane holding at most two values (a tissue mask), else None;
    written over ``plane`` (``uint8`` only) when ``in_place``, left unchanged otherwise.

    Compiled passes over the plane (its extrema; then whether any pixel lies strictly
    between them), where ``bincount`` and a lookup table convert every pixel to a 64-bit
    index (five times the time on a 50-megapixel band of a full-resolution mask). In place,
    one pass (``code_two_values``) finds the values and codes each row as it tests it, and no
    plane-sized temporary is made (each costs its page faults too: about 1 ms on 4.7
    megapixels).
    """
    # Compiled by numba, which costs 120 MB and a third of a second to import: only here.
    from wsi_core.tiling.overlay_kernels import any_between, code_two_values, extrema

    if plane.size == 0:
        return None
    if in_place:
        seen, least, greatest = code_two_values(plane)
        if seen > 2:
            return None
        return ValueCodes(plane, [str(int(v)) for v in (least, greatest)[:seen]])
    low, high = extrema(plane)
    if low == high:
        return ValueCodes(np.zeros(plane.shape, dtype=np.uint8), [str(int(low))])
    keys = [str(int(low)), str(int(high))]
    # In the plane's dtype: compared with 64-bit integers, its pixels would be widened first.
    low, high = plane.dtype.type(low), plane.dtype.type(high)
    if any_between(plane, low, high):
        return None
    return ValueCodes(np.equal(plane, high).view(np.uint8), keys)


def _encode_rgb(rgb: np.ndarray) -> ValueCodes:
    """Codes of an ``(h, w, 3)`` RGB region, keys in colour order."""
    if rgb.dtype == np.uint8:
        # Packing three bytes into one integer sorts far faster than unique rows.
        packed = (
            (rgb[..., 0].astype(np.uint32) << 16)
            | (rgb[..., 1].astype(np.uint32) << 8)
            | rgb[..., 2]
        )
        values, inverse = np.unique(packed.ravel(), return_inverse=True)
        colours = np.stack([values >> 16, (values >> 8) & 255, values & 255], axis=1)
    else:
        colours, inverse = np.unique(rgb.reshape(-1, 3), axis=0, return_inverse=True)
    keys = [
        _key(r) if r == g == b else f"{_key(r)},{_key(g)},{_key(b)}" for r, g, b in colours.tolist()
    ]
    return ValueCodes(inverse.reshape(rgb.shape[:2]).astype(np.intp), keys)


def _key(value: object) -> str:
    """``"3"`` for integral values of any dtype, ``repr`` of the float otherwise."""
    number = value.item() if isinstance(value, np.generic) else value
    if isinstance(number, float) and number.is_integer():
        return str(int(number))
    return str(number)


def sort_keys(keys: list[str]) -> list[str]:
    """Keys in value order: numerically, channel by channel; one-channel keys first."""

    def order(key: str) -> tuple:
        try:
            return (key.count(","), tuple(float(part) for part in key.split(",")), key)
        except ValueError:
            return (key.count(","), (float("inf"),), key)

    return sorted(keys, key=order)
