"""Progress of a long per-slide step, reported as "tiles done of total".

A :data:`Progress` callback takes ``(done, total)`` tile counts. Kernels and builders that
loop over tiles in chunks call it after chunks (through :class:`Throttled`, so a slide with a
million tiles reports a few dozen times, not per tile or per read), with counts that never
decrease and end at ``(total, total)``. An engine turns it into log lines with
:func:`progress_logger`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

#: ``progress(done, total)``: tiles done so far of the slide's ``total``.
Progress = Callable[[int, int], None]

#: Report at least every this many tiles ...
EVERY_TILES = 50_000
#: ... or this many seconds, whichever comes first (checked after each chunk).
EVERY_SECONDS = 5.0


class Throttled:
    """Passes ``(done, total)`` on to ``progress`` when ``every_tiles`` more tiles are done,
    ``every_seconds`` have passed since the last report, or the step is finished; the first
    report is ``(0, total)`` and the last ``(total, total)``. ``progress=None`` does nothing.
    The defaults are ``EVERY_TILES`` and ``EVERY_SECONDS``."""

    def __init__(
        self,
        progress: Progress | None,
        total: int,
        every_tiles: int | None = None,
        every_seconds: float | None = None,
    ) -> None:
        self.progress, self.total = progress, int(total)
        self.every_tiles = EVERY_TILES if every_tiles is None else every_tiles
        self.every_seconds = EVERY_SECONDS if every_seconds is None else every_seconds
        self.done = self.reported = 0
        self.last = time.monotonic()
        if progress is not None:
            progress(0, self.total)

    def add(self, tiles: int) -> None:
        """Count ``tiles`` more tiles as done, and report if it is time."""
        self.done = min(self.total, self.done + int(tiles))
        if self.progress is None or self.done == self.reported:
            return
        now = time.monotonic()
        finished = self.done == self.total
        if (
            finished
            or self.done - self.reported >= self.every_tiles
            or (now - self.last >= self.every_seconds)
        ):
            self.progress(self.done, self.total)
            self.reported, self.last = self.done, now

    def finish(self) -> None:
        """Report ``(total, total)`` if that has not been reported yet."""
        self.add(self.total - self.done)


def progress_logger(log: Callable[[str], object], what: str) -> Progress:
    """A :data:`Progress` that writes ``"<what>: 12,000 of 48,000 tiles (25 %)"`` with ``log``
    (``context.log.info``, ``logging.Logger.info``, ``print``)."""

    def report(done: int, total: int) -> None:
        share = 100.0 * done / total if total else 100.0
        log(f"{what}: {done:,} of {total:,} tiles ({share:.0f} %)")

    return report
