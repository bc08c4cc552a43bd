"""The tables are the same, value for value, as those written before the layers were
reorganised (tests/golden/tables_before_refactor.json, written by the earlier code; the
coverage columns to 1e-12, see golden_tables.py): on the demo slides and on a real slide,
through the engine-neutral pipeline and through Dagster."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest
from golden_tables import DEMO_CASE, GOLDEN, REAL_CASE, assert_golden
from table_fingerprint import fingerprint
from wsi_assets_support import DEMO_KEYS, Harness, make_settings

from wsi_assets.pipeline.steps import Pipeline
from wsi_core.tables import ANNOTATION_COVERAGE, TABLES

STEM = "CMU-1-Small-Region"


def real_slide_root(shared_data: Path, tmp_path: Path) -> Path:
    """CMU-1-Small-Region with the DSA GeoJSON (label copied into classification.name) and
    LUNA's full-resolution mask, linked (not copied) under the names the templates expect."""
    root = tmp_path / "real"
    root.mkdir()
    (root / f"{STEM}.svs").symlink_to(shared_data / "slides" / f"{STEM}.svs")
    document = json.loads(
        (shared_data / "annotations" / "geojson" / "123.annotation.geojson").read_text()
    )
    for feature in document["features"]:
        feature["properties"]["classification"] = {"name": feature["properties"]["label"]}
    (root / f"{STEM}.geojson").write_text(json.dumps(document))
    (root / f"{STEM}_tissue_mask.tif").symlink_to(shared_data / "masks" / "mask_full_res.tif")
    return root


def test_demo_tables_through_the_pipeline(slide_root: Path, tmp_path: Path) -> None:
    pipeline = Pipeline(make_settings(slide_root, tmp_path / "out"))
    assert sorted(GOLDEN[DEMO_CASE]) == sorted(DEMO_KEYS)
    for key in DEMO_KEYS:
        for table in TABLES:
            pipeline.build(table, key)
            assert_golden(table, pipeline.tables.read(table, key)[0], DEMO_CASE, key)


def test_real_slide_tables_through_dagster(
    shared_data: Path, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    settings = make_settings(
        real_slide_root(shared_data, tmp_path),
        tmp_path / "out",
        mpp=0.5,
        tile_extent=256,
        stride=256,
        overlay_mpp=0.499,
    )
    harness = Harness(settings, instance)
    harness.discover()
    assert instance.get_dynamic_partitions("slides") == [STEM]  # the mask is not a slide
    result = harness.materialize(STEM)
    assert result.success
    checks = {check.check_name: check for check in result.get_asset_check_evaluations()}
    assert all(check.passed for name, check in checks.items() if name != "labels_match_classes")
    assert "Other (1)" in (checks["labels_match_classes"].description or "")  # no class for it
    # Changed on purpose before the coverage values were kept: the tumour square runs past the
    # slide's right edge, and annotations are now clipped to the slide (test_bad_inputs.py
    # checks the values).
    tumour = fingerprint(harness.table(ANNOTATION_COVERAGE, STEM))["columns"]["coverage_tumor"]
    assert tumour != GOLDEN[REAL_CASE][STEM][ANNOTATION_COVERAGE]["columns"]["coverage_tumor"]
    for table in TABLES:
        assert_golden(table, harness.table(table, STEM), REAL_CASE, STEM)


@pytest.mark.parametrize("key", DEMO_KEYS)
def test_demo_tables_through_dagster(harness: Harness, key: str) -> None:
    harness.discover()
    assert harness.materialize(key).success
    for table in TABLES:
        assert_golden(table, harness.table(table, key), DEMO_CASE, key)
