"""Which slide files ``read_slides`` reads: folders expanded, local or through fsspec.

No Ray here: the listing runs on the driver before any task starts, so that the read tasks
each get a fixed share of the files and a missing path fails at once.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from wsi_core.errors import SlideError
from wsi_core.remote import is_url

#: File-name endings taken as slides when a folder is expanded (compared case-insensitively).
#: A file named explicitly is read whatever its name.
SLIDE_EXTENSIONS = (
    ".svs",
    ".tif",
    ".tiff",
    ".ndpi",
    ".mrxs",
    ".scn",
    ".bif",
    ".vms",
    ".svslide",
)

#: fsspec protocols of the local file system: their paths are handed on as plain paths, so
#: that OpenSlide formats stay readable (a URL is read through tifffile only).
_LOCAL_PROTOCOLS = {"file", "local"}


class SlideLocations(NamedTuple):
    """The slides to read and how to open them.

    ``paths`` are sorted and unique: absolute local paths, or URLs (``s3://bucket/key``);
    ``storage_options`` are the fsspec options to open the URLs with (None for none).
    """

    paths: list[str]
    storage_options: dict[str, Any] | None


def expand_slide_paths(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    *,
    filesystem: Any = None,
    storage_options: Mapping[str, Any] | None = None,
    extensions: Iterable[str] = SLIDE_EXTENSIONS,
) -> SlideLocations:
    """The slide files that ``paths`` name.

    Each entry is a file (kept whatever its name) or a folder, searched recursively for files
    whose name ends with one of ``extensions`` (case-insensitive); files and folders whose
    name starts with ``.`` are skipped, and so are symbolic links to folders (a link loop
    cannot make the listing endless). Entries are local paths, fsspec URLs (``s3://bucket/
    prefix``, listed with ``storage_options``), or, with ``filesystem`` (an fsspec
    ``AbstractFileSystem``), paths inside that file system: its files are then opened by URL
    with its own ``storage_options`` unless others are given. Files of the local file system
    come back as plain absolute paths however they were named (``file://`` too), so that
    OpenSlide formats stay readable.

    Raises :class:`~wsi_core.errors.SlideError` naming an entry that does not exist, and
    ``ValueError`` when nothing at all is found (an empty folder is more often a wrong path
    than a wish for an empty dataset).
    """
    entries = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not entries:
        raise ValueError("read_slides needs at least one path")
    endings = tuple(ending.lower() for ending in extensions)
    options = None if storage_options is None else dict(storage_options)
    found: set[str] = set()
    for entry in entries:
        name = os.fspath(entry)
        if filesystem is not None:
            found.update(_expand_fsspec(filesystem, name, endings))
        elif is_url(name):
            import fsspec

            fs, inner = fsspec.core.url_to_fs(name, **(options or {}))
            found.update(_expand_fsspec(fs, inner, endings, entry=name))
        else:
            found.update(_expand_local(os.path.abspath(name), endings))
    if not found:
        shown = ", ".join(os.fspath(entry) for entry in entries[:3])
        raise ValueError(
            f"no slide files ({', '.join(endings)}) in {shown}"
            + (f" and {len(entries) - 3} more" if len(entries) > 3 else "")
        )
    if filesystem is not None and options is None:
        options = dict(getattr(filesystem, "storage_options", {}) or {}) or None
    return SlideLocations(sorted(found), options)


def _expand_local(path: str, endings: tuple[str, ...]) -> list[str]:
    """Slide files under the local ``path`` (absolute), or ``path`` itself if it is a file."""
    if os.path.isfile(path):
        return [path]
    if not os.path.isdir(path):
        raise SlideError(path, "no such file or folder")
    found: list[str] = []
    for folder, folders, files in os.walk(path):
        # Pruned in place, so that os.walk does not enter hidden folders.
        folders[:] = [name for name in folders if not name.startswith(".")]
        found.extend(
            os.path.join(folder, name)
            for name in files
            if not name.startswith(".") and name.lower().endswith(endings)
        )
    return found


def _expand_fsspec(
    fs: Any, path: str, endings: tuple[str, ...], entry: str | None = None
) -> list[str]:
    """Slide files under ``path`` in the fsspec file system ``fs``, as plain paths for the
    local file system and as URLs otherwise. ``entry`` is the name the caller gave (for
    errors); ``path`` is that name inside ``fs``."""
    local = bool(_LOCAL_PROTOCOLS & set(_protocols(fs)))

    def location(inner: str) -> str:
        return os.path.abspath(fs._strip_protocol(inner)) if local else fs.unstrip_protocol(inner)

    root = fs._strip_protocol(path).rstrip("/")
    if fs.isfile(root):
        return [location(root)]
    if not fs.isdir(root):
        raise SlideError(entry or path, "no such file or folder")
    found: list[str] = []
    for inner in fs.find(root, withdirs=False, detail=False):
        relative = inner[len(root) :].strip("/").split("/")
        if any(part.startswith(".") for part in relative):
            continue
        if relative[-1].lower().endswith(endings):
            found.append(location(inner))
    return found


def _protocols(fs: Any) -> tuple[str, ...]:
    """The protocol names of an fsspec file system (one string or a tuple of them)."""
    protocol = fs.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)
