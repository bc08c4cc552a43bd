"""One slide on its own, without a slide root to scan: what the command line works on.

The slide's own folder is the slide root, so the slide's key, relative path, companion files
and tables are exactly what the engines give the same file in a root of its own; an
annotation or overlay file named explicitly becomes the one template of its kind (an
absolute path or URL, so it may live anywhere). Tables are built through the same
:class:`~wsi_assets.pipeline.steps.Pipeline` steps and decided by the same
:mod:`~wsi_assets.pipeline.plans`: a table that is stored and current is not built again.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from wsi_assets.pipeline.errors import InputFileError, MissingTableError
from wsi_assets.pipeline.locations import uri_of
from wsi_assets.pipeline.plans import CURRENT, SlidePlan, plan
from wsi_assets.pipeline.settings import Settings
from wsi_assets.pipeline.slides import ANNOTATION, OVERLAY, SLIDE, Slide, SlideFiles
from wsi_assets.pipeline.steps import Pipeline
from wsi_assets.pipeline.tables import Provenance
from wsi_core.progress import Progress
from wsi_core.remote import is_url
from wsi_core.tables import TABLES
from wsi_core.tables.schemas import UPSTREAM


def absolute_file(path: str) -> str:
    """``path`` made absolute against the working directory (URLs are kept as they are)."""
    if is_url(path):
        return path
    return os.path.abspath(os.path.expanduser(path))


def _as_template(path: str) -> str:
    """An explicit file as a template that yields exactly that file (braces escaped)."""
    return absolute_file(path).replace("{", "{{").replace("}", "}}")


def single_slide_settings(
    slide: str,
    *,
    output_root: str | None = None,
    annotation: str | None = None,
    overlay: str | None = None,
    **fields: Any,
) -> Settings:
    """Settings for the one slide at ``slide``: its folder as the slide root, ``output_root``
    for the tables (None: the setting's own), ``annotation`` / ``overlay`` (when given) as
    the only place to look for that file, and ``fields`` (other :class:`Settings` fields)
    over the ``WSI_*`` environment and the defaults. Raises ``SettingsError`` naming each
    bad value."""
    folder = absolute_file(slide).rstrip("/").rpartition("/")[0] or "/"
    values: dict[str, Any] = {"slide_root": folder, **fields}
    if output_root is not None:
        values["output_root"] = output_root
    if annotation is not None:
        values["annotation_templates"] = [_as_template(annotation)]
    if overlay is not None:
        values["overlay_templates"] = [_as_template(overlay)]
    return Settings.load(**values)


@dataclass(frozen=True)
class TableOutcome:
    """One table of the slide after :meth:`SingleSlide.build`: where it is, how many rows it
    has, whether it was built now (else it was stored and current) and why, and the warnings
    of the build."""

    table: str
    uri: str
    rows: int
    built: bool
    reason: str
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SingleSlide:
    """One slide file, the pipeline over its settings, and which companion files were named
    explicitly (kind -> absolute path or URL): those must exist."""

    pipeline: Pipeline
    slide: Slide
    explicit: dict[str, str] = field(default_factory=dict)

    @classmethod
    def open(
        cls,
        slide: str,
        *,
        output_root: str | None = None,
        annotation: str | None = None,
        overlay: str | None = None,
        **fields: Any,
    ) -> SingleSlide:
        """The slide at ``slide`` with settings from :func:`single_slide_settings`."""
        settings = single_slide_settings(
            slide, output_root=output_root, annotation=annotation, overlay=overlay, **fields
        )
        pipeline = Pipeline(settings)
        name = absolute_file(slide).rstrip("/").rpartition("/")[2]
        explicit = {
            kind: absolute_file(path)
            for kind, path in ((ANNOTATION, annotation), (OVERLAY, overlay))
            if path is not None
        }
        return cls(pipeline, pipeline.slides.slide(name), explicit)

    @property
    def settings(self) -> Settings:
        return self.pipeline.settings

    @property
    def key(self) -> str:
        """The slide's partition key (the same as in a slide root of its own)."""
        return self.slide.key

    def files(self) -> SlideFiles:
        """The slide's files as they are now. Raises :class:`InputFileError` naming the slide
        when it does not exist, or an explicitly named annotation or overlay that does not."""
        files = self.pipeline.slides.files(self.slide)
        if files.files[SLIDE] is None:
            raise InputFileError(self.slide.uri, "slide file not found")
        for kind, path in self.explicit.items():
            if files.files[kind] is None:
                raise InputFileError(path, f"{kind} file not found")
        return files

    def plan(self, files: SlideFiles | None = None) -> SlidePlan:
        """Which of the slide's tables in the output root are missing or out of date."""
        found = files or self.files()
        return plan(self.pipeline, [self.slide], files={self.key: found})[0]

    def build(
        self,
        tables: Collection[str] = TABLES,
        *,
        force: bool = False,
        progress: Callable[[str], Progress | None] | None = None,
    ) -> list[TableOutcome]:
        """Make ``tables`` (and the tables above them) current in the output root, upstream
        first: build those missing or out of date (all of them with ``force``), keep the
        others. One outcome per table, in pipeline order. ``progress(table)`` gives the
        ``(done, total)`` tile callback of each table built (see :mod:`wsi_core.progress`)."""
        files = self.files()
        slide_plan = self.plan(files)
        wanted = _with_upstream(tables)
        outcomes = []
        for table in (t for t in TABLES if t in wanted):
            state = slide_plan.states[table]
            if state.state == CURRENT and not force:
                outcomes.append(self._kept(table))
                continue
            report = None if progress is None else progress(table)
            built = self.pipeline.build(table, self.key, files, report)
            reason = "rebuilt on request" if state.state == CURRENT else state.reason
            warnings = list(built.facts.get("warnings") or [])
            outcomes.append(
                TableOutcome(table, built.stored.uri, built.data.num_rows, True, reason, warnings)
            )
        return outcomes

    def _kept(self, table: str) -> TableOutcome:
        path = self.pipeline.tables.path(table, self.key)
        rows = pq.read_metadata(path.path, filesystem=path.fs).num_rows
        return TableOutcome(table, uri_of(path), rows, False, "current")

    def picture(self, table: str) -> bytes:
        """The PNG of ``table`` that the pipeline stores beside it (what the Dagster UI shows),
        after making the table current; a table stored before pictures were is rebuilt."""
        self.build([table])
        stored = self.pipeline.pictures.read(table, self.key)
        if stored is None:
            self.pipeline.build(table, self.key, self.files())
            stored = self.pipeline.pictures.read(table, self.key)
        if stored is None:  # the step writes the picture before its table: never expected
            raise MissingTableError(
                uri_of(self.pipeline.pictures.path(table, self.key)), "no picture was stored"
            )
        return stored

    def table(self, table: str) -> tuple[pa.Table, Provenance | None]:
        """The slide's stored ``table`` and its provenance (``MissingTableError`` if absent)."""
        return self.pipeline.tables.read(table, self.key)


def _with_upstream(tables: Collection[str]) -> set[str]:
    """``tables`` and every table they are computed from."""
    wanted = set(tables)
    for table in list(wanted):
        parent = UPSTREAM[table]
        while parent is not None:
            wanted.add(parent)
            parent = UPSTREAM[parent]
    return wanted
