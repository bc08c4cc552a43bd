"""Building the tables of one slide, and of many slides at once on Ray Data.

:func:`build_slide` is the unit every engine runs: the chosen tables of one slide, upstream
first, each through :meth:`~wsi_assets.pipeline.steps.Pipeline.build`. A table whose input
cannot be used fails alone: the tables that do not depend on it are still built, those below
it are skipped (they would otherwise read the last stored upstream table, which may no longer
match the slide). The Dagster assets call it in-process for one slide; :func:`build_on_ray`
runs it for many slides in parallel on Ray Data (a local Ray, or the cluster at
``RAY_ADDRESS``) and streams back one :class:`SlideOutcome` per slide as each finishes, so one
bad slide costs only its own tables.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from wsi_assets.pipeline.outputs import SLIDE_OUTPUTS, parents
from wsi_assets.pipeline.settings import Settings
from wsi_assets.pipeline.slides import OVERLAY, SlideFiles
from wsi_assets.pipeline.steps import SOURCE_OF, Built, Pipeline
from wsi_core.errors import WSIError
from wsi_core.progress import Progress

#: Storage errors are retried this many times inside a Ray task, with delays of
#: ``RETRY_DELAY * 2**attempt`` seconds (the same policy as the Dagster step retries).
STORAGE_RETRIES = 2
RETRY_DELAY = 2.0


@dataclass(frozen=True)
class TableFailure:
    """Why one table of one slide was not built, in plain values (it crosses processes).

    ``storage`` is True for a storage error (``OSError``): worth retrying. Otherwise the
    input file cannot be used (``file`` names it) or the code failed (``kind`` says how)."""

    table: str
    message: str
    kind: str
    file: str | None = None
    problem: str | None = None
    storage: bool = False

    @classmethod
    def of(cls, table: str, key: str, error: Exception) -> TableFailure:
        """The failure of ``table`` of slide ``key`` that raised ``error``."""
        if isinstance(error, WSIError):
            return cls(table, str(error), type(error).__name__, error.path, error.problem)
        storage = isinstance(error, OSError)
        message = f"{table} of {key}: {type(error).__name__}: {error}"
        return cls(table, message, type(error).__name__, storage=storage)


@dataclass
class SlideOutcome:
    """What building some tables of one slide gave: the tables built (upstream first), the
    failures, the tables skipped because a table above them failed (table -> that table),
    the input files read, and the Ray node that did the work ("" in-process)."""

    key: str
    built: list[Built] = field(default_factory=list)
    failed: list[TableFailure] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    files: SlideFiles | None = None
    node: str = ""

    @property
    def ok(self) -> bool:
        return not self.failed and not self.skipped


def in_build_order(tables: Sequence[str]) -> list[str]:
    """``tables`` (tables and the tissue mask) sorted upstream first (the order of
    :data:`~wsi_assets.pipeline.outputs.SLIDE_OUTPUTS`)."""
    unknown = set(tables) - set(SLIDE_OUTPUTS)
    if unknown:
        raise ValueError(f"unknown tables: {sorted(unknown)}")
    return [table for table in SLIDE_OUTPUTS if table in tables]


def _blocked_by(table: str, outcome: SlideOutcome) -> str | None:
    """An output above ``table`` that failed or was skipped in ``outcome``, if any (the
    tissue mask is above ``overlay_overlap`` only for a slide without an overlay file)."""
    has_overlay = outcome.files is not None and outcome.files.files.get(OVERLAY) is not None
    for parent in parents(table, has_overlay):
        if parent in outcome.skipped or any(f.table == parent for f in outcome.failed):
            return parent
        above = _blocked_by(parent, outcome)
        if above is not None:
            return above
    return None


def _with_retries(
    pipeline: Pipeline, table: str, key: str, files: Any, retries: int, progress: Progress | None
) -> Built:
    for attempt in range(retries + 1):
        try:
            return pipeline.build(table, key, files, progress)
        except OSError:
            if attempt == retries:
                raise
            time.sleep(RETRY_DELAY * 2**attempt)
    raise AssertionError("unreachable")


def build_slide(
    settings: Settings,
    key: str,
    tables: Sequence[str],
    *,
    storage_retries: int = 0,
    progress: Callable[[str], Progress | None] | None = None,
) -> SlideOutcome:
    """Build ``tables`` of slide ``key`` (upstream first) and say what happened to each.

    Never raises for a table's own failure: it is recorded in the outcome, and the tables
    below it are skipped. ``storage_retries`` retries storage errors in place (engines that
    retry a whole step themselves, like Dagster's retry policy, pass 0). ``progress(table)``
    gives the tile-progress callback of a table's long step, if any."""
    pipeline = Pipeline(settings)
    outcome = SlideOutcome(key)
    order = in_build_order(tables)
    try:
        if any(table in SOURCE_OF for table in order):
            outcome.files = pipeline.inputs(key)
    except Exception as error:  # the slide itself cannot be found: every table fails with it
        outcome.failed = [TableFailure.of(table, key, error) for table in order]
        return outcome
    for table in order:
        blocker = _blocked_by(table, outcome)
        if blocker is not None:
            outcome.skipped[table] = blocker
            continue
        files = outcome.files if table in SOURCE_OF else None
        heard = None if progress is None else progress(table)
        try:
            built = _with_retries(pipeline, table, key, files, storage_retries, heard)
            outcome.built.append(built)
        except Exception as error:
            outcome.failed.append(TableFailure.of(table, key, error))
    return outcome


def _ray_row(row: dict[str, Any], settings: Settings, tables: list[str]) -> dict[str, Any]:
    """One slide on a Ray worker; the outcome travels back pickled (tables, facts, files)."""
    import ray

    outcome = build_slide(settings, row["key"], tables, storage_retries=STORAGE_RETRIES)
    outcome.node = ray.get_runtime_context().get_node_id()
    return {"key": row["key"], "outcome": pickle.dumps(outcome, protocol=5)}


def build_on_ray(
    settings: Settings, keys: Sequence[str], tables: Sequence[str]
) -> Iterator[SlideOutcome]:
    """Build ``tables`` of every slide in ``keys`` on Ray Data, one task per slide (one CPU
    each), and yield each slide's outcome as it finishes (not in ``keys`` order).

    Ray must be initialised by the caller (the engine decides between a local Ray and a
    cluster). Tables are written by the workers through the same stores as in-process, so
    a worker on another machine needs the output root to be shared storage (``s3://`` or a
    shared file system)."""
    import ray.data

    order = in_build_order(tables)
    items = [{"key": key} for key in keys]
    work = partial(_ray_row, settings=settings, tables=order)
    dataset = ray.data.from_items(items, override_num_blocks=max(1, len(items)))
    for row in dataset.map(work, num_cpus=1).iter_rows():
        yield pickle.loads(row["outcome"])
