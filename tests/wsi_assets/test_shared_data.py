"""The whole pipeline on real third-party data (../shared/data): CMU-1-Small-Region.svs (Aperio,
one level, 0.499 um/px) with the DSA GeoJSON drawn on it and LUNA's full-resolution mask.

The files are linked into a temporary slide root under the names the templates expect; nothing
is copied into the project.
"""

import json
from pathlib import Path

import numpy as np
import pytest
from dagster import AssetKey, AssetRecordsFilter
from shapely.geometry import box
from wsi_assets_support import Harness, make_settings

from wsi_core.parsers import open_annotations
from wsi_core.tables import ANNOTATION_COVERAGE, OVERLAY_OVERLAP, SLIDE_METADATA, TILE_GRID
from wsi_core.tiling import annotation_coverage, grid_tile_array, tile_overlay_overlap

STEM = "CMU-1-Small-Region"
MASK_MPP = 0.499  # the mask lies on the slide's level-0 grid but records no resolution
TILE = 256


def _slide_root(tmp_path: Path, shared_data: Path, annotation: Path) -> Path:
    root = tmp_path / "slides"
    root.mkdir()
    (root / f"{STEM}.svs").symlink_to(shared_data / "slides" / f"{STEM}.svs")
    (root / f"{STEM}.geojson").symlink_to(annotation)
    (root / f"{STEM}_tissue_mask.tif").symlink_to(shared_data / "masks" / "mask_full_res.tif")
    return root


def _pipeline(root: Path, tmp_path: Path, instance) -> Harness:
    settings = make_settings(
        root, tmp_path / "out", mpp=0.5, tile_extent=TILE, stride=TILE, overlay_mpp=MASK_MPP
    )
    return Harness(settings, instance)


def _run(pipeline: Harness) -> str:
    pipeline.discover()
    (key,) = pipeline.pipeline.registry.registered()  # the mask is not a slide
    assert key == STEM
    result = pipeline.materialize(key)
    assert result.success
    checks = result.get_asset_check_evaluations()
    # the warning about labels no class matches is the subject of test_bad_inputs.py
    assert all(check.passed for check in checks if check.check_name != "labels_match_classes")
    return key


def test_real_slide_annotation_and_mask(shared_data: Path, tmp_path: Path, instance) -> None:
    annotation = shared_data / "annotations" / "geojson" / "123.annotation.geojson"
    root = _slide_root(tmp_path, shared_data, annotation)
    pipeline = _pipeline(root, tmp_path, instance)
    key = _run(pipeline)

    meta = pipeline.table(SLIDE_METADATA, key).to_pylist()[0]
    assert meta["vendor"] == "aperio" and meta["level_count"] == 1
    assert (meta["extent_x"], meta["extent_y"]) == (2220, 2967)
    assert meta["base_mpp_x"] == pytest.approx(0.499)

    grid = pipeline.table(TILE_GRID, key)
    origins = grid_tile_array((2220, 2967), TILE, TILE, "keep")
    assert grid.num_rows == len(origins) == 9 * 12

    # This file's class lives in properties.label, which is no class label for the GeoJSON
    # parser (classification.name, else name): the file is measured and no class matches.
    parser = open_annotations(str(annotation))
    assert parser.class_labels() == []
    coverage = pipeline.table(ANNOTATION_COVERAGE, key)
    assert coverage["coverage_tumor"].null_count == 0
    assert not coverage["coverage_tumor"].to_numpy().any()
    record = pipeline.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(ANNOTATION_COVERAGE), asset_partitions=[key]), limit=1
    ).records[0]
    assert record.asset_materialization.metadata["labels_in_file"].value == []

    overlap = pipeline.table(OVERLAY_OVERLAP, key)
    mask = str(shared_data / "masks" / "mask_full_res.tif")
    expected = tile_overlay_overlap(
        box(0, 0, TILE, TILE),
        mask,
        origins[:, 0],
        origins[:, 1],
        meta["mpp_x"],
        meta["mpp_y"],
        overlay_mpp=MASK_MPP,
    )
    assert [
        None if row is None else dict(row) for row in overlap["fractions"].to_pylist()
    ] == expected
    # the mask's 89 set pixels all lie in the first tile
    assert overlap["tissue_fraction"][0].as_py() == pytest.approx(89 / TILE**2)
    assert overlap["tissue_fraction"].to_numpy()[1:].sum() == 0


def test_real_geometry_with_classification(shared_data: Path, tmp_path: Path, instance) -> None:
    """The same polygons with their label copied into classification.name: coverage is real,
    including the square that runs past the slide's right edge."""
    document = json.loads(
        (shared_data / "annotations" / "geojson" / "123.annotation.geojson").read_text()
    )
    for feature in document["features"]:
        feature["properties"]["classification"] = {"name": feature["properties"]["label"]}
    annotation = tmp_path / "classified.geojson"
    annotation.write_text(json.dumps(document))
    pipeline = _pipeline(_slide_root(tmp_path, shared_data, annotation), tmp_path, instance)
    key = _run(pipeline)

    coverage = pipeline.table(ANNOTATION_COVERAGE, key)
    origins = grid_tile_array((2220, 2967), TILE, TILE, "keep")
    parser = open_annotations(str(annotation))
    slide = box(0, 0, 2220, 2967)  # annotations count only on the slide
    tumour = [p.intersection(slide) for p in parser.get_class_polygons("(?i)tumou?r.*")]
    expected = annotation_coverage(tumour, box(0, 0, TILE, TILE), origins, 1.0)
    got = coverage["coverage_tumor"].to_numpy()
    assert np.allclose(got, expected, rtol=0, atol=1e-12)
    index = {tuple(o): i for i, o in enumerate(origins.tolist())}
    assert got[index[(1536, 1536)]] == 1.0  # inside the square (1512..2333)
    # the square runs past the slide's right edge (2220): the last column counts 2220 - 2048
    assert got[index[(2048, 1792)]] == pytest.approx((2220 - 2048) / TILE)
    assert got[index[(1280, 1280)]] == pytest.approx((1536 - 1512) ** 2 / TILE**2)
    assert got[index[(512, 512)]] == 0.0  # the "Other" square is not tumour
    assert coverage["coverage_stroma"].to_numpy().sum() == 0.0
