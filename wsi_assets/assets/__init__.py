"""The asset graph: three observed source files and four per-slide Parquet tables."""

from dagster import AssetsDefinition, SourceAsset

from ..config import WSISettings
from . import annotation_coverage, overlay_overlap, slide_metadata, sources, tile_grid


def build_assets(settings: WSISettings) -> list[AssetsDefinition | SourceAsset]:
    """Sources and tables; the tables' code versions include digests of ``settings``."""
    tables = [
        module.build(settings)
        for module in (slide_metadata, tile_grid, annotation_coverage, overlay_overlap)
    ]
    return [*sources.build(), *tables]
