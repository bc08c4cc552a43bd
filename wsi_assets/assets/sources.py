"""Observed source files: the slide, its annotation file and its overlay, per slide partition.

Each is an observable source asset whose data version is the file's ETag (object stores) or
size + mtime (file systems), or ``missing``. The slide sensor records the same versions as
observations on every change it sees, so editing one slide's annotation file marks only that
slide's ``annotation_coverage`` stale; "Observe sources" in the UI does the same by hand.
"""

import warnings
from collections.abc import Callable

from dagster import (
    AssetKey,
    DataVersion,
    DataVersionsByPartition,
    SourceAsset,
    observable_source_asset,
)

from ..config import WSISettings
from ..discovery import ANNOTATION, OVERLAY, SLIDE, source_versions
from ..keys import ANNOTATION_FILE, OVERLAY_FILE, SLIDE_FILE
from ..partitions import slides_partitions
from ..registry import SlideRegistry

GROUP = "sources"
KIND_BY_KEY: dict[AssetKey, str] = {
    SLIDE_FILE: SLIDE,
    ANNOTATION_FILE: ANNOTATION,
    OVERLAY_FILE: OVERLAY,
}


def registered_slides(settings: WSISettings, partition_key: str | None) -> dict[str, str]:
    """Partition key -> slide URI, for one partition or for all registered slides."""
    entries = SlideRegistry(settings.output_root).load()
    if partition_key is not None:
        return {partition_key: entries[partition_key].uri} if partition_key in entries else {}
    return {key: entry.uri for key, entry in entries.items()}


def _observer(kind: str) -> Callable[..., DataVersionsByPartition]:
    def observe(context, settings: WSISettings) -> DataVersionsByPartition:
        partition = context.partition_key if context.has_partition_key else None
        versions = source_versions(settings, registered_slides(settings, partition))[kind]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # DataVersionsByPartition is beta in Dagster 1.13
            return DataVersionsByPartition(
                {key: DataVersion(value) for key, value in versions.items()}
            )

    observe.__doc__ = f"Data version of every slide's {kind} file (ETag, or size and mtime)."
    return observe


def build() -> list[SourceAsset]:
    """The three observable source assets (``observable_source_asset`` is beta in Dagster
    1.13; its warning is silenced here on purpose)."""
    descriptions = {
        SLIDE_FILE: "Slide file under the slide root.",
        ANNOTATION_FILE: "Annotation file (ASAP XML, GeoJSON, Darwin JSON) found by the "
        "annotation templates; version 'missing' when there is none.",
        OVERLAY_FILE: "Overlay raster (e.g. tissue mask) found by the overlay templates; "
        "version 'missing' when there is none.",
    }
    assets = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for key, kind in KIND_BY_KEY.items():
            assets.append(
                observable_source_asset(
                    key=key,
                    partitions_def=slides_partitions,
                    group_name=GROUP,
                    description=descriptions[key],
                )(_observer(kind))
            )
    return assets
