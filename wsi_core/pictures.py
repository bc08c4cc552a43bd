"""Pictures of a slide's tables: the slide thumbnail with the tile grid and its values drawn
over it, as a small PNG that any tool can show (the Dagster UI, the command line, a browser).

Two steps, so that the slide is read once however many pictures are drawn:

1. :func:`read_thumbnail` reads the smallest pyramid level that is at least ``side`` pixels
   on its longest side (never a big level 0: past ``MAX_READ_PIXELS`` it reads nothing and
   the picture says so) and scales it to ``side``. :func:`thumbnail_png` /
   :func:`thumbnail_from_png` store and restore it with the level-0 extent it covers.
2. :func:`table_picture` draws one table over a thumbnail:

   * ``slide_metadata``: the thumbnail and a caption (size, levels, resolution, vendor);
   * ``tile_grid``: the grid's outline, and every tile's outline where tiles are at least
     ``MIN_GRID_PX`` picture pixels apart;
   * ``annotation_coverage``: each tile filled in its class colour (``class_colour``: one per
     configured class, in the configured order), opacity ``COVERAGE_ALPHA * coverage``;
   * ``overlay_overlap``: each tile with tissue filled by ``tissue_colour(tissue_fraction)``
     (a ramp from dark blue, little tissue, to yellow, all tissue); tiles without tissue or
     without overlay pixels are not filled.

   with a legend (class names and colours, or the ramp) and a caption under the image. Fills
   are always drawn, however small the tiles are at this scale.

Units: ``extent0`` is level-0 pixels; tile columns are level pixels of the tiled level (see
:mod:`wsi_core.tables.schemas`); everything else here is picture pixels.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import pyarrow as pa
from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo

from wsi_core.reader import SlideReader
from wsi_core.tables.schemas import (
    ANNOTATION_COVERAGE,
    OVERLAY_OVERLAP,
    SLIDE_METADATA,
    TILE_GRID,
    coverage_column,
)

#: Longest side of a thumbnail, picture pixels.
THUMBNAIL_SIDE = 800
#: Most level pixels read for a thumbnail (about 120 MB of RGB): a slide whose smallest
#: level is larger (a single-level scan) gets a blank thumbnail and a note instead.
MAX_READ_PIXELS = 40_000_000
#: Tile outlines are drawn only where neighbouring outlines are this far apart, picture pixels.
MIN_GRID_PX = 4
#: Opacity of a tile fully covered by a class; a tile covered by a fraction f gets f times it.
COVERAGE_ALPHA = 0.7
#: Opacity of a tile's tissue colour.
TISSUE_ALPHA = 0.6
#: Class colours in configured class order, cycled: the Okabe-Ito palette (told apart with
#: every common colour-vision deficiency), greens, oranges and blues first because they stand
#: out on pink and purple H&E; its reddish purple, which does not, comes last.
PALETTE = (
    (0, 158, 115),
    (230, 159, 0),
    (0, 114, 178),
    (240, 228, 66),
    (86, 180, 233),
    (213, 94, 0),
    (0, 0, 0),
    (204, 121, 167),
)
#: Anchors of the tissue ramp (viridis at 0, 0.25, 0.5, 0.75, 1).
RAMP = ((68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37))
BLANK = (235, 235, 235)
GRID_COLOUR = (20, 20, 20)
TEXT_COLOUR = (30, 30, 30)
BAND_COLOUR = (255, 255, 255)
#: Colours of a picture's PNG palette.
PALETTE_COLOURS = 256
FONT_PX = 14
LINE_PX = 20
SWATCH_PX = 14
#: Narrowest picture: the legend and caption need room even beside a tall, thin slide.
MIN_WIDTH = 480
#: PNG text keys of a stored thumbnail.
EXTENT_KEY = "wsi_tiles.extent0"
LEVEL_KEY = "wsi_tiles.thumbnail_level"
NOTE_KEY = "wsi_tiles.thumbnail_note"

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class Thumbnail:
    """A slide scaled down: ``image`` ``(h, w, 3)`` uint8 covering the slide's level-0
    ``extent0`` (width, height), read from pyramid ``level`` (None: nothing was read, the
    image is blank and ``note`` says why)."""

    image: np.ndarray
    extent0: tuple[int, int]
    level: int | None
    note: str | None = None

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)``, picture pixels."""
        return int(self.image.shape[1]), int(self.image.shape[0])


