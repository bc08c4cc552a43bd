"""Slide key -> path relative to the slide root, kept as one object per slide under
``{output_root}/_registry/slides/{key}.json``.

Keys are a pure function of the relative path (:mod:`.keys`), so the registry is only the way
back from a key to its slide; it can always be rebuilt from a listing of the slide root, and
``Pipeline.slide`` (:mod:`.steps`) does exactly that for a key it does not hold yet. Each object is
written once, only where none exists (a hard link locally, ``If-None-Match: *`` on S3), and
never rewritten: concurrent writers cannot lose a registration, and a second slide that would
take a key already held by another path is refused by name. The leading ``_`` keeps the
folder out of ``pyarrow.dataset`` / duckdb scans of the output root.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from upath import UPath

from wsi_assets.pipeline.keys import slide_key
from wsi_assets.pipeline.locations import (
    list_files,
    location,
    modified,
    read_bytes,
    uri_of,
    write_atomic,
)

FOLDER = "_registry/slides"
FORMAT_VERSION = 2
#: Registrations written at once (each is one small PUT on object stores).
WRITERS = 16


@dataclass(frozen=True)
class Registration:
    """One registered slide: its key, its path relative to the slide root."""

    key: str
    relpath: str


class Registry:
    """The registered slides of one output root."""

    def __init__(self, output_root: str, storage_options: Mapping[str, Any] | None = None) -> None:
        self.folder: UPath = location(output_root, storage_options).joinpath(*FOLDER.split("/"))

    def _object(self, key: str) -> UPath:
        return self.folder / f"{key}.json"

    def registered(self) -> dict[str, float | None]:
        """Every registered key and when it was registered (seconds since the epoch): one
        listing of the registry folder, no object is read."""
        found = {}
        for uri, info in list_files(self.folder).items():
            name = uri.rstrip("/").rsplit("/", 1)[-1]
            if name.endswith(".json"):
                found[name.removesuffix(".json")] = modified(info)
        return found

    def lookup(self, key: str) -> Registration | None:
        """The registration of ``key`` (one read), or None when it has none."""
        return _read(uri_of(self._object(key)), self.folder.storage_options, key)

    def remove(self, key: str) -> bool:
        """Forget ``key`` (a slide retired from the slide root); True if it was registered.
        A slide found again under the slide root is registered again, under the same key."""
        target = self._object(key)
        try:
            target.fs.rm_file(target.path)
        except FileNotFoundError:
            return False
        _read_existing.cache_clear()
        return True

    def register(self, relpaths: Iterable[str]) -> tuple[dict[str, Registration], list[str]]:
        """Register the slides at ``relpaths`` that are not registered yet.

        Returns key -> registration for every slide that holds its key, and one message per
        slide refused because its key is held by another path (the message names both files
        and what to do).
        """
        wanted: dict[str, str] = {}
        clashes = []
        for relpath in sorted(set(relpaths)):
            key = slide_key(relpath)
            if key in wanted:  # only two stems of the slide root itself can meet here
                clashes.append((key, wanted[key], relpath))
            else:
                wanted[key] = relpath
        with ThreadPoolExecutor(WRITERS) as pool:
            held = list(pool.map(self._register_one, wanted.items()))
        registered = {}
        for (key, relpath), holder in zip(wanted.items(), held, strict=True):
            if holder.relpath == relpath:
                registered[key] = holder
            else:
                clashes.append((key, holder.relpath, relpath))
        return registered, [
            f"{mine}: would share partition key {key!r} with {holder}; rename one of them or "
            "move it into a folder"
            for key, holder, mine in clashes
        ]

    def _register_one(self, item: tuple[str, str]) -> Registration:
        """Create ``key``'s object if there is none; return the registration that holds."""
        key, relpath = item
        target = self._object(key)
        document = {"format_version": FORMAT_VERSION, "key": key, "relpath": relpath}
        try:
            write_atomic(target, json.dumps(document, sort_keys=True).encode(), create=True)
        except FileExistsError:
            held = self.lookup(key)
            if held is not None:
                return held
            raise
        return Registration(key, relpath)


@lru_cache(maxsize=4096)
def _read_existing(uri: str, options: str, key: str) -> Registration:
    """A registration, read once per process (objects are never rewritten once they exist).
    Raises ``FileNotFoundError`` when there is none; exceptions are not cached, so a later
    registration is seen."""
    document = json.loads(read_bytes(location(uri, json.loads(options))))
    return Registration(key, str(document["relpath"]))


def _read(uri: str, options: Mapping[str, Any], key: str) -> Registration | None:
    try:
        return _read_existing(uri, json.dumps(dict(options), sort_keys=True, default=str), key)
    except FileNotFoundError:
        return None
