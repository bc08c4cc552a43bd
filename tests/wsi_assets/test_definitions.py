"""The code location loads and validates; code versions follow the settings."""

import os
import subprocess
import sys
from pathlib import Path

from dagster import AssetKey

from wsi_assets.definitions import build_defs, defs
from wsi_assets.keys import SOURCE_KEYS, TABLE_KEYS
from wsi_assets.partitions import PARTITIONS_NAME

PROJECT = Path(__file__).resolve().parents[2]


def test_definitions_import_with_every_asset_partitioned_and_versioned() -> None:
    repo = defs.get_repository_def()
    graph = repo.asset_graph
    assert set(TABLE_KEYS) | set(SOURCE_KEYS) <= set(graph.get_all_asset_keys())
    for key in TABLE_KEYS:
        node = graph.get(key)
        assert node.partitions_def.name == PARTITIONS_NAME
        assert node.code_version
    assert graph.get(AssetKey("annotation_coverage")).parent_keys == {
        AssetKey("tile_grid"),
        AssetKey("annotation_file"),
    }
    assert repo.get_sensor_def("slide_sensor").default_status.value == "RUNNING"
    assert repo.get_schedule_def("stale_sweep")
    assert len(list(graph.asset_check_keys)) == 5


def test_dagster_definitions_validate(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "WSI_SLIDE_ROOT": str(tmp_path / "slides"),
        "WSI_OUTPUT_ROOT": str(tmp_path / "out"),
        "DAGSTER_HOME": str(tmp_path),
        "DAGSTER_DISABLE_TELEMETRY": "1",
    }
    dagster = Path(sys.executable).with_name("dagster")
    done = subprocess.run(
        [str(dagster), "definitions", "validate", "-w", str(PROJECT / "workspace.yaml")],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Validation successful" in done.stdout + done.stderr


def test_code_versions_change_with_the_settings_they_depend_on(
    tmp_path: Path, make_settings
) -> None:
    def versions(**overrides):
        graph = (
            build_defs(make_settings(tmp_path, tmp_path / "o", **overrides))
            .get_repository_def()
            .asset_graph
        )
        return {key.to_user_string(): graph.get(key).code_version for key in TABLE_KEYS}

    base = versions()
    tiles = versions(tile_extent=256)
    classes = versions(label_classes={"tumor": "Tumor"})
    assert (
        tiles["tile_grid"] != base["tile_grid"]
        and tiles["slide_metadata"] == base["slide_metadata"]
    )
    assert classes["annotation_coverage"] != base["annotation_coverage"]
    assert (
        classes["overlay_overlap"] == base["overlay_overlap"]
        and classes["tile_grid"] == base["tile_grid"]
    )
