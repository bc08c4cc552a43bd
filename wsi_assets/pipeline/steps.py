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

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from wsi_assets.pipeline.errors import InputFileError, UnknownSlideError, about_file
from wsi_assets.pipeline.locations import MISSING
from wsi_assets.pipeline.outputs import PARENT
from wsi_assets.pipeline.pictures import PictureStore
from wsi_assets.pipeline.registry import Registry
from wsi_assets.pipeline.settings import Settings
from wsi_assets.pipeline.slides import ANNOTATION, OVERLAY, SLIDE, Slide, SlideFiles, SlideStore
from wsi_assets.pipeline.tables import Provenance, StoredTable, TableStore
from wsi_assets.pipeline.tissue_masks import (
    GENERATED_MASK,
    TissueMaskStore,
    build_tissue_mask,
    choose_overlay,
)
from wsi_core.errors import WSIError
from wsi_core.pictures import (
    Picture,
    Thumbnail,
    blank_thumbnail,
    mask_picture,
    read_thumbnail,
    table_picture,
)
from wsi_core.progress import Progress
from wsi_core.slide import open_slide
from wsi_core.tables import (
    ANNOTATION_COVERAGE,
    OVERLAY_OVERLAP,
    SLIDE_METADATA,
    TABLES,
    TILE_GRID,
    build_annotation_coverage,
    build_overlay_overlap,
    build_slide_metadata,
    build_tile_grid,
)
from wsi_core.tables.annotation_coverage import CoverageFacts, coverage_summary
from wsi_core.tables.overlay_overlap import (
    Alignment,
    align_overlay,
    overlap_summary,
)
from wsi_core.tables.slide_metadata import resolution_warning
from wsi_core.tables.tile_dataset import TILE_DATASET
from wsi_core.tables.tile_grid import tile_count
from wsi_core.tissue import TISSUE_MASK

#: The input file each output reads besides its upstream table (``overlay_overlap``: the
#: version of the overlay it reads, the user's file or else the tissue mask).
SOURCE_OF = {
    SLIDE_METADATA: SLIDE,
    TISSUE_MASK: SLIDE,
    ANNOTATION_COVERAGE: ANNOTATION,
    OVERLAY_OVERLAP: OVERLAY,
}


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
    #: Its picture (:func:`wsi_core.pictures.table_picture`: PNG bytes, size, legend, caption)
    #: and where that is stored, beside the table.
    picture: Picture | None = None
    picture_uri: str | None = None


def provenance(
    settings: Settings,
    table: str,
    source_version: str | None,
    upstream_id: str | None,
    tissue_mask: str | None = None,
) -> Provenance:
    """What ``table`` of a slide is computed from: its code version, the data version of the
    input file it reads (if any) and the provenance id of its upstream table (if it has one;
    ``unknown`` for an upstream table stored without provenance). ``tissue_mask``: the
    provenance id of the tissue mask that ``overlay_overlap`` reads in place of an overlay
    file the slide does not have (its ``overlay`` input stays ``missing``)."""
    inputs: dict[str, str] = {}
    parent = PARENT[table]
    if parent is not None:
        inputs[parent] = upstream_id or "unknown"
    if table in SOURCE_OF:
        inputs[SOURCE_OF[table]] = source_version or MISSING
    if tissue_mask is not None:
        inputs[TISSUE_MASK] = tissue_mask
    return Provenance(table, settings.code_version(table), inputs)


def _id(origin: Provenance | None) -> str | None:
    return None if origin is None else origin.id


