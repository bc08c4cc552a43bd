"""The pictures of a slide's tables: colours sampled at tile centres of a synthetic slide whose
annotation and tissue are known, legends, sizes, and the thumbnail's level and bounds."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image
from shapely.geometry import box

from wsi_core.pictures import (
    COVERAGE_ALPHA,
    MIN_GRID_PX,
    TISSUE_ALPHA,
    Thumbnail,
    class_colour,
    fitted_png,
    read_thumbnail,
    table_picture,
    thumbnail_from_png,
    thumbnail_png,
    tissue_colour,
)
from wsi_core.slide import open_slide
from wsi_core.synthetic import write_pyramid_tiff
from wsi_core.tables import build_annotation_coverage, build_slide_metadata, build_tile_grid
from wsi_core.tables.overlay_overlap import overlap_table

#: Level 0 is 2048 x 1536 at 0.5 um/px; tiles of 64 px at level 1 (1 um/px) are 128 level-0 px.
WIDTH, HEIGHT, MPP, TILE = 2048, 1536, 0.5, 64
LEFT, RIGHT = (230, 200, 220), (200, 220, 240)  # the slide's two halves
CLASSES = {"tumor": "tumor", "stroma": "stroma"}
#: Tiles (column, row) wholly inside the tumor square, and the stroma square's half tile.
TUMOR_TILES = {(c, r) for c in range(2, 6) for r in range(3, 7)}
#: Per-channel tolerance of the 256-colour palette on these few colours.
TOLERANCE = 8


@pytest.fixture(scope="module")
def slide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two flat halves (so orientation shows) and a GeoJSON: a tumor square on exactly the
    tiles of TUMOR_TILES, a stroma rectangle over the left half of tile (10, 2)."""
    folder = tmp_path_factory.mktemp("picture-slide")
    image = np.empty((HEIGHT, WIDTH, 3), dtype=np.uint8)
    image[:, : WIDTH // 2] = LEFT
    image[:, WIDTH // 2 :] = RIGHT
    path = write_pyramid_tiff(folder / "slide.tiff", image, MPP, 3, subifds=False)
    step = TILE * 2  # level-0 pixels per tile
    features = [
        _feature("tumor", box(2 * step, 3 * step, 6 * step, 7 * step)),
        _feature("stroma", box(10 * step, 2 * step, 10 * step + step // 2, 3 * step)),
    ]
    document = {"type": "FeatureCollection", "features": features}
    (folder / "slide.geojson").write_text(json.dumps(document))
    return path


def _feature(name: str, shape: box) -> dict:
    return {
        "type": "Feature",
        "geometry": shape.__geo_interface__,
        "properties": {"classification": {"name": name}},
    }


@pytest.fixture(scope="module")
def tables(slide: Path) -> dict[str, pa.Table]:
    meta, _ = build_slide_metadata(
        str(slide), slide_key="s", uri=str(slide), relpath="slide.tiff", file_size=1, target_mpp=1.0
    )
    grid = build_tile_grid(meta, TILE, TILE, "keep")
    coverage, _ = build_annotation_coverage(
        grid, str(slide.with_suffix(".geojson")), CLASSES, box(0, 0, TILE, TILE)
    )
    return {"meta": meta, "grid": grid, "coverage": coverage}


@pytest.fixture(scope="module")
def thumbnail(slide: Path) -> Thumbnail:
    with open_slide(str(slide)) as reader:
        return read_thumbnail(reader, side=800)


def decode(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


def centre(thumbnail: Thumbnail, column: int, row: int, tile_level0: float) -> tuple[int, int]:
    """The picture pixel (x, y) at the centre of tile (column, row)."""
    scale = thumbnail.size[0] / thumbnail.extent0[0]
    return int((column + 0.5) * tile_level0 * scale), int((row + 0.5) * tile_level0 * scale)


def blended(under: tuple[int, int, int], colour, alpha: float) -> np.ndarray:
    return np.asarray(under) * (1 - alpha) + np.asarray(colour, dtype=float) * alpha


def test_thumbnail_reads_the_smallest_level_that_fits(thumbnail: Thumbnail) -> None:
    # levels are 2048, 1024, 512 wide: 1024 is the smallest with 800 pixels
    assert thumbnail.level == 1
    assert thumbnail.size == (800, 600)
    assert thumbnail.extent0 == (WIDTH, HEIGHT)
    assert thumbnail.image[300, 100].tolist() == list(LEFT)
    assert thumbnail.image[300, 700].tolist() == list(RIGHT)


def test_thumbnail_round_trips_through_png(thumbnail: Thumbnail) -> None:
    back = thumbnail_from_png(thumbnail_png(thumbnail))
    assert back.extent0 == thumbnail.extent0 and back.level == thumbnail.level
    assert np.array_equal(back.image, thumbnail.image)
    with pytest.raises(ValueError, match=r"somewhere\.png: not a wsi_tiles thumbnail"):
        thumbnail_from_png(b"not a png", "somewhere.png")


def test_a_level_too_large_is_not_read(slide: Path) -> None:
    with open_slide(str(slide)) as reader:
        blank = read_thumbnail(reader, side=800, max_read_pixels=1000)
    assert blank.level is None and "no thumbnail" in (blank.note or "")
    assert blank.size == (800, 600)


def test_coverage_tiles_are_drawn_in_their_class_colour(
    tables: dict[str, pa.Table], thumbnail: Thumbnail
) -> None:
    picture = table_picture(
        "annotation_coverage",
        thumbnail,
        tables["coverage"],
        grid=tables["grid"],
        classes=list(CLASSES),
        title="s",
    )
    pixels = decode(picture.png)
    coverage = tables["coverage"].to_pylist()
    tumor, stroma = class_colour(0), class_colour(1)
    assert picture.legend == (("tumor", tumor), ("stroma", stroma))
    full = empty = 0
    for row in coverage:
        column, line = row["tile_x"] // TILE, row["tile_y"] // TILE
        x, y = centre(thumbnail, column, line, 2 * TILE)
        under = LEFT if x < 400 else RIGHT
        got = pixels[y, x]
        if (column, line) in TUMOR_TILES:
            assert row["coverage_tumor"] == 1.0
            expected = blended(under, tumor, COVERAGE_ALPHA)
            full += 1
        elif (column, line) == (10, 2):
            assert row["coverage_stroma"] == 0.5
            expected = blended(under, stroma, COVERAGE_ALPHA * 0.5)
        else:
            assert row["coverage_tumor"] == 0.0 and row["coverage_stroma"] == 0.0
            expected = np.asarray(under)
            empty += 1
        assert np.abs(got - expected).max() <= TOLERANCE, (column, line, got, expected)
    assert full == 16 and empty == len(coverage) - 17
    # the legend under the image has a swatch of each class colour, exactly
    legend = pixels[thumbnail.size[1] :]
    for colour in (tumor, stroma):
        assert (legend == colour).all(axis=2).sum() >= 100


def test_grid_lines_only_where_tiles_are_large_enough(
    slide: Path, tables: dict[str, pa.Table], thumbnail: Thumbnail
) -> None:
    grid = tables["grid"]
    drawn = decode(table_picture("tile_grid", thumbnail, grid).png)
    # 64 level-1 pixels are 50 picture pixels: a line on each tile boundary, none inside
    assert drawn[325, 50].tolist() == [20, 20, 20]  # boundary between columns 0 and 1
    assert np.abs(drawn[325, 75] - LEFT).max() <= TOLERANCE  # a tile centre
    meta = tables["meta"]
    tiny = build_tile_grid(meta, 2, 2, "keep")  # 1.6 picture px per tile: no inner lines
    assert tiny.num_rows == 512 * 384
    inner = decode(table_picture("tile_grid", thumbnail, tiny).png)[5:595, 5:795]
    assert (np.abs(inner - np.asarray(LEFT)).max(axis=2) <= TOLERANCE).mean() > 0.45
    assert not (inner == [20, 20, 20]).all(axis=2).any()
    assert MIN_GRID_PX > 1.6


def test_tiny_tiles_still_get_their_fills(tables: dict[str, pa.Table], thumbnail: Thumbnail):
    tiny = build_tile_grid(tables["meta"], 2, 2, "keep")
    coverage, _ = build_annotation_coverage(
        tiny,
        str(Path(thumbnail_source(tables)).with_suffix(".geojson")),
        CLASSES,
        box(0, 0, 2, 2),
    )
    pixels = decode(
        table_picture("annotation_coverage", thumbnail, coverage, grid=tiny, classes=["tumor"]).png
    )
    x, y = centre(thumbnail, 3, 4, 2 * TILE)  # inside the tumor square
    assert np.abs(pixels[y, x] - blended(LEFT, class_colour(0), COVERAGE_ALPHA)).max() <= 8
    x, y = centre(thumbnail, 1, 1, 2 * TILE)
    assert np.abs(pixels[y, x] - np.asarray(LEFT)).max() <= TOLERANCE


def thumbnail_source(tables: dict[str, pa.Table]) -> str:
    return str(tables["meta"]["uri"][0].as_py())


def test_tissue_fraction_is_drawn_on_the_ramp(
    tables: dict[str, pa.Table], thumbnail: Thumbnail
) -> None:
    grid = tables["grid"]
    columns = (grid["tile_x"].to_numpy() // TILE).tolist()
    # tissue 1 in column 0, 0.5 in column 1, none elsewhere, nothing measured in column 15
    fractions = [
        {"255": 1.0}
        if c == 0
        else {"0": 0.5, "255": 0.5}
        if c == 1
        else None
        if c == 15
        else {"0": 1.0}
        for c in columns
    ]
    overlap = overlap_table(grid, fractions)
    picture = table_picture("overlay_overlap", thumbnail, overlap, grid=grid)
    pixels = decode(picture.png)
    for column, share in ((0, 1.0), (1, 0.5)):
        x, y = centre(thumbnail, column, 5, 2 * TILE)
        expected = blended(LEFT, tissue_colour(share), TISSUE_ALPHA)
        assert np.abs(pixels[y, x] - expected).max() <= TOLERANCE
    for column, under in ((5, LEFT), (15, RIGHT)):
        x, y = centre(thumbnail, column, 5, 2 * TILE)
        assert np.abs(pixels[y, x] - np.asarray(under)).max() <= TOLERANCE
    assert picture.legend[0][0].startswith("tissue fraction")


def test_metadata_picture_caption_and_size(
    tables: dict[str, pa.Table], thumbnail: Thumbnail
) -> None:
    picture = table_picture("slide_metadata", thumbnail, tables["meta"], title="s")
    assert picture.caption == (
        "s: 2048x1536 px at level 0, 3 levels, 0.5 um/px, generic-tiff; "
        "tiled at level 1 (1024x768 px, 1 um/px)"
    )
    width, height = picture.size
    assert width == 800 and 600 < height < 700
    assert Image.open(io.BytesIO(picture.png)).size == picture.size
    assert len(picture.png) < 300 * 1024


def test_a_grid_that_is_not_the_tables_is_refused(
    tables: dict[str, pa.Table], thumbnail: Thumbnail
) -> None:
    other = build_tile_grid(tables["meta"], 32, 32, "keep")
    with pytest.raises(ValueError, match="not the tiles of the tile_grid"):
        table_picture("annotation_coverage", thumbnail, tables["coverage"], grid=other)
    with pytest.raises(ValueError, match="needs the slide's tile_grid"):
        table_picture("annotation_coverage", thumbnail, tables["coverage"])


def test_real_slide_picture_is_small(shared_data: Path) -> None:
    """CMU-1-Small-Region has one level (2220 x 2967): read whole (6.6 Mpx), scaled to 800."""
    path = shared_data / "slides" / "CMU-1-Small-Region.svs"
    with open_slide(str(path)) as reader:
        thumbnail = read_thumbnail(reader)
    assert thumbnail.level == 0 and thumbnail.size == (599, 800)
    meta, _ = build_slide_metadata(
        str(path), slide_key="c", uri=str(path), relpath=path.name, file_size=1, target_mpp=0.5
    )
    picture = table_picture("slide_metadata", thumbnail, meta)
    assert "2220x2967 px at level 0, 1 level, 0.499 um/px, aperio" in picture.caption
    assert len(picture.png) < 300 * 1024


def test_real_slide_coverage_picture(shared_data: Path) -> None:
    """CMU-1-Small-Region with LUNA's DSA squares (Tumor at 1512-2333, past the right edge;
    Other at 512-1333): tiles wholly inside a square are drawn nearer its class colour than
    the slide, tiles outside both are the slide's own pixels (to the palette's rounding)."""
    path = shared_data / "slides" / "CMU-1-Small-Region.svs"
    annotation = shared_data / "annotations" / "geojson" / "123.annotation.geojson"
    with open_slide(str(path)) as reader:
        thumbnail = read_thumbnail(reader)
    meta, _ = build_slide_metadata(
        str(path), slide_key="c", uri=str(path), relpath=path.name, file_size=1, target_mpp=0.5
    )
    grid = build_tile_grid(meta, 64, 64, "keep")
    classes = {"tumor": "(?i)tumor", "other": "(?i)other"}
    coverage, _ = build_annotation_coverage(
        grid,
        str(annotation),
        classes,
        box(0, 0, 64, 64),
        label_property="label",
        extent0=(2220, 2967),
    )
    picture = table_picture(
        "annotation_coverage", thumbnail, coverage, grid=grid, classes=list(classes)
    )
    drawn = decode(picture.png)
    under = thumbnail.image.astype(int)
    checked = {"full": 0, "empty": 0}
    for row in coverage.to_pylist():
        x, y = centre(thumbnail, row["tile_x"] // 64, row["tile_y"] // 64, 64)
        if x >= thumbnail.size[0] or y >= thumbnail.size[1]:
            continue  # the last tiles reach past the slide
        got, slide_px = drawn[y, x], under[y, x]
        for index, name in enumerate(classes):
            if row[f"coverage_{name}"] == 1.0:
                colour = blended(tuple(slide_px), class_colour(index), COVERAGE_ALPHA)
                assert np.abs(got - colour).sum() < np.abs(got - slide_px).sum()
                checked["full"] += 1
        if row["coverage_tumor"] == 0.0 and row["coverage_other"] == 0.0:
            assert np.abs(got - slide_px).max() <= 40  # 256 colours for a stained slide
            checked["empty"] += 1
    assert checked["full"] > 150 and checked["empty"] > 1000
    assert len(picture.png) < 300 * 1024


def test_a_grid_without_tiles_is_drawn_plain(
    tables: dict[str, pa.Table], thumbnail: Thumbnail
) -> None:
    empty = build_tile_grid(tables["meta"], 4096, 4096, "drop")  # larger than the level
    assert empty.num_rows == 0
    picture = table_picture("tile_grid", thumbnail, empty, title="s")
    assert picture.caption == "s: no tiles"
    assert np.abs(decode(picture.png)[:600] - thumbnail.image.astype(int)).max() <= TOLERANCE


def test_fitted_png_keeps_small_pictures_and_shrinks_large_ones() -> None:
    """The copy embedded in an event: the same bytes when small enough, else a smaller PNG of
    the same aspect that fits the budget."""
    rng = np.random.default_rng(7)
    noise = Image.fromarray(rng.integers(0, 256, (600, 800, 3), dtype=np.uint8))
    sink = io.BytesIO()
    noise.save(sink, format="PNG")
    big = sink.getvalue()
    assert fitted_png(big, len(big)) is big
    small = fitted_png(big, 60_000)
    assert len(small) <= 60_000
    image = Image.open(io.BytesIO(small))
    assert image.format == "PNG" and image.width < 800
    assert abs(image.width / image.height - 800 / 600) < 0.01