@dataclass(frozen=True)
class Picture:
    """A drawn picture: PNG bytes, its size (picture pixels, legend and caption included),
    the legend entries (label, RGB) in the order drawn, and the caption."""

    png: bytes
    size: tuple[int, int]
    legend: tuple[tuple[str, RGB], ...]
    caption: str


def thumbnail_size(extent0: tuple[int, int], side: int = THUMBNAIL_SIDE) -> tuple[int, int]:
    """``(width, height)`` of a thumbnail of a slide ``extent0`` level-0 pixels large whose
    longest side is ``side`` (or the slide's own size when it is smaller)."""
    width, height = extent0
    scale = min(1.0, side / max(width, height, 1))
    return max(1, round(width * scale)), max(1, round(height * scale))


def thumbnail_level(reader: SlideReader, side: int = THUMBNAIL_SIDE) -> int:
    """The smallest level whose longest side is at least ``side`` (level 0 when none is)."""
    fitting = [level for level, (w, h) in enumerate(reader.level_dimensions) if max(w, h) >= side]
    return max(fitting, key=lambda level: reader.level_downsamples[level], default=0)


def read_thumbnail(
    reader: SlideReader, side: int = THUMBNAIL_SIDE, max_read_pixels: int = MAX_READ_PIXELS
) -> Thumbnail:
    """The thumbnail of the slide open in ``reader``, longest side ``side`` (see the module
    docstring); reads at most ``max_read_pixels`` level pixels, else none (blank, with a
    note)."""
    extent0 = reader.level_dimensions[0]
    size = thumbnail_size(extent0, side)
    level = thumbnail_level(reader, side)
    width, height = reader.level_dimensions[level]
    if width * height > max_read_pixels:
        note = (
            f"no thumbnail: the smallest level ({width}x{height} px) holds more than "
            f"{max_read_pixels:,} pixels"
        )
        return blank_thumbnail(extent0, side, note)
    region = Image.fromarray(reader.read_tile(0, 0, width, height, level))
    image = region.resize(size, Image.Resampling.BOX) if region.size != size else region
    return Thumbnail(np.asarray(image.convert("RGB")), extent0, level)


def blank_thumbnail(
    extent0: tuple[int, int], side: int = THUMBNAIL_SIDE, note: str | None = None
) -> Thumbnail:
    """A plain grey thumbnail of a slide ``extent0`` level-0 pixels large (no pixels read)."""
    width, height = thumbnail_size(extent0, side)
    image = np.empty((height, width, 3), dtype=np.uint8)
    image[...] = BLANK
    return Thumbnail(image, extent0, None, note)


def thumbnail_png(thumbnail: Thumbnail) -> bytes:
    """``thumbnail`` as a 256-colour PNG (the palette of :func:`_png`; what pictures are drawn
    over anyway, at a quarter of a truecolour PNG's size) with its level-0 extent, level and
    note, which :func:`thumbnail_from_png` restores."""
    info = PngInfo()
    info.add_text(EXTENT_KEY, json.dumps(list(thumbnail.extent0)))
    info.add_text(LEVEL_KEY, json.dumps(thumbnail.level))
    if thumbnail.note:
        info.add_text(NOTE_KEY, thumbnail.note)
    return _png(Image.fromarray(thumbnail.image), info)


def thumbnail_from_png(data: bytes, source: str = "thumbnail") -> Thumbnail:
    """The thumbnail stored by :func:`thumbnail_png`; ``ValueError`` naming ``source`` when
    the bytes are not one."""
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
        text = dict(getattr(image, "text", {}))
        width, height = json.loads(text[EXTENT_KEY])
        level = json.loads(text[LEVEL_KEY])
    except (OSError, KeyError, ValueError, TypeError) as error:
        raise ValueError(f"{source}: not a wsi_tiles thumbnail ({error})") from error
    pixels = np.asarray(image.convert("RGB"))
    return Thumbnail(pixels, (int(width), int(height)), level, text.get(NOTE_KEY))


def class_colour(index: int) -> RGB:
    """The colour of the ``index``-th configured class (deterministic; cycles past 8)."""
    return PALETTE[index % len(PALETTE)]


def tissue_colour(fraction: float | np.ndarray) -> np.ndarray:
    """The ramp colour of a tissue fraction in [0, 1] (float RGB, same leading shape)."""
    anchors = np.asarray(RAMP, dtype=np.float64)
    where = np.clip(np.asarray(fraction, dtype=np.float64), 0.0, 1.0) * (len(RAMP) - 1)
    lower = np.minimum(np.floor(where).astype(int), len(RAMP) - 2)
    share = (where - lower)[..., None]
    return anchors[lower] * (1 - share) + anchors[lower + 1] * share


