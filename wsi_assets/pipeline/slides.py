"""The slide store: slides under the slide root, each slide's annotation and overlay file,
their data versions, and readable locations of remote files.

Companion files are found through file-name templates (``Settings.annotation_templates`` and
``overlay_templates``) with the placeholders ``{stem}`` (file name without extension),
``{name}`` (file name) and ``{key}`` (partition key). A template without a scheme or a
leading ``/`` is resolved in the slide's own folder; the first template whose file exists
wins. Files that have the shape of an overlay template (``a_tissue_mask.tiff``) are never
slides, so a slide must not be named like one.
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

from upath import UPath

from wsi_assets.pipeline.keys import file_stem, slide_key
from wsi_assets.pipeline.locations import (
    MISSING,
    Info,
    file_info,
    file_version,
    is_local,
    list_files,
    list_prefix,
    location,
    uri_of,
)
from wsi_assets.pipeline.settings import Settings
from wsi_core.errors import LocalCopyRequired
from wsi_core.remote import is_url

SLIDE = "slide"
ANNOTATION = "annotation"
OVERLAY = "overlay"
KINDS = (SLIDE, ANNOTATION, OVERLAY)

T = TypeVar("T")


@dataclass(frozen=True)
class Slide:
    """A slide under the slide root: partition key, path relative to the root, URI."""

    key: str
    relpath: str
    uri: str


@dataclass(frozen=True)
class SourceFile:
    """An input file as found: URI, data version, size in bytes."""

    uri: str
    version: str
    size: int


@dataclass(frozen=True)
class SlideFiles:
    """A slide's three input files (None where there is none) and, for the annotation and
    the overlay, every place that was looked at."""

    slide: Slide
    files: Mapping[str, SourceFile | None]
    looked_for: Mapping[str, list[str]] = field(default_factory=dict)

    def version(self, kind: str) -> str:
        """Data version of the ``kind`` file (``MISSING`` when there is none)."""
        found = self.files.get(kind)
        return MISSING if found is None else found.version


class SlideStore:
    """The slides under one slide root, read with the settings' storage options."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root: UPath = location(settings.slide_root, settings.storage_options)

    def listing(self) -> dict[str, Info]:
        """Every file under the slide root: URI -> fsspec info (one recursive listing)."""
        return list_files(self.root)

    def scan(self, listing: Mapping[str, Info] | None = None) -> list[Slide]:
        """Every slide under the slide root, sorted by relative path."""
        return self.survey(listing)[0]

    def survey(
        self, listing: Mapping[str, Info] | None = None
    ) -> tuple[list[Slide], list[tuple[str, str]]]:
        """Every slide under the slide root, sorted by relative path, and every file with a
        slide's extension that is not one, with the reason: a hidden or ``_`` name, the shape
        of an overlay template, a ``WSI_EXCLUDE`` pattern, a ``..`` in its path."""
        files = self.listing() if listing is None else listing
        endings = tuple(extension.lower() for extension in self.settings.slide_extensions)
        slides, skipped = [], []
        for uri in files:
            if not uri.lower().endswith(endings):
                continue
            reason = self._not_a_slide(uri)
            if reason is None:
                slides.append(self.slide(self.relpath(uri)))
            else:
                skipped.append((uri, reason))
        return sorted(slides, key=lambda slide: slide.relpath), sorted(skipped)

    def _not_a_slide(self, uri: str) -> str | None:
        """Why the file at ``uri`` (with a slide's extension) is not a slide, or None."""
        name = uri.rstrip("/").rsplit("/", 1)[-1]
        if name.startswith((".", "_")):
            return "hidden or '_' name"
        if {".", ".."} & set(self.relpath(uri).split("/")):
            return "'.' or '..' in its path (it would name files outside its folder)"
        for template in self.settings.overlay_templates:
            if template_pattern(template).match(uri):
                return f"named like an overlay ({template})"
        for pattern in self.settings.exclude:
            if fnmatch.fnmatch(name.lower(), pattern.lower()):
                return f"matches WSI_EXCLUDE {pattern!r}"
        return None

    def relpath(self, uri: str) -> str:
        """The path of ``uri`` relative to the slide root, ``/`` separated (as listed: a
        ``..`` in an object key is kept, not resolved)."""
        base = uri_of(self.root).rstrip("/")
        if is_url(base):
            return (
                uri[len(base) + 1 :] if uri.startswith(base + "/") else posixpath.relpath(uri, base)
            )
        return os.path.relpath(uri, base).replace(os.sep, "/")

    def slide(self, relpath: str) -> Slide:
        """The slide at ``relpath`` under the slide root."""
        base = uri_of(self.root).rstrip("/")
        uri = f"{base}/{relpath}" if is_url(base) else os.path.join(base, *relpath.split("/"))
        return Slide(slide_key(relpath), relpath, uri)

    def candidates(self, slide: Slide, kind: str) -> list[str]:
        """Where the templates of ``kind`` (annotation or overlay) point for ``slide``."""
        templates = {
            ANNOTATION: self.settings.annotation_templates,
            OVERLAY: self.settings.overlay_templates,
        }[kind]
        name = slide.uri.rstrip("/").rsplit("/", 1)[-1]
        folder = slide.uri[: -len(name)].rstrip("/")
        found = []
        for template in templates:
            target = template.format(stem=file_stem(name), name=name, key=slide.key)
            if is_absolute(template):
                found.append(_normalize(target))
                continue
            candidate = _normalize(f"{folder}/{target}")
            if self._under_root(candidate):  # a relative template never leaves the root
                found.append(candidate)
        return found

    def files(self, slide: Slide, listing: Mapping[str, Info] | None = None) -> SlideFiles:
        """The slide's own file and its companions, with data versions.

        With a ``listing`` of the slide root, files under the root cost no I/O. Without one,
        the files in the slide's folder are found by one listing of the names that start
        with what the candidates share (one LIST on object stores); candidates elsewhere
        cost one lookup each.
        """
        wanted = {kind: self.candidates(slide, kind) for kind in (ANNOTATION, OVERLAY)}
        every = [slide.uri, *wanted[ANNOTATION], *wanted[OVERLAY]]
        listed = listing is not None
        looked_up = self._lookup(
            every if not listed else [u for u in every if not self._under_root(u)]
        )

        def found(uri: str) -> SourceFile | None:
            if listing is not None and self._under_root(uri):
                info = listing.get(uri)
            else:
                info = looked_up.get(uri)
            if info is None:
                return None
            return SourceFile(uri, file_version(uri, info), int(info.get("size") or 0))

        files: dict[str, SourceFile | None] = {SLIDE: found(slide.uri)}
        for kind, uris in wanted.items():
            files[kind] = next((f for f in map(found, uris) if f is not None), None)
        return SlideFiles(slide, files, wanted)

    def _under_root(self, uri: str) -> bool:
        base = uri_of(self.root).rstrip("/")
        return uri.startswith(base + ("/" if is_url(base) else os.sep))

    def _lookup(self, uris: Iterable[str]) -> dict[str, Info]:
        """fsspec info of those of ``uris`` that exist: one prefix listing per folder where
        the names share a prefix, one lookup per file otherwise."""
        by_folder: dict[str, list[str]] = {}
        for uri in dict.fromkeys(uris):
            folder, _, leaf = uri.rstrip("/").rpartition("/")
            by_folder.setdefault(folder, []).append(leaf)
        found: dict[str, Info] = {}
        for folder, leaves in by_folder.items():
            prefix = os.path.commonprefix(leaves)  # noqa: RUF071 - a character prefix is what a LIST takes
            place = location(folder, self.settings.storage_options)
            if prefix:
                listed = list_prefix(place, prefix)
                found.update({uri: info for uri, info in listed.items() if _leaf(uri) in leaves})
                continue
            for leaf in leaves:
                info = file_info(place / leaf)
                if info is not None:
                    found[uri_of(place / leaf)] = info
        return found

    @contextmanager
    def readable(self, uri: str) -> Iterator[str]:
        """A location ``wsi_core`` can open for the file at ``uri``: the file itself when
        local, else a temporary local copy (deleted afterwards) under the file's own name."""
        path = location(uri, self.settings.storage_options)
        if is_local(path):
            yield path.path
            return
        folder = tempfile.mkdtemp(prefix="wsi-")
        try:
            target = os.path.join(folder, path.name)
            path.fs.get_file(path.path, target)
            yield target
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def read(self, uri: str, read: Callable[[str], T]) -> T:
        """``read(location)`` for the slide or overlay at ``uri``, and what it returns.

        Remote TIFF-family files (Aperio SVS included) are read in place by range requests
        (``wsi_core`` reads the header and the tiles it needs); other remote formats, which
        ``wsi_core`` refuses with ``LocalCopyRequired`` after reading only their header
        (OpenSlide reads local files only), from a temporary local copy.
        """
        if is_url(uri):
            try:
                return read(uri)
            except LocalCopyRequired:
                pass
        with self.readable(uri) as path:
            return read(path)


