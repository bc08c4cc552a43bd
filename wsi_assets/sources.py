"""The input files of each slide as Dagster assets, and the versions recorded for them.

``slide_file``, ``annotation_file`` and ``overlay_file`` are external assets: Dagster does not
build them, it is told about them. A materialization of one records the data version of a
slide's file (``version`` in its metadata): the run that reads the file records the version
it read, and ``slide_sensor`` records a newer one when the file changes. Declarative
automation then rebuilds exactly the tables that read a file with a new version.
"""

from collections.abc import Sequence

import dagster as dg

from wsi_assets.partitions import SLIDES
from wsi_assets.pipeline.slides import ANNOTATION, OVERLAY, SLIDE, SlideFiles

SOURCE_GROUP = "sources"
#: The external asset of each kind of input file.
SOURCE_ASSETS = {SLIDE: "slide_file", ANNOTATION: "annotation_file", OVERLAY: "overlay_file"}
SOURCE_KEYS = tuple(dg.AssetKey(name) for name in SOURCE_ASSETS.values())
#: Partition keys per event-log query.
QUERY_KEYS = 500


def source_specs() -> list[dg.AssetSpec]:
    """The three input files of each slide, as external assets."""
    about = {
        SLIDE: "Slide file under the slide root.",
        ANNOTATION: "Annotation file (ASAP XML, GeoJSON, Darwin JSON) found by the annotation "
        "templates.",
        OVERLAY: "Overlay raster (a tissue mask) found by the overlay templates.",
    }
    return [
        dg.AssetSpec(name, partitions_def=SLIDES, group_name=SOURCE_GROUP, description=about[kind])
        for kind, name in SOURCE_ASSETS.items()
    ]


def source_event(kind: str, files: SlideFiles, why: str) -> dg.AssetMaterialization:
    """The record of the version of one slide's ``kind`` file (``missing`` when absent)."""
    found = files.files.get(kind)
    metadata: dict[str, dg.RawMetadataValue] = {"version": files.version(kind)}
    if found is not None:
        metadata["dagster/uri"] = dg.MetadataValue.path(found.uri)
        metadata["size"] = found.size
    return dg.AssetMaterialization(
        asset_key=SOURCE_ASSETS[kind], partition=files.slide.key, metadata=metadata, description=why
    )


def recorded_versions(
    instance: dg.DagsterInstance, kind: str, keys: Sequence[str]
) -> dict[str, str]:
    """The latest version recorded for the ``kind`` file of each of ``keys`` (slides with none
    recorded are absent): a few queries per ``QUERY_KEYS`` keys, newest records first."""
    asset = dg.AssetKey(SOURCE_ASSETS[kind])
    found: dict[str, str] = {}
    for start in range(0, len(keys), QUERY_KEYS):
        wanted = set(keys[start : start + QUERY_KEYS])
        cursor = None
        while wanted:
            result = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=asset, asset_partitions=list(wanted)),
                limit=len(wanted) * 4,
                cursor=cursor,
            )
            for record in result.records:
                key = record.partition_key
                event = record.asset_materialization
                if key in wanted and event is not None:
                    entry = event.metadata.get("version")
                    found[key] = "" if entry is None else str(entry.value)
                    wanted.discard(key)
            if not result.has_more:
                break
            cursor = result.cursor
    return found
