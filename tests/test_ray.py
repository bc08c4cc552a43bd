"""The Ray Data API: ``read_slides`` and the per-tile kernels as expression UDFs.

Every dataset runs on one local Ray per session (``ray_support.py``: 2 CPUs, no dashboard,
no usage stats) and its rows are compared, exactly, with the in-process kernels. Datasets are
small: a Ray execution costs a fraction of a second, not the data.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import ray_support
from ray_support import assert_same_fractions, by_tile, in_process
from shapely.geometry import Point, box

from wsi_core.errors import MissingMPPError, SlideError, WSIError
from wsi_core.slide import open_slide
from wsi_core.synthetic import write_pyramid_tiff
from wsi_core.tiling import (
    grid_tile_array,
    read_slide_tiles,
    tile_overlay,
    tile_overlay_overlap,
)

ray = pytest.importorskip("ray")
ray_data = pytest.importorskip("ray.data")
col = pytest.importorskip("ray.data.expressions").col


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory):
    """The session's local Ray; yields the log of the slides its workers open."""
    log = ray_support.start_ray(tmp_path_factory.mktemp("ray"))
    yield log
    ray_support.stop_ray()


def smooth_rgb(height: int, width: int, seed: int) -> np.ndarray:
    """A smooth RGB image (gradients and a few blobs) that compresses well."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width].astype(np.float64)
    image = np.stack(
        [
            128 + 100 * np.sin(xx / rng.uniform(40, 90) + yy / rng.uniform(60, 120) + shift)
            for shift in rng.uniform(0, 6, 3)
        ],
        axis=-1,
    )
    return np.clip(image, 0, 255).astype(np.uint8)


def label_blobs(height: int, width: int, seed: int, values=(0, 255)) -> np.ndarray:
    """A uint8 label image: discs of ``values[1:]`` on ``values[0]``."""
    rng = np.random.default_rng(seed)
    image = np.full((height, width), values[0], dtype=np.uint8)
    yy, xx = np.ogrid[:height, :width]
    for _ in range(10):
        cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(5, width / 3)
        image[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = rng.choice(values[1:])
    return image


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> dict[str, Path]:
    """Two synthetic slides with masks, in one folder with things that are not slides.

    * ``a.tiff``: RGB, 2400 x 1600 at 0.25 um/px, 3 levels (SubIFDs);
      ``a_tissue_mask.tiff``: 0/128/255 at 4 um/px (150 x 100), 2 levels.
    * ``nested/b.TIFF``: RGB, 1200 x 1000 at 0.5 um/px, 2 levels (top-level pages);
      ``nested/b_tissue_mask.tiff``: true-colour RGB labels at 2 um/px (300 x 250).
    * ``notes.txt``, ``.hidden.tiff``, ``.cache/c.tiff``: skipped by folder expansion.
    """
    root = tmp_path_factory.mktemp("synthetic")
    (root / "nested").mkdir()
    (root / ".cache").mkdir()
    paths = {
        "a": write_pyramid_tiff(root / "a.tiff", smooth_rgb(1600, 2400, 1), 0.25, 3),
        "a_mask": write_pyramid_tiff(
            root / "a_tissue_mask.tiff",
            label_blobs(100, 150, 2, values=(0, 255, 128)),
            4.0,
            2,
            resample="nearest",
            tile=(32, 32),
        ),
        "b": write_pyramid_tiff(
            root / "nested" / "b.TIFF", smooth_rgb(1000, 1200, 3), 0.5, 2, subifds=False
        ),
    }
    colours = np.array([[255, 255, 255], [200, 30, 40], [20, 160, 60]], dtype=np.uint8)
    labels = label_blobs(250, 300, 4, values=(0, 1, 2))
    paths["b_mask"] = write_pyramid_tiff(
        root / "nested" / "b_tissue_mask.tiff", colours[labels], 2.0, 1, resample="nearest"
    )
    (root / "notes.txt").write_text("not a slide")
    shutil.copy(paths["a"], root / ".hidden.tiff")
    shutil.copy(paths["a"], root / ".cache" / "c.tiff")
    paths["root"] = root
    return paths


def expected_row(path, mpp=None, level=None, tile=512, stride=512) -> dict:
    """The read_slides row of ``path``, from the reader's own methods."""
    with open_slide(path) as slide:
        if level is None:
            level = slide.closest_level(mpp)
        try:
            base = slide.mpp
            mpp_x, mpp_y = slide.slide_resolution(level)
        except MissingMPPError:
            base, mpp_x, mpp_y = (None, None), None, None
        extent_x, extent_y = slide.level_dimensions[level]
        return {
            "path": str(path),
            "extent_x": extent_x,
            "extent_y": extent_y,
            "tile_extent_x": tile,
            "tile_extent_y": tile,
            "stride_x": stride,
            "stride_y": stride,
            "mpp_x": mpp_x,
            "mpp_y": mpp_y,
            "level": level,
            "downsample": float(slide.level_downsamples[level]),
            "level_count": slide.level_count,
            "base_mpp_x": base[0],
            "base_mpp_y": base[1],
            "vendor": slide.vendor,
        }


