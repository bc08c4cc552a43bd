"""The ``slides`` dynamic partitions and their keys.

A key is derived from the slide's file name, so that it reads well in the UI:

* only ``[A-Za-z0-9._-]``; every other run of characters becomes ``_``; runs of dots become
  one dot (no ``..``/``...``, which the UI reads as a range); no leading or trailing
  ``.``, ``_`` or ``-``;
* at most ``MAX_STEM`` characters of the name, plus an optional ``-`` and 8 hex digits;
* the hash suffix (sha256 of the path relative to the slide root) is added when the name had
  to be changed or shortened, and when two slides would otherwise share a key (compared
  case-insensitively, so the output folders never clash on macOS or Windows).

Keys never change once given: the registry (``wsi_assets.registry``) keeps them.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable

from dagster import DynamicPartitionsDefinition

PARTITIONS_NAME = "slides"
slides_partitions = DynamicPartitionsDefinition(name=PARTITIONS_NAME)

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
    """Hex digest prefix of a slide's path relative to the slide root."""
    return hashlib.sha256(relpath.replace("\\", "/").encode()).hexdigest()[:length]


def readable_key(relpath: str) -> tuple[str, bool]:
    """The UI-safe form of the file stem, and whether it differs from the stem."""
    stem = file_stem(relpath.replace("\\", "/").rsplit("/", 1)[-1])
    safe = _UNSAFE.sub("_", stem)
    safe = re.sub(r"\.{2,}", ".", safe).strip("._-")
    safe = re.sub(r"_{2,}", "_", safe)
    shortened = safe[:MAX_STEM].rstrip("._-")
    return (shortened or "slide"), shortened != stem


def slide_key(relpath: str, *, with_hash: bool = False, hash_length: int = HASH_LENGTH) -> str:
    """The partition key of one slide, seen alone (see the module docstring)."""
    base, changed = readable_key(relpath)
    if changed or with_hash:
        return f"{base}-{path_hash(relpath, hash_length)}"
    return base


def assign_keys(relpaths: Iterable[str], taken: Iterable[str] = ()) -> dict[str, str]:
    """Keys for new slides, given the keys ``taken`` already (deterministic, collision-free).

    Slides whose plain keys would clash with each other or with a taken key get the hash
    suffix; a clash of hashes (practically never) lengthens the hash.
    """
    paths = sorted(set(relpaths))
    used = {key.lower() for key in taken}
    plain = {path: slide_key(path) for path in paths}
    counts = Counter(key.lower() for key in plain.values())
    keys: dict[str, str] = {}
    for path in paths:
        key = plain[path]
        if counts[key.lower()] > 1 or key.lower() in used:
            length = HASH_LENGTH
            key = slide_key(path, with_hash=True, hash_length=length)
            while key.lower() in used:
                length += 4
                key = slide_key(path, with_hash=True, hash_length=length)
        used.add(key.lower())
        keys[path] = key
    return keys


def is_valid_key(key: str, max_length: int = MAX_STEM + 1 + 64) -> bool:
    """True when ``key`` follows the key rules (for checks on hand-made keys)."""
    return (
        len(key) <= max_length and KEY_PATTERN.fullmatch(key) is not None and not key.endswith(".")
    )