class Pipeline:
    """The stores of one settings object, and the steps of the four tables and the tissue
    mask."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.slides = SlideStore(settings)
        self.tables = TableStore(settings.output_root, settings.storage_options)
        self.registry = Registry(settings.output_root, settings.storage_options)
        self.pictures = PictureStore(self.tables)
        self.masks = TissueMaskStore(self.tables)
        #: The last thumbnail used: (slide key, provenance id of the slide_metadata it goes
        #: with, thumbnail). One slide's steps in one process then read it once, not per table.
        self._last_thumbnail: tuple[str, str, Thumbnail] | None = None

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

    def retire(self, key: str) -> list[str]:
        """Delete slide ``key``'s tables (those this project wrote) and its registration;
        return what was removed. Its files under the slide root are not touched."""
        removed = [uri for table in TABLES if (uri := self.tables.remove(table, key))]
        if mask := self.masks.remove(key):
            removed.append(mask)
        if fragment := self.tables.remove(TILE_DATASET, key):  # its tiles in tile_dataset
            removed.append(fragment)
        removed += self.pictures.remove(key)
        if self.registry.remove(key):
            removed.append(f"registration of {key}")
        return removed

    def inputs(self, key: str) -> SlideFiles:
        """Slide ``key``'s input files as they are now (one listing of its folder)."""
        return self.slides.files(self.slide(key))

    def build(
        self,
        table: str,
        key: str,
        files: SlideFiles | None = None,
        progress: Progress | None = None,
    ) -> Built:
        """Build and store ``table`` of slide ``key``, reading the input files in ``files``
        (from :meth:`inputs`; found afresh when None), and its picture beside it.
        ``progress(done, total)`` hears of the tiles measured by the long steps
        (``annotation_coverage``, ``overlay_overlap``; see :mod:`wsi_core.progress`)."""
        if table == TILE_GRID:
            return self._tile_grid(key)
        if table == SLIDE_METADATA:
            return self._slide_metadata(files or self.inputs(key))
        if table == TISSUE_MASK:
            return self._tissue_mask(files or self.inputs(key))
        steps: dict[str, Callable[[SlideFiles, Progress | None], Built]] = {
            ANNOTATION_COVERAGE: self._annotation_coverage,
            OVERLAY_OVERLAP: self._overlay_overlap,
        }
        return steps[table](files or self.inputs(key), progress)

    def _store(
        self,
        table: str,
        key: str,
        data: pa.Table,
        origin: Provenance,
        facts: dict[str, Any],
        upstream: pa.Table | None = None,
        *,
        thumbnail: Thumbnail,
        relpath: str,
    ) -> Built:
        """Store the table, and first its picture over ``thumbnail`` (so that a table is never
        without its picture; a picture without its table is replaced on the next build).
        ``relpath``: the slide's path under the slide root, shown beside the key."""
        picture = table_picture(
            table,
            thumbnail,
            data,
            grid=upstream if table in (ANNOTATION_COVERAGE, OVERLAY_OVERLAP) else None,
            classes=list(self.settings.label_classes),
            title=relpath,
        )
        picture_uri = self.pictures.write(table, key, picture.png)
        stored = self.tables.write(table, key, data, origin)
        facts = {
            "slide": relpath,
            **facts,
            "code_version": origin.code_version,
            "provenance": origin.id,
            "parameters": self.settings.table_params(table),
        }
        return Built(table, key, data, stored, facts, upstream, picture, picture_uri)

    def _store_per_tile(
        self,
        table: str,
        files: SlideFiles,
        data: pa.Table,
        origin: Provenance,
        facts: dict[str, Any],
        grid: pa.Table,
        upstream: Provenance | None,
    ) -> Built:
        """:meth:`_store` for a table with one row per tile of ``grid``, its picture drawn over
        the slide's thumbnail (``upstream``: the grid's provenance)."""
        slide = files.slide
        thumbnail = self._thumbnail(slide.key, slide.uri, _meta_id(upstream))
        return self._store(
            table, slide.key, data, origin, facts, grid, thumbnail=thumbnail, relpath=slide.relpath
        )

    def _thumbnail(self, key: str, uri: str, meta_id: str | None) -> Thumbnail:
        """Slide ``key``'s thumbnail for the ``slide_metadata`` of provenance ``meta_id``: the
        one this pipeline last used when it is that one, else the stored one; when none is
        stored (tables written before thumbnails were), the slide at ``uri`` is read and its
        thumbnail stored."""
        last = self._last_thumbnail
        if last is not None and meta_id is not None and last[:2] == (key, meta_id):
            return last[2]
        thumbnail = self.pictures.thumbnail(key) or self._fresh_thumbnail(key, uri)
        if meta_id is not None:
            self._last_thumbnail = (key, meta_id, thumbnail)
        return thumbnail

    def _fresh_thumbnail(self, key: str, uri: str) -> Thumbnail:
        """Read the thumbnail of slide ``key`` from its file at ``uri``, and store it."""
        meta = self._slide_facts(key)
        extent0 = (meta["level_width"][0], meta["level_height"][0])
        try:
            thumbnail = self.slides.read(uri, lambda found: self._read_thumbnail(found, extent0))
        except FileNotFoundError:
            thumbnail = blank_thumbnail(extent0, note=f"no thumbnail: {uri} not found")
        return self.pictures.write_thumbnail(key, thumbnail)

    def _read_thumbnail(self, location: str, extent0: tuple[int, int] | None = None) -> Thumbnail:
        """The thumbnail of the slide at ``location``. A slide whose pixels cannot be read
        (no table needs them) gets a blank one that says why, of ``extent0`` level-0 pixels
        (the slide's, when known); storage errors pass for a retry."""
        try:
            with open_slide(location, storage_options=self.settings.storage_options) as reader:
                return read_thumbnail(reader)
        except WSIError as error:
            return blank_thumbnail(extent0 or (1, 1), note=f"no thumbnail: {error.problem}")

    def _slide_metadata(self, files: SlideFiles) -> Built:
        slide, key = files.slide, files.slide.key
        found = files.files[SLIDE]
        if found is None:
            raise InputFileError(slide.uri, "slide file not found")
        settings = self.settings

        def read(location: str) -> tuple[pa.Table, str, Thumbnail]:
            data, source = build_slide_metadata(
                location,
                slide_key=key,
                uri=slide.uri,
                relpath=slide.relpath,
                file_size=found.size,
                target_mpp=settings.mpp,
                fallback_mpp=settings.slide_mpp,
                override_mpp=settings.slide_mpp_override,
                storage_options=settings.storage_options,
            )
            row = data.to_pylist()[0]
            extent0 = (row["level_width"][0], row["level_height"][0])
            return data, source, self._read_thumbnail(location, extent0)

        with about_file(slide.uri, SLIDE, missing_mpp="WSI_SLIDE_MPP"):
            data, source, thumbnail = self.slides.read(slide.uri, read)
        row = data.to_pylist()[0]
        facts = {
            "slide_file": slide.uri,
            "source_version": found.version,
            "mpp_source": MPP_SOURCES[source].format(kind="SLIDE"),
            "mpp_used": [row["mpp_x"], row["mpp_y"]],
            "warnings": _present(resolution_warning(row), thumbnail.note),
        }
        thumbnail = self.pictures.write_thumbnail(key, thumbnail)
        origin = provenance(settings, SLIDE_METADATA, found.version, None)
        self._last_thumbnail = (key, origin.id, thumbnail)
        return self._store(
            SLIDE_METADATA, key, data, origin, facts, thumbnail=thumbnail, relpath=slide.relpath
        )

    def _tissue_mask(self, files: SlideFiles) -> Built:
        """Detect and store the slide's tissue mask, and its picture over the slide's
        thumbnail (the stored one; the slide is read for it when none is stored yet). Its
        one-row ``data`` holds what the detection found, for the engine to show."""
        slide, key = files.slide, files.slide.key
        stored = build_tissue_mask(self.settings, files, self.masks)
        tissue = stored.tissue
        assert tissue is not None  # computed here, not read from a record
        # the one slide_metadata just stored in this process, else the stored one, else read
        last = self._last_thumbnail
        thumbnail = last[2] if last is not None and last[0] == key else None
        thumbnail = thumbnail or self.pictures.thumbnail(key)
        if thumbnail is None:
            thumbnail = self.slides.read(slide.uri, self._read_thumbnail)
        height, width = tissue.mask.shape
        # level-0 pixels per mask pixel: the thumbnail spans the slide's level-0 extent and
        # the mask the same glass (its last row and column may be partly outside it)
        per_pixel = (thumbnail.extent0[0] / width, thumbnail.extent0[1] / height)
        about = (
            f"tissue mask {width}x{height} px at {tissue.mpp[0]:.3g} um/px (from level "
            f"{tissue.level}), {tissue.tissue_fraction:.1%} tissue"
        )
        picture = mask_picture(thumbnail, tissue.mask, per_pixel, slide.relpath, about)
        picture_uri = self.pictures.write(TISSUE_MASK, key, picture.png)
        found = stored.facts
        data = pa.Table.from_pylist(
            [
                {
                    "slide_key": key,
                    "uri": stored.uri,
                    "width": width,
                    "height": height,
                    "mpp_x": float(tissue.mpp[0]),
                    "mpp_y": float(tissue.mpp[1]),
                    "level": tissue.level,
                    "factor": tissue.factor,
                    "threshold": tissue.threshold,
                    "tissue_fraction": tissue.tissue_fraction,
                    "pen_pixels": tissue.pen_pixels,
                    "dark_pixels": tissue.dark_pixels,
                }
            ]
        )
        facts = {
            "slide": slide.relpath,
            "slide_file": slide.uri,
            "source_version": files.version(SLIDE),
            "tissue_fraction": found["tissue_fraction"],
            "mask_mpp": found["mpp"],
            "code_version": stored.provenance.code_version,
            "provenance": stored.provenance.id,
            "parameters": self.settings.table_params(TISSUE_MASK),
        }
        table = StoredTable(stored.uri, stored.content_hash, stored.provenance)
        return Built(TISSUE_MASK, key, data, table, facts, None, picture, picture_uri)

    def _tile_grid(self, key: str) -> Built:
        meta, upstream = self.tables.read(SLIDE_METADATA, key)
        settings = self.settings
        row = meta.to_pylist()[0]
        extent = (row["extent_x"], row["extent_y"])
        count = tile_count(extent, settings.tile_extent, settings.stride, settings.last)
        if count > settings.max_tiles:
            limit = f"WSI_MAX_TILES={settings.max_tiles:,}"
            raise InputFileError(
                row["uri"],
                f"its level {row['level']} ({extent[0]}x{extent[1]} px) would give {count:,} "
                f"tiles of {settings.tile_extent} px, more than {limit} (a damaged header? "
                "else raise WSI_MAX_TILES, WSI_TILE_EXTENT or WSI_MPP)",
            )
        data = build_tile_grid(meta, settings.tile_extent, settings.stride, settings.last)
        facts = {
            "level": row["level"],
            "extent": list(extent),
            "mpp_used": [row["mpp_x"], row["mpp_y"]],
            "warnings": _present(resolution_warning(row)),
        }
        origin = provenance(settings, TILE_GRID, None, _id(upstream))
        thumbnail = self._thumbnail(key, row["uri"], _id(upstream))
        return self._store(
            TILE_GRID, key, data, origin, facts, meta, thumbnail=thumbnail, relpath=row["relpath"]
        )

    @staticmethod
    def _companion(files: SlideFiles, kind: str) -> tuple[str | None, dict[str, Any]]:
        """The slide's ``kind`` file (None if none) and facts that say which file was used
        or, when there is none, every place that was looked at."""
        found = files.files[kind]
        if found is not None:
            return found.uri, {f"{kind}_file": found.uri, "measured": True}
        looked = files.looked_for.get(kind, [])
        return None, {f"{kind}_file": None, "looked_for": looked, "measured": False}

    def _slide_facts(self, key: str) -> dict[str, Any]:
        """The slide's ``slide_metadata`` row (level-0 size and resolution)."""
        return self.tables.read(SLIDE_METADATA, key)[0].to_pylist()[0]

    def _annotation_coverage(self, files: SlideFiles, progress: Progress | None = None) -> Built:
        key = files.slide.key
        grid, upstream = self.tables.read(TILE_GRID, key)
        meta = self._slide_facts(key)
        annotation, facts = self._companion(files, ANNOTATION)
        settings = self.settings
        classes = dict(settings.label_classes)
        with about_file(annotation or "", ANNOTATION):
            data, found = build_annotation_coverage(
                grid,
                annotation,
                classes,
                settings.roi_geometry(),
                extent0=(meta["level_width"][0], meta["level_height"][0]),
                label_property=settings.label_property,
                storage_options=settings.storage_options,
                progress=progress,
            )
        if found is not None:
            facts.update(_annotation_facts(found))
        facts["coverage_summary"] = coverage_summary(data, classes)
        origin = provenance(settings, ANNOTATION_COVERAGE, files.version(ANNOTATION), _id(upstream))
        return self._store_per_tile(ANNOTATION_COVERAGE, files, data, origin, facts, grid, upstream)

    def _overlay_overlap(self, files: SlideFiles, progress: Progress | None = None) -> Built:
        key = files.slide.key
        grid, upstream = self.tables.read(TILE_GRID, key)
        # the user's overlay, else the stored tissue mask, else none
        choice = choose_overlay(files, self.masks)
        generated = choice.source == GENERATED_MASK
        overlay, facts = self._companion(files, OVERLAY)
        if generated:
            overlay, facts = choice.uri, {"overlay_file": choice.uri, "measured": True}
            facts["tissue_mask_provenance"] = choice.version
        facts["overlay_source"] = choice.source
        settings = self.settings
        roi = settings.roi_geometry()
        if overlay is None:
            data, _ = build_overlay_overlap(grid, None, roi)
        else:
            meta = self._slide_facts(key)
            setting = None if generated else "WSI_OVERLAY_MPP"
            with about_file(overlay, OVERLAY, missing_mpp=setting):
                data, alignment, seen = self.slides.read(
                    overlay,
                    lambda location: self._measure_overlay(
                        grid, location, roi, meta, progress, users=not generated
                    ),
                )
            facts.update(
                {
                    "overlay_values": seen,
                    "overlay_mpp": list(alignment.mpp),
                    "overlay_mpp_source": MPP_SOURCES[alignment.source].format(kind="OVERLAY"),
                    "warnings": _present(alignment.warning),
                }
            )
        facts["overlap_summary"] = overlap_summary(data)
        mask_id = choice.version if generated else None
        origin = provenance(
            settings, OVERLAY_OVERLAP, files.version(OVERLAY), _id(upstream), mask_id
        )
        return self._store_per_tile(OVERLAY_OVERLAP, files, data, origin, facts, grid, upstream)

    def _measure_overlay(
        self,
        grid: pa.Table,
        location: str,
        roi: Any,
        meta: dict[str, Any],
        progress: Progress | None = None,
        users: bool = True,
    ) -> tuple[pa.Table, Alignment, list[str] | None]:
        """Align the overlay at ``location`` with the slide, then measure every tile.
        ``users``: a user's file, to which the ``WSI_OVERLAY_MPP*`` settings apply; the
        tissue mask records its own resolution, so they never move it."""
        settings = self.settings
        alignment = align_overlay(
            location,
            (meta["level_width"][0], meta["level_height"][0]),
            (meta["base_mpp_x"], meta["base_mpp_y"]),
            fallback_mpp=settings.overlay_mpp if users else None,
            override_mpp=settings.overlay_mpp_override if users else None,
            storage_options=settings.storage_options,
        )
        data, seen = build_overlay_overlap(
            grid, location, roi, alignment, settings.storage_options, progress
        )
        return data, alignment, seen


