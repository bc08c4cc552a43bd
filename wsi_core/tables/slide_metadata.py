"""``slide_metadata``: one row per slide: pyramid, resolution and the level chosen to tile."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from wsi_core.slide import open_slide
from wsi_core.tables.schemas import SLIDE_METADATA_SCHEMA


def describe_slide(
    location: str,
    target_mpp: float,
    slide_mpp: float | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Pyramid facts of the slide at ``location`` (a local path, or a URL ``open_slide`` reads)
    and the level closest to ``target_mpp`` (micrometres per pixel). ``slide_mpp`` is the
    level-0 resolution to assume when the file records none."""
    with open_slide(location, mpp=slide_mpp, storage_options=storage_options) as slide:
        level = slide.closest_level(target_mpp)
        base_x, base_y = slide.mpp
        mpp_x, mpp_y = slide.slide_resolution(level)
        extent_x, extent_y = slide.level_dimensions[level]
        return {
            "vendor": str(slide.vendor),
            "level_count": int(slide.level_count),
            "level_width": [int(width) for width, _ in slide.level_dimensions],
            "level_height": [int(height) for _, height in slide.level_dimensions],
            "level_downsample": [float(value) for value in slide.level_downsamples],
            "base_mpp_x": float(base_x),
            "base_mpp_y": float(base_y),
            "target_mpp": float(target_mpp),
            "level": int(level),
            "mpp_x": float(mpp_x),
            "mpp_y": float(mpp_y),
            "downsample": float(slide.level_downsamples[level]),
            "extent_x": int(extent_x),
            "extent_y": int(extent_y),
        }


def build_slide_metadata(
    location: str,
    *,
    slide_key: str,
    uri: str,
    relpath: str,
    file_size: int,
    target_mpp: float,
    slide_mpp: float | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> pa.Table:
    """The one-row ``slide_metadata`` table of the slide opened from ``location``.

    ``uri`` and ``relpath`` name the slide as the user knows it (``location`` may be a
    temporary local copy of a remote file); ``file_size`` is in bytes.
    """
    facts = describe_slide(location, target_mpp, slide_mpp, storage_options)
    row = {
        "slide_key": slide_key,
        "uri": uri,
        "relpath": relpath,
        "file_size": int(file_size),
        **facts,
    }
    return pa.Table.from_pylist([row], schema=SLIDE_METADATA_SCHEMA)
