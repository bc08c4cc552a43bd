"""Tile images of one slide as files, chosen from its tables.

Which tiles: those of the slide's ``tile_grid``, optionally only those whose
``tissue_fraction`` (``overlay_overlap``) or ``coverage_<class>`` (``annotation_coverage``)
is at least a threshold. The thresholds read the stored tables, so a file holds exactly a
tile the tables describe. Pixels come from the slide reader's ``iter_tiles``, a record batch
of tiles at a time: each stored tile they meet is decoded once, and one output tile is held
at a time (never a whole level in memory); a tile that reaches past the level's edge
(``last="keep"``) is filled with white there, so every file has the tile's full size.

File names say where a tile is: ``{key}_level{level}_x{tile_x}_y{tile_y}.{ext}``, with
``tile_x``/``tile_y`` the top-left corner in pixels of that level. ``tiles.parquet`` beside
them lists every file with the tile's ``tile_grid`` row and the values it was chosen by.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from PIL import Image
from upath import UPath

from wsi_assets.pipeline.locations import location
from wsi_assets.pipeline.single_slide import SingleSlide
from wsi_core.slide import open_slide
from wsi_core.tables.schemas import (
    ANNOTATION_COVERAGE,
    OVERLAY_OVERLAP,
    TILE_KEY_COLUMNS,
    coverage_column,
)

#: Image formats a tile can be written in: format name -> file extension.
FORMATS = {"png": "png", "jpeg": "jpg"}
INDEX_FILE = "tiles.parquet"


class SelectionError(ValueError):
    """Thresholds that the slide's tables cannot answer (the message says why)."""


@dataclass(frozen=True)
class Thresholds:
    """Keep a tile only when its ``tissue_fraction`` is at least ``min_tissue`` and, for each
    class, its coverage is at least ``min_coverage[class]`` (fractions in [0, 1])."""

    min_tissue: float | None = None
    min_coverage: Mapping[str, float] = field(default_factory=dict)

    def tables_needed(self) -> set[str]:
        """The tables the thresholds read, besides ``tile_grid``."""
        needed = set()
        if self.min_tissue is not None:
            needed.add(OVERLAY_OVERLAP)
        if self.min_coverage:
            needed.add(ANNOTATION_COVERAGE)
        return needed


def select_tiles(
    grid: pa.Table,
    thresholds: Thresholds,
    coverage: pa.Table | None = None,
    overlap: pa.Table | None = None,
) -> pa.Table:
    """The rows of ``grid`` (a ``tile_grid`` table) that pass ``thresholds``, in grid order,
    with the columns they were chosen by appended (``tissue_fraction``, ``coverage_<class>``).

    A tile whose ``tissue_fraction`` is null (no overlay pixel under it) does not pass a
    tissue threshold. Raises :class:`SelectionError` for a class the coverage table does not
    have, and for a threshold on values that are null for every tile (the slide has no
    annotation or overlay file): no tile could pass, and that is not what was asked.
    """
    keep = pa.array(np.ones(grid.num_rows, dtype=bool))
    chosen = grid
    wanted = [
        (ANNOTATION_COVERAGE, coverage, coverage_column(name), minimum)
        for name, minimum in thresholds.min_coverage.items()
    ]
    if thresholds.min_tissue is not None:
        wanted.insert(0, (OVERLAY_OVERLAP, overlap, "tissue_fraction", thresholds.min_tissue))
    for name, table, column, minimum in wanted:
        values = _aligned(grid, table, name, column)
        chosen = chosen.append_column(column, values)
        keep = pc.and_(keep, pc.fill_null(pc.greater_equal(values, minimum), False))
    return chosen.filter(keep)


#: What to name when a threshold's values were never measured.
_UNMEASURED = {
    OVERLAY_OVERLAP: "tissue was not measured: no overlay (tissue mask) file was found for "
    "the slide, or none of it lies under a tile (name one with --overlay)",
    ANNOTATION_COVERAGE: "coverage was not measured: no annotation file was found for the "
    "slide (name one with --annotation)",
}


