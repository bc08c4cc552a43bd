"""Odd files in a slide folder: slides still being copied, masks and thumbnails that are not
slides, very long names, keys that would leave the slide root, retired slides, and the
temporary files of killed writes."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import dagster as dg
import pytest
from s3_server import S3Bucket
from test_sensors import tick
from wsi_assets_support import DEMO_KEYS, Harness, make_settings

from wsi_assets import sensors
from wsi_assets.partitions import PARTITIONS_NAME
from wsi_assets.pipeline.errors import ForeignFileError
from wsi_assets.pipeline.keys import slide_key
from wsi_assets.pipeline.locations import STALE_TEMPORARY_SECONDS, location
from wsi_assets.pipeline.slides import SlideStore
from wsi_assets.retire import retire
from wsi_core.tables import TABLES


def daemon_tick(harness: Harness, cursor: str | None) -> dg.SensorResult | dg.SkipReason:
    """A tick as the daemon runs it: new slides wait for a second look."""
    with dg.build_sensor_context(instance=harness.instance, cursor=cursor) as context:
        result = sensors.evaluate(context, harness.settings)
    sensors.apply(harness.instance, result)
    return result


def test_a_slide_still_being_copied_waits_for_a_second_look(
    harness: Harness, slide_root: Path
) -> None:
    first = daemon_tick(harness, None)
    assert isinstance(first, dg.SensorResult)
    assert harness.instance.get_dynamic_partitions(PARTITIONS_NAME) == []  # seen once
    copying = slide_root / "late.tiff"
    data = (slide_root / "demo_slide_01.tiff").read_bytes()
    copying.write_bytes(data[: len(data) // 2])
    second = daemon_tick(harness, first.cursor)
    assert isinstance(second, dg.SensorResult)
    assert harness.instance.get_dynamic_partitions(PARTITIONS_NAME) == sorted(DEMO_KEYS)
    copying.write_bytes(data)  # still growing at the second look: not yet
    third = daemon_tick(harness, second.cursor)
    assert isinstance(third, dg.SensorResult)
    assert "late" not in harness.instance.get_dynamic_partitions(PARTITIONS_NAME)
    fourth = daemon_tick(harness, third.cursor)  # the same as last time: settled
    assert isinstance(fourth, dg.SensorResult)
    assert "late" in harness.instance.get_dynamic_partitions(PARTITIONS_NAME)
    assert isinstance(daemon_tick(harness, fourth.cursor), dg.SkipReason)


def test_files_that_are_not_slides_are_named_with_a_reason(
    harness: Harness, slide_root: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    source = slide_root / "demo_slide_01.tiff"
    for name in ("x_mask.tif", "y_label.svs", "_z.tiff", "scan_thumbnail.tiff", "w_macro.svs"):
        shutil.copy(source, slide_root / name)
    slides, skipped = SlideStore(harness.settings).survey()
    assert sorted(s.key for s in slides) == sorted(DEMO_KEYS)
    reasons = {Path(uri).name: reason for uri, reason in skipped}
    assert reasons["x_mask.tif"] == "matches WSI_EXCLUDE '*_mask.*'"
    assert reasons["y_label.svs"] == "matches WSI_EXCLUDE '*_label*'"
    assert reasons["_z.tiff"] == "hidden or '_' name"
    assert (
        reasons["demo_slide_01_tissue_mask.tiff"]
        == "named like an overlay ({stem}_tissue_mask.tiff)"
    )
    tick(harness, None)
    logged = capfd.readouterr().err
    assert "8 files are not slides: " in logged and "x_mask.tif (matches WSI_EXCLUDE" in logged
    custom = make_settings(slide_root, harness.settings.output_root, exclude=[])
    assert "x_mask" in {s.key for s in SlideStore(custom).scan()}


def test_a_very_long_name_is_a_slide_like_any_other(harness: Harness, slide_root: Path) -> None:
    stem = "s" * 236
    for suffix in (".tiff", ".xml"):
        shutil.copy(slide_root / f"demo_slide_01{suffix}", slide_root / f"{stem}{suffix}")
    key = slide_key(f"{stem}.tiff")
    assert len(key) <= 57
    tick(harness, None)
    assert key in harness.instance.get_dynamic_partitions(PARTITIONS_NAME)
    assert harness.materialize(key).success
    files = harness.pipeline.inputs(key)
    assert files.files["annotation"] is not None  # found, though its mask's name is too long
    assert files.files["overlay"] is None


def test_retiring_a_slide_removes_its_partition_tables_and_registration(
    harness: Harness, slide_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tick(harness, None)
    for key in ("demo_slide_01", "demo_slide_02"):
        assert harness.materialize(key).success
    (slide_root / "demo_slide_01.tiff").unlink()
    assert retire(harness.instance, harness.settings, ["demo_slide_01"]) == 0
    assert "demo_slide_01: removed" in capsys.readouterr().out
    assert "demo_slide_01" not in harness.instance.get_dynamic_partitions(PARTITIONS_NAME)
    assert harness.pipeline.registry.lookup("demo_slide_01") is None
    for table in TABLES:
        assert not harness.pipeline.tables.path(table, "demo_slide_01").exists()
        assert harness.pipeline.tables.path(table, "demo_slide_02").exists()
    assert (
        "demo_slide_01"
        not in (harness.pipeline.tables.dataset(TABLES[0]) or {}).column("slide_key").to_pylist()
    )

    foreign = Path(harness.pipeline.tables.path(TABLES[0], "demo_slide_02").path)
    foreign.write_bytes(b"someone's notes")
    with pytest.raises(ForeignFileError):
        harness.pipeline.retire("demo_slide_02")
    assert foreign.read_bytes() == b"someone's notes"


def test_temporary_files_of_killed_writes_are_cleaned_up(harness: Harness) -> None:
    tick(harness, None)
    harness.materialize("demo_slide_01")
    folder = Path(harness.pipeline.tables.path(TABLES[0], "demo_slide_01").path).parent
    stale = folder / f".part-0.parquet.{'a' * 32}.tmp"
    fresh = folder / f".part-0.parquet.{'b' * 32}.tmp"
    other = folder / "notes.tmp"
    for path in (stale, fresh, other):
        path.write_bytes(b"x")
    old = time.time() - STALE_TEMPORARY_SECONDS - 60
    os.utime(stale, (old, old))
    os.utime(other, (old, old))
    harness.materialize("demo_slide_01", [TABLES[0]])
    assert not stale.exists()
    assert fresh.exists() and other.exists()  # a write in progress, and not ours


def test_object_keys_with_dot_dot_never_reach_outside_the_root(
    s3_bucket: S3Bucket, demo_source: Path, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    slide = (demo_source / "demo_slide_01.tiff").read_bytes()
    s3_bucket.put("slides/a.tiff", slide)
    s3_bucket.put("slides/sub/../../secret/b.tiff", slide)
    s3_bucket.put("secret/a.xml", (demo_source / "demo_slide_01.xml").read_bytes())
    templates = ["../secret/{stem}.xml", "{stem}.xml"]
    settings = make_settings(
        s3_bucket.url("slides"), tmp_path / "out", annotation_templates=templates
    )
    store = SlideStore(settings)
    slides, skipped = store.survey()
    assert [s.relpath for s in slides] == ["a.tiff"]
    assert [reason for _, reason in skipped] == [
        "'.' or '..' in its path (it would name files outside its folder)"
    ]
    files = store.files(slides[0])
    assert files.files["annotation"] is None
    assert files.looked_for["annotation"] == [s3_bucket.url("slides/a.xml")]
    assert location(s3_bucket.url("secret/a.xml")).exists()  # it was there all along
