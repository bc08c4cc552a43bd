"""The labelled tiles of one slide: its per-slide tables joined, filtered and labelled by
:class:`DatasetRules`, with a train / validation / test split of the whole slide.

A tile is kept when its ``tissue_fraction`` (``overlay_overlap``) is at least
``min_tissue_fraction``. Its ``label`` is the class whose coverage is highest among the
classes that reach their threshold (``thresholds``, else ``default_threshold``; ties go to the
class configured first), else ``unlabelled`` (dropped when that is None). Tiles of a slide
without an annotation file (coverage null) are not labelled as anything: they get a null
label and are kept only with ``keep_unannotated``.

The split is a function of the slide's key and the rules alone (a SHA-256 of seed and key,
read as a number in [0, 1), against the cumulative fractions), so a slide never changes set
when other slides come or go and every tile of a slide is in the same set. With few slides
the sets' sizes follow the fractions only roughly (each slide is one draw).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from wsi_core.tables.schemas import coverage_column
from wsi_core.tiling.utils import row_hash

TILE_DATASET = "tile_dataset"
SPLITS = ("train", "validation", "test")
#: The tile columns that identify a tile (its ``row_hash`` is computed from these alone, so a
#: tile keeps its id when its label or coverage changes).
IDENTITY = ("slide_key", "level", "tile_x", "tile_y", "tile_extent_x", "tile_extent_y")


@dataclass(frozen=True)
class DatasetRules:
    """Which tiles are kept and how they are labelled and split.

    * ``min_tissue_fraction``: a tile is kept when at least this fraction (0-1) of it is
      tissue; 0 keeps every tile, even one without overlay pixels.
    * ``thresholds``: class -> coverage (0-1) a tile needs to be labelled that class;
      classes not listed need ``default_threshold``.
    * ``unlabelled``: label of kept tiles that reach no threshold; None drops them.
    * ``keep_unannotated``: keep the tiles of slides without an annotation file (label null).
    * ``split``: fraction of slides (expected) per set, ``train``, ``validation``, ``test``;
      they must sum to 1.
    * ``seed``: changes every slide's draw.
    """

    min_tissue_fraction: float = 0.5
    thresholds: Mapping[str, float] = field(default_factory=dict)
    default_threshold: float = 0.5
    unlabelled: str | None = "background"
    keep_unannotated: bool = False
    split: Mapping[str, float] = field(
        default_factory=lambda: {"train": 0.7, "validation": 0.15, "test": 0.15}
    )
    seed: int = 0

    def __post_init__(self) -> None:
        for name, value in [
            ("min_tissue_fraction", self.min_tissue_fraction),
            ("default_threshold", self.default_threshold),
            *((f"thresholds[{k!r}]", v) for k, v in self.thresholds.items()),
        ]:
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must be in [0, 1], not {value!r}")
        if set(self.split) != set(SPLITS) or any(v < 0 for v in self.split.values()):
            raise ValueError(
                f"split must give {list(SPLITS)} a fraction >= 0 each, not {self.split}"
            )
        if not math.isclose(sum(self.split.values()), 1.0, abs_tol=1e-9):
            raise ValueError(f"split fractions must sum to 1, not {sum(self.split.values())}")

    def threshold(self, name: str) -> float:
        return self.thresholds.get(name, self.default_threshold)


def split_of(slide_key: str, rules: DatasetRules) -> str:
    """The set of slide ``slide_key``: ``train``, ``validation`` or ``test``."""
    digest = hashlib.sha256(f"{rules.seed}\n{slide_key}".encode()).digest()
    draw = int.from_bytes(digest[:8], "big") / 2**64  # uniform in [0, 1)
    bound = 0.0
    for name in SPLITS:
        bound += rules.split[name]
        if draw < bound:
            return name
    return SPLITS[-1]  # rounding of the fractions' sum


def dataset_schema(classes: Sequence[str]) -> pa.Schema:
    """Columns of the tile dataset (coordinates in pixels of the tiled level unless they say
    level 0; coverage and tissue fractions in [0, 1])."""
    return pa.schema(
        [
            ("slide_key", pa.string()),
            ("path", pa.string()),
            ("level", pa.int32()),
            ("tile_x", pa.int64()),
            ("tile_y", pa.int64()),
            ("tile_extent_x", pa.int64()),
            ("tile_extent_y", pa.int64()),
            ("x0", pa.int64()),
            ("y0", pa.int64()),
            ("extent0_x", pa.int64()),
            ("extent0_y", pa.int64()),
            ("mpp_x", pa.float64()),
            ("mpp_y", pa.float64()),
            ("label", pa.string()),
            *[(coverage_column(name), pa.float64()) for name in classes],
            ("tissue_fraction", pa.float64()),
            ("split", pa.string()),
            ("row_hash", pa.string()),
        ]
    )


def _floats(table: pa.Table, name: str) -> np.ndarray:
    """A column as float64 with NaN for null."""
    return np.asarray(table[name].to_numpy(zero_copy_only=False), dtype=np.float64)


def label_tiles(
    grid: pa.Table,
    coverage: pa.Table,
    overlap: pa.Table,
    path: str,
    classes: Sequence[str],
    rules: DatasetRules,
) -> pa.Table:
    """The kept, labelled tiles of one slide, in tile order (schema :func:`dataset_schema`).

    ``grid``, ``coverage`` and ``overlap`` are the slide's ``tile_grid``,
    ``annotation_coverage`` and ``overlay_overlap`` (the same tiles in the same order; a
    ``ValueError`` otherwise); ``path`` is the slide file, as tile readers open it."""
    for name, table in (("annotation_coverage", coverage), ("overlay_overlap", overlap)):
        same = table.num_rows == grid.num_rows and all(
            table[c].equals(grid[c]) for c in ("tile_x", "tile_y")
        )
        if not same:
            raise ValueError(f"{name}: its rows are not the tiles of tile_grid")
    count = grid.num_rows
    tissue = _floats(overlap, "tissue_fraction")
    keep = tissue >= rules.min_tissue_fraction
    if rules.min_tissue_fraction == 0:
        keep[:] = True  # even tiles without overlay pixels (tissue null)
    values = (
        np.column_stack([_floats(coverage, coverage_column(name)) for name in classes])
        if classes
        else np.empty((count, 0))
    )
    annotated = ~np.isnan(values).all(axis=1) if classes else np.zeros(count, bool)
    limits = np.array([rules.threshold(name) for name in classes], dtype=np.float64)
    reached = np.nan_to_num(values, nan=-1.0) >= limits  # NaN never reaches
    score = np.where(reached, values, -np.inf)
    best = np.argmax(score, axis=1) if classes else np.zeros(count, np.int64)
    labelled = reached.any(axis=1)
    names = np.array(list(classes) or [""], dtype=object)
    label = np.full(count, None, dtype=object)
    label[labelled] = names[best[labelled]]
    if rules.unlabelled is None:
        keep &= labelled | ~annotated
    else:
        label[annotated & ~labelled] = rules.unlabelled
    if not rules.keep_unannotated:
        keep &= annotated
    rows = np.flatnonzero(keep)
    kept = grid.take(pa.array(rows, pa.int64()))
    columns: dict[str, Any] = {
        "slide_key": kept["slide_key"],
        "path": pa.array([path] * len(rows), pa.string()),
    }
    for name in ("level", "tile_x", "tile_y", "tile_extent_x", "tile_extent_y"):
        columns[name] = kept[name]
    for name in ("x0", "y0", "extent0_x", "extent0_y", "mpp_x", "mpp_y"):
        columns[name] = kept[name]
    columns["label"] = pa.array(label[rows].tolist(), pa.string())
    for index, name in enumerate(classes):
        picked = values[rows, index]
        columns[coverage_column(name)] = pa.array(picked, pa.float64(), mask=np.isnan(picked))
    picked = tissue[rows]
    columns["tissue_fraction"] = pa.array(picked, pa.float64(), mask=np.isnan(picked))
    split = split_of(str(grid["slide_key"][0]), rules) if count else SPLITS[0]
    columns["split"] = pa.array([split] * len(rows), pa.string())
    identity = pa.table({name: columns[name] for name in IDENTITY}).to_pylist()
    columns["row_hash"] = pa.array([row_hash(row, "row_hash")["row_hash"] for row in identity])
    return pa.table(columns, schema=dataset_schema(classes))
