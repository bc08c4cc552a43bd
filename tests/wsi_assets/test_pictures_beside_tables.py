"""Pictures beside the tables (engine-neutral floor): every table step stores its picture in
the table's slide folder, the slide is read once for its thumbnail, the hive layout still
reads as one table, a foreign file is never overwritten, retiring removes them; and the long
steps report their progress."""

from __future__ import annotations

import base64
import io
import pickle
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pyarrow.dataset as ds
import pytest
from PIL import Image
from wsi_assets_support import make_settings

from wsi_assets.pipeline.errors import ForeignFileError
from wsi_assets.pipeline.pictures import PICTURE_FILE, THUMBNAIL_FILE, mark, owner_of
from wsi_assets.pipeline.steps import Pipeline
from wsi_core.pictures import class_colour
from wsi_core.tables import ANNOTATION_COVERAGE, OVERLAY_OVERLAP, SLIDE_METADATA, TABLES, TILE_GRID

KEY = "demo_slide_01"


def build_all(pipeline: Pipeline, key: str = KEY, progress=None) -> dict:
    return {table: pipeline.build(table, key, progress=progress) for table in TABLES}


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def test_every_table_has_its_picture_beside_it(slide_root: Path, tmp_path: Path) -> None:
    output = tmp_path / "output"
    pipeline = Pipeline(make_settings(slide_root, output))
    built = build_all(pipeline)
    for table, result in built.items():
        folder = output / table / f"slide={KEY}"
        stored = folder / PICTURE_FILE
        assert result.picture_uri == str(stored)
        assert result.picture is not None and result.picture.caption.startswith(
            "demo_slide_01.tiff: "
        )
        # the stored file is the picture plus our mark, same pixels
        data = stored.read_bytes()
        assert owner_of(data) == f"{table}/{KEY}/{PICTURE_FILE}"
        assert np.array_equal(pixels(data), pixels(result.picture.png))
        assert len(data) < 400 * 1024
        assert max(result.picture.size) <= 900
        assert result.facts["slide"] == "demo_slide_01.tiff"
    assert (output / SLIDE_METADATA / f"slide={KEY}" / THUMBNAIL_FILE).is_file()
    coverage = built[ANNOTATION_COVERAGE].picture
    assert coverage is not None
    assert coverage.legend == (("tumor", class_colour(0)), ("stroma", class_colour(1)))
    assert built[OVERLAY_OVERLAP].picture is not None
    assert built[OVERLAY_OVERLAP].picture.legend[0][0].startswith("tissue fraction")
    assert "level 0" in built[SLIDE_METADATA].picture.caption  # type: ignore[union-attr]
    # what a Ray worker ships to the driver
    again = pickle.loads(pickle.dumps(built[ANNOTATION_COVERAGE]))
    assert again.picture == coverage and again.data.equals(built[ANNOTATION_COVERAGE].data)


