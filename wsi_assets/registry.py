"""Partition key -> slide URI, kept in ``{output_root}/_registry/slides.json``.

Assets resolve their slide through this file, never through run tags, so runs launched from
the UI or by a backfill (which carry no tags of ours) work the same as sensor runs. The file
is small JSON, rewritten atomically (temp file then rename; one PUT on S3), and lives beside
the tables it describes, so it survives restarts and travels with the output. The leading
``_`` keeps it out of ``pyarrow.dataset`` / duckdb scans of the output root.

Writers are the slide sensor and ``wsi_assets.run_demo`` (one at a time); a save re-reads
the file and merges, so two writers lose nothing unless they race within milliseconds.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

from . import storage
from .partitions import assign_keys

REGISTRY_FOLDER = "_registry"
REGISTRY_FILE = "slides.json"
FORMAT_VERSION = 1


class UnknownSlideError(KeyError):
    """A partition key that the registry does not know."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message readable
        return str(self.args[0]) if self.args else "unknown slide"


@dataclass(frozen=True)
class SlideEntry:
    """One registered slide: its URI, its path relative to the slide root, when it was added."""

    uri: str
    relpath: str
    added: str


class SlideRegistry:
    """The key -> slide mapping stored under ``output_root``."""

    def __init__(self, output_root: str) -> None:
        self.output_root = output_root
        self.uri = storage.join(output_root, REGISTRY_FOLDER, REGISTRY_FILE)

    def load(self) -> dict[str, SlideEntry]:
        """All entries (empty when the file does not exist yet)."""
        if not storage.exists(self.uri):
            return {}
        document = json.loads(storage.read_bytes(self.uri))
        return {key: SlideEntry(**entry) for key, entry in document.get("slides", {}).items()}

    def resolve(self, key: str) -> SlideEntry:
        """The entry of ``key``; ``UnknownSlideError`` with a readable message otherwise."""
        entry = self.load().get(key)
        if entry is None:
            raise UnknownSlideError(
                f"slide partition {key!r} is not in the registry {self.uri}; "
                "let the slide sensor (or `python -m wsi_assets.run_demo`) register it first"
            )
        return entry

    def register(self, relpaths_by_uri: Mapping[str, str]) -> dict[str, str]:
        """Keys for the given slides (URI -> relative path), adding the new ones to the file.

        Returns URI -> key for every slide given. Known URIs keep their keys.
        """
        entries = self.load()
        key_by_uri = {entry.uri: key for key, entry in entries.items()}
        new = {uri: rel for uri, rel in relpaths_by_uri.items() if uri not in key_by_uri}
        if new:
            keys = assign_keys(new.values(), taken=entries.keys())
            stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
            added = {keys[rel]: SlideEntry(uri, rel, stamp) for uri, rel in new.items()}
            self._save(added)
            key_by_uri.update({entry.uri: key for key, entry in added.items()})
        return {uri: key_by_uri[uri] for uri in relpaths_by_uri}

    def _save(self, added: Mapping[str, SlideEntry]) -> None:
        """Merge ``added`` into the file as it is now and rewrite it atomically."""
        current = self.load()
        current.update({key: entry for key, entry in added.items() if key not in current})
        document = {
            "format_version": FORMAT_VERSION,
            "slides": {key: asdict(current[key]) for key in sorted(current)},
        }
        data = json.dumps(document, indent=1, sort_keys=True).encode()
        storage.write_bytes_atomic(self.uri, data)