def _aligned(grid: pa.Table, table: pa.Table | None, name: str, column: str) -> pa.Array:
    """``column`` of ``table``, after checking that its rows are ``grid``'s tiles in order
    and that it was measured."""
    if table is None:
        raise SelectionError(f"the {name} table is needed for this threshold")
    if column not in table.column_names:
        known = [c.removeprefix("coverage_") for c in table.column_names if c.startswith("cov")]
        wanted = column.removeprefix("coverage_")
        raise SelectionError(f"no class {wanted!r} in {name} (its classes: {', '.join(known)})")
    for key in TILE_KEY_COLUMNS:
        if not grid[key].equals(table[key]):
            raise SelectionError(f"the {name} table does not list the tile grid's tiles")
    values = table[column].combine_chunks()
    if len(values) and values.null_count == len(values):
        raise SelectionError(_UNMEASURED[name])
    return values


def tile_file_name(key: str, level: int, tile_x: int, tile_y: int, image_format: str) -> str:
    """The file name of a tile: slide key, level and top-left corner in level pixels."""
    return f"{key}_level{level}_x{tile_x}_y{tile_y}.{FORMATS[image_format]}"


def write_tiles(
    slide: str,
    tiles: pa.Table,
    folder: UPath,
    key: str,
    *,
    image_format: str = "png",
    quality: int = 90,
    progress: Callable[[int], object] | None = None,
    storage_options: Mapping[str, object] | None = None,
) -> pa.Table:
    """Write one image file per row of ``tiles`` (``tile_grid`` rows, from
    :func:`select_tiles`) read from the slide at ``slide`` into ``folder``; ``quality``
    applies to JPEG. ``progress(1)`` is called after each file. Returns the index written
    to ``folder / INDEX_FILE``: ``tiles`` with a ``file`` column (names relative to
    ``folder``)."""
    if image_format not in FORMATS:
        raise ValueError(f"image format {image_format!r} is not one of {sorted(FORMATS)}")
    folder.mkdir(parents=True, exist_ok=True)
    names: list[str] = []
    where = tiles.select(["tile_x", "tile_y", "level", "tile_extent_x", "tile_extent_y"])
    with open_slide(slide, storage_options=storage_options) as reader:
        for batch in where.to_batches():  # a record batch at a time, never all tiles at once
            columns = {name: batch.column(name).to_numpy() for name in batch.schema.names}
            batch_names = [""] * batch.num_rows
            # One read_tiles batch: each stored tile the batch meets is decoded once, and
            # iter_tiles holds one output tile at a time (in the order it reads them).
            for i, pixels in reader.iter_tiles(
                columns["tile_x"],
                columns["tile_y"],
                columns["tile_extent_x"],
                columns["tile_extent_y"],
                columns["level"],
            ):
                x, y, level = (int(columns[name][i]) for name in ("tile_x", "tile_y", "level"))
                name = tile_file_name(key, level, x, y, image_format)
                _save(pixels, folder / name, image_format, quality)
                batch_names[i] = name
                if progress is not None:
                    progress(1)
            names.extend(batch_names)
    index = tiles.append_column("file", pa.array(names, pa.string()))
    sink = io.BytesIO()
    pq.write_table(index, sink, compression="zstd")
    (folder / INDEX_FILE).write_bytes(sink.getvalue())
    return index


def export_tiles(
    single: SingleSlide,
    tiles: pa.Table,
    folder: str,
    *,
    image_format: str = "png",
    quality: int = 90,
    progress: Callable[[int], object] | None = None,
) -> pa.Table:
    """:func:`write_tiles` for ``single``'s slide into ``folder`` (a path or URL), read in
    place or from a local copy where the format needs one (as the tables are)."""
    settings = single.settings
    target = location(folder, settings.storage_options)
    return single.pipeline.slides.read(
        single.slide.uri,
        lambda place: write_tiles(
            place,
            tiles,
            target,
            single.key,
            image_format=image_format,
            quality=quality,
            progress=progress,
            storage_options=settings.storage_options,
        ),
    )


def _save(pixels: np.ndarray, path: UPath, image_format: str, quality: int) -> None:
    image = Image.fromarray(pixels)
    with path.open("wb") as sink:
        if image_format == "jpeg":
            image.save(sink, format="JPEG", quality=quality)
        else:
            image.save(sink, format="PNG")