def test_the_slide_is_read_once_for_every_picture(
    slide_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from wsi_assets.pipeline import steps

    reads: list[str] = []
    real = steps.read_thumbnail
    monkeypatch.setattr(
        steps, "read_thumbnail", lambda reader: reads.append(reader.path) or real(reader)
    )
    pipeline = Pipeline(make_settings(slide_root, tmp_path / "output"))
    build_all(pipeline)
    assert len(reads) == 1
    stored = tmp_path / "output" / SLIDE_METADATA / f"slide={KEY}" / THUMBNAIL_FILE
    # another process: an output root from before thumbnails; the first table that needs one
    # reads the slide and stores it, the next one reads it back
    stored.unlink()
    other = Pipeline(make_settings(slide_root, tmp_path / "output"))
    other.build(TILE_GRID, KEY)
    assert len(reads) == 2 and stored.is_file()
    Pipeline(make_settings(slide_root, tmp_path / "output")).build(ANNOTATION_COVERAGE, KEY)
    assert len(reads) == 2


def test_tables_still_read_as_one_dataset(slide_root: Path, tmp_path: Path) -> None:
    output = tmp_path / "output"
    pipeline = Pipeline(make_settings(slide_root, output))
    build_all(pipeline, "demo_slide_01")
    build_all(pipeline, "demo_slide_02")
    for table in TABLES:
        one = pipeline.tables.dataset(table)  # pyarrow.dataset over the folder
        assert one is not None
        parts = [pipeline.tables.read(table, key)[0] for key in ("demo_slide_01", "demo_slide_02")]
        assert one.num_rows == sum(part.num_rows for part in parts)
        assert sorted(set(one["slide"].to_pylist())) == ["demo_slide_01", "demo_slide_02"]
    plain = ds.dataset(str(output / TILE_GRID), format="parquet", partitioning="hive")
    assert all(path.endswith(".parquet") for path in plain.files)
    glob = str(output / TILE_GRID / "*" / "*.parquet")
    rows = duckdb.sql(f"select count(*) from read_parquet('{glob}', hive_partitioning=true)")
    whole = pipeline.tables.dataset(TILE_GRID)
    assert whole is not None and rows.fetchall() == [(whole.num_rows,)]


def test_a_foreign_picture_is_never_overwritten(slide_root: Path, tmp_path: Path) -> None:
    output = tmp_path / "output"
    pipeline = Pipeline(make_settings(slide_root, output))
    pipeline.build(SLIDE_METADATA, KEY)
    path = output / TILE_GRID / f"slide={KEY}" / PICTURE_FILE
    path.parent.mkdir(parents=True)
    foreign = io.BytesIO()
    Image.new("RGB", (4, 4), (1, 2, 3)).save(foreign, format="PNG")
    path.write_bytes(foreign.getvalue())
    with pytest.raises(ForeignFileError, match=r"_preview\.png: a file not written by wsi_tiles"):
        pipeline.build(TILE_GRID, KEY)
    assert path.read_bytes() == foreign.getvalue()
    assert not (output / TILE_GRID / f"slide={KEY}" / "part-0.parquet").exists()
    # one of ours for another slide is foreign here too
    path.write_bytes(mark(foreign.getvalue(), f"{TILE_GRID}/other/{PICTURE_FILE}"))
    with pytest.raises(ForeignFileError):
        pipeline.build(TILE_GRID, KEY)


def test_retire_removes_the_pictures(slide_root: Path, tmp_path: Path) -> None:
    output = tmp_path / "output"
    pipeline = Pipeline(make_settings(slide_root, output))
    build_all(pipeline)
    removed = pipeline.retire(KEY)
    assert str(output / SLIDE_METADATA / f"slide={KEY}" / THUMBNAIL_FILE) in removed
    assert sum(uri.endswith(PICTURE_FILE) for uri in removed) == 4
    assert not list(output.rglob("*.png"))


def test_long_steps_report_progress_to_the_total(slide_root: Path, tmp_path: Path) -> None:
    pipeline = Pipeline(make_settings(slide_root, tmp_path / "output"))
    pipeline.build(SLIDE_METADATA, KEY)
    grid = pipeline.build(TILE_GRID, KEY).data
    for table in (ANNOTATION_COVERAGE, OVERLAY_OVERLAP):
        heard: list[tuple[int, int]] = []
        pipeline.build(
            table, KEY, progress=lambda done, total, kept=heard: kept.append((done, total))
        )
        assert heard[0] == (0, grid.num_rows) and heard[-1] == (grid.num_rows, grid.num_rows)
        assert [d for d, _ in heard] == sorted({d for d, _ in heard})


# -- what the Dagster UI shows ------------------------------------------------------------------


def preview_rows(markdown: str) -> list[dict[str, str]]:
    """The rows of a markdown preview table, as dicts of cell text."""
    lines = [line for line in markdown.splitlines() if line.startswith("| ")]
    names = [cell.strip() for cell in lines[0].strip("|").split("|")]
    return [
        dict(zip(names, (cell.strip() for cell in line.strip("|").split("|")), strict=True))
        for line in lines[1:]
    ]


def test_metadata_embeds_the_picture_and_says_something(slide_root: Path, tmp_path: Path) -> None:
    from wsi_assets.metadata import table_metadata

    output = tmp_path / "output"
    settings = make_settings(slide_root, output, tile_extent=32, stride=32)  # tiles inside regions
    built = build_all(Pipeline(settings))
    coverage = table_metadata(built[ANNOTATION_COVERAGE], settings)
    text = coverage["picture"].value
    assert text.startswith(f"![annotation_coverage of {KEY}](data:image/png;base64,")
    encoded = text.split("base64,", 1)[1].split(")", 1)[0]
    stored = (output / ANNOTATION_COVERAGE / f"slide={KEY}" / PICTURE_FILE).read_bytes()
    assert np.array_equal(pixels(base64.b64decode(encoded)), pixels(stored))
    assert coverage["slide"].value == "demo_slide_01.tiff"
    assert coverage["picture_uri"].value == str(
        output / ANNOTATION_COVERAGE / f"slide={KEY}" / PICTURE_FILE
    )

    # the preview starts with the most covered tile
    parquet = str(output / ANNOTATION_COVERAGE / "*" / "*.parquet")
    best = duckdb.sql(
        f"select max(greatest(coverage_tumor, coverage_stroma)) from read_parquet('{parquet}')"
    ).fetchall()[0][0]
    assert best > 0.5
    first = preview_rows(coverage["preview"].value)[0]
    assert f"{best:.6g}" in (first["coverage_tumor"], first["coverage_stroma"])  # as shown
    assert "highest coverage of any class first" in coverage["preview"].value

    # the flat numbers, computed again from the stored table
    for name in ("tumor", "stroma"):
        mean, over_half, count = duckdb.sql(
            f"select avg(coverage_{name}), count(*) filter (where coverage_{name} > 0.5), "
            f"count(*) from read_parquet('{parquet}')"
        ).fetchall()[0]
        assert coverage[f"mean_coverage_{name}"].value == pytest.approx(mean, rel=1e-5)
        assert isinstance(coverage[f"mean_coverage_{name}"], dg.FloatMetadataValue)
        assert coverage[f"tiles_over_half_{name}"] == dg.MetadataValue.int(over_half)
        assert coverage["tile_count"] == dg.MetadataValue.int(count)
    assert coverage["tiles_over_half_tumor"].value > 0

    overlap = table_metadata(built[OVERLAY_OVERLAP], settings)
    parquet = str(output / OVERLAY_OVERLAP / "*" / "*.parquet")
    mean, with_tissue, best = duckdb.sql(
        "select avg(tissue_fraction), count(*) filter (where tissue_fraction > 0), "
        f"max(tissue_fraction) from read_parquet('{parquet}')"
    ).fetchall()[0]
    assert overlap["mean_tissue_fraction"].value == pytest.approx(mean, rel=1e-5)
    assert overlap["tiles_with_tissue"].value == with_tissue > 0
    assert preview_rows(overlap["preview"].value)[0]["tissue_fraction"] == f"{best:.6g}"

    meta = table_metadata(built[SLIDE_METADATA], settings)
    lines = [line.strip("|").split("|") for line in meta["preview"].value.splitlines()]
    fields = {name.strip(): value.strip() for name, value in lines if not name.startswith("-")}
    assert lines[0] == [" slide_key ", f" {KEY} "]
    row = built[SLIDE_METADATA].data.to_pylist()[0]
    for name in ("uri", "vendor", "level", "mpp_x", "mpp_y", "level_width", "extent_x"):
        assert name in fields
    assert fields["vendor"] == row["vendor"] and fields["level"] == str(row["level"])
    assert meta["width_level0"].value == row["level_width"][0]
    assert meta["mpp_x"].value == row["mpp_x"]


def test_a_materialization_carries_its_picture(harness) -> None:
    """Through Dagster, in a real instance: the event of one slide's annotation_coverage."""
    harness.discover()
    harness.discover()
    harness.materialize(KEY)
    event = harness.instance.get_latest_materialization_event(dg.AssetKey(ANNOTATION_COVERAGE))
    assert event is not None and event.asset_materialization is not None
    metadata = event.asset_materialization.metadata
    assert event.asset_materialization.partition == KEY
    assert metadata["picture"].value.startswith("![annotation_coverage of demo_slide_01](")
    assert metadata["slide"].value == "demo_slide_01.tiff"
    stored = harness.table(ANNOTATION_COVERAGE, KEY)
    assert metadata["tile_count"].value == stored.num_rows
    tumor = stored["coverage_tumor"].to_numpy()
    assert metadata["mean_coverage_tumor"].value == pytest.approx(float(tumor.mean()), rel=1e-5)


def test_pictures_do_not_depend_on_the_process(slide_root: Path, tmp_path: Path) -> None:
    """All four tables in one pipeline (the thumbnail kept in memory) or each in a pipeline of
    its own (the thumbnail read back): the same bytes."""
    together = tmp_path / "together"
    build_all(Pipeline(make_settings(slide_root, together)))
    apart = tmp_path / "apart"
    for table in TABLES:
        Pipeline(make_settings(slide_root, apart)).build(table, KEY)
    for table in TABLES:
        name = f"{table}/slide={KEY}/{PICTURE_FILE}"
        assert (together / name).read_bytes() == (apart / name).read_bytes(), table