@pytest.fixture
def ordered():
    """Ray Data keeps the order of blocks for this test (read_slides' rows come sorted)."""
    context = ray_data.DataContext.get_current()
    before = context.execution_options.preserve_order
    context.execution_options.preserve_order = True
    yield
    context.execution_options.preserve_order = before


# read_slides -------------------------------------------------------------------------------


def test_read_slides_rows_of_real_slides(ray_cluster, shared_data, ordered):
    slides = shared_data / "slides"
    paths = [slides / "CMU-1-Small-Region.svs", slides / "boxes.tiff"]  # sorted: "C" < "b"
    rows = ray_read_rows(paths, mpp=1.0, tile_extent=512, stride=512)
    assert rows == [expected_row(p, mpp=1.0) for p in paths]
    assert rows[0]["vendor"] == "aperio" and rows[0]["level"] == 0

    # An explicit level reads slides that record no resolution (the TCGA slide): null mpp.
    tcga = slides / "tcga-cr-7395-01a-01-ts1.svs"
    boxes = slides / "boxes.tiff"
    rows = ray_read_rows([tcga, boxes], level=1, tile_extent=(256, 128), stride=(200, 100))
    want = [expected_row(p, level=1) for p in (boxes, tcga)]
    for row in want:
        row.update(tile_extent_x=256, tile_extent_y=128, stride_x=200, stride_y=100)
    assert rows == want
    assert rows[1]["path"] == str(tcga) and rows[1]["mpp_x"] is None


def ray_read_rows(paths, **kwargs) -> list[dict]:
    from wsi_core.ray import read_slides

    return read_slides(paths, **kwargs).take_all()


def test_read_slides_expands_folders_sorted_and_skips_hidden(ray_cluster, synthetic, ordered):
    from wsi_core.ray import read_slides

    root = synthetic["root"]
    slides = read_slides(root, mpp=0.5, tile_extent=256, stride=192, override_num_blocks=3)
    rows = slides.take_all()
    want = sorted([synthetic[k] for k in ("a", "a_mask", "b", "b_mask")], key=str)
    assert [row["path"] for row in rows] == [str(p) for p in want]
    assert rows == [expected_row(p, mpp=0.5, tile=256, stride=192) for p in want]
    a = rows[0]
    assert (a["level"], a["extent_x"], a["extent_y"], a["mpp_x"]) == (1, 1200, 800, 0.5)
    # A relative folder gives absolute paths, so workers in any directory find the files.
    relative = os.path.relpath(root / "nested")
    assert [r["path"] for r in ray_read_rows(relative, level=0, tile_extent=64, stride=64)] == [
        str(synthetic["b"]),
        str(synthetic["b_mask"]),
    ]


