"""Finding slides under the slide root, and each slide's annotation and overlay file.

Companion files are found through file-name templates (``WSISettings.annotation_templates``
and ``overlay_templates``): placeholders ``{stem}`` (file name without extension),
``{name}`` (file name) and ``{key}`` (partition key). A template without a scheme or a
leading ``/`` is resolved in the slide's own folder; the first template whose file exists
wins. Files that are some other slide's overlay (``a_tissue_mask.tiff`` beside ``a.tiff``)
are not slides: any file whose name has the shape of an overlay template is skipped, so a
slide must not be named like one.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import storage
from .config import WSISettings
from .partitions import file_stem

ANNOTATION = "annotation"
OVERLAY = "overlay"
SLIDE = "slide"


@dataclass(frozen=True)
class SlideFile:
    """A slide found under the slide root: URI, path relative to the root, data version."""

    uri: str
    relpath: str
    version: str


def template_candidates(templates: Sequence[str], slide_uri: str, key: str) -> list[str]:
    """Where the templates point for one slide, in order."""
    name = storage.basename(slide_uri)
    folder = storage.parent(slide_uri)
    found = []
    for template in templates:
        target = template.format(stem=file_stem(name), name=name, key=key)
        found.append(
            storage.normalize(target if is_absolute(target) else storage.join(folder, target))
        )
    return found


def find_companion(
    templates: Sequence[str],
    slide_uri: str,
    key: str,
    listing: Mapping[str, Any] | None = None,
    root: str | None = None,
) -> str | None:
    """The first existing file the templates point to; None if there is none.

    With a ``listing`` of everything under ``root``, candidates under ``root`` are looked up
    in it (no I/O); others are looked up on their file system.
    """
    for candidate in template_candidates(templates, slide_uri, key):
        if listing is not None and root is not None and _inside(candidate, root):
            if candidate in listing:
                return candidate
        elif storage.exists(candidate):
            return candidate
    return None


def _inside(uri: str, root: str) -> bool:
    """True when ``uri`` lies under the folder ``root``."""
    prefix = root.rstrip("/") + "/" if storage.is_url(root) else os.path.join(root, "")
    return uri.startswith(prefix)


def _relpath(uri: str, root: str) -> str:
    if storage.is_url(root):
        return posixpath.relpath(uri, root.rstrip("/"))
    return os.path.relpath(uri, root).replace(os.sep, "/")


def scan_slides(
    settings: WSISettings, listing: Mapping[str, Mapping[str, Any]] | None = None
) -> list[SlideFile]:
    """Every slide under ``settings.slide_root``, sorted by relative path."""
    files = storage.list_files(settings.slide_root) if listing is None else listing
    endings = tuple(ext.lower() for ext in settings.slide_extensions)
    candidates = {
        uri
        for uri in files
        if uri.lower().endswith(endings) and not storage.basename(uri).startswith((".", "_"))
    }
    overlays = _companions_of(candidates, settings.overlay_templates)
    slides = sorted(candidates - overlays)
    return sorted(
        (
            SlideFile(
                uri, _relpath(uri, settings.slide_root), storage.version_from_info(uri, files[uri])
            )
            for uri in slides
        ),
        key=lambda slide: slide.relpath,
    )


def _companions_of(uris: Iterable[str], templates: Sequence[str]) -> set[str]:
    """The files among ``uris`` whose names have the shape of a template (e.g. anything named
    ``*_tissue_mask.tiff``), whether or not the slide they belong to is present."""
    patterns = [template_pattern(template) for template in templates]
    return {uri for uri in uris if any(pattern.match(uri) for pattern in patterns)}


def template_pattern(template: str) -> re.Pattern[str]:
    """A regular expression for the URIs a template can produce, for any slide.

    Placeholders match one path component; a relative template matches at the end of a URI.
    """
    parts = re.split(r"(\{stem\}|\{name\}|\{key\})", template)
    body = "".join(
        "[^/]+" if part in ("{stem}", "{name}", "{key}") else re.escape(part) for part in parts
    )
    return re.compile(body + "$" if is_absolute(template) else r"(?:^|.*/)" + body + "$")


def is_absolute(template: str) -> bool:
    """True for a template that names its own folder (a URL or an absolute path)."""
    return "://" in template or template.startswith("/")


def source_versions(
    settings: WSISettings,
    slides: Mapping[str, str],
    listing: Mapping[str, Mapping[str, Any]] | None = None,
    root: str | None = None,
) -> dict[str, dict[str, str]]:
    """Data versions of every slide's three source files: ``{kind: {key: version}}``.

    ``slides`` maps partition key -> slide URI. A file that does not exist has version
    ``storage.MISSING``. With a ``listing`` of everything under ``root`` (URI -> info),
    files under ``root`` cost no I/O.
    """

    def version(uri: str | None) -> str:
        if uri is not None and listing is not None and root is not None and _inside(uri, root):
            return storage.version_from_info(uri, listing.get(uri))  # MISSING if not listed
        return storage.file_version(uri)

    result: dict[str, dict[str, str]] = {SLIDE: {}, ANNOTATION: {}, OVERLAY: {}}
    for key, uri in slides.items():
        result[SLIDE][key] = version(uri)
        annotation = find_companion(settings.annotation_templates, uri, key, listing, root)
        overlay = find_companion(settings.overlay_templates, uri, key, listing, root)
        result[ANNOTATION][key] = version(annotation)
        result[OVERLAY][key] = version(overlay)
    return result
