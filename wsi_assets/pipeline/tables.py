"""The table store: one Parquet file per table per slide, hive layout, with its provenance.

``{output_root}/{table}/slide={key}/part-0.parquet``: ``pyarrow.dataset``, duckdb, polars and
pandas read a whole table as one (the folder adds a ``slide`` column). Every file carries, in
its Parquet key-value metadata, the table and slide it holds (a file without them is not
ours and is never overwritten) and its :class:`Provenance`: the code version and the
versions of the inputs it was computed from. Whether a stored table is current is decided
from the file alone, whichever engine wrote it (see :mod:`wsi_assets.pipeline.plans`).

Writes are atomic (a finished temporary file renamed or linked into place locally; a single
PUT remotely), so a reader sees the old table or the new one, never a part of either.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from upath import UPath

from wsi_assets.pipeline.errors import ForeignFileError, MissingTableError
from wsi_assets.pipeline.locations import (
    Info,
    is_local,
    list_files,
    location,
    read_bytes,
    remove_stale_temporaries,
    uri_of,
    write_atomic,
)

PART_FILE = "part-0.parquet"
OWNER_KEY = b"wsi_tiles.asset"
SLIDE_KEY = b"wsi_tiles.slide"
PROVENANCE_KEY = b"wsi_tiles.provenance"
#: Bytes read from the end of a remote table to get its footer in one request.
FOOTER_BYTES = 64 * 1024
#: Footers read at once when many tables are checked.
READERS = 16


@dataclass(frozen=True)
class Provenance:
    """What a stored table was computed from: ``code_version`` of its table (code revision and
    settings) and ``inputs``, name -> version of each input (a file's data version, or the
    provenance id of an upstream table)."""

    table: str
    code_version: str
    inputs: dict[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        """A digest of everything above: equal ids, equal tables."""
        text = json.dumps(
            {"table": self.table, "code_version": self.code_version, "inputs": self.inputs},
            sort_keys=True,
            separators=(",", ":"),
        )
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def to_json(self) -> str:
        return json.dumps(
            {
                "table": self.table,
                "code_version": self.code_version,
                "inputs": self.inputs,
                "id": self.id,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> Provenance:
        document = json.loads(text)
        return cls(document["table"], document["code_version"], dict(document["inputs"]))


@dataclass(frozen=True)
class StoredTable:
    """A table as written: where, a hash of its bytes (its data version), its provenance."""

    uri: str
    content_hash: str
    provenance: Provenance


class TableStore:
    """The tables of one output root."""

    def __init__(self, output_root: str, storage_options: Mapping[str, Any] | None = None) -> None:
        self.root: UPath = location(output_root, storage_options)

    def folder(self, table: str) -> UPath:
        """The folder holding every slide's ``table`` (one dataset)."""
        return self.root / table

    def path(self, table: str, key: str) -> UPath:
        """Where ``table`` of slide ``key`` lives."""
        return self.root / table / f"slide={key}" / PART_FILE

    def write(self, table: str, key: str, data: pa.Table, provenance: Provenance) -> StoredTable:
        """Write one slide's table atomically.

        Raises :class:`ForeignFileError` rather than replace a file this project did not
        write. A new table costs one write; replacing one of ours costs a footer read more.
        """
        path = self.path(table, key)
        payload = _to_parquet(data, table, key, provenance)
        remove_stale_temporaries(path)
        try:
            write_atomic(path, payload, create=True)
        except FileExistsError:
            if _owner(path) != table.encode():
                raise ForeignFileError(
                    uri_of(path),
                    "a file not written by wsi_tiles is in the way; move it, then re-run",
                ) from None
            write_atomic(path, payload)
        return StoredTable(uri_of(path), hashlib.sha256(payload).hexdigest()[:16], provenance)

    def remove(self, table: str, key: str) -> str | None:
        """Delete one slide's ``table`` if it is there and ours; return its URI (None when
        there was none). A file this project did not write is left alone
        (:class:`ForeignFileError`)."""
        path = self.path(table, key)
        owner = _owner(path)
        if owner is None and not path.exists():
            return None
        if owner != table.encode():
            problem = "not written by wsi_tiles; it is left where it is"
            raise ForeignFileError(uri_of(path), problem)
        path.fs.rm_file(path.path)
        return uri_of(path)

    def read(self, table: str, key: str) -> tuple[pa.Table, Provenance | None]:
        """One slide's table and its provenance (None for a table written before provenance
        was recorded); :class:`MissingTableError` when it has not been written."""
        path = self.path(table, key)
        try:
            payload = read_bytes(path)
        except FileNotFoundError:
            raise MissingTableError(
                uri_of(path), f"no {table} table for slide {key!r}; build {table} for it first"
            ) from None
        data = pq.read_table(io.BytesIO(payload))
        return data, _provenance(data.schema.metadata)

    def listing(self, table: str) -> dict[str, Info]:
        """Slide key -> fsspec info of every stored ``table`` (one recursive listing)."""
        found = {}
        for uri, info in list_files(self.folder(table)).items():
            parts = uri.rstrip("/").split("/")
            if parts[-1] == PART_FILE and parts[-2].startswith("slide="):
                found[parts[-2].removeprefix("slide=")] = info
        return found

    def provenances(self, table: str, keys: Iterable[str]) -> dict[str, Provenance | None]:
        """Provenance of the stored ``table`` of each slide in ``keys`` (keys known to have
        one, from :meth:`listing`), read from the files' footers: one ranged read each
        remotely, several at once. None for a file without provenance or that cannot be read
        (it counts as out of date)."""
        wanted = list(keys)
        with ThreadPoolExecutor(READERS) as pool:
            found = pool.map(lambda key: self._footer_provenance(table, key), wanted)
            return dict(zip(wanted, found, strict=True))

    def _footer_provenance(self, table: str, key: str) -> Provenance | None:
        path = self.path(table, key)
        try:
            return _provenance(_footer(path).metadata)
        except (OSError, ValueError, pa.ArrowException):  # vanished or damaged: not current
            return None

    def dataset(self, table: str) -> pa.Table | None:
        """Every slide's ``table`` as one table with a ``slide`` column, None if none is stored."""
        if not self.listing(table):
            return None
        folder = self.folder(table)
        return ds.dataset(
            folder.path, filesystem=folder.fs, format="parquet", partitioning="hive"
        ).to_table()