def test_read_slides_checks_its_arguments_before_running():
    from wsi_core.ray import read_slides

    with pytest.raises(ValueError, match="exactly one of mpp= and level="):
        read_slides("x.svs", tile_extent=512, stride=512)
    with pytest.raises(ValueError, match="exactly one of mpp= and level="):
        read_slides("x.svs", mpp=0.5, level=0, tile_extent=512, stride=512)
    for bad in (0, -512, (512,), (512, 0), 512.0, True, "512"):
        with pytest.raises(ValueError, match="tile_extent"):
            read_slides("x.svs", mpp=0.5, tile_extent=bad, stride=512)
    with pytest.raises(ValueError, match="stride"):
        read_slides("x.svs", mpp=0.5, tile_extent=512, stride=(512, -1))
    with pytest.raises(ValueError, match="mpp"):
        read_slides("x.svs", mpp=0, tile_extent=512, stride=512)
    with pytest.raises(ValueError, match="level"):
        read_slides("x.svs", level=-1, tile_extent=512, stride=512)


def test_read_slides_missing_path_fails_at_once(tmp_path):
    from wsi_core.ray import read_slides

    missing = tmp_path / "nowhere"
    with pytest.raises(SlideError, match="no such file or folder") as info:
        read_slides(missing, mpp=0.5, tile_extent=512, stride=512)
    assert info.value.path == str(missing)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no slide files"):
        read_slides(tmp_path / "empty", mpp=0.5, tile_extent=512, stride=512)


def test_read_slides_names_a_file_that_is_not_a_slide(ray_cluster, synthetic, tmp_path):
    from wsi_core.ray import read_slides

    shutil.copy(synthetic["a"], tmp_path / "good.tiff")
    fake = tmp_path / "zz_scan.svs"
    fake.write_bytes(b"this is a text file named like a slide\n" * 20)
    with pytest.raises(WSIError) as info:
        read_slides(tmp_path, mpp=0.5, tile_extent=512, stride=512).take_all()
    # Ray re-raises the worker's SlideError as a RayTaskError that is a SlideError too; the
    # error itself (its cause) names the file first.
    error = info.value
    assert isinstance(error, SlideError) and error.path == str(fake)
    assert str(error.cause).startswith(f"{fake}: ")


def test_read_slides_names_a_slide_without_resolution(ray_cluster, synthetic, tmp_path):
    from wsi_core.ray import read_slides

    bare = write_pyramid_tiff(
        tmp_path / "bare.tiff", smooth_rgb(64, 64, 5), 0.5, 1, resolution_unit=None
    )
    with pytest.raises(MissingMPPError) as info:
        read_slides(bare, mpp=0.5, tile_extent=32, stride=32).take_all()
    assert str(info.value.cause).startswith(f"{bare}: no resolution")
    # ... unless the caller says what it is.
    (row,) = read_slides(bare, mpp=0.5, slide_mpp=0.25, tile_extent=32, stride=32).take_all()
    assert (row["base_mpp_x"], row["level"], row["mpp_x"]) == (0.25, 0, 0.25)
    with pytest.raises(SlideError, match="has no level 3") as info:
        read_slides(bare, level=3, tile_extent=32, stride=32).take_all()
    assert info.value.path == str(bare)


def test_read_slides_reads_headers_only(ray_cluster, synthetic, tmp_path):
    """A slide whose pixel data is garbage still gives its row: nothing is decoded."""
    import tifffile

    from wsi_core.ray import read_slides

    path = write_pyramid_tiff(tmp_path / "garbage.tiff", smooth_rgb(256, 256, 6), 0.5, 2)
    data = bytearray(path.read_bytes())
    with tifffile.TiffFile(path) as tif:
        pages = [tif.pages[0], *tif.pages[0].pages]
        segments = [
            (o, n)
            for page in pages
            for o, n in zip(page.dataoffsets, page.databytecounts, strict=True)
        ]
    for offset, size in segments:
        data[offset : offset + size] = b"\xff" * size
    path.write_bytes(bytes(data))
    (row,) = read_slides(path, mpp=1.0, tile_extent=64, stride=64).take_all()
    assert (row["level"], row["extent_x"]) == (1, 128)
    with (
        pytest.raises(SlideError, match="cannot decode tile 0 of level 0"),
        open_slide(path) as slide,
    ):
        slide.read_tile(0, 0, 8, 8, 0)


