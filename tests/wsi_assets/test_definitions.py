"""The code location loads lazily and validates; every table is partitioned, versioned,
automated and checked."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import dagster as dg
from wsi_assets_support import make_settings

from wsi_assets.automation import TABLE_KEYS
from wsi_assets.definitions import build_defs
from wsi_assets.partitions import PARTITIONS_NAME
from wsi_assets.sources import SOURCE_KEYS

PROJECT = Path(__file__).resolve().parents[2]


def test_every_table_is_partitioned_versioned_and_checked(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # building the definitions warns about nothing
        defs = build_defs(make_settings(tmp_path, tmp_path / "out"))
        graph = defs.resolve_asset_graph()
    assert set(TABLE_KEYS) | set(SOURCE_KEYS) <= set(graph.get_all_asset_keys())
    for key in TABLE_KEYS:
        node = graph.get(key)
        assert node.partitions_def is not None
        assert getattr(node.partitions_def, "name", None) == PARTITIONS_NAME
        assert node.code_version and node.automation_condition is not None
    assert graph.get(dg.AssetKey("annotation_coverage")).parent_keys == {
        dg.AssetKey("tile_grid"),
        dg.AssetKey("annotation_file"),
    }
    assert len(list(graph.asset_check_keys)) == 6 + 2  # the tables', tile_dataset's
    dataset = graph.get(dg.AssetKey("tile_dataset"))
    assert dataset.partitions_def is None and dataset.automation_condition is not None
    assert graph.get(dg.AssetKey("overlay_overlap")).parent_keys == {
        dg.AssetKey("tile_grid"),
        dg.AssetKey("tissue_mask"),
        dg.AssetKey("overlay_file"),
    }


def test_the_code_location_validates_from_the_workspace(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "WSI_SLIDE_ROOT": str(tmp_path / "slides"),
        "WSI_OUTPUT_ROOT": str(tmp_path / "out"),
        "DAGSTER_HOME": str(tmp_path),
        "DAGSTER_DISABLE_TELEMETRY": "1",
    }
    done = subprocess.run(
        [
            str(Path(sys.executable).with_name("dagster")),
            "definitions",
            "validate",
            "-w",
            str(PROJECT / "workspace.yaml"),
        ],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Validation successful" in done.stdout + done.stderr


def test_checks_are_recorded_per_slide(harness) -> None:
    harness.discover()
    result = harness.materialize("demo_slide_02")
    evaluations = result.get_asset_check_evaluations()
    assert {(e.asset_key.to_user_string(), e.check_name) for e in evaluations} == {
        ("tile_grid", "tiles_inside_slide"),
        ("annotation_coverage", "coverage_in_unit_interval"),
        ("annotation_coverage", "rows_match_tile_grid"),
        ("annotation_coverage", "labels_match_classes"),
        ("overlay_overlap", "fractions_sum_to_one"),
        ("overlay_overlap", "rows_match_tile_grid"),
    }
    assert {e.partition for e in evaluations} == {"demo_slide_02"}
    assert all(e.passed for e in evaluations)
