"""Pyramid-level arithmetic shared by every slide backend.

Resolutions are micrometres per pixel (``mpp``) as ``(x, y)`` pairs; downsamples are level-0
pixels per level pixel.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MPP = float | tuple[float, float] | Sequence[float]


def as_mpp_pair(mpp: MPP) -> tuple[float, float]:
    """``mpp`` as an ``(x, y)`` pair of floats; a scalar applies to both axes."""
    values = np.asarray(mpp, dtype=np.float64)
    if values.ndim == 0:
        value = float(values)
        return value, value
    x, y = values
    return float(x), float(y)


def closest_level(level_downsamples: Sequence[float], base_mpp: MPP, mpp: MPP) -> int:
    """The level whose downsample is closest to ``mpp / base_mpp`` (linear distance).

    Both axes count: the distance is the sum over x and y. On a tie the finer level (the lower
    index) wins.
    """
    base_x, base_y = as_mpp_pair(base_mpp)
    want_x, want_y = as_mpp_pair(mpp)
    downsamples = np.asarray(level_downsamples, dtype=np.float64)
    distance = np.abs(downsamples - want_x / base_x) + np.abs(downsamples - want_y / base_y)
    return int(np.argmin(distance))  # argmin returns the first minimum: the finer level


class LevelsMixin:
    """``closest_level`` and ``slide_resolution`` for any reader that has
    ``level_downsamples`` and an ``mpp`` property (base resolution, ``(x, y)`` micrometres)."""

    @property
    def level_downsamples(self) -> Sequence[float]:  # pragma: no cover - every backend has it
        raise NotImplementedError

    @property
    def mpp(self) -> tuple[float, float]:  # pragma: no cover - every backend overrides it
        raise NotImplementedError

    def closest_level(self, mpp: MPP) -> int:
        """The pyramid level closest to ``mpp`` micrometres per pixel (float or ``(x, y)``)."""
        return closest_level(self.level_downsamples, self.mpp, mpp)

    def slide_resolution(self, level: int) -> tuple[float, float]:
        """``(x, y)`` micrometres per pixel of ``level``: base mpp times its downsample.

        A level that does not exist is the caller's mistake: ``ValueError``, as in reads.
        """
        downsamples = self.level_downsamples
        if not 0 <= int(level) < len(downsamples):
            raise ValueError(
                f"{getattr(self, 'path', 'the slide')}: level {level} does not exist "
                f"(the slide has {len(downsamples)})"
            )
        base_x, base_y = self.mpp
        downsample = float(downsamples[int(level)])
        return base_x * downsample, base_y * downsample
