"""Partition keys of slides: a pure function of the slide's path relative to the slide root.

A key reads well in the Dagster UI and never depends on which other slides exist or on the
order they were found, so the same slide has the same key in every output root, in every
Dagster instance and in every engine:

* a slide directly in the slide root whose file stem is already UI-safe keeps its stem
  (``CMU-1-Small-Region.svs`` -> ``CMU-1-Small-Region``);
* every other slide (in a sub-folder, or whose stem had to be changed or shortened) gets the
  UI-safe form of its stem, ``-`` and 8 hex digits of the sha256 of its relative path
  (``case 03 (HE).tiff`` -> ``case_03_HE-3101e499``, ``site_a/x.svs`` -> ``x-6cae6f92``).

UI-safe: only ``[A-Za-z0-9._-]``; every other run of characters becomes ``_``; no ``..``
(the UI reads it as a range); no leading or trailing ``.``, ``_`` or ``-``; at most
``MAX_STEM`` characters before the suffix.

Two slides can still map to one key only when they share a stem in the slide root itself
(``x.svs`` and ``x.tiff``); the registry (:mod:`wsi_assets.pipeline.registry`) refuses the
second one with an error naming both files rather than give either another key.
"""

from __future__ import annotations

import hashlib
import re

MAX_STEM = 48
HASH_LENGTH = 8
KEY_PATTERN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_-]|\.(?!\.))*")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
#: Endings stripped from a file name to get its stem (longest first).
MULTI_SUFFIXES = (".ome.tiff", ".ome.tif")


def file_stem(name: str) -> str:
    """The file name without its extension (``a.ome.tiff`` -> ``a``)."""
    lower = name.lower()
    for suffix in MULTI_SUFFIXES:
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    head, dot, _ = name.rpartition(".")
    return head if dot and head else name


def path_hash(relpath: str, length: int = HASH_LENGTH) -> str:
    """Hex digest prefix of a slide's path relative to the slide root (``/`` separated)."""
    return hashlib.sha256(relpath.replace("\\", "/").encode()).hexdigest()[:length]


def _readable(stem: str) -> str:
    """The UI-safe form of a file stem (see the module docstring)."""
    safe = _UNSAFE.sub("_", stem)
    safe = re.sub(r"\.{2,}", ".", safe).strip("._-")
    safe = re.sub(r"_{2,}", "_", safe)
    return safe[:MAX_STEM].rstrip("._-") or "slide"


def slide_key(relpath: str) -> str:
    """The partition key of the slide at ``relpath`` (relative to the slide root)."""
    relpath = relpath.replace("\\", "/")
    folder, _, name = relpath.rpartition("/")
    stem = file_stem(name)
    readable = _readable(stem)
    if readable == stem and not folder:
        return readable
    return f"{readable}-{path_hash(relpath)}"


def is_valid_key(key: str, max_length: int = MAX_STEM + 1 + HASH_LENGTH) -> bool:
    """True when ``key`` follows the key rules (for checks on keys from elsewhere)."""
    return (
        len(key) <= max_length and KEY_PATTERN.fullmatch(key) is not None and not key.endswith(".")
    )
