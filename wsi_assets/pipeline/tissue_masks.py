"""Tissue masks beside the tables: ``{output_root}/tissue_mask/slide={key}/tissue_mask.tiff``.

:func:`build_tissue_mask` computes one slide's mask (:func:`wsi_core.tissue.detect_tissue`,
with the parameters of ``Settings.tissue``) and stores it through :class:`TissueMaskStore`:
a 0/255 pyramidal TIFF with its resolution (:mod:`wsi_core.tissue.mask_file`) that
``overlay_overlap`` reads like a user's mask.

Like the tables, the file is written atomically (a finished temporary file linked or renamed
into place locally, a single PUT remotely) and never over a file this project did not write.
What it was made from travels inside it, in the ImageDescription of its first page:
``wsi_tiles tissue_mask`` and a JSON line with its slide key, :class:`Provenance` (code
version: revision and every tissue parameter; input: the slide file's version) and what the
detection found. So the file alone tells whether a stored mask is current, whichever engine
wrote it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from dataclasses import dataclass, field
from typing import Any

from upath import UPath

from wsi_assets.pipeline.errors import ForeignFileError, InputFileError, about_file
from wsi_assets.pipeline.locations import (
    MISSING,
    file_info,
    is_local,
    read_bytes,
    remove_stale_temporaries,
    uri_of,
    write_atomic,
)
from wsi_assets.pipeline.settings import Settings
from wsi_assets.pipeline.slides import OVERLAY, SLIDE, SlideFiles, SlideStore
from wsi_assets.pipeline.tables import Provenance, TableStore
from wsi_core.slide import open_slide
from wsi_core.tables.slide_metadata import base_resolution
from wsi_core.tissue import TISSUE_MASK, TissueMask, detect_tissue, write_tissue_mask
from wsi_core.tissue.mask_file import mask_description

MASK_FILE = "tissue_mask.tiff"
#: First line of the ImageDescription of every mask this project writes.
MARK = f"wsi_tiles {TISSUE_MASK}"


@dataclass(frozen=True)
class StoredMask:
    """A tissue mask as stored: its URI, provenance and what the detection found (plain
    values: level, factor, resolution, threshold, tissue fraction, pixel counts)."""

    uri: str
    provenance: Provenance
    facts: dict[str, Any]
    #: A digest of the stored bytes (its data version; "" when not known).
    content_hash: str = ""
    #: The mask itself, when this process computed it (None when read from a record).
    tissue: TissueMask | None = field(default=None, compare=False, repr=False)


def mask_facts(tissue: TissueMask) -> dict[str, Any]:
    """What ``tissue`` was made from and found, as plain values."""
    return {
        "level": tissue.level,
        "factor": tissue.factor,
        "mpp": list(tissue.mpp),
        "shape": list(tissue.mask.shape),
        "threshold": tissue.threshold,
        "tissue_fraction": tissue.tissue_fraction,
        "pen_pixels": tissue.pen_pixels,
        "dark_pixels": tissue.dark_pixels,
    }


def describe(key: str, provenance: Provenance, facts: dict[str, Any]) -> str:
    """The ImageDescription of slide ``key``'s mask."""
    record = {"slide": key, "provenance": json.loads(provenance.to_json()), "facts": facts}
    return f"{MARK}\n{json.dumps(record, sort_keys=True)}"


def read_description(text: str | None) -> dict[str, Any] | None:
    """The record in a mask's ImageDescription; None when it is not one of ours."""
    if text is None or not text.startswith(MARK + "\n"):
        return None
    try:
        record = json.loads(text[len(MARK) + 1 :])
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