def test_read_slides_splits_sorted_runs_over_read_tasks(synthetic):
    from wsi_core.ray import SlideMetadataDatasource
    from wsi_core.ray.metadata import TilingRequest

    request = TilingRequest.of(
        tile_extent=64, stride=64, mpp=0.5, level=None, slide_mpp=None, storage_options=None
    )
    locations = [f"/slides/{i:02d}.svs" for i in range(7)]
    tasks = SlideMetadataDatasource(locations, request).get_read_tasks(3)
    runs = [task.metadata.input_files for task in tasks]
    assert [len(run) for run in runs] == [2, 2, 3]
    assert [path for run in runs for path in run] == locations
    assert len(SlideMetadataDatasource(locations[:2], request).get_read_tasks(200)) == 2


def test_read_slides_on_an_s3_prefix(ray_cluster, synthetic, s3_bucket, s3_endpoint, ordered):
    from wsi_core.ray import read_slides

    for key in ("a", "b"):
        s3_bucket.put(f"cohort/{key}.tiff", synthetic[key].read_bytes())
    s3_bucket.put("cohort/deeper/.hidden.tiff", synthetic["a"].read_bytes())
    s3_bucket.put("cohort/readme.md", b"# not a slide")
    s3_bucket.put("elsewhere/x.tiff", synthetic["a"].read_bytes())
    # The workers started before this test's AWS_* variables: they reach the bucket only
    # through the storage options, which read_slides sends them.
    options = {"endpoint_url": s3_endpoint, "key": "testing", "secret": "testing"}
    rows = read_slides(
        s3_bucket.url("cohort"), mpp=0.5, tile_extent=256, stride=256, storage_options=options
    ).take_all()
    assert [row["path"] for row in rows] == [
        s3_bucket.url("cohort/a.tiff"),
        s3_bucket.url("cohort/b.tiff"),
    ]
    for row, key in zip(rows, ("a", "b"), strict=True):
        assert row == {
            **expected_row(synthetic[key], mpp=0.5, tile=256, stride=256),
            "path": row["path"],
        }

    # An fsspec file system object instead of a URL: its own storage options are used.
    import s3fs

    fs = s3fs.S3FileSystem(
        **{k: v for k, v in options.items() if k != "endpoint_url"}, endpoint_url=s3_endpoint
    )
    rows = read_slides(
        f"{s3_bucket.name}/cohort/b.tiff", filesystem=fs, level=0, tile_extent=256, stride=256
    ).take_all()
    assert [row["path"] for row in rows] == [s3_bucket.url("cohort/b.tiff")]


# Expression UDFs ---------------------------------------------------------------------------

#: slide -> its overlay in the ``synthetic`` set
MASK_OF = {"a": "a_mask", "b": "b_mask"}


def tile_rows(row: dict, overlay: str) -> list[dict]:
    """The tiles of a read_slides row (``grid_tiles`` with ``last="keep"``), each naming the
    overlay."""
    origins = grid_tile_array(
        (row["extent_x"], row["extent_y"]),
        (row["tile_extent_x"], row["tile_extent_y"]),
        (row["stride_x"], row["stride_y"]),
        last="keep",
    )
    return [
        {
            "path": row["path"],
            "overlay_path": overlay,
            "tile_x": int(x),
            "tile_y": int(y),
            "tile_extent_x": row["tile_extent_x"],
            "tile_extent_y": row["tile_extent_y"],
            "mpp_x": row["mpp_x"],
            "mpp_y": row["mpp_y"],
            "level": row["level"],
        }
        for x, y in origins
    ]


def synthetic_tiles(synthetic, *, mpp=0.5, tile=256, stride=256):
    """Ray dataset of the tiles of both synthetic slides (read_slides -> flat_map)."""
    from wsi_core.ray import read_slides

    overlay_of = {str(synthetic[k]): str(synthetic[m]) for k, m in MASK_OF.items()}
    slides = read_slides([synthetic[k] for k in MASK_OF], mpp=mpp, tile_extent=tile, stride=stride)
    return slides.flat_map(lambda row: tile_rows(row, overlay_of[row["path"]]))


