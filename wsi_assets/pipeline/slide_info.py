"""What one slide holds, before any table is built: its pyramid and resolution, the annotation
file found for it and the labels in it, the overlay found for it and how it lies on the slide.

Everything is read with the same settings, readers and discovery rules as the tables, so what
this reports is what a build would use. A slide that records no resolution is still
described (its per-level resolution is then unknown), as is an overlay that cannot be aligned
with it (the problem is reported); a file that cannot be read at all raises the error of the
file (``WSIError``), naming it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from wsi_assets.pipeline.settings import Settings
from wsi_assets.pipeline.single_slide import SingleSlide
from wsi_assets.pipeline.slides import ANNOTATION, OVERLAY, SLIDE, SlideFiles
from wsi_assets.pipeline.steps import about_file
from wsi_core.errors import MissingMPPError
from wsi_core.parsers import open_annotations
from wsi_core.resolution import closest_level
from wsi_core.slide import open_slide
from wsi_core.tables.annotation_coverage import unmatched_labels
from wsi_core.tables.overlay_overlap import OverlayMismatchError, align_overlay
from wsi_core.tables.slide_metadata import BaseResolution, base_resolution, resolution_warning
from wsi_core.tables.tile_grid import tile_count

#: How a polygon without a class label is listed.
NO_LABEL = "(no label)"


@dataclass(frozen=True)
class LevelInfo:
    """One pyramid level: size in its own pixels, level-0 pixels per level pixel, and
    micrometres per pixel (None when the slide's resolution is unknown)."""

    level: int
    width: int
    height: int
    downsample: float
    mpp_x: float | None
    mpp_y: float | None


@dataclass(frozen=True)
class AnnotationInfo:
    """The annotation file found: every label with its polygon count, polygons per
    configured class, and the labels no class matches (they count for no column)."""

    uri: str
    labels: dict[str, int]
    classes: dict[str, int]
    unmatched: dict[str, int]


@dataclass(frozen=True)
class OverlayInfo:
    """The overlay found: level-0 size (pixels), its resolution and where that came from (as
    the tables would align it), and a warning or the reason it cannot be aligned."""

    uri: str
    width: int
    height: int
    mpp: tuple[float, float] | None = None
    mpp_source: str | None = None
    warning: str | None = None
    problem: str | None = None


@dataclass(frozen=True)
class SlideInfo:
    """One slide as the tables would see it. ``mpp_source``: ``file``, ``fallback`` (the
    setting for files that record none) or ``override``; None when unknown. ``level`` and
    ``tiles``: the level closest to the target resolution and its tile count (None without a
    resolution). ``*_looked_for``: every place a companion file was looked for."""

    key: str
    uri: str
    file_size: int
    vendor: str
    levels: list[LevelInfo]
    base_mpp: tuple[float, float] | None
    mpp_source: str | None
    target_mpp: float
    level: int | None
    tiles: int | None
    tile_extent: int
    stride: int
    annotation: AnnotationInfo | None
    annotation_looked_for: list[str]
    overlay: OverlayInfo | None
    overlay_looked_for: list[str]
    label_classes: dict[str, str] = field(default_factory=dict)
    #: The chosen level's resolution is far from the target (the tables say the same).
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain values only (JSON-ready)."""
        return asdict(self)


@dataclass(frozen=True)
class _Pyramid:
    vendor: str
    sizes: list[tuple[int, int]]
    downsamples: list[float]
    base: BaseResolution | None


def slide_info(single: SingleSlide) -> SlideInfo:
    """Describe ``single``'s slide and companion files (see the module docstring)."""
    files = single.files()
    settings = single.settings
    uri = single.slide.uri
    with about_file(uri, SLIDE):
        pyramid = single.pipeline.slides.read(uri, lambda place: _pyramid(place, settings))
    base = pyramid.base
    levels = [
        LevelInfo(i, w, h, d, *(_times(base, d) if base else (None, None)))
        for i, ((w, h), d) in enumerate(zip(pyramid.sizes, pyramid.downsamples, strict=True))
    ]
    level = None if base is None else closest_level(pyramid.downsamples, base.mpp, settings.mpp)
    tiles, warnings = None, []
    if level is not None:
        extent = pyramid.sizes[level]
        tiles = tile_count(extent, settings.tile_extent, settings.stride, settings.last)
        chosen = {"mpp_x": levels[level].mpp_x, "mpp_y": levels[level].mpp_y}
        warning = resolution_warning({**chosen, "level": level, "target_mpp": settings.mpp})
        warnings = [warning] if warning else []
    found = files.files[SLIDE]
    return SlideInfo(
        key=single.key,
        uri=uri,
        file_size=0 if found is None else found.size,
        vendor=pyramid.vendor,
        levels=levels,
        base_mpp=None if base is None else base.mpp,
        mpp_source=None if base is None else base.source,
        target_mpp=settings.mpp,
        level=level,
        tiles=tiles,
        tile_extent=settings.tile_extent,
        stride=settings.stride,
        annotation=_annotation(single, files),
        annotation_looked_for=list(files.looked_for.get(ANNOTATION, [])),
        overlay=_overlay(single, files, pyramid.sizes[0], base),
        overlay_looked_for=list(files.looked_for.get(OVERLAY, [])),
        label_classes=dict(settings.label_classes),
        warnings=warnings,
    )


def _pyramid(location: str, settings: Settings) -> _Pyramid:
    """The pyramid of the slide at ``location`` and its level-0 resolution (None when the
    file records none and no setting gives one)."""
    with open_slide(location, storage_options=settings.storage_options) as reader:
        try:
            base = base_resolution(reader, settings.slide_mpp, settings.slide_mpp_override)
        except MissingMPPError:
            base = None
        return _Pyramid(
            str(reader.vendor),
            [(int(w), int(h)) for w, h in reader.level_dimensions],
            [float(d) for d in reader.level_downsamples],
            base,
        )


def _times(base: BaseResolution, downsample: float) -> tuple[float, float]:
    return base.mpp[0] * downsample, base.mpp[1] * downsample


def _annotation(single: SingleSlide, files: SlideFiles) -> AnnotationInfo | None:
    """Labels and polygons per class of the slide's annotation file (None when none)."""
    found = files.files[ANNOTATION]
    if found is None:
        return None
    settings = single.settings
    with about_file(found.uri, ANNOTATION):
        parser = open_annotations(
            found.uri,
            label_property=settings.label_property,
            storage_options=settings.storage_options,
        )
        counts = parser.label_counts()
        classes = {
            name: len(parser.get_class_polygons(pattern))
            for name, pattern in settings.label_classes.items()
        }
    unmatched = unmatched_labels(counts, settings.label_classes)
    return AnnotationInfo(
        found.uri,
        {_label(label): count for label, count in counts.items()},
        classes,
        {_label(label): count for label, count in unmatched.items()},
    )


def _label(label: str | None) -> str:
    return NO_LABEL if label is None else label


def _overlay(
    single: SingleSlide,
    files: SlideFiles,
    slide_extent0: tuple[int, int],
    base: BaseResolution | None,
) -> OverlayInfo | None:
    """The slide's overlay file, its size and how it aligns (None when there is none)."""
    found = files.files[OVERLAY]
    if found is None:
        return None
    settings = single.settings
    with about_file(found.uri, OVERLAY):
        width, height = single.pipeline.slides.read(
            found.uri, lambda place: _level0_size(place, settings)
        )
        if base is None:
            problem = "cannot be aligned: the slide's resolution is unknown"
            return OverlayInfo(found.uri, width, height, problem=problem)
        try:
            alignment = single.pipeline.slides.read(
                found.uri,
                lambda place: align_overlay(
                    place,
                    slide_extent0,
                    base.mpp,
                    fallback_mpp=settings.overlay_mpp,
                    override_mpp=settings.overlay_mpp_override,
                    storage_options=settings.storage_options,
                ),
            )
        except OverlayMismatchError as error:  # readable but misfit: reported, not raised
            return OverlayInfo(found.uri, width, height, problem=error.problem)
    return OverlayInfo(found.uri, width, height, alignment.mpp, alignment.source, alignment.warning)


def _level0_size(location: str, settings: Settings) -> tuple[int, int]:
    with open_slide(location, storage_options=settings.storage_options) as reader:
        width, height = reader.level_dimensions[0]
        return int(width), int(height)