# --------------------------------------------------------------------------------------------
# Tiles at picture scale


@dataclass(frozen=True)
class TileLayout:
    """Where a table's tiles fall on a thumbnail: ``pixel_tile`` ``(h, w)`` is the row of the
    tile whose area holds each picture pixel's centre (-1: none; where tiles overlap, the one
    with the larger origin), and the picture-pixel positions of the tile boundaries."""

    pixel_tile: np.ndarray
    edges_x: np.ndarray
    edges_y: np.ndarray


def tile_layout(tiles: pa.Table, thumbnail: Thumbnail, downsample: float) -> TileLayout:
    """The :class:`TileLayout` of ``tiles`` (columns ``tile_x``, ``tile_y``, level pixels, and
    ``tile_extent_x``, ``tile_extent_y``) on ``thumbnail``; ``downsample`` is level-0 pixels
    per level pixel of the tiled level."""
    width, height = thumbnail.size
    if tiles.num_rows == 0:  # a slide smaller than one tile, with last="drop"
        nothing = np.empty(0, dtype=np.float64)
        return TileLayout(np.full((height, width), -1, dtype=np.int64), nothing, nothing)
    per_px_x = thumbnail.extent0[0] / width / downsample  # level pixels per picture pixel
    per_px_y = thumbnail.extent0[1] / height / downsample
    tx = tiles["tile_x"].to_numpy().astype(np.float64)
    ty = tiles["tile_y"].to_numpy().astype(np.float64)
    ex = float(tiles["tile_extent_x"][0].as_py())
    ey = float(tiles["tile_extent_y"][0].as_py())
    xs, col = np.unique(tx, return_inverse=True)
    ys, row = np.unique(ty, return_inverse=True)
    index = np.full((len(ys), len(xs)), -1, dtype=np.int64)
    index[row, col] = np.arange(tiles.num_rows)
    centres_x = (np.arange(width) + 0.5) * per_px_x
    centres_y = (np.arange(height) + 0.5) * per_px_y
    cols, in_x = _axis_cells(xs, ex, centres_x)
    rows, in_y = _axis_cells(ys, ey, centres_y)
    pixel_tile = index[rows[:, None], cols[None, :]]
    pixel_tile[~(in_y[:, None] & in_x[None, :])] = -1
    edges_x = np.unique(np.concatenate([xs, xs + ex])) / per_px_x
    edges_y = np.unique(np.concatenate([ys, ys + ey])) / per_px_y
    return TileLayout(pixel_tile, edges_x, edges_y)