@pytest.mark.parametrize(
    "roi", [box(0, 0, 256, 256), Point(128, 128).buffer(150, quad_segs=16)], ids=["box", "disc"]
)
def test_overlap_column_equals_the_kernel(ray_cluster, synthetic, roi):
    tiles = synthetic_tiles(synthetic)
    rows = tiles.with_column(
        "overlap",
        tile_overlay_overlap(
            roi=roi,
            overlay_path=col("overlay_path"),
            tile_x=col("tile_x"),
            tile_y=col("tile_y"),
            mpp_x=col("mpp_x"),
            mpp_y=col("mpp_y"),
        ),
    ).take_all()
    want = in_process(rows, tile_overlay_overlap, roi=roi)
    keys = set()
    for key, row in by_tile(rows).items():
        assert_same_fractions(row["overlap"], want[key])
        keys |= set(row["overlap"] or ())
    # Grey values key by value, true colours by "r,g,b" (the RGB mask of slide b).
    assert {"0", "128", "255", "200,30,40", "20,160,60"} <= keys
    # a at 0.5 um/px is level 1, 1200 x 800: 5 x 4 tiles; b is level 0, 1200 x 1000: 5 x 4.
    assert len(rows) == 40


def test_overlay_patch_column_equals_the_kernel(ray_cluster, synthetic):
    roi = box(64, 64, 192, 192)
    rows = (
        synthetic_tiles(synthetic)
        .with_column(
            "overlay",
            tile_overlay(
                roi=roi,
                overlay_path=col("overlay_path"),
                tile_x=col("tile_x"),
                tile_y=col("tile_y"),
                mpp_x=col("mpp_x"),
                mpp_y=col("mpp_y"),
            ),
        )
        .take_all()
    )
    want = in_process(rows, tile_overlay, roi=roi)
    for key, row in by_tile(rows).items():
        patch = row["overlay"]
        assert set(patch) == {"data", "mask"}
        for name in ("data", "mask"):
            expected = getattr(want[key], name)
            assert patch[name].dtype == expected.dtype and np.array_equal(patch[name], expected)
    # a's mask at 4 um/px under a 128 px ROI at 0.5 um/px: 16 x 16 grey samples;
    # b's RGB mask at 2 um/px: 32 x 32 x 3.
    shapes = {row["path"]: row["overlay"]["data"].shape for row in rows}
    assert shapes == {str(synthetic["a"]): (16, 16), str(synthetic["b"]): (32, 32, 3)}


def test_slide_tile_column_equals_read_tile(ray_cluster, synthetic):
    tiles = synthetic_tiles(synthetic, tile=(192, 160), stride=(400, 300))
    rows = (
        tiles.repartition(target_num_rows_per_block=4)
        .with_column(
            "tile",
            read_slide_tiles(
                path=col("path"),
                tile_x=col("tile_x"),
                tile_y=col("tile_y"),
                tile_extent_x=col("tile_extent_x"),
                tile_extent_y=col("tile_extent_y"),
                level=col("level"),
                background=(0, 0, 255),
            ),
        )
        .take_all()
    )
    # keep never starts a tile at or past the edge: a (1200 x 800) 3 x 3, b (1200 x 1000) 3 x 4
    assert len(rows) == 9 + 12
    for row in rows:
        with open_slide(row["path"]) as slide:
            want = slide.read_tile(
                row["tile_x"], row["tile_y"], 192, 160, row["level"], (0, 0, 255)
            )
        assert row["tile"].dtype == np.uint8 and np.array_equal(row["tile"], want)
    # Plain values compute directly, in input order.
    row = rows[-1]
    (plain,) = read_slide_tiles(
        row["path"],
        [row["tile_x"]],
        [row["tile_y"]],
        192,
        160,
        row["level"],
        background=(0, 0, 255),
    )
    assert np.array_equal(plain, row["tile"])