def _to_parquet(data: pa.Table, table: str, key: str, provenance: Provenance) -> bytes:
    """``data`` as Parquet bytes, marked as this project's ``table`` of slide ``key``."""
    marked = data.replace_schema_metadata(
        {
            **(data.schema.metadata or {}),
            OWNER_KEY: table.encode(),
            SLIDE_KEY: key.encode(),
            PROVENANCE_KEY: provenance.to_json().encode(),
        }
    )
    sink = io.BytesIO()
    pq.write_table(marked, sink, compression="zstd")
    return sink.getvalue()


def _provenance(metadata: Mapping[bytes, bytes] | None) -> Provenance | None:
    text = (metadata or {}).get(PROVENANCE_KEY)
    return None if text is None else Provenance.from_json(text)


def _owner(path: UPath) -> bytes | None:
    """The table mark of an existing file (None when unmarked or not a Parquet file)."""
    try:
        return (_footer(path).metadata or {}).get(OWNER_KEY)
    except (OSError, ValueError, pa.ArrowException):
        return None


def _footer(path: UPath) -> pq.FileMetaData:
    """The Parquet footer of the file at ``path``.

    Remote files cost one ranged read of their last ``FOOTER_BYTES`` (the whole file only
    when its footer is larger); the footer's offsets count from the end, so the tail alone
    parses. Local files are read in place.
    """
    if is_local(path):
        return pq.read_metadata(path.path)
    tail = path.fs.cat_file(path.path, start=-FOOTER_BYTES)
    if tail[-4:] != b"PAR1":
        raise ValueError(f"{uri_of(path)}: not a Parquet file")
    if int.from_bytes(tail[-8:-4], "little") + 8 > len(tail):
        tail = read_bytes(path)
    return pq.read_metadata(io.BytesIO(tail))
