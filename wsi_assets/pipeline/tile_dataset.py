"""``tile_dataset``: the labelled tiles of every slide, one Parquet fragment per slide,
``{output_root}/tile_dataset/slide={key}/part-0.parquet``, so the folder reads as one table
(hive layout, like every table here).

Each fragment is :func:`wsi_core.tables.tile_dataset.label_tiles` over the slide's stored
``tile_grid``, ``annotation_coverage`` and ``overlay_overlap`` (and the slide file named in
``slide_metadata``). Its provenance is the provenance ids of those four tables and the
dataset's code version (the rules and the label classes), kept in its footer like every
table's: :func:`build_tile_dataset` rebuilds only the fragments whose provenance differs,
removes those of slides that no longer have tables, and leaves alone, for now, a slide whose
tables are out of step with each other (one rebuilt, the one below it not yet).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from wsi_assets.pipeline.steps import Pipeline
from wsi_assets.pipeline.tables import Provenance
from wsi_core.tables import ANNOTATION_COVERAGE, OVERLAY_OVERLAP, SLIDE_METADATA, TILE_GRID
from wsi_core.tables.tile_dataset import SPLITS, TILE_DATASET, label_tiles, split_of

#: The stored tables a slide's fragment is made from.
FRAGMENT_INPUTS = (SLIDE_METADATA, TILE_GRID, ANNOTATION_COVERAGE, OVERLAY_OVERLAP)


@dataclass
class DatasetOutcome:
    """What one build of the dataset did: the slides in it, the fragments rebuilt, kept and
    removed, and the slides left out (key -> why)."""

    slides: list[str] = field(default_factory=list)
    rebuilt: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    waiting: dict[str, str] = field(default_factory=dict)


def fragment_provenance(pipeline: Pipeline, inputs: Mapping[str, Provenance | None]) -> Provenance:
    """The provenance of a fragment made from tables of these provenances."""
    ids = {table: "unknown" if origin is None else origin.id for table, origin in inputs.items()}
    return Provenance(TILE_DATASET, pipeline.settings.code_version(TILE_DATASET), ids)


def out_of_step(inputs: Mapping[str, Provenance | None]) -> str | None:
    """Why a slide's tables cannot be joined now (None: they can): a table stored without
    provenance, or one computed from another version of the table above it."""
    if any(origin is None for origin in inputs.values()):
        return "a table stored without provenance; rebuild its tables"
    grid, meta = inputs[TILE_GRID], inputs[SLIDE_METADATA]
    assert grid is not None and meta is not None
    if grid.inputs.get(SLIDE_METADATA) != meta.id:
        return "tile_grid is not from the stored slide_metadata (a rebuild is under way)"
    for table in (ANNOTATION_COVERAGE, OVERLAY_OVERLAP):
        origin = inputs[table]
        assert origin is not None
        if origin.inputs.get(TILE_GRID) != grid.id:
            return f"{table} is not from the stored tile_grid (a rebuild is under way)"
    return None


def build_fragment(pipeline: Pipeline, key: str, origin: Provenance) -> pa.Table:
    """Label slide ``key``'s tiles from its stored tables and store the fragment."""
    settings = pipeline.settings
    meta = pipeline.tables.read(SLIDE_METADATA, key)[0].to_pylist()[0]
    grid = pipeline.tables.read(TILE_GRID, key)[0]
    coverage = pipeline.tables.read(ANNOTATION_COVERAGE, key)[0]
    overlap = pipeline.tables.read(OVERLAY_OVERLAP, key)[0]
    classes = list(settings.label_classes)
    data = label_tiles(grid, coverage, overlap, meta["uri"], classes, settings.dataset_rules())
    pipeline.tables.write(TILE_DATASET, key, data, origin)
    return data


def build_tile_dataset(pipeline: Pipeline) -> DatasetOutcome:
    """Bring every slide's fragment up to date with its stored tables (see the module
    docstring): one listing per table, one footer read per stored table and fragment, and
    the four tables of each slide whose fragment is rebuilt."""
    store = pipeline.tables
    listings = {table: store.listing(table) for table in (*FRAGMENT_INPUTS, TILE_DATASET)}
    complete = set.intersection(*(set(listings[t]) for t in FRAGMENT_INPUTS))
    outcome = DatasetOutcome()
    for key in sorted(set().union(*(listings[t] for t in FRAGMENT_INPUTS)) - complete):
        missing = [t for t in FRAGMENT_INPUTS if key not in listings[t]]
        outcome.waiting[key] = f"not stored: {', '.join(missing)}"
    keys = sorted(complete)
    stored = {t: store.provenances(t, keys) for t in FRAGMENT_INPUTS}
    fragments = store.provenances(TILE_DATASET, [k for k in keys if k in listings[TILE_DATASET]])
    for key in keys:
        inputs = {table: stored[table][key] for table in FRAGMENT_INPUTS}
        why = out_of_step(inputs)
        if why is not None:
            outcome.waiting[key] = why
            if key in fragments:  # the last fragment stays until the tables agree again
                outcome.slides.append(key)
            continue
        outcome.slides.append(key)
        wanted = fragment_provenance(pipeline, inputs)
        held = fragments.get(key)
        if held is not None and held.id == wanted.id:
            outcome.reused.append(key)
            continue
        build_fragment(pipeline, key, wanted)
        outcome.rebuilt.append(key)
    for key in sorted(set(listings[TILE_DATASET]) - complete):
        if store.remove(TILE_DATASET, key):
            outcome.removed.append(key)
    return outcome


@dataclass(frozen=True)
class DatasetSummary:
    """Counts over the stored dataset: tiles, tiles per label and split (label "(none)" for
    null), slides per split (every slide in it, even one with no tile kept)."""

    tiles: int
    tiles_per_label_and_split: dict[str, dict[str, int]]
    slides_per_split: dict[str, int]
    #: Consistency of the stored rows: slides whose tiles are in more than one set, and
    #: ``row_hash`` values held by more than one row (both empty when the dataset is sound).
    slides_in_two_splits: list[str] = field(default_factory=list)
    repeated_row_hashes: int = 0


def summarize(pipeline: Pipeline, slides: list[str]) -> DatasetSummary:
    """The counts of the stored dataset (three columns read), for ``slides`` in it."""
    rules = pipeline.settings.dataset_rules()
    per_split = dict.fromkeys(SPLITS, 0)
    for key in slides:
        per_split[split_of(key, rules)] += 1
    folder = pipeline.tables.folder(TILE_DATASET)
    if not pipeline.tables.listing(TILE_DATASET):
        return DatasetSummary(0, {}, per_split)
    table = ds.dataset(folder.path, filesystem=folder.fs, format="parquet").to_table(
        columns=["slide_key", "label", "split", "row_hash"]
    )
    counts: dict[str, dict[str, int]] = {}
    grouped = table.group_by(["label", "split"]).aggregate([([], "count_all")])
    for row in grouped.to_pylist():
        label = "(none)" if row["label"] is None else row["label"]
        counts.setdefault(label, {})[row["split"]] = row["count_all"]
    sets = table.group_by("slide_key").aggregate([("split", "count_distinct")])
    mixed = [row["slide_key"] for row in sets.to_pylist() if row["split_count_distinct"] > 1]
    repeated = table.num_rows - pc.count_distinct(table["row_hash"]).as_py()
    return DatasetSummary(table.num_rows, counts, per_split, sorted(mixed), repeated)
