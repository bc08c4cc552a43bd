"""Reading an annotation source whole: a local path, an fsspec URL, a UPath or an open stream.

Annotation files are small next to the slides they describe (kilobytes to a few megabytes),
so they are read into memory at once and decoded from there (:mod:`wsi_core.parsers.decode`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import IO, Any

import fsspec

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
    """
    name = source_name(source)
    if hasattr(source, "read"):
        return name, source.read()
    if isinstance(source, str):
        if is_url(source):
            # One ranged GET from byte 0: opening the file would ask for its size first.
            fs, path = fsspec.core.url_to_fs(source, **(storage_options or {}))
            return name, fs.cat_file(path, start=0)
        with open(source, "rb") as handle:
            return name, handle.read()
    if isinstance(source, os.PathLike):
        try:
            local = os.fspath(source)
        except TypeError:
            local = None
        if local is not None:
            with open(local, "rb") as handle:
                return name, handle.read()
    if hasattr(source, "open") and hasattr(source, "fs"):
        # A remote UPath: open it through its own filesystem so its storage options (credentials,
        # endpoint) are kept, which str(path) -> fsspec.open would lose.
        with source.open("rb") as handle:
            return name, handle.read()
    raise TypeError(
        "an annotation source must be a path, an fsspec URL or an open stream, "
        f"not {type(source).__name__}"
    )
