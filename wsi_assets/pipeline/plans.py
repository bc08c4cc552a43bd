"""Which tables of which slides are missing or out of date, and why: decided from the tables
in the current output root and the files under the slide root, by any engine.

A stored table is current when the provenance in its Parquet footer equals the provenance it
would get if it were built now: the same code version (code revision and the settings the
table depends on), the same data version of the input file it reads, and an upstream table
that is itself current. Provenance ids chain from ``slide_metadata`` down, so a changed slide
file makes all four tables and the tissue mask out of date, a changed annotation only
``annotation_coverage``, a
new tile size ``tile_grid`` and both tables below it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from wsi_assets.pipeline.locations import Info, list_files
from wsi_assets.pipeline.outputs import PARENT, SLIDE_OUTPUTS
from wsi_assets.pipeline.slides import OVERLAY, SLIDE, Slide, SlideFiles
from wsi_assets.pipeline.steps import SOURCE_OF, Pipeline, provenance
from wsi_assets.pipeline.tables import READERS, Provenance
from wsi_assets.pipeline.tissue_masks import MASK_FILE
from wsi_core.tables import OVERLAY_OVERLAP, TABLES
from wsi_core.tables.schemas import UPSTREAM
from wsi_core.tissue import TISSUE_MASK

CURRENT = "current"
MISSING = "missing"
OUT_OF_DATE = "out of date"


@dataclass(frozen=True)
class TableState:
    """One stored table of one slide: ``current``, ``missing`` or ``out of date``, and why."""

    table: str
    state: str
    reason: str = ""
    #: The inputs (file kinds or upstream tables) whose versions differ from those the
    #: stored table was built from.
    changed: tuple[str, ...] = ()


@dataclass(frozen=True)
class SlidePlan:
    """What to build for one slide (tables upstream first) and why."""

    slide: Slide
    states: Mapping[str, TableState] = field(default_factory=dict)
    slide_file_missing: bool = False
    #: The slide's input files as found when the plan was made.
    files: SlideFiles | None = None

    @property
    def todo(self) -> list[str]:
        """The tables to build, upstream first (empty when all are current or the slide
        file is gone)."""
        if self.slide_file_missing:
            return []
        return [table for table in SLIDE_OUTPUTS if self.states[table].state != CURRENT]

    def reasons(self) -> dict[str, str]:
        """Table -> why it must be built, for the tables in :attr:`todo`."""
        return {table: self.states[table].reason for table in self.todo}

    def changed_files(self) -> set[str]:
        """The kinds of input file (slide, annotation, overlay) that changed since stored
        tables were built from them."""
        return {
            name for state in self.states.values() for name in state.changed if name not in PARENT
        }


def expected(pipeline: Pipeline, files: SlideFiles) -> dict[str, Provenance]:
    """The provenance each output of the slide would get if it were built now (a slide
    without an overlay file: ``overlay_overlap`` from the tissue mask built now)."""
    result: dict[str, Provenance] = {}
    for table in SLIDE_OUTPUTS:  # upstream first
        parent = PARENT[table]
        source = SOURCE_OF.get(table)
        reads_mask = table == OVERLAY_OVERLAP and files.files.get(OVERLAY) is None
        result[table] = provenance(
            pipeline.settings,
            table,
            None if source is None else files.version(source),
            None if parent is None else result[parent].id,
            result[TISSUE_MASK].id if reads_mask else None,
        )
    return result


def compare(table: str, stored: Provenance | None, wanted: Provenance) -> TableState:
    """The state of a stored table (None: stored without provenance) against ``wanted``."""
    if stored is None:
        return TableState(table, OUT_OF_DATE, "stored without provenance (an older version)")
    if stored.id == wanted.id:
        return TableState(table, CURRENT)
    changed = tuple(
        sorted(
            name
            for name in {*stored.inputs, *wanted.inputs}
            if stored.inputs.get(name) != wanted.inputs.get(name)
        )
    )
    if stored.code_version != wanted.code_version:
        reason = "settings or code changed (code version "
        reason += f"{stored.code_version} -> {wanted.code_version})"
    else:
        names = (
            f"{name} table" if name in UPSTREAM else name if name in PARENT else f"{name} file"
            for name in changed
        )
        reason = ", ".join(names) + " changed"
    return TableState(table, OUT_OF_DATE, reason, changed)


def plan(
    pipeline: Pipeline,
    slides: Sequence[Slide],
    slide_listing: Mapping[str, Info] | None = None,
    *,
    files: Mapping[str, SlideFiles] | None = None,
) -> list[SlidePlan]:
    """The plan of each of ``slides``.

    ``slide_listing`` (from ``SlideStore.listing``) or ``files`` (slide key -> its files)
    save finding the slides' files again when the caller has them. The output root costs
    one listing per table, and each stored table of ``slides`` one footer read (several at
    once).
    """
    listings = {t: pipeline.tables.listing(t) for t in TABLES}
    listings[TISSUE_MASK] = _mask_listing(pipeline)
    found = files or {}
    files_of = [found.get(s.key) or pipeline.slides.files(s, slide_listing) for s in slides]
    stored = _stored_provenances(pipeline, [slide.key for slide in slides], listings)
    plans = []
    for slide_files in files_of:
        key = slide_files.slide.key
        if slide_files.files[SLIDE] is None:
            plans.append(SlidePlan(slide_files.slide, slide_file_missing=True, files=slide_files))
            continue
        wanted = expected(pipeline, slide_files)
        states = {
            table: compare(table, stored[table][key], wanted[table])
            if key in stored[table]
            else TableState(table, MISSING, "not stored in the output root")
            for table in SLIDE_OUTPUTS
        }
        plans.append(SlidePlan(slide_files.slide, states, files=slide_files))
    return plans


def _stored_provenances(
    pipeline: Pipeline, keys: Iterable[str], listings: Mapping[str, Mapping[str, Info]]
) -> dict[str, dict[str, Provenance | None]]:
    """Table -> slide key -> provenance of the stored tables among ``keys``."""
    wanted = list(keys)
    found = {
        table: pipeline.tables.provenances(table, [k for k in wanted if k in listings[table]])
        for table in TABLES
    }
    masks = [k for k in wanted if k in listings[TISSUE_MASK]]
    with ThreadPoolExecutor(READERS) as pool:  # one header read each
        found[TISSUE_MASK] = dict(
            zip(masks, pool.map(pipeline.masks.provenance, masks), strict=True)
        )
    return found


def _mask_listing(pipeline: Pipeline) -> dict[str, Info]:
    """Slide key -> fsspec info of every stored tissue mask (one recursive listing)."""
    found = {}
    for uri, info in list_files(pipeline.tables.folder(TISSUE_MASK)).items():
        parts = uri.rstrip("/").split("/")
        if parts[-1] == MASK_FILE and parts[-2].startswith("slide="):
            found[parts[-2].removeprefix("slide=")] = info
    return found