def test_each_file_is_opened_once_per_block(ray_cluster, synthetic, tmp_path):
    """Two overlays (and two slides) named by 120 rows in 3 blocks: each file is opened
    once per block, as the workers' open log shows, not once per row."""
    files = {}
    for name in ("a", "a_mask", "b", "b_mask"):
        files[name] = str(shutil.copy(synthetic[name], tmp_path / synthetic[name].name))
    rows = [
        {
            "path": files["a" if i % 2 else "b"],
            "overlay_path": files["a_mask" if i % 2 else "b_mask"],
            "tile_x": 32 * (i % 12),
            "tile_y": 32 * (i // 12),
            "mpp_x": 0.5,
            "mpp_y": 0.5,
            "level": 0,
        }
        for i in range(120)
    ]
    tiles = ray_data.from_items(rows, override_num_blocks=3)
    arguments = {
        "overlay_path": col("overlay_path"),
        "tile_x": col("tile_x"),
        "tile_y": col("tile_y"),
        "mpp_x": col("mpp_x"),
        "mpp_y": col("mpp_y"),
    }
    out = (
        tiles.with_column("overlap", tile_overlay_overlap(roi=box(0, 0, 64, 64), **arguments))
        .with_column("tile", read_slide_tiles(col("path"), col("tile_x"), col("tile_y"), 64, 64, 0))
        .materialize()
    )
    assert out.num_blocks() == 3 and out.count() == 120
    assert ray_cluster.opens(*files.values()) == dict.fromkeys(files.values(), 3)
    # And the values are the kernel's.
    got = out.take_all()
    want = in_process(got, tile_overlay_overlap, roi=box(0, 0, 64, 64))
    for key, row in by_tile(got).items():
        assert_same_fractions(row["overlap"], want[key])


def test_pandas_blocks_and_add_column(ray_cluster, synthetic):
    """The expression serves pandas blocks too, and works as add_column's batch function
    (the seed documents use it that way)."""
    roi = box(0, 0, 256, 256)
    tiles = synthetic_tiles(synthetic).map_batches(lambda df: df, batch_format="pandas")
    expression = tile_overlay_overlap(
        roi=roi,
        overlay_path=col("overlay_path"),
        tile_x=col("tile_x"),
        tile_y=col("tile_y"),
        mpp_x=col("mpp_x"),
        mpp_y=col("mpp_y"),
    )
    for rows in (
        tiles.with_column("overlap", expression).take_all(),
        tiles.add_column("overlap", expression, num_cpus=1).take_all(),
        tiles.add_column("overlap", expression, batch_format="pyarrow").take_all(),
        tiles.add_column("overlap", expression, batch_format="numpy").take_all(),
    ):
        want = in_process(rows, tile_overlay_overlap, roi=roi)
        for key, row in by_tile(rows).items():
            assert_same_fractions(row["overlap"], want[key])


def test_literal_and_computed_arguments(ray_cluster, synthetic):
    """Plain values bind for every row; computed expressions are evaluated by Ray."""
    roi = box(0, 0, 256, 256)
    overlay = str(synthetic["a_mask"])
    tiles = synthetic_tiles(synthetic).filter(expr=col("overlay_path") == overlay)
    rows = tiles.with_column(
        "overlap",
        tile_overlay_overlap(
            roi, overlay, col("tile_x") - 256 + 256, col("tile_y"), 0.5, col("mpp_y")
        ),
    ).take_all()
    want = in_process(rows, tile_overlay_overlap, roi=roi)
    assert len(rows) == 20
    for key, row in by_tile(rows).items():
        assert_same_fractions(row["overlap"], want[key])
    with pytest.raises(TypeError, match="computed expression"):
        tile_overlay_overlap(roi, overlay, col("tile_x") + 1, col("tile_y"), 0.5, 0.5)(
            {"tile_x": np.zeros(1), "tile_y": np.zeros(1)}
        )


def test_null_rows_and_file_errors(ray_cluster, synthetic, tmp_path):
    roi = box(0, 0, 64, 64)
    rows = [
        {"overlay_path": str(synthetic["a_mask"]), "tile_x": x, "tile_y": 0}
        for x in (0, 5000, -5000)
    ]
    arguments = {"tile_x": col("tile_x"), "tile_y": col("tile_y"), "mpp_x": 0.5, "mpp_y": 0.5}
    got = (
        ray_data.from_items(rows)
        .repartition(1)
        .with_column("overlap", tile_overlay_overlap(roi, col("overlay_path"), **arguments))
        .take_all()
    )
    assert [row["overlap"] is None for row in got] == [False, True, True]
    assert got[0]["overlap"] == tile_overlay_overlap(roi, synthetic["a_mask"], 0, 0, 0.5, 0.5)[0]

    missing = tmp_path / "missing_mask.tiff"
    dataset = ray_data.from_items([{"overlay_path": str(missing), "tile_x": 0, "tile_y": 0}])
    with pytest.raises(Exception, match="SlideError") as info:
        dataset.with_column(
            "overlap", tile_overlay_overlap(roi, col("overlay_path"), **arguments)
        ).take_all()
    assert f"SlideError: {missing}: no such file" in str(info.value)


def test_plain_calls_never_import_ray(synthetic):
    code = (
        "import sys; from shapely.geometry import box; "
        "from wsi_core.tiling import tile_overlay_overlap, read_slide_tiles; "
        f"print(tile_overlay_overlap(box(0, 0, 64, 64), {str(synthetic['a_mask'])!r}, "
        "[0, 64], 0, 0.5, 0.5)[0]); "
        f"read_slide_tiles({str(synthetic['a'])!r}, 0, 0, 8, 8, 0); "
        "assert 'ray' not in sys.modules, 'Ray was imported'"
    )
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert done.stdout.startswith("{")


def test_wsi_errors_survive_pickling():
    import pickle

    from wsi_core.errors import AnnotationError, LocalCopyRequired

    for error in (
        SlideError("a.svs", "damaged"),
        MissingMPPError("b.tiff"),
        LocalCopyRequired("s3://x/c.ndpi", "a Hamamatsu NDPI"),
        AnnotationError(None, "no file"),
    ):
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error)
        assert (str(copy), copy.path, copy.problem) == (str(error), error.path, error.problem)


