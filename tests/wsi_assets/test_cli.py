"""The ``wsi-tiles`` command line on real slides from ../shared/data: ``info`` reports what the
files hold, ``tables`` writes the Dagster assets' tables row for row, ``export`` writes exactly
the tiles the tables choose with the reader's pixels, ``preview`` draws the UI's picture, and
bad files end in one line naming them. It runs without Dagster or Ray."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import tifffile
from PIL import Image
from s3_server import S3Bucket
from test_golden_tables import real_slide_root
from wsi_assets_support import Harness, make_settings

from wsi_assets.cli import main
from wsi_assets.pipeline.pictures import PICTURE_FILE
from wsi_assets.pipeline.steps import Pipeline
from wsi_assets.pipeline.tables import PROVENANCE_KEY
from wsi_assets.pipeline.tile_export import SelectionError, Thresholds, select_tiles
from wsi_core.pictures import thumbnail_size
from wsi_core.slide import open_slide
from wsi_core.tables import ANNOTATION_COVERAGE, OVERLAY_OVERLAP, TABLES, TILE_GRID

ROOT = Path(__file__).resolve().parents[2]
CMU = "CMU-1-Small-Region"
TCGA = "tcga-cr-7395-01a-01-ts1"


@pytest.fixture
def cmu(shared_data: Path) -> dict[str, Path]:
    return {
        "slide": shared_data / "slides" / f"{CMU}.svs",
        "annotation": shared_data / "annotations" / "geojson" / "123.annotation.geojson",
        "mask": shared_data / "masks" / "mask_full_res.tif",
        "tissue": shared_data / "masks" / "tissue-mask-cmu-1-small-region.npy",
    }


def cmu_options(cmu: dict[str, Path], tissue: Path | None = None) -> list[str]:
    """CMU-1-Small-Region's DSA annotation (label in ``properties.label``) and LUNA's mask
    (no resolution recorded: the slide's 0.499 um/px given), tiled at 0.5 um/px; or, with
    ``tissue``, that mask (aligned by its size) instead of LUNA's."""
    if tissue is not None:
        overlay = ["--overlay", str(tissue)]
    else:
        overlay = ["--overlay", str(cmu["mask"]), "--overlay-mpp", "0.499"]
    return [
        str(cmu["slide"]),
        "--annotation",
        str(cmu["annotation"]),
        "--label-property",
        "label",
        *overlay,
        "--mpp",
        "0.5",
    ]


def tissue_tiff(npy: Path, target: Path) -> Path:
    """histolab's tissue mask of a slide (bool, about 1/10 scale) as a uint8 TIFF {0, 255}
    in the test's folder (no resolution: aligned by its size)."""
    tifffile.imwrite(target, np.load(npy).astype(np.uint8) * 255)
    return target


def run(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def read(folder: Path, table: str, key: str) -> pa.Table:
    return pq.read_table(folder / table / f"slide={key}" / "part-0.parquet")


# info --------------------------------------------------------------------------------------------


def test_info_reports_levels_resolution_labels_and_overlay(
    cmu: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "info", *cmu_options(cmu), "--json")
    assert code == 0
    info = json.loads(out)
    assert info["key"] == CMU
    assert info["vendor"] == "aperio"
    assert info["file_size"] == 1_938_955
    assert info["levels"] == [
        {
            "level": 0,
            "width": 2220,
            "height": 2967,
            "downsample": 1.0,
            "mpp_x": 0.499,
            "mpp_y": 0.499,
        }
    ]
    assert (info["base_mpp"], info["mpp_source"]) == ([0.499, 0.499], "file")
    assert (info["level"], info["tiles"]) == (0, 9 * 12)  # 2220/256 -> 9, 2967/256 -> 12 (keep)
    assert info["annotation"] == {
        "uri": str(cmu["annotation"]),
        "labels": {"Other": 1, "Tumor": 1},
        "classes": {"tumor": 1, "stroma": 0},
        "unmatched": {"Other": 1},
    }
    overlay = info["overlay"]
    assert (overlay["uri"], overlay["width"], overlay["height"]) == (str(cmu["mask"]), 2220, 2967)
    assert (overlay["mpp"], overlay["mpp_source"], overlay["problem"]) == (
        [0.499, 0.499],
        "fallback",
        None,
    )

    code, text, _ = run(capsys, "info", *cmu_options(cmu), "--class", "other=Other")
    assert code == 0
    assert "0.499 x 0.499 um/px at level 0, recorded in the file" in text
    assert "labels    Other (1 polygon), Tumor (1 polygon)" in text
    assert "class     other: 1 polygon" in text
    assert "no class  Tumor (1)" in text  # --class replaced the default classes


def test_info_on_a_slide_without_resolution(
    shared_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    slide = shared_data / "slides" / f"{TCGA}.svs"
    code, out, _ = run(capsys, "info", slide, "--json")
    info = json.loads(out)
    assert code == 0
    assert [(lv["width"], lv["height"], lv["mpp_x"]) for lv in info["levels"]] == [
        (4443, 3567, None),
        (2221, 1783, None),
    ]
    assert (info["base_mpp"], info["level"], info["tiles"]) == (None, None, None)
    assert info["annotation"] is None
    assert info["annotation_looked_for"] == [
        str(slide.parent / f"{TCGA}{ext}") for ext in (".xml", ".geojson", ".json")
    ]
    code, text, _ = run(capsys, "info", slide)
    assert "not recorded in the file: give it with --slide-mpp" in text

    code, out, _ = run(capsys, "info", slide, "--slide-mpp", "0.25", "--mpp", "0.5", "--json")
    info = json.loads(out)
    assert (info["base_mpp"], info["mpp_source"], info["level"]) == ([0.25, 0.25], "fallback", 1)
    assert info["levels"][1]["mpp_x"] == pytest.approx(0.25 * 4443 / 2221, rel=1e-4)
    # 2221 x 1783 at 256 px (keep): 9 x 7
    assert info["tiles"] == 63

    code, out, _ = run(capsys, "info", slide, "--slide-mpp-override", "0.3", "--json")
    assert json.loads(out)["mpp_source"] == "override"


# tables: the same as the Dagster assets -------------------------------------------------------


def _dagster_and_cli_roots(
    case: str, shared_data: Path, tmp_path: Path
) -> tuple[Path, dict[str, object], list[str]]:
    """A slide root with one slide and its companions under the templates' names, the
    settings of the Dagster run, and the same settings as command-line options."""
    if case == CMU:
        root = real_slide_root(shared_data, tmp_path)  # the GeoJSON and LUNA's mask beside it
        settings = {"mpp": 0.5, "tile_extent": 256, "stride": 256, "overlay_mpp": 0.499}
        options = ["--mpp", "0.5", "--tile-size", "256", "--overlay-mpp", "0.499"]
        return root / f"{CMU}.svs", settings, options
    root = tmp_path / "tcga"
    root.mkdir()
    (root / f"{TCGA}.svs").symlink_to(shared_data / "slides" / f"{TCGA}.svs")
    npy = shared_data / "masks" / "tissue-mask-tcga-cr-7395.npy"
    tissue_tiff(npy, root / f"{TCGA}_tissue_mask.tif")
    settings = {"mpp": 1.0, "tile_extent": 128, "stride": 96, "slide_mpp": 0.25, "last": "shift"}
    options = ["--tile-size", "128", "--stride", "96", "--slide-mpp", "0.25", "--last", "shift"]
    return root / f"{TCGA}.svs", settings, options


def _same_tables(ours: Path, theirs: Path, key: str) -> None:
    """Every table of ``key`` under both output roots: the same rows, values, schema and
    provenance."""
    for table in TABLES:
        mine, other = read(ours, table, key), read(theirs, table, key)
        assert mine.num_rows == other.num_rows > 0, table
        assert mine.equals(other), table
        assert mine.schema.metadata[PROVENANCE_KEY] == other.schema.metadata[PROVENANCE_KEY]
        picture = Path(table) / f"slide={key}" / PICTURE_FILE  # what the UI shows
        assert (ours / picture).read_bytes() == (theirs / picture).read_bytes(), table


def test_tables_equal_the_dagster_assets_tables(
    shared_data: Path,
    tmp_path: Path,
    instance: dg.DagsterInstance,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = real_slide_root(shared_data, tmp_path)  # the GeoJSON and LUNA's mask beside it
    settings = make_settings(
        root, tmp_path / "dagster", mpp=0.5, tile_extent=256, stride=256, overlay_mpp=0.499
    )
    harness = Harness(settings, instance)
    harness.discover()
    assert harness.materialize(CMU).success

    slide = root / f"{CMU}.svs"
    options = ["--mpp", "0.5", "--tile-size", "256", "--overlay-mpp", "0.499"]
    code, out, _ = run(capsys, "tables", slide, "-o", tmp_path / "cli", *options)
    assert code == 0
    assert out.count("built (not stored in the output root)") == 4
    _same_tables(tmp_path / "cli", tmp_path / "dagster", CMU)
    coverage = read(tmp_path / "cli", ANNOTATION_COVERAGE, CMU)["coverage_tumor"]
    assert pc.max(coverage).as_py() == 1.0  # measured, not nulls equal to nulls

    code, out, _ = run(capsys, "tables", slide, "-o", tmp_path / "cli", *options)
    assert (code, out.count("current, kept")) == (0, 4)  # nothing is built twice


def test_tables_of_a_slide_without_resolution_equal_the_pipelines(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Against the engine-neutral pipeline the assets call (the Dagster run costs 20 s more
    # and test_tables_equal_the_dagster_assets_tables already shows the assets are it).
    root = tmp_path / "tcga"
    root.mkdir()
    slide = root / f"{TCGA}.svs"
    slide.symlink_to(shared_data / "slides" / f"{TCGA}.svs")
    npy = shared_data / "masks" / "tissue-mask-tcga-cr-7395.npy"
    tissue_tiff(npy, root / f"{TCGA}_tissue_mask.tif")
    settings = {"tile_extent": 128, "stride": 96, "slide_mpp": 0.25, "last": "shift"}
    pipeline = Pipeline(make_settings(root, tmp_path / "pipeline", mpp=1.0, **settings))
    for table in TABLES:
        pipeline.build(table, TCGA)

    options = ["--tile-size", "128", "--stride", "96", "--slide-mpp", "0.25", "--last", "shift"]
    code, _, err = run(capsys, "tables", slide, "-o", tmp_path / "cli", *options)
    assert code == 0, err
    _same_tables(tmp_path / "cli", tmp_path / "pipeline", TCGA)
    meta = read(tmp_path / "cli", "slide_metadata", TCGA).to_pylist()[0]
    assert (meta["base_mpp_x"], meta["level"], meta["extent_x"]) == (0.25, 1, 2221)
    grid = read(tmp_path / "cli", TILE_GRID, TCGA)
    # shift: origins every 96 px, the last one moved back to end at the level's edge
    assert sorted(set(grid["tile_x"].to_pylist()))[-2:] == [2016, 2221 - 128]
    tissue = read(tmp_path / "cli", OVERLAY_OVERLAP, TCGA)["tissue_fraction"]
    assert pc.max(tissue).as_py() == 1.0 and pc.min(tissue).as_py() == 0.0


# export ------------------------------------------------------------------------------------------


def test_export_writes_every_tile_with_the_readers_pixels(
    cmu: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "tiles"
    code, said, _ = run(capsys, "export", *cmu_options(cmu), "--tile-size", "512", "-o", out)
    assert code == 0
    assert "30 of 30 tiles written" in said
    pngs = sorted(out.glob("*.png"))
    # 2220 x 2967 at 512 px, the last row and column kept past the edge: 5 x 6 tiles
    expected = {
        f"{CMU}_level0_x{x}_y{y}.png" for x in range(0, 2220, 512) for y in range(0, 2967, 512)
    }
    assert {p.name for p in pngs} == expected
    with open_slide(cmu["slide"]) as reader:
        for png in pngs:
            x, y = (int(part[1:]) for part in png.stem.split("_")[-2:])
            pixels = np.asarray(Image.open(png))
            assert pixels.shape == (512, 512, 3)
            assert np.array_equal(pixels, reader.read_tile(x, y, 512, 512, 0)), png.name
    corner = np.asarray(Image.open(out / f"{CMU}_level0_x2048_y2560.png"))
    assert (corner[:, 2220 - 2048 :] == 255).all()  # past the slide's edge: white
    index = pq.read_table(out / "tiles.parquet")
    assert sorted(index["file"].to_pylist()) == sorted(expected)
    grid = read(out / "tables", TILE_GRID, CMU)
    assert index.select(grid.column_names).equals(grid)  # every file with its tile's row


def test_export_jpeg_at_another_level(shared_data: Path, tmp_path: Path) -> None:
    slide = shared_data / "slides" / f"{TCGA}.svs"
    out = tmp_path / "jpeg"
    argv = ["export", str(slide), "--slide-mpp", "0.25", "--mpp", "0.5", "--tile-size", "300"]
    assert main([*argv, "--format", "jpeg", "--last", "drop", "-o", str(out)]) == 0
    files = sorted(out.glob("*.jpg"))
    assert len(files) == (2221 // 300) * (1783 // 300)  # 7 x 5, partial tiles dropped
    with open_slide(slide) as reader:
        for path in files[:6]:
            x, y = (int(part[1:]) for part in path.stem.split("_")[-2:])
            assert path.stem.startswith(f"{TCGA}_level1_")
            pixels = np.asarray(Image.open(path)).astype(np.int16)
            assert pixels.shape == (300, 300, 3)
            error = np.abs(pixels - reader.read_tile(x, y, 300, 300, 1)).mean()
            assert error < 4, path.name  # JPEG at quality 90


def test_thresholds_choose_exactly_the_tiles_the_tables_say(
    cmu: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tissue = tissue_tiff(cmu["tissue"], tmp_path / "tissue.tif")
    options = [*cmu_options(cmu, tissue), "--tile-size", "256"]
    tables = tmp_path / "tables"
    assert main(["tables", *options, "-o", str(tables)]) == 0
    coverage = read(tables, ANNOTATION_COVERAGE, CMU)["coverage_tumor"].to_numpy()
    fraction = read(tables, OVERLAY_OVERLAP, CMU)["tissue_fraction"].to_numpy(zero_copy_only=False)
    grid = read(tables, TILE_GRID, CMU).to_pylist()
    partial = sorted(v for v in coverage if 0 < v < 1)
    minimum = float(partial[len(partial) // 2])  # a value a tile has exactly: ">=" keeps it

    def exported(*thresholds: str) -> set[str]:
        out = tmp_path / "-".join(thresholds)
        code, _, err = run(capsys, "export", *options, "--tables", tables, "-o", out, *thresholds)
        assert code == 0, err
        assert "built" not in err  # the tables given were current: read, not rebuilt
        return {p.name for p in out.glob("*.png")}

    def names(keep: np.ndarray) -> set[str]:
        return {
            f"{CMU}_level0_x{row['tile_x']}_y{row['tile_y']}.png"
            for row, kept in zip(grid, keep, strict=True)
            if kept
        }

    by_tumor = exported("--min-coverage", f"tumor={minimum}")
    assert by_tumor == names(coverage >= minimum)
    assert 0 < len(by_tumor) < len(grid)
    assert f"{CMU}_level0_x{grid[int(np.flatnonzero(coverage == minimum)[0])]['tile_x']}" in {
        name.rsplit("_y", 1)[0] for name in by_tumor
    }
    with np.errstate(invalid="ignore"):  # tiles without mask pixels are NaN: never kept
        by_tissue = exported("--min-tissue", "0.5")
        assert by_tissue == names(fraction >= 0.5)
        both = exported("--min-tissue", "0.5", "--min-coverage", "tumor=0.1")
        assert both == names((fraction >= 0.5) & (coverage >= 0.1))
    assert 0 < len(both) < min(len(by_tissue), len(names(coverage >= 0.1)))


# preview -----------------------------------------------------------------------------------------


def test_preview_writes_the_picture_of_each_table(
    cmu: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # What the pipeline the assets call stores beside its tables, the picture the UI shows.
    settings = make_settings(
        cmu["slide"].parent,
        tmp_path / "pipeline",
        mpp=0.5,
        tile_extent=256,
        stride=256,
        annotation_templates=[str(cmu["annotation"])],
        overlay_templates=[str(cmu["mask"])],
        overlay_mpp=0.499,
        label_property="label",
    )
    pipeline = Pipeline(settings)
    files = pipeline.slides.files(pipeline.slides.slide(f"{CMU}.svs"))
    for table in TABLES:
        pipeline.build(table, CMU, files)
    tables = tmp_path / "tables"  # built by the first preview, reused by the others
    for table in (ANNOTATION_COVERAGE, TILE_GRID, OVERLAY_OVERLAP):
        target = tmp_path / f"{table}.png"
        argv = ["preview", *cmu_options(cmu), "--table", table, "--tables", tables]
        code, _, err = run(capsys, *argv, "-o", target)
        assert code == 0, err
        image = Image.open(target)
        assert image.format == "PNG"
        width, height = thumbnail_size((2220, 2967))
        assert image.size[0] == width and image.size[1] > height  # legend and caption below
        assert target.read_bytes() == pipeline.pictures.read(table, CMU), table
    # Tables stored before pictures were: the table is rebuilt to draw it.
    (tables / OVERLAY_OVERLAP / f"slide={CMU}" / PICTURE_FILE).unlink()
    target = tmp_path / "again.png"
    argv = ["preview", *cmu_options(cmu), "--table", OVERLAY_OVERLAP, "--tables", tables]
    assert main([str(a) for a in argv] + ["-o", str(target)]) == 0
    assert target.read_bytes() == pipeline.pictures.read(OVERLAY_OVERLAP, CMU)


# errors ------------------------------------------------------------------------------------------


def _one_line_error(err: str, *names: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("wsi-tiles: "), err
    assert "Traceback" not in err
    for name in names:
        assert name in lines[0], (name, err)
    return lines[0]


def test_missing_and_damaged_files_end_in_one_line_naming_them(
    cmu: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no-such-slide.svs"
    code, _, err = run(capsys, "info", missing)
    assert code == 1
    _one_line_error(err, f"{missing}: slide file not found")

    cut = tmp_path / "cut.svs"
    cut.write_bytes(cmu["slide"].read_bytes()[:200_000])
    for command in (["info"], ["tables", "-o", str(tmp_path / "t")]):
        code, _, err = run(capsys, *command, cut)
        assert code == 1
        _one_line_error(err, str(cut))

    broken = tmp_path / "broken.geojson"
    broken.write_text('{"type": "FeatureCollection", "features": [')
    code, _, err = run(capsys, "tables", cmu["slide"], "--annotation", broken, "-o", tmp_path)
    assert code == 1
    _one_line_error(err, str(broken))

    absent = tmp_path / "absent.geojson"
    code, _, err = run(capsys, "info", cmu["slide"], "--annotation", absent)
    assert code == 1
    _one_line_error(err, f"{absent}: annotation file not found")


def test_a_slide_without_resolution_names_the_option(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    slide = shared_data / "slides" / f"{TCGA}.svs"
    code, _, err = run(capsys, "tables", slide, "-o", tmp_path)
    assert code == 1
    _one_line_error(err, str(slide), "--slide-mpp")


def test_thresholds_that_cannot_be_answered(
    cmu: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    slide = str(cmu["slide"])
    code, _, err = run(capsys, "export", slide, "--min-coverage", "necrosis=0.5", "-o", tmp_path)
    assert code == 1
    _one_line_error(err, "no class 'necrosis'", "tumor, stroma")
    # No annotation or mask beside the slide: nothing was measured, so nothing could pass.
    code, _, err = run(capsys, "export", slide, "--min-coverage", "tumor=0.5", "-o", tmp_path)
    assert code == 1
    _one_line_error(err, "--min-coverage needs the slide's annotation file", "--annotation")
    code, _, err = run(capsys, "export", slide, "--min-tissue", "0.5", "-o", tmp_path)
    assert code == 1
    _one_line_error(err, "--min-tissue needs the slide's overlay file", "--overlay")
    assert list(tmp_path.iterdir()) == []  # refused before any table or tile was written
    code, _, err = run(capsys, "info", slide, "--class", "tumor=([")
    assert code == 1
    _one_line_error(err, "--class", "bad regular expression '(['")
    with pytest.raises(SystemExit) as exit_:
        main(["export", slide, "--min-tissue", "1.5", "-o", str(tmp_path)])
    assert exit_.value.code == 2
    assert "must be a fraction from 0 to 1" in capsys.readouterr().err


def test_select_tiles_refuses_thresholds_on_unmeasured_tables(
    cmu: dict[str, Path], tmp_path: Path
) -> None:
    pipeline = Pipeline(make_settings(cmu["slide"].parent, tmp_path, mpp=0.5, tile_extent=512))
    built = {t: pipeline.build(t, CMU).data for t in TABLES}  # no annotation, no mask found
    grid = built[TILE_GRID]
    assert select_tiles(grid, Thresholds()).equals(grid)
    with pytest.raises(SelectionError, match="coverage was not measured"):
        select_tiles(grid, Thresholds(min_coverage={"tumor": 0.0}), built[ANNOTATION_COVERAGE])
    with pytest.raises(SelectionError, match="tissue was not measured"):
        select_tiles(grid, Thresholds(min_tissue=0.0), overlap=built[OVERLAY_OVERLAP])
    with pytest.raises(SelectionError, match="does not list the tile grid's tiles"):
        select_tiles(
            grid.slice(1), Thresholds(min_coverage={"tumor": 0.0}), built[ANNOTATION_COVERAGE]
        )


# the console script, without Dagster or Ray ------------------------------------------------------


def _environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("WSI_")}


def test_the_console_script_runs(cmu: dict[str, Path], tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("wsi-tiles")
    if not script.exists():
        pytest.skip(f"{script} is not installed: run pip install -e . in the project root")
    done = subprocess.run(
        [script, "info", *cmu_options(cmu), "--json"],
        capture_output=True,
        text=True,
        env=_environment(),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["annotation"]["classes"] == {"tumor": 1, "stroma": 0}
    helped = subprocess.run(
        [script, "export", "--help"], capture_output=True, text=True, check=False
    )
    assert helped.returncode == 0
    assert "--min-coverage CLASS=V" in helped.stdout
    failed = subprocess.run(
        [script, "info", str(tmp_path / "x.svs")], capture_output=True, text=True, check=False
    )
    assert failed.returncode == 1
    assert failed.stderr.strip() == f"wsi-tiles: {tmp_path / 'x.svs'}: slide file not found"


def test_no_command_imports_dagster_or_ray(cmu: dict[str, Path], tmp_path: Path) -> None:
    # A None in sys.modules makes every import of that package fail: a command that needed
    # Dagster or Ray would exit with an ImportError here.
    options = cmu_options(cmu)
    code = f"""
import sys
sys.modules["dagster"] = None
sys.modules["ray"] = None
from wsi_assets.cli import main
options = {options!r}
out = {str(tmp_path)!r}
assert main(["info", *options]) == 0
assert main(["tables", *options, "-o", out + "/t"]) == 0
assert main(["export", *options, "--min-coverage", "tumor=0.5", "-o", out + "/e"]) == 0
assert main(["preview", *options, "-o", out + "/p.png"]) == 0
print(sorted(m for m in sys.modules if m.split(".")[0] in ("dagster", "ray") and sys.modules[m]))
"""
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=_environment(),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert len(list((tmp_path / "e").glob("*.png"))) > 0


def test_a_slide_and_its_files_on_s3(
    cmu: dict[str, Path], s3_bucket: S3Bucket, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The same files, local and in a bucket (a real S3 API on loopback): the same tables,
    # written to the bucket, and the same tiles.
    s3_bucket.put(f"slides/{CMU}.svs", cmu["slide"].read_bytes())
    s3_bucket.put("notes/123.geojson", cmu["annotation"].read_bytes())
    local = cmu_options(cmu)
    remote = [s3_bucket.url(f"slides/{CMU}.svs"), *local[1:]]
    remote[remote.index(str(cmu["annotation"]))] = s3_bucket.url("notes/123.geojson")

    assert main(["tables", *local, "-o", str(tmp_path / "local")]) == 0
    code, _, err = run(capsys, "tables", *remote, "-o", s3_bucket.url("out"))
    assert code == 0, err
    for table in TABLES:
        key = f"out/{table}/slide={CMU}/part-0.parquet"
        theirs = pq.read_table(pa.BufferReader(s3_bucket.get(key)))
        mine = read(tmp_path / "local", table, CMU)
        if table == "slide_metadata":  # where the slide is, and its version, differ
            mine, theirs = mine.drop_columns(["uri"]), theirs.drop_columns(["uri"])
        assert mine.equals(theirs), table

    code, out, err = run(capsys, "info", *remote, "--json")
    assert code == 0, err
    info = json.loads(out)
    assert info["uri"] == s3_bucket.url(f"slides/{CMU}.svs")
    assert info["annotation"]["uri"] == s3_bucket.url("notes/123.geojson")
    assert info["annotation"]["classes"] == {"tumor": 1, "stroma": 0}

    threshold = ["--min-coverage", "tumor=0.5"]
    assert main(["export", *local, *threshold, "-o", str(tmp_path / "tiles-local")]) == 0
    assert main(["export", *remote, *threshold, "-o", str(tmp_path / "tiles-s3")]) == 0
    tiles = sorted(p.name for p in (tmp_path / "tiles-local").glob("*.png"))
    assert tiles == sorted(p.name for p in (tmp_path / "tiles-s3").glob("*.png"))
    assert tiles
    for name in tiles:
        ours = np.asarray(Image.open(tmp_path / "tiles-s3" / name))
        assert np.array_equal(ours, np.asarray(Image.open(tmp_path / "tiles-local" / name)))
