"""Building one table of one slide: read its inputs, call its builder, store it.

This is what every engine runs per slide and table (a Dagster asset, a Ray task, the command
line): :meth:`Pipeline.build` reads the slide's files and upstream table through the stores,
calls the ``wsi_core.tables`` builder, writes the table with its provenance, and returns the
table with plain-valued facts for the engine to show. Errors name the file they are about:
:class:`~wsi_assets.pipeline.errors.InputFileError` and the other ``WSIError`` for inputs
that cannot be used (do not retry until the file changes), ``OSError`` for storage trouble
(worth a retry).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from wsi_assets.pipeline.errors import InputFileError, UnknownSlideError
from wsi_assets.pipeline.locations import MISSING
from wsi_assets.pipeline.registry import Registry
from wsi_assets.pipeline.settings import Settings
from wsi_assets.pipeline.slides import ANNOTATION, OVERLAY, SLIDE, Slide, SlideFiles, SlideStore
from wsi_assets.pipeline.tables import Provenance, StoredTable, TableStore
from wsi_core.errors import WSIError
from wsi_core.tables import (
    ANNOTATION_COVERAGE,
    OVERLAY_OVERLAP,
    SLIDE_METADATA,
    TILE_GRID,
    build_annotation_coverage,
    build_overlay_overlap,
    build_slide_metadata,
    build_tile_grid,
)
from wsi_core.tables.annotation_coverage import coverage_summary
from wsi_core.tables.overlay_overlap import overlap_summary
from wsi_core.tables.schemas import UPSTREAM

#: The input file each table reads besides its upstream table.
SOURCE_OF = {SLIDE_METADATA: SLIDE, ANNOTATION_COVERAGE: ANNOTATION, OVERLAY_OVERLAP: OVERLAY}


@dataclass(frozen=True)
class Built:
    """One table of one slide as built and stored, with facts for the engine to show
    (plain values: file names, counts, summaries)."""

    table: str
    key: str
    data: pa.Table
    stored: StoredTable
    facts: dict[str, Any] = field(default_factory=dict)
    #: The upstream table it was computed from (None for ``slide_metadata``).
    upstream: pa.Table | None = None


def provenance(
    settings: Settings, table: str, source_version: str | None, upstream_id: str | None
) -> Provenance:
    """What ``table`` of a slide is computed from: its code version, the data version of the
    input file it reads (if any) and the provenance id of its upstream table (if it has one;
    ``unknown`` for an upstream table stored without provenance)."""
    inputs: dict[str, str] = {}
    parent = UPSTREAM[table]
    if parent is not None:
        inputs[parent] = upstream_id or "unknown"
    if table in SOURCE_OF:
        inputs[SOURCE_OF[table]] = source_version or MISSING
    return Provenance(table, settings.code_version(table), inputs)


def _id(origin: Provenance | None) -> str | None:
    return None if origin is None else origin.id


@contextmanager
def about_file(uri: str, kind: str) -> Iterator[None]:
    """Any error while reading the ``kind`` file at ``uri`` becomes an
    :class:`InputFileError` naming ``uri``; storage errors (``OSError`` other than a missing
    file) pass unchanged so that engines can retry them."""
    try:
        yield
    except InputFileError:
        raise
    except WSIError as error:  # its path may be a temporary copy: name the file the user has
        raise InputFileError(uri, error.problem) from error
    except FileNotFoundError as error:
        raise InputFileError(uri, f"{kind} file not found") from error
    except OSError:
        raise
    except Exception as error:  # a reader's own failure on a bad file: report it against the file
        problem = f"cannot read {kind}: {type(error).__name__}: {error}"
        raise InputFileError(uri, problem) from error


class Pipeline:
    """The stores of one settings object, and the four table steps."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.slides = SlideStore(settings)
        self.tables = TableStore(settings.output_root, settings.storage_options)
        self.registry = Registry(settings.output_root, settings.storage_options)

    def slide(self, key: str) -> Slide:
        """The slide of partition ``key``: from the registry, else found under the slide
        root (and registered); :class:`UnknownSlideError` when no slide there has this key."""
        held = self.registry.lookup(key)
        if held is not None:
            return self.slides.slide(held.relpath)
        for slide in self.slides.scan():
            if slide.key == key:
                self.registry.register([slide.relpath])
                return slide
        raise UnknownSlideError(
            self.slides.root.path,
            f"no slide under the slide root has partition key {key!r} (moved or deleted?)",
        )

    def inputs(self, key: str) -> SlideFiles:
        """Slide ``key``'s input files as they are now (one listing of its folder)."""
        return self.slides.files(self.slide(key))

    def build(self, table: str, key: str, files: SlideFiles | None = None) -> Built:
        """Build and store ``table`` of slide ``key``, reading the input files in ``files``
        (from :meth:`inputs`; found afresh when None)."""
        if table == TILE_GRID:
            return self._tile_grid(key)
        steps: dict[str, Callable[[SlideFiles], Built]] = {
            SLIDE_METADATA: self._slide_metadata,
            ANNOTATION_COVERAGE: self._annotation_coverage,
            OVERLAY_OVERLAP: self._overlay_overlap,
        }
        return steps[table](files or self.inputs(key))

    def _store(
        self,
        table: str,
        key: str,
        data: pa.Table,
        origin: Provenance,
        facts: dict[str, Any],
        upstream: pa.Table | None = None,
    ) -> Built:
        stored = self.tables.write(table, key, data, origin)
        facts = {
            **facts,
            "code_version": origin.code_version,
            "provenance": origin.id,
            "parameters": self.settings.table_params(table),
        }
        return Built(table, key, data, stored, facts, upstream)

    def _slide_metadata(self, files: SlideFiles) -> Built:
        slide, key = files.slide, files.slide.key
        found = files.files[SLIDE]
        if found is None:
            raise InputFileError(slide.uri, "slide file not found")
        settings = self.settings
        with about_file(slide.uri, SLIDE):
            data = self.slides.read(
                slide.uri,
                lambda location: build_slide_metadata(
                    location,
                    slide_key=key,
                    uri=slide.uri,
                    relpath=slide.relpath,
                    file_size=found.size,
                    target_mpp=settings.mpp,
                    slide_mpp=settings.slide_mpp,
                    storage_options=settings.storage_options,
                ),
            )
        facts = {"slide_file": slide.uri, "source_version": found.version}
        return self._store(
            SLIDE_METADATA,
            key,
            data,
            provenance(settings, SLIDE_METADATA, found.version, None),
            facts,
        )

    def _tile_grid(self, key: str) -> Built:
        meta, upstream = self.tables.read(SLIDE_METADATA, key)
        settings = self.settings
        data = build_tile_grid(meta, settings.tile_extent, settings.stride, settings.last)
        row = meta.to_pylist()[0]
        facts = {"level": row["level"], "extent": [row["extent_x"], row["extent_y"]]}
        origin = provenance(settings, TILE_GRID, None, _id(upstream))
        return self._store(TILE_GRID, key, data, origin, facts, meta)

    @staticmethod
    def _companion(files: SlideFiles, kind: str) -> tuple[str | None, dict[str, Any]]:
        """The slide's ``kind`` file (None if none) and facts that say which file was used
        or, when there is none, every place that was looked at."""
        found = files.files[kind]
        if found is not None:
            return found.uri, {f"{kind}_file": found.uri, "measured": True}
        looked = files.looked_for.get(kind, [])
        return None, {f"{kind}_file": None, "looked_for": looked, "measured": False}

    def _annotation_coverage(self, files: SlideFiles) -> Built:
        key = files.slide.key
        grid, upstream = self.tables.read(TILE_GRID, key)
        annotation, facts = self._companion(files, ANNOTATION)
        settings = self.settings
        classes = dict(settings.label_classes)
        with about_file(annotation or "", ANNOTATION):
            data, found = build_annotation_coverage(
                grid, annotation, classes, settings.roi_geometry(), settings.storage_options
            )
        if found is not None:
            facts["labels_in_file"] = found.labels_in_file
            facts["polygons_per_class"] = found.polygons_per_class
        facts["coverage_summary"] = coverage_summary(data, classes)
        origin = provenance(settings, ANNOTATION_COVERAGE, files.version(ANNOTATION), _id(upstream))
        return self._store(ANNOTATION_COVERAGE, key, data, origin, facts, grid)

    def _overlay_overlap(self, files: SlideFiles) -> Built:
        key = files.slide.key
        grid, upstream = self.tables.read(TILE_GRID, key)
        overlay, facts = self._companion(files, OVERLAY)
        settings = self.settings
        roi = settings.roi_geometry()
        seen: list[str] | None = None
        if overlay is None:
            data, _ = build_overlay_overlap(grid, None, roi)
        else:
            with about_file(overlay, OVERLAY):
                data, seen = self.slides.read(
                    overlay,
                    lambda location: build_overlay_overlap(
                        grid, location, roi, settings.overlay_mpp, settings.storage_options
                    ),
                )
            facts["overlay_values"] = seen
        facts["overlap_summary"] = overlap_summary(data)
        origin = provenance(settings, OVERLAY_OVERLAP, files.version(OVERLAY), _id(upstream))
        return self._store(OVERLAY_OVERLAP, key, data, origin, facts, grid)
