"""A small cache of what was parsed from local files, valid while a file is unchanged.

An entry is keyed by the file's path and kept with its :class:`FileSignature` (device, inode,
size, modification and change times, in nanoseconds, from ``os.stat``); a look-up whose
signature differs finds nothing, so a file rewritten, replaced or touched is parsed anew.

Timestamps have a granularity (a clock tick, up to two seconds on FAT), so a file written
twice within one tick may keep its times. An entry is therefore only stored for a file whose
modification and change times are both at least :data:`SETTLED_NS` in the past: any later
write then stamps a time the entry does not have. (Git's index guards its "racily clean"
entries the same way.) A file whose times lie in the future is not cached either.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from typing import Generic, NamedTuple, TypeVar

#: How old (nanoseconds) a file's modification and change times must be before what was
#: parsed from it is cached: any filesystem's timestamp granularity (FAT's 2 s, the coarsest).
SETTLED_NS = 2_000_000_000

Value = TypeVar("Value")


class FileSignature(NamedTuple):
    """What ``os.stat`` says of a file that a rewrite would change (times in nanoseconds)."""

    device: int
    inode: int
    size: int  # bytes
    modified_ns: int
    changed_ns: int

    @classmethod
    def of(cls, status: os.stat_result) -> FileSignature:
        """The signature in a ``stat`` result."""
        return cls(
            status.st_dev,
            status.st_ino,
            status.st_size,
            status.st_mtime_ns,
            status.st_ctime_ns,
        )

    def settled(self, now_ns: int) -> bool:
        """Whether both times are at least :data:`SETTLED_NS` before ``now_ns`` (wall-clock
        nanoseconds), so that no later write can stamp the same ones."""
        return now_ns - max(self.modified_ns, self.changed_ns) >= SETTLED_NS


class FileCache(Generic[Value]):
    """At most ``size`` values parsed from local files, by path, least recently used dropped
    first; each is returned only while its file's signature is the one it was parsed at.
    Safe to share between threads."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[str, tuple[FileSignature, Value]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: str, signature: FileSignature) -> Value | None:
        """The value parsed from ``path`` when it had ``signature`` (its current one), or
        None."""
        with self._lock:
            entry = self._entries.get(path)
            if entry is None or entry[0] != signature:
                return None
            self._entries.move_to_end(path)
            return entry[1]

    def put(self, path: str, signature: FileSignature, value: Value) -> None:
        """Keep ``value``, parsed from ``path`` whose signature was ``signature`` before the
        parse began, if the file still has that signature (it did not change during the
        parse) and its times have settled; otherwise forget any entry of ``path``."""
        try:
            now = FileSignature.of(os.stat(path))
        except OSError:
            now = None
        with self._lock:
            self._entries.pop(path, None)
            if now != signature or not signature.settled(time.time_ns()):
                return
            self._entries[path] = (signature, value)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        """Forget every entry."""
        with self._lock:
            self._entries.clear()
