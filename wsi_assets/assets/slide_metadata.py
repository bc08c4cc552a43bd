"""``slide_metadata``: one row per slide: pyramid, resolution, and the level chosen for tiling."""

from typing import Any

import pyarrow as pa
from dagster import AssetExecutionContext, AssetsDefinition, MaterializeResult, MetadataValue, asset

from .. import storage
from ..config import WSISettings
from ..keys import SLIDE_FILE, SLIDE_METADATA
from ..partitions import slides_partitions
from ..tables import materialize_result
from ._common import GROUP, RETRY, about_file, code_version, save, slide_entry

REVISION = "1"

SCHEMA = pa.schema(
    [
        ("slide_key", pa.string()),
        ("uri", pa.string()),
        ("relpath", pa.string()),
        ("file_size", pa.int64()),
        ("vendor", pa.string()),
        ("level_count", pa.int32()),
        ("level_width", pa.list_(pa.int64())),
        ("level_height", pa.list_(pa.int64())),
        ("level_downsample", pa.list_(pa.float64())),
        ("base_mpp_x", pa.float64()),
        ("base_mpp_y", pa.float64()),
        ("target_mpp", pa.float64()),
        ("level", pa.int32()),
        ("mpp_x", pa.float64()),
        ("mpp_y", pa.float64()),
        ("downsample", pa.float64()),
        ("extent_x", pa.int64()),
        ("extent_y", pa.int64()),
    ]
)

DESCRIPTIONS = {
    "slide_key": "partition key of the slide",
    "uri": "slide file (local path or URL)",
    "relpath": "slide path relative to the slide root",
    "file_size": "slide file size, bytes",
    "vendor": "format reported by the reader",
    "level_width": "width of each pyramid level, pixels",
    "level_height": "height of each pyramid level, pixels",
    "level_downsample": "level-0 pixels per level pixel, per level",
    "base_mpp_x": "level-0 resolution, micrometres per pixel (x)",
    "base_mpp_y": "level-0 resolution, micrometres per pixel (y)",
    "target_mpp": "requested resolution, micrometres per pixel",
    "level": "pyramid level closest to target_mpp (used for tiling)",
    "mpp_x": "resolution of the chosen level, micrometres per pixel (x)",
    "mpp_y": "resolution of the chosen level, micrometres per pixel (y)",
    "downsample": "level-0 pixels per pixel of the chosen level",
    "extent_x": "width of the chosen level, pixels",
    "extent_y": "height of the chosen level, pixels",
}


def describe_slide(path: str, target_mpp: float, slide_mpp: float | None) -> dict[str, Any]:
    """Pyramid facts of the slide at ``path`` (a local path, or a URL ``open_slide`` reads)
    and the level closest to ``target_mpp`` (micrometres per pixel)."""
    from wsi_core.slide import open_slide

    with open_slide(path, mpp=slide_mpp) as slide:
        level = slide.closest_level(target_mpp)
        base_x, base_y = slide.mpp
        mpp_x, mpp_y = slide.slide_resolution(level)
        extent_x, extent_y = slide.level_dimensions[level]
        return {
            "vendor": str(slide.vendor),
            "level_count": int(slide.level_count),
            "level_width": [int(w) for w, _ in slide.level_dimensions],
            "level_height": [int(h) for _, h in slide.level_dimensions],
            "level_downsample": [float(d) for d in slide.level_downsamples],
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


def build(settings: WSISettings) -> AssetsDefinition:
    """The ``slide_metadata`` asset; its code version follows the resolution settings."""

    @asset(
        name=SLIDE_METADATA,
        partitions_def=slides_partitions,
        deps=[SLIDE_FILE],
        group_name=GROUP,
        kinds={"parquet"},
        retry_policy=RETRY,
        code_version=code_version(REVISION, {"mpp": settings.mpp, "slide_mpp": settings.slide_mpp}),
        description="One row per slide: pyramid levels, base mpp, and the level closest to the "
        "target mpp (the one tile_grid tiles).",
    )
    def slide_metadata(context: AssetExecutionContext, settings: WSISettings) -> MaterializeResult:
        key = context.partition_key
        entry = slide_entry(settings, key)
        with about_file(entry.uri, "slide"):
            info = storage.file_info(entry.uri)
            if info is None:
                raise FileNotFoundError(entry.uri)
            facts = storage.read_slide_file(
                entry.uri, lambda path: describe_slide(path, settings.mpp, settings.slide_mpp)
            )
        row = {
            "slide_key": key,
            "uri": entry.uri,
            "relpath": entry.relpath,
            "file_size": int(info.get("size") or 0),
            **facts,
        }
        table = pa.Table.from_pylist([row], schema=SCHEMA)
        uri, digest = save(settings, SLIDE_METADATA, key, table)
        context.log.info(f"{entry.uri}: level {facts['level']} of {facts['level_count']}")
        return materialize_result(
            table=table,
            uri=uri,
            content_hash=digest,
            descriptions=DESCRIPTIONS,
            lineage={},
            params={"target_mpp": settings.mpp, "slide_mpp_override": settings.slide_mpp},
            extra={
                "slide_file": MetadataValue.path(entry.uri),
                "source_version": storage.version_from_info(entry.uri, info),
            },
        )

    return slide_metadata