#: How each source of a resolution is reported (``{kind}``: SLIDE or OVERLAY).
MPP_SOURCES = {
    "file": "recorded in the file",
    "fallback": "WSI_{kind}_MPP (the file records none)",
    "override": "WSI_{kind}_MPP_OVERRIDE (instead of the file's own)",
    "slide dimensions": "the slide's, scaled to the overlay's size (the file records none)",
}


def _meta_id(grid_origin: Provenance | None) -> str | None:
    """The provenance id of the ``slide_metadata`` a ``tile_grid`` was computed from (None
    when unknown)."""
    found = None if grid_origin is None else grid_origin.inputs.get(SLIDE_METADATA)
    return None if found in (None, "unknown") else found


def _present(*warnings: str | None) -> list[str]:
    return [warning for warning in warnings if warning]


def _annotation_facts(found: CoverageFacts) -> dict[str, Any]:
    """What the UI shows about an annotation file: labels, polygons per class, polygons no
    class matched (a warning), polygons clipped to the slide."""
    unmatched = {"(no label)" if k is None else k: v for k, v in found.unmatched.items()}
    facts: dict[str, Any] = {
        "labels_in_file": found.labels_in_file,
        "polygons_per_class": found.polygons_per_class,
        "labels_matching_no_class": unmatched,
        "polygons_clipped_to_slide": found.clipped_to_slide,
    }
    warnings = []
    if unmatched:
        count = sum(unmatched.values())
        warnings.append(
            f"{count} polygons have labels no class matches ({', '.join(sorted(unmatched))}): "
            "they count for no column; set WSI_LABEL_CLASSES (or WSI_LABEL_PROPERTY)"
        )
    if found.clipped_to_slide:
        warnings.append(
            f"{found.clipped_to_slide} polygons reach past the slide and were clipped to it"
        )
    facts["warnings"] = warnings
    return facts
