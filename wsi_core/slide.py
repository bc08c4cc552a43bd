"""``open_slide``: open a slide with the backend that reads it best.

The reader interface is :class:`~wsi_core.reader.SlideReader` (re-exported here); the
backends are :class:`~wsi_core.openslide.OpenSlide` and :class:`~wsi_core.tiff_reader.TiffReader`.
Units as in :mod:`wsi_core.reader`: level coords are pixels of one pyramid level, ``mpp`` is
micrometres per level-0 pixel.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from typing import Any

import openslide as _openslide
import tifffile

from wsi_core.errors import LocalCopyRequired, SlideError, slide_errors
from wsi_core.file_cache import FileCache, FileSignature
from wsi_core.openslide import OpenSlide
from wsi_core.reader import SlideReader
from wsi_core.remote import is_url
from wsi_core.resolution import MPP, as_mpp_pair
from wsi_core.tiff_reader import ParsedTiff, TiffReader
from wsi_core.tiff_structure import is_tiff_file, read_tiff_layout_of_file

__all__ = ["SlideReader", "open_slide"]

#: tifffile's name for TIFF flavours that OpenSlide claims (and so reads from a local path)
#: -> what to call them in errors. Aperio SVS is absent on purpose: tifffile reads its levels,
#: resolution and pixels as OpenSlide does.
_OPENSLIDE_TIFF_KINDS = {
    "ndpi": "Hamamatsu NDPI",
    "philips": "Philips TIFF",
    "scn": "Leica SCN",
    "bif": "Ventana BIF",
}

#: Local TIFFs that open_slide sent to tifffile, as parsed, while they stay unchanged: an
#: overlay opened call after call (the same mask for every batch of tiles) skips the
#: structure walk, OpenSlide's format test and tifffile's parse (0.6 ms for a mask).
PARSED_TIFFS_SIZE = 16

#: Most strips or tiles a cached parse may list (about 4.5 MB of tifffile's offsets): a
#: gigapixel slide's parse is not kept after its reader closes, and costs little beside
#: reading its pixels anyway.
PARSED_TIFF_MAX_SEGMENTS = 2**16

_PARSED_TIFFS: FileCache[ParsedTiff] = FileCache(PARSED_TIFFS_SIZE)


def _is_ome_tiff(path: str) -> bool:
    try:
        with tifffile.TiffFile(path) as tif:
            return bool(tif.is_ome)
    except Exception:  # a broken TIFF is for the backend to report, with its reason
        return False


def open_slide(
    path: str | os.PathLike[str],
    mpp: MPP | None = None,
    *,
    storage_options: Mapping[str, Any] | None = None,
) -> SlideReader:
    """Open ``path`` with the backend that reads it best.

    tifffile (:class:`~wsi_core.tiff_reader.TiffReader`) for TIFF files that OpenSlide does not
    recognise or recognises only as ``generic-tiff`` (OpenSlide ignores SubIFD pyramids and
    cannot read stripped TIFFs), and for every OME-TIFF; OpenSlide
    (:class:`~wsi_core.openslide.OpenSlide`) for everything else. The TIFF test is on the
    file's magic bytes, not its extension. ``mpp`` (micrometres per level-0 pixel, float or
    ``(x, y)``) overrides the file's own resolution.

    ``path`` may be an fsspec URL (any string with ``://``): TIFF-family files, Aperio SVS
    included, are then read by range requests with tifffile. Formats OpenSlide would read
    raise :class:`~wsi_core.errors.LocalCopyRequired` (a ``SlideError``) naming the URL.
    ``storage_options`` go to the URL's fsspec filesystem (endpoint, credentials; see
    :mod:`wsi_core.remote`); a local path ignores them.

    A TIFF-family file's page structure is checked first (:mod:`wsi_core.tiff_structure`):
    a file cut short, a looping page chain or more than ``MAX_PAGES`` pages is refused before
    any library reads it. A local TIFF opened with tifffile before, and unchanged since (same
    size, inode and times: :mod:`wsi_core.file_cache`), is opened from that parse: its checks
    and backend choice were made on the same bytes. Whatever goes wrong with the file raises a
    :class:`~wsi_core.errors.SlideError` whose message starts with ``path``; storage errors
    (``OSError`` other than a missing file) propagate for the caller to retry.
    """
    name = os.fspath(path)
    if mpp is not None:
        as_mpp_pair(mpp)  # fail on a malformed override (the caller's error) before anything
    with slide_errors(name, "cannot open the slide"):
        if is_url(name):
            return _open_url(name, mpp, storage_options)
        return _open_local(name, mpp)


def _open_local(name: str, mpp: MPP | None) -> SlideReader:
    """Open a local file; a TIFF that this process opened before with tifffile, unchanged
    since (:mod:`wsi_core.file_cache`), is opened from what was parsed then."""
    try:
        status = os.stat(name)
    except (OSError, ValueError):  # as os.path.exists has it
        raise SlideError(name, "no such file") from None
    if not stat.S_ISREG(status.st_mode):
        raise SlideError(name, "not a file (is it a directory?)")
    signature = FileSignature.of(status)
    parsed = _PARSED_TIFFS.get(name, signature)
    if parsed is not None:
        return TiffReader(name, mpp=mpp, parsed=parsed)
    reader = _open_unparsed(name, mpp)
    parsed = reader.parsed if isinstance(reader, TiffReader) else None
    if parsed is not None and parsed.segments <= PARSED_TIFF_MAX_SEGMENTS:
        _PARSED_TIFFS.put(name, signature, parsed)
    return reader


def _open_unparsed(name: str, mpp: MPP | None) -> SlideReader:
    """Open the local file ``name`` (a regular file) with the backend that reads it best."""
    tiff = is_tiff_file(name)
    layout = None
    if tiff:
        # Before libtiff (detect_format) or tifffile (_is_ome_tiff) look at it: a looping or
        # truncated page chain is refused here, the same way whichever backend reads it. The
        # backend checks the pixel data itself, naming the levels it would have read.
        layout = read_tiff_layout_of_file(name)
    try:
        vendor = _openslide.OpenSlide.detect_format(name)
    except _openslide.OpenSlideError:
        vendor = None
    if tiff and (vendor in (None, "generic-tiff") or _is_ome_tiff(name)):
        return TiffReader(name, mpp=mpp, layout=layout)  # the walk not done twice
    if vendor is None:
        raise SlideError(name, "not a slide format that OpenSlide or tifffile can read")
    return OpenSlide(name, mpp=mpp)


def _open_url(url: str, mpp: MPP | None, storage_options: Mapping[str, Any] | None) -> SlideReader:
    """The TIFF at ``url`` as :class:`~wsi_core.tiff_reader.TiffReader`, unless a local path
    would have gone to OpenSlide (then :class:`LocalCopyRequired`), so that a URL and a local
    copy of the same file give the same reader, vendor and levels."""
    # TiffReader raises LocalCopyRequired for files that are no TIFF at all.
    slide = TiffReader(url, mpp=mpp, storage_options=storage_options)
    flavour = _OPENSLIDE_TIFF_KINDS.get(slide.tiff_kind)
    if flavour is None and slide.software.startswith("MedScan"):  # OpenSlide's Trestle test
        flavour = "Trestle TIFF"
    if flavour is not None:
        slide.close()
        raise LocalCopyRequired(url, f"a {flavour}, an OpenSlide format")
    return slide