def _leaf(uri: str) -> str:
    return uri.rstrip("/").rsplit("/", 1)[-1]


def _normalize(uri: str) -> str:
    """``uri`` with ``.`` and ``..`` segments resolved (``a/b/../c`` -> ``a/c``)."""
    if is_url(uri):
        scheme, rest = uri.split("://", 1)
        return f"{scheme}://{posixpath.normpath(rest)}"
    return os.path.normpath(uri)


def is_absolute(template: str) -> bool:
    """True for a template that names its own folder (a URL or an absolute path)."""
    return is_url(template) or template.startswith("/")


def template_pattern(template: str) -> re.Pattern[str]:
    """A regular expression for the URIs a template can produce, for any slide.

    Placeholders match one path component; a relative template matches at the end of a URI.
    """
    parts = re.split(r"(\{stem\}|\{name\}|\{key\})", template)
    body = "".join(
        "[^/]+" if part in ("{stem}", "{name}", "{key}") else re.escape(part) for part in parts
    )
    return re.compile(body + "$" if is_absolute(template) else r"(?:^|.*/)" + body + "$")


def outside_templates(settings: Settings) -> bool:
    """True when a companion template names its own folder (it may lie outside the root)."""
    return any(
        is_absolute(template)
        for template in (*settings.annotation_templates, *settings.overlay_templates)
    )


def versions(files: Sequence[SlideFiles]) -> dict[str, dict[str, str]]:
    """``{kind: {key: version}}`` of many slides' files."""
    return {kind: {f.slide.key: f.version(kind) for f in files} for kind in KINDS}