class TissueMaskStore:
    """The tissue masks of one output root (beside its tables)."""

    def __init__(self, tables: TableStore) -> None:
        self.tables = tables

    def path(self, key: str) -> UPath:
        """Where slide ``key``'s mask lives."""
        return self.tables.root / TISSUE_MASK / f"slide={key}" / MASK_FILE

    def write(self, key: str, tissue: TissueMask, provenance: Provenance) -> StoredMask:
        """Store ``tissue`` atomically; :class:`ForeignFileError` rather than replace a file
        this project did not write for slide ``key``."""
        path = self.path(key)
        facts = mask_facts(tissue)
        with tempfile.TemporaryDirectory(prefix="wsi-mask-") as folder:
            local = os.path.join(folder, MASK_FILE)
            write_tissue_mask(local, tissue, describe(key, provenance, facts))
            with open(local, "rb") as handle:
                payload = handle.read()
        remove_stale_temporaries(path)
        try:
            write_atomic(path, payload, create=True)
        except FileExistsError:
            if not self._ours(key):
                raise ForeignFileError(
                    uri_of(path),
                    "a file not written by wsi_tiles is in the way; move it, then re-run",
                ) from None
            write_atomic(path, payload)
        digest = hashlib.sha256(payload).hexdigest()[:16]
        return StoredMask(uri_of(path), provenance, facts, digest, tissue)

    def record(self, key: str) -> dict[str, Any] | None:
        """The record stored in slide ``key``'s mask (None when there is no mask, or it is
        not ours or cannot be read)."""
        path = self.path(key)
        if file_info(path) is None:
            return None
        try:
            return read_description(_description(path))
        except (OSError, ValueError, IndexError):  # damaged, or vanished meanwhile
            return None

    def provenance(self, key: str) -> Provenance | None:
        """The provenance of slide ``key``'s stored mask (None: none stored, or not ours)."""
        record = self.record(key)
        if record is None:
            return None
        return Provenance.from_json(json.dumps(record["provenance"]))

    def remove(self, key: str) -> str | None:
        """Delete slide ``key``'s mask if it is there and ours; return its URI (None when
        there was none); :class:`ForeignFileError` for a file this project did not write."""
        path = self.path(key)
        if file_info(path) is None:
            return None
        if not self._ours(key):
            raise ForeignFileError(uri_of(path), "not written by wsi_tiles; it is left where it is")
        path.fs.rm_file(path.path)
        return uri_of(path)

    def _ours(self, key: str) -> bool:
        record = self.record(key)
        return record is not None and record.get("slide") == key


def _description(path: UPath) -> str | None:
    """The ImageDescription of the TIFF at ``path``: read in place locally; remotely the
    file is fetched whole (one request: masks are small, a few hundred KiB at most)."""
    if is_local(path):
        return mask_description(path.path)
    return mask_description(io.BytesIO(read_bytes(path)))


#: Where an overlay came from (:func:`choose_overlay`; ``overlay_source`` in the metadata).
USER_OVERLAY = "user file"
GENERATED_MASK = TISSUE_MASK
NO_OVERLAY = "none"


@dataclass(frozen=True)
class OverlayChoice:
    """The overlay ``overlay_overlap`` should read for a slide: its URI (None: none),
    ``source`` (``USER_OVERLAY``, ``GENERATED_MASK`` or ``NO_OVERLAY``) and ``version``, the
    input version to record (the user's file version, else the stored mask's provenance id,
    else ``MISSING``), so that a rebuilt mask makes ``overlay_overlap`` out of date."""

    uri: str | None
    source: str
    version: str


def choose_overlay(files: SlideFiles, store: TissueMaskStore) -> OverlayChoice:
    """A user's overlay always wins; a slide without one gets its stored tissue mask, if
    any. The generated mask records its own resolution: align it without the
    ``WSI_OVERLAY_MPP*`` settings, which are meant for users' files."""
    found = files.files.get(OVERLAY)
    if found is not None:
        return OverlayChoice(found.uri, USER_OVERLAY, found.version)
    origin = store.provenance(files.slide.key)
    if origin is None:
        return OverlayChoice(None, NO_OVERLAY, MISSING)
    return OverlayChoice(uri_of(store.path(files.slide.key)), GENERATED_MASK, origin.id)


def tissue_provenance(settings: Settings, slide_version: str) -> Provenance:
    """What a slide's mask is computed from: the tissue code version and the slide file."""
    return Provenance(TISSUE_MASK, settings.code_version(TISSUE_MASK), {SLIDE: slide_version})


def detect_in_file(location: str, settings: Settings) -> TissueMask:
    """The tissue mask of the slide at ``location``, with the settings' parameters and its
    resolution as ``slide_metadata`` takes it (file, else WSI_SLIDE_MPP; WSI_SLIDE_MPP_OVERRIDE
    over both)."""
    with open_slide(location, storage_options=settings.storage_options) as reader:
        base = base_resolution(reader, settings.slide_mpp, settings.slide_mpp_override)
        return detect_tissue(reader, settings.tissue_parameters(), base_mpp=base.mpp)


def build_tissue_mask(
    settings: Settings, files: SlideFiles, store: TissueMaskStore | None = None
) -> StoredMask:
    """Compute and store the tissue mask of the slide in ``files`` (its input files, from
    ``Pipeline.inputs``). Errors name the slide file (:class:`InputFileError`); storage
    errors pass for a retry."""
    slide = files.slide
    found = files.files[SLIDE]
    if found is None:
        raise InputFileError(slide.uri, "slide file not found")
    with about_file(slide.uri, SLIDE, missing_mpp="WSI_SLIDE_MPP"):
        tissue = SlideStore(settings).read(slide.uri, lambda at: detect_in_file(at, settings))
    store = store or TissueMaskStore(TableStore(settings.output_root, settings.storage_options))
    return store.write(slide.key, tissue, tissue_provenance(settings, found.version))