def _axis_cells(
    origins: np.ndarray, extent: float, centres: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per centre, the last origin at or before it (clamped to 0) and whether the centre
    lies inside that tile."""
    cell = np.searchsorted(origins, centres, side="right") - 1
    inside = (cell >= 0) & (centres < origins[np.maximum(cell, 0)] + extent)
    return np.maximum(cell, 0), inside


def per_pixel(layout: TileLayout, values: np.ndarray) -> np.ndarray:
    """Per picture pixel, the value of its tile (NaN where no tile or a null value)."""
    padded = np.append(np.asarray(values, dtype=np.float64), np.nan)
    return padded[layout.pixel_tile]  # -1 picks the NaN at the end


def blend(image: np.ndarray, colour: RGB | np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``image`` (float RGB) with ``colour`` (RGB, or per pixel) over it at per-pixel
    ``alpha`` in [0, 1] (NaN counts as 0)."""
    weight = np.nan_to_num(alpha, nan=0.0)[..., None]
    return image * (1.0 - weight) + np.asarray(colour, dtype=np.float64) * weight


def draw_grid(image: np.ndarray, layout: TileLayout) -> None:
    """Tile outlines into ``image`` (float RGB, in place) where they are at least
    ``MIN_GRID_PX`` apart on both axes; the grid's outer outline always."""
    height, width = image.shape[:2]
    ex, ey = layout.edges_x, layout.edges_y
    if len(ex) < 2 or len(ey) < 2:
        return
    dense = min(np.diff(ex).min(), np.diff(ey).min()) < MIN_GRID_PX
    lines_x = ex[[0, -1]] if dense else ex
    lines_y = ey[[0, -1]] if dense else ey
    top, bottom = _pixel(ey[0], height), _pixel(ey[-1], height) + 1
    left, right = _pixel(ex[0], width), _pixel(ex[-1], width) + 1
    for x in lines_x:
        image[top:bottom, _pixel(x, width)] = GRID_COLOUR
    for y in lines_y:
        image[_pixel(y, height), left:right] = GRID_COLOUR


def _pixel(position: float, size: int) -> int:
    """The picture pixel a boundary at ``position`` (picture pixels) is drawn in."""
    return int(min(max(round(position), 0), size - 1))


# --------------------------------------------------------------------------------------------
# Pictures


def table_picture(
    table: str,
    thumbnail: Thumbnail,
    data: pa.Table,
    *,
    grid: pa.Table | None = None,
    classes: Sequence[str] = (),
    title: str = "",
) -> Picture:
    """The picture of one slide's ``table`` (one of the four table names) over
    ``thumbnail``.

    ``data`` is the table; ``grid`` its slide's ``tile_grid`` (needed for the per-tile tables,
    whose rows are the grid's, in the same order); ``classes`` the configured class names in
    their configured order (their colours follow it); ``title`` starts the caption (the
    slide's key or file name). ``ValueError`` for an unknown table or a grid that does not
    match the table's rows.
    """
    if table == SLIDE_METADATA:
        return metadata_picture(thumbnail, data.to_pylist()[0], title)
    if grid is None:
        grid = data if table == TILE_GRID else None
    if grid is None:
        raise ValueError(f"a picture of {table} needs the slide's tile_grid table")
    _check_rows(table, data, grid)
    if table == TILE_GRID:
        return grid_picture(thumbnail, grid, title)
    if table == ANNOTATION_COVERAGE:
        return coverage_picture(thumbnail, data, grid, classes, title)
    if table == OVERLAY_OVERLAP:
        return overlap_picture(thumbnail, data, grid, title)
    raise ValueError(f"no picture for table {table!r}")


def _check_rows(table: str, data: pa.Table, grid: pa.Table) -> None:
    same = data.num_rows == grid.num_rows and all(
        data[name].equals(grid[name]) for name in ("tile_x", "tile_y")
    )
    if not same:
        raise ValueError(f"{table}: its rows are not the tiles of the tile_grid given")


def _grid_facts(grid: pa.Table) -> tuple[float, str]:
    """The tiled level's downsample and a caption fragment about the grid."""
    if grid.num_rows == 0:
        return 1.0, "no tiles"
    first = grid.slice(0, 1).to_pylist()[0]
    text = (
        f"{grid.num_rows:,} tiles of {first['tile_extent_x']}x{first['tile_extent_y']} px "
        f"at level {first['level']} ({first['mpp_x']:.3g} um/px)"
    )
    return float(first["downsample"]), text


def grid_picture(thumbnail: Thumbnail, grid: pa.Table, title: str = "") -> Picture:
    """``tile_grid`` over the thumbnail: the grid alone."""
    downsample, about = _grid_facts(grid)
    layout = tile_layout(grid, thumbnail, downsample)
    image = thumbnail.image.astype(np.float64)
    draw_grid(image, layout)
    return _compose(image, [], _caption(title, about, thumbnail.note))


def coverage_picture(
    thumbnail: Thumbnail,
    coverage: pa.Table,
    grid: pa.Table,
    classes: Sequence[str],
    title: str = "",
) -> Picture:
    """``annotation_coverage`` over the thumbnail: every class in its colour (in ``classes``
    order, later classes drawn over earlier ones), opacity proportional to coverage."""
    downsample, about = _grid_facts(grid)
    layout = tile_layout(grid, thumbnail, downsample)
    image = thumbnail.image.astype(np.float64)
    legend = []
    measured = False
    for index, name in enumerate(classes):
        values = coverage[coverage_column(name)].to_numpy(zero_copy_only=False)
        values = values.astype(np.float64)
        measured = measured or bool(np.isfinite(values).any())
        colour = class_colour(index)
        image = blend(image, colour, COVERAGE_ALPHA * np.clip(per_pixel(layout, values), 0, 1))
        legend.append((name, colour))
    draw_grid(image, layout)
    if not measured and coverage.num_rows:
        about += "; not measured (no annotation file)"
    return _compose(image, legend, _caption(title, about, thumbnail.note))


def overlap_picture(
    thumbnail: Thumbnail, overlap: pa.Table, grid: pa.Table, title: str = ""
) -> Picture:
    """``overlay_overlap`` over the thumbnail: tiles with tissue in the ramp colour of their
    tissue fraction; tiles with none, or no overlay pixels, unfilled."""
    downsample, about = _grid_facts(grid)
    layout = tile_layout(grid, thumbnail, downsample)
    values = overlap["tissue_fraction"].to_numpy(zero_copy_only=False).astype(np.float64)
    fraction = per_pixel(layout, values)
    alpha = np.where(fraction > 0, TISSUE_ALPHA, 0.0)
    image = blend(thumbnail.image.astype(np.float64), tissue_colour(np.nan_to_num(fraction)), alpha)
    draw_grid(image, layout)
    if overlap.num_rows and not np.isfinite(values).any():
        about += "; not measured (no overlay file)"
    return _compose(image, None, _caption(title, about, thumbnail.note))


def metadata_picture(thumbnail: Thumbnail, meta: Mapping[str, Any], title: str = "") -> Picture:
    """``slide_metadata`` (one row, as a dict) as the thumbnail with its facts as caption."""
    widths, heights, level = meta["level_width"], meta["level_height"], int(meta["level"])
    levels = int(meta["level_count"])
    about = (
        f"{widths[0]}x{heights[0]} px at level 0, {levels} level{'s' if levels != 1 else ''}, "
        f"{_um(meta['base_mpp_x'])} um/px, {meta['vendor']}; tiled at level {level} "
        f"({widths[level]}x{heights[level]} px, {_um(meta['mpp_x'])} um/px)"
    )
    return _compose(thumbnail.image.astype(np.float64), [], _caption(title, about, thumbnail.note))


def mask_picture(
    thumbnail: Thumbnail,
    mask: np.ndarray,
    level0_per_pixel: tuple[float, float],
    title: str = "",
    about: str = "",
) -> Picture:
    """A tissue mask over the thumbnail: picture pixels whose centre falls on a tissue pixel
    of ``mask`` (bool ``(h, w)``, True on tissue) tinted in the ramp's full-tissue colour.
    One mask pixel covers ``level0_per_pixel`` (x, y) level-0 pixels from the slide's
    origin; ``about`` (what the mask is) follows ``title`` in the caption."""
    width, height = thumbnail.size
    centres_x = (np.arange(width) + 0.5) * thumbnail.extent0[0] / width / level0_per_pixel[0]
    centres_y = (np.arange(height) + 0.5) * thumbnail.extent0[1] / height / level0_per_pixel[1]
    cols, rows = centres_x.astype(np.int64), centres_y.astype(np.int64)
    inside = (rows < mask.shape[0])[:, None] & (cols < mask.shape[1])[None, :]
    covered = mask[
        np.minimum(rows, mask.shape[0] - 1)[:, None], np.minimum(cols, mask.shape[1] - 1)
    ]
    alpha = np.where(covered & inside, TISSUE_ALPHA, 0.0)
    image = blend(thumbnail.image.astype(np.float64), RAMP[-1], alpha)
    about = about or f"tissue mask, {float(mask.mean()) if mask.size else 0.0:.1%} tissue"
    return _compose(image, [("tissue", RAMP[-1])], _caption(title, about, thumbnail.note))


def _um(value: Any) -> str:
    return f"{float(value):.4g}"


def _caption(title: str, about: str, note: str | None) -> str:
    return "; ".join(part for part in (f"{title}: {about}" if title else about, note) if part)


# --------------------------------------------------------------------------------------------
# Legend, caption and PNG


@cache
def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=FONT_PX)