def test_listing_through_a_local_fsspec_file_system_and_chosen_extensions(synthetic):
    """No Ray here: the listing runs on the driver."""
    import fsspec

    from wsi_core.ray import expand_slide_paths

    root = synthetic["root"]
    want = sorted(str(synthetic[k]) for k in ("a", "a_mask", "b", "b_mask"))
    local = expand_slide_paths(str(root), filesystem=fsspec.filesystem("file"))
    # The local file system gives plain paths, so OpenSlide formats stay readable.
    assert local.paths == want and local.storage_options is None
    assert expand_slide_paths(f"file://{root}").paths == want
    assert expand_slide_paths([root, synthetic["a"]], extensions=[".TIFF"]).paths == want
    only_b = expand_slide_paths(root, extensions=(".tiff",))  # case-insensitive: b.TIFF too
    assert only_b.paths == want
    assert expand_slide_paths(root / "notes.txt").paths == [str(root / "notes.txt")]


def test_block_kernel_on_empty_and_null_columns(synthetic):
    """Ray's per-block callable, called as Ray calls it: an empty block gives an empty
    column, a null per-tile value is refused by name."""
    import pyarrow as pa

    expression = tile_overlay_overlap(
        box(0, 0, 64, 64), col("overlay_path"), col("tile_x"), col("tile_y"), 0.5, 0.5
    )
    empty = expression.fn(
        overlay_path=pa.chunked_array([], pa.string()),
        tile_x=pa.chunked_array([], pa.int64()),
        tile_y=pa.chunked_array([], pa.int64()),
    )
    assert len(empty) == 0
    with pytest.raises(ValueError, match="column 'tile_x' has 1 null values"):
        expression.fn(
            overlay_path=pa.chunked_array([[str(synthetic["a_mask"])] * 2]),
            tile_x=pa.chunked_array([[0, None]], pa.int64()),
            tile_y=pa.chunked_array([[0, 0]]),
        )
    column = expression.fn(
        overlay_path=pa.chunked_array([[str(synthetic["a_mask"])] * 2]),
        tile_x=pa.chunked_array([[0, 9000]], pa.int64()),
        tile_y=pa.chunked_array([[0, 0]]),
    )
    want = tile_overlay_overlap(box(0, 0, 64, 64), synthetic["a_mask"], [0, 9000], 0, 0.5, 0.5)
    assert column.to_pylist() == want and want[1] is None
