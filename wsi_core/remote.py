"""Opening slides named by fsspec URLs (``s3://``, ``memory://``, ``file://``, ...).

Only TIFF-family files are read through a URL: tifffile needs a seekable binary stream, which
fsspec gives by range requests, so opening a slide costs its header and reading a window
costs the tiles that meet it, never a download of the whole file. OpenSlide opens local
paths only; other formats raise :class:`~wsi_core.errors.LocalCopyRequired`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import IO, Any

from wsi_core.errors import LocalCopyRequired, SlideError

#: The first four bytes of classic (``*``) and Big (``+``) TIFF, little and big endian.
TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")

#: Bytes fetched per request, 512 KiB: the header, first IFDs and their tag arrays of a
#: typical pyramid come in one or two requests, where tifffile's many small reads would
#: otherwise each be a round trip.
URL_BLOCK_BYTES = 512 * 1024

#: Blocks kept per open file (so at most 16 MiB with ``URL_BLOCK_BYTES``): IFDs are spread
#: through the file (often one after each level's data), and tifffile returns to them.
URL_CACHE_BLOCKS = 32


def is_url(path: str) -> bool:
    """True for ``scheme://...`` locations (including ``file://``), False for plain paths."""
    return "://" in path


def open_tiff_url(url: str, storage_options: Mapping[str, Any] | None = None) -> IO[bytes]:
    """A seekable binary file for the TIFF at ``url``, reading through a block cache.

    ``storage_options`` go to the URL's fsspec filesystem (endpoint, credentials, ...).

    Raises :class:`SlideError` (naming ``url``) when there is no such file and
    :class:`LocalCopyRequired` when the file is not a TIFF. Other ``OSError`` (denied,
    network) propagate unchanged so that callers can retry. The caller closes the file.
    """
    import fsspec

    fs, inner = fsspec.core.url_to_fs(url, **(storage_options or {}))
    try:
        # Filesystems without buffered files (memory, local) ignore the cache arguments.
        handle = fs.open(
            inner,
            "rb",
            block_size=URL_BLOCK_BYTES,
            cache_type="blockcache",
            cache_options={"maxblocks": URL_CACHE_BLOCKS},
        )
    except (FileNotFoundError, IsADirectoryError) as error:
        raise SlideError(url, "no such file") from error
    try:
        magic = handle.read(4)
        handle.seek(0)
    except BaseException:
        handle.close()
        raise
    if magic not in TIFF_MAGIC:
        handle.close()
        raise LocalCopyRequired(url, "not a TIFF file")
    return handle