def _compose(image: np.ndarray, legend: list[tuple[str, RGB]] | None, caption: str) -> Picture:
    """The drawn image with a white band under it: the legend (``None``: the tissue ramp)
    then the caption, wrapped to the picture's width."""
    body = Image.fromarray(np.clip(np.rint(image), 0, 255).astype(np.uint8))
    width = max(body.width, MIN_WIDTH)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    lines = _wrap(probe, caption, width - 2 * SWATCH_PX)
    legend_rows = _legend_rows(probe, legend, width) if legend is not None else [[]]
    band = LINE_PX * (len(legend_rows) + len(lines)) + LINE_PX // 2
    canvas = Image.new("RGB", (width, body.height + band), BAND_COLOUR)
    canvas.paste(body, (0, 0))
    draw = ImageDraw.Draw(canvas)
    y = body.height + LINE_PX // 4
    if legend is None:
        _draw_ramp(draw, y)
        y += LINE_PX
    else:
        for row in legend_rows:
            _draw_legend_row(draw, row, y)
            y += LINE_PX
    for line in lines:
        draw.text((SWATCH_PX // 2, y), line, fill=TEXT_COLOUR, font=_font())
        y += LINE_PX
    entries = tuple(legend) if legend is not None else (("tissue fraction 0 -> 1", RAMP[-1]),)
    return Picture(
        _png(canvas, exact=[colour for _, colour in entries]), canvas.size, entries, caption
    )


def _wrap(draw: ImageDraw.ImageDraw, text: str, width: int) -> list[str]:
    lines: list[str] = []
    for word in text.split():
        if lines and draw.textlength(f"{lines[-1]} {word}", font=_font()) <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines


def _legend_rows(
    draw: ImageDraw.ImageDraw, legend: list[tuple[str, RGB]], width: int
) -> list[list[tuple[str, RGB, int]]]:
    """Legend entries with their x positions, wrapped into rows that fit ``width``."""
    rows: list[list[tuple[str, RGB, int]]] = [[]] if legend else []
    x = SWATCH_PX // 2
    for name, colour in legend:
        step = SWATCH_PX + 6 + int(draw.textlength(name, font=_font())) + 2 * SWATCH_PX
        if rows[-1] and x + step > width:
            rows.append([])
            x = SWATCH_PX // 2
        rows[-1].append((name, colour, x))
        x += step
    return rows


def _draw_legend_row(draw: ImageDraw.ImageDraw, row: list[tuple[str, RGB, int]], y: int) -> None:
    for name, colour, x in row:
        draw.rectangle((x, y + 2, x + SWATCH_PX - 1, y + 1 + SWATCH_PX), fill=colour)
        draw.text((x + SWATCH_PX + 6, y), name, fill=TEXT_COLOUR, font=_font())


def _draw_ramp(draw: ImageDraw.ImageDraw, y: int) -> None:
    """The tissue ramp: a 0 -> 1 colour bar with its labels."""
    x = SWATCH_PX // 2
    draw.text((x, y), "tissue fraction  0", fill=TEXT_COLOUR, font=_font())
    x += int(draw.textlength("tissue fraction  0", font=_font())) + 6
    steps = 160
    colours = tissue_colour(np.linspace(0.0, 1.0, steps))
    for i, colour in enumerate(colours):
        fill = tuple(round(float(c)) for c in colour)
        draw.line((x + i, y + 2, x + i, y + 1 + SWATCH_PX), fill=fill)
    draw.text((x + steps + 6, y), "1   (unfilled: none)", fill=TEXT_COLOUR, font=_font())


def _png(image: Image.Image, info: PngInfo | None = None, exact: Sequence[RGB] = ()) -> bytes:
    """``image`` as a 256-colour PNG: a truecolour PNG of a stained slide at this size is about
    1 MB, a palette one a quarter of that. ``exact`` colours (legend, grid, text) are kept
    as they are; the rest of the palette is an octree quantization of the image."""
    reserved = list(dict.fromkeys([*exact, BAND_COLOUR, TEXT_COLOUR, GRID_COLOUR]))
    fitted = image.quantize(PALETTE_COLOURS - len(reserved), method=Image.Quantize.FASTOCTREE)
    found = (fitted.getpalette() or [])[: 3 * (PALETTE_COLOURS - len(reserved))]
    palette = Image.new("P", (1, 1))
    palette.putpalette([value for colour in reserved for value in colour] + found)
    mapped = image.quantize(palette=palette, dither=Image.Dither.NONE)
    sink = io.BytesIO()
    mapped.save(sink, format="PNG", pnginfo=info)  # optimize=True: 2 % smaller, 10x slower
    return sink.getvalue()


def fitted_png(png: bytes, max_bytes: int) -> bytes:
    """``png`` itself when it holds at most ``max_bytes``, else the same picture scaled down
    (same aspect, 256 colours) until it does: for a copy embedded in every materialization
    event, where the full picture would make the event log grow by megabytes per slide."""
    if len(png) <= max_bytes:
        return png
    image = Image.open(io.BytesIO(png)).convert("RGB")
    smaller = png
    for _ in range(4):
        scale = 0.9 * (max_bytes / len(smaller)) ** 0.5
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.LANCZOS)
        smaller = _png(image)
        if len(smaller) <= max_bytes:
            break
    return smaller
