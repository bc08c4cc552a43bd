"""``slide_metadata``: one row per slide: pyramid, resolution and the level chosen to tile."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from wsi_core.errors import MissingMPPError
from wsi_core.reader import SlideReader
from wsi_core.resolution import MPP, as_mpp_pair, closest_level
from wsi_core.slide import open_slide
from wsi_core.tables.schemas import SLIDE_METADATA_SCHEMA

#: Where a base resolution came from.
FROM_FILE = "file"
FROM_FALLBACK = "fallback"
FROM_OVERRIDE = "override"
#: The chosen level's resolution may differ this much from the target before it is reported
#: (relative: 0.1 is 10 %).
MPP_TOLERANCE = 0.1


@dataclass(frozen=True)
class BaseResolution:
    """A slide's level-0 resolution, ``(x, y)`` micrometres per pixel, and where it came from
    (``FROM_FILE``, ``FROM_FALLBACK`` or ``FROM_OVERRIDE``)."""

    mpp: tuple[float, float]
    source: str


def base_resolution(
    slide: SlideReader, fallback: MPP | None = None, override: MPP | None = None
) -> BaseResolution:
    """The resolution to use for ``slide``: ``override`` when given, else what the file
    records, else ``fallback``; :class:`MissingMPPError` when there is none of the three."""
    if override is not None:
        return BaseResolution(as_mpp_pair(override), FROM_OVERRIDE)
    try:
        return BaseResolution(slide.mpp, FROM_FILE)
    except MissingMPPError:
        if fallback is None:
            raise
    return BaseResolution(as_mpp_pair(fallback), FROM_FALLBACK)


def describe_slide(
    location: str,
    target_mpp: float,
    fallback_mpp: MPP | None = None,
    override_mpp: MPP | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Pyramid facts of the slide at ``location`` (a local path, or a URL ``open_slide``
    reads) and the level closest to ``target_mpp`` (micrometres per pixel). The level-0
    resolution is the file's own, ``fallback_mpp`` only where the file records none, or
    ``override_mpp`` whatever the file records (see :func:`base_resolution`)."""
    with open_slide(location, storage_options=storage_options) as slide:
        base = base_resolution(slide, fallback_mpp, override_mpp)
        downsamples = [float(value) for value in slide.level_downsamples]
        level = closest_level(downsamples, base.mpp, target_mpp)
        extent_x, extent_y = slide.level_dimensions[level]
        return {
            "vendor": str(slide.vendor),
            "level_count": int(slide.level_count),
            "level_width": [int(width) for width, _ in slide.level_dimensions],
            "level_height": [int(height) for _, height in slide.level_dimensions],
            "level_downsample": downsamples,
            "base_mpp_x": base.mpp[0],
            "base_mpp_y": base.mpp[1],
            "target_mpp": float(target_mpp),
            "level": int(level),
            "mpp_x": base.mpp[0] * downsamples[level],
            "mpp_y": base.mpp[1] * downsamples[level],
            "downsample": downsamples[level],
            "extent_x": int(extent_x),
            "extent_y": int(extent_y),
            "mpp_source": base.source,
        }


def build_slide_metadata(
    location: str,
    *,
    slide_key: str,
    uri: str,
    relpath: str,
    file_size: int,
    target_mpp: float,
    fallback_mpp: MPP | None = None,
    override_mpp: MPP | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> tuple[pa.Table, str]:
    """The one-row ``slide_metadata`` table of the slide opened from ``location``, and where
    its resolution came from (``FROM_FILE``, ``FROM_FALLBACK``, ``FROM_OVERRIDE``).

    ``uri`` and ``relpath`` name the slide as the user knows it (``location`` may be a
    temporary local copy of a remote file); ``file_size`` is in bytes.
    """
    facts = describe_slide(location, target_mpp, fallback_mpp, override_mpp, storage_options)
    source = facts.pop("mpp_source")
    row = {"slide_key": slide_key, "uri": uri, "relpath": relpath, "file_size": int(file_size)}
    return pa.Table.from_pylist([{**row, **facts}], schema=SLIDE_METADATA_SCHEMA), source


def resolution_warning(meta: Mapping[str, Any]) -> str | None:
    """A warning when the chosen level's resolution (a ``slide_metadata`` row) is more than
    ``MPP_TOLERANCE`` from the target: the slide has no level near it."""
    worst = max(meta["mpp_x"], meta["mpp_y"]) / meta["target_mpp"]
    best = min(meta["mpp_x"], meta["mpp_y"]) / meta["target_mpp"]
    if max(worst - 1, 1 - best) <= MPP_TOLERANCE:
        return None
    return (
        f"tiles are at {meta['mpp_x']:.4g} x {meta['mpp_y']:.4g} um/px (level {meta['level']}), "
        f"not the {meta['target_mpp']:.4g} um/px asked for: the slide has no closer level"
    )
