"""One local Ray for the whole test session, and a log of every slide its workers open.

``start_ray`` / ``stop_ray`` are reference-counted, so that the session fixtures of several
test modules share one ``ray.init`` (it costs seconds) and the last one shuts Ray down.

The open log is a real observable of the workers: before Ray starts, ``PYTHONPATH`` gains
this folder and ``WSI_TEST_OPEN_LOG`` names a file; every worker process runs
:func:`log_slide_opens` at start-up (Ray's ``worker_process_setup_hook``), which wraps
``wsi_core.slide.open_slide`` so that each call appends ``pid<TAB>path`` to the file. The
kernels look ``open_slide`` up on that module at every call, so every open is logged.
"""

from __future__ import annotations

import functools
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

OPEN_LOG_VARIABLE = "WSI_TEST_OPEN_LOG"
HERE = Path(__file__).resolve().parent


class _Session:
    """Who holds the session's Ray, its open log, and the environment it replaced."""

    users = 0
    log: OpenLog | None = None
    saved_environment: dict[str, str | None] = {}  # noqa: RUF012 - one per process


class OpenLog:
    """The slide opens the workers logged, read back by path."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def entries(self) -> list[tuple[int, str]]:
        """``(pid, path)`` per open, in the order they were logged."""
        if not self.path.exists():
            return []
        entries = []
        for line in self.path.read_text().splitlines():
            pid, _, opened = line.partition("\t")
            entries.append((int(pid), opened))
        return entries

    def opens(self, *paths: str | os.PathLike[str]) -> dict[str, int]:
        """How often each of ``paths`` was opened, by path."""
        wanted = {os.fspath(p): 0 for p in paths}
        for _, opened in self.entries():
            if opened in wanted:
                wanted[opened] += 1
        return wanted


def log_slide_opens() -> None:
    """Ray worker set-up: log every ``wsi_core.slide.open_slide`` call of this process."""
    log = os.environ.get(OPEN_LOG_VARIABLE)
    if not log:
        return
    import wsi_core.slide

    original = wsi_core.slide.open_slide
    if getattr(original, "logs_opens", False):
        return

    @functools.wraps(original)
    def logged(path: Any, *args: Any, **kwargs: Any) -> Any:
        # One short write per open with O_APPEND: lines of concurrent workers do not mix.
        with open(log, "a") as handle:
            handle.write(f"{os.getpid()}\t{os.fspath(path)}\n")
        return original(path, *args, **kwargs)

    logged.logs_opens = True  # type: ignore[attr-defined]
    wsi_core.slide.open_slide = logged


def start_ray(scratch: Path) -> OpenLog:
    """Start the session's local Ray (2 CPUs, no dashboard, no usage stats) unless a caller
    already did; ``scratch`` holds the open log."""
    if _Session.users == 0:
        import ray
        import ray.data

        if ray.is_initialized():
            raise RuntimeError("Ray was started outside tests/ray_support.py")
        log = OpenLog(scratch / "slide-opens.log")
        environment = {
            "RAY_USAGE_STATS_ENABLED": "0",
            OPEN_LOG_VARIABLE: str(log.path),
            # So that worker processes can import this module for the set-up hook.
            "PYTHONPATH": os.pathsep.join(
                part for part in (str(HERE), os.environ.get("PYTHONPATH")) if part
            ),
        }
        for name, value in environment.items():
            _Session.saved_environment[name] = os.environ.get(name)
            os.environ[name] = value
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            logging_level="WARNING",
            object_store_memory=1024**3,
            runtime_env={"worker_process_setup_hook": "ray_support.log_slide_opens"},
        )
        with warnings.catch_warnings():
            # Ray's own DataContext sets its deprecated fields while it is created.
            warnings.simplefilter("ignore", DeprecationWarning)
            context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        _Session.log = log
    _Session.users += 1
    assert _Session.log is not None
    return _Session.log


def stop_ray() -> None:
    """Release the caller's share; the last one shuts Ray down and restores the environment."""
    _Session.users -= 1
    if _Session.users:
        return
    import ray

    ray.shutdown()
    for name, value in _Session.saved_environment.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    _Session.saved_environment.clear()
    _Session.log = None


# Comparing Ray's rows with the in-process kernels -------------------------------------------


def by_tile(rows: list[dict]) -> dict[tuple, dict]:
    """Rows keyed by (path, tile_x, tile_y); every key appears once."""
    keyed = {(r["path"], r["tile_x"], r["tile_y"]): r for r in rows}
    assert len(keyed) == len(rows)
    return keyed


def in_process(
    rows: list[dict], kernel, overlay_column: str = "overlay_path", **kwargs
) -> dict[tuple, object]:
    """``kernel`` on plain values, one call per overlay file (named in ``overlay_column``),
    keyed like :func:`by_tile`."""
    out: dict[tuple, object] = {}
    for overlay in sorted({r[overlay_column] for r in rows}):
        group = [r for r in rows if r[overlay_column] == overlay]
        results = kernel(
            overlay_path=overlay,
            tile_x=np.array([r["tile_x"] for r in group]),
            tile_y=np.array([r["tile_y"] for r in group]),
            mpp_x=group[0]["mpp_x"],
            mpp_y=group[0]["mpp_y"],
            **kwargs,
        )
        out.update(zip(by_tile(group), results, strict=True))
    return out


def assert_same_fractions(got: dict | None, want: dict | None) -> None:
    """Ray's row equals the kernel's exactly: same non-zero fractions, every key a float
    (0.0 for a value the tile lacks), or both null."""
    if want is None:
        assert got is None
        return
    assert got is not None and all(isinstance(v, float) for v in got.values()), got
    assert {k: v for k, v in got.items() if v} == {k: v for k, v in want.items() if v}
