"""Reading an annotation source whole: a local path, an fsspec URL, a UPath or an open stream.

Annotation files are small next to the slides they describe (kilobytes to a few megabytes),
so they are read into memory at once and decoded from there (:mod:`wsi_core.parsers.decode`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from functools import partial
from typing import IO, Any, cast

import fsspec

from wsi_core.errors import annotation_errors
from wsi_core.remote import is_url

Source = str | os.PathLike[str] | IO[str] | IO[bytes]
"""A local path, an fsspec URL (``s3://…``, ``file://…``), a UPath, or an open stream."""

STREAM_NAME = "<stream>"


def source_name(source: Any) -> str:
    """The name errors and warnings use for ``source``: its path or URL, or ``<stream>``."""
    if hasattr(source, "read"):
        name = getattr(source, "name", None)
        # A stream from os.fdopen has an int name, which says nothing to a reader.
        return name if isinstance(name, str) else STREAM_NAME
    if isinstance(source, os.PathLike):
        try:
            return os.fspath(source)
        except TypeError:
            pass
    return str(source)


def read_source(
    source: Any, storage_options: Mapping[str, Any] | None = None
) -> tuple[str, bytes | str]:
    """Read the whole of ``source``; return ``(name, content)``.

    Content is bytes for paths and URLs (so the JSON and XML decoders can honour the file's own
    encoding) and whatever the stream gives for streams. Annotation files are small next to the
    slides they describe, so reading them whole is the simple and fast choice.

    ``storage_options`` go to fsspec when ``source`` is a URL string (endpoint, credentials;
    see :mod:`wsi_core.remote`). Local paths and streams have no use for them, and a UPath
    carries its own, so those ignore them.

    A ``source`` of no supported kind raises ``TypeError`` (the caller's mistake) before
    anything is read; a missing file raises :class:`~wsi_core.errors.AnnotationError` naming
    it; other ``OSError`` (denied, network) propagate for the caller to retry.
    """
    name = source_name(source)
    read = _reader(source, storage_options)
    with annotation_errors(name, "cannot read the file"):
        return name, read()


def _reader(source: Any, storage_options: Mapping[str, Any] | None) -> Callable[[], bytes | str]:
    """A function that reads the whole of ``source``; ``TypeError`` for no supported kind."""
    if hasattr(source, "read"):
        return cast(Callable[[], "bytes | str"], source.read)
    if isinstance(source, str):
        if is_url(source):
            return partial(_read_url, source, storage_options)
        return partial(_read_local, source)
    if isinstance(source, os.PathLike):
        try:
            local = os.fspath(source)
        except TypeError:
            local = None
        if local is not None:
            return partial(_read_local, local)
    if hasattr(source, "open") and hasattr(source, "fs"):
        # A remote UPath: open it through its own filesystem so its storage options (credentials,
        # endpoint) are kept, which str(path) -> fsspec.open would lose.
        return partial(_read_opened, source)
    raise TypeError(
        "an annotation source must be a path, an fsspec URL or an open stream, "
        f"not {type(source).__name__}"
    )


def _read_local(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def _read_url(url: str, storage_options: Mapping[str, Any] | None) -> bytes:
    # One ranged GET from byte 0: opening the file would ask for its size first.
    fs, path = fsspec.core.url_to_fs(url, **(storage_options or {}))
    return cast(bytes, fs.cat_file(path, start=0))


def _read_opened(source: Any) -> bytes:
    with source.open("rb") as handle:
        return cast(bytes, handle.read())
