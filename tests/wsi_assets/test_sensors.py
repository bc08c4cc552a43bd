"""slide_sensor: registers slides, adds partitions, reports file versions; cheap when nothing
changed, bounded per tick when much did."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import dagster as dg
import pytest
from wsi_assets_support import DEMO_KEYS, Harness, make_settings

from wsi_assets import sensors
from wsi_assets.pipeline.keys import slide_key
from wsi_assets.pipeline.locations import MISSING


def tick(harness: Harness, cursor: str | None, budget: int | None = sensors.SLIDES_PER_TICK):
    """One tick as the daemon runs it (its result applied), and the result."""
    with dg.build_sensor_context(instance=harness.instance, cursor=cursor) as context:
        result = sensors.evaluate(context, harness.settings, budget, settle=False)
    sensors.apply(harness.instance, result)
    return result


def reported(result: dg.SensorResult) -> set[tuple[str, str, str]]:
    """(source asset, slide, version) of every file version a tick reported."""
    return {
        (e.asset_key.to_user_string(), str(e.partition), str(e.metadata["version"].value))
        for e in result.asset_events or []
        if isinstance(e, dg.AssetMaterialization)
    }


def touch(path: Path) -> None:
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))


def test_new_unchanged_and_changed_files(harness: Harness, slide_root: Path) -> None:
    first = tick(harness, None)
    assert isinstance(first, dg.SensorResult)
    assert harness.instance.get_dynamic_partitions("slides") == sorted(DEMO_KEYS)
    assert set(harness.pipeline.registry.registered()) == set(DEMO_KEYS)
    assert reported(first) == set()  # nothing was built from these files yet
    assert first.run_requests == []  # automation requests the runs
    unchanged = tick(harness, first.cursor)
    assert isinstance(unchanged, dg.SkipReason)

    for key in DEMO_KEYS:  # each run records the versions of the files it read
        harness.materialize(key)
    touch(slide_root / "demo_slide_01.xml")
    (slide_root / "demo_slide_02_tissue_mask.tiff").unlink()
    changed = tick(harness, first.cursor)
    assert isinstance(changed, dg.SensorResult)
    events = reported(changed)
    assert {(asset, key) for asset, key, _ in events} == {
        ("annotation_file", "demo_slide_01"),
        ("overlay_file", "demo_slide_02"),
    }
    assert ("overlay_file", "demo_slide_02", MISSING) in events
    assert not changed.dynamic_partitions_requests
    again = tick(harness, None)  # a lost cursor costs a comparison, not a second report
    assert isinstance(again, dg.SensorResult) and reported(again) == set()


def test_a_failed_run_records_what_it_read(harness: Harness, slide_root: Path) -> None:
    (slide_root / "demo_slide_01.xml").write_text("<ASAP_Annotations><Annot")
    first = tick(harness, None)
    assert not harness.materialize("demo_slide_01", raise_on_error=False).success
    other = slide_root / "demo_slide_02.geojson"  # a change beside it, in no bucket of its own
    touch(other)
    assert ("annotation_file", "demo_slide_01") not in {
        (a, k) for a, k, _ in reported(tick(harness, first.cursor))
    }
    (slide_root / "demo_slide_01.xml").write_text("<ASAP_Annotations/>")  # fixed
    fixed = tick(harness, first.cursor)
    assert ("annotation_file", "demo_slide_01") in {(a, k) for a, k, _ in reported(fixed)}


def test_a_large_root_is_taken_a_few_buckets_per_tick(
    slide_root: Path, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    source = slide_root / "demo_slide_01.tiff"
    for i in range(40):
        os.link(source, slide_root / f"copy_{i:02d}.tiff")
    harness = Harness(make_settings(slide_root, tmp_path / "out"), instance)
    cursor, ticks, sizes = None, 0, []
    while True:
        result = tick(harness, cursor, budget=10)
        if isinstance(result, dg.SkipReason):
            break
        ticks += 1
        (added,) = result.dynamic_partitions_requests or []
        sizes.append(len(added.partition_keys or []))
        cursor = result.cursor
    assert len(instance.get_dynamic_partitions("slides")) == 43
    assert ticks >= 4 and max(sizes) <= 10 + 3  # whole buckets, about the budget each
    assert sum(sizes) == 43


def test_a_second_file_for_a_key_is_named_in_the_log(
    harness: Harness, slide_root: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    shutil.copy(slide_root / "demo_slide_01.tiff", slide_root / "demo_slide_01.svs")
    tick(harness, None)
    logged = capfd.readouterr().err
    assert (
        "ERROR - demo_slide_01.tiff: would share partition key 'demo_slide_01' with "
        "demo_slide_01.svs; rename one of them or move it into a folder"
    ) in logged
    assert harness.instance.get_dynamic_partitions("slides") == sorted(DEMO_KEYS)
    held = harness.pipeline.registry.lookup("demo_slide_01")
    assert held is not None and held.relpath in ("demo_slide_01.svs", "demo_slide_01.tiff")


def test_no_slide_root_yet(instance: dg.DagsterInstance, tmp_path: Path) -> None:
    harness = Harness(make_settings(tmp_path / "nothing-here", tmp_path / "out"), instance)
    assert isinstance(tick(harness, None), dg.SkipReason)
    assert instance.get_dynamic_partitions("slides") == []


def test_annotations_outside_the_slide_root(
    instance: dg.DagsterInstance, slide_root: Path, tmp_path: Path
) -> None:
    """An absolute template (annotations in their own folder) is watched too."""
    elsewhere = tmp_path / "annotations"
    elsewhere.mkdir()
    shutil.move(slide_root / "demo_slide_01.xml", elsewhere / "demo_slide_01.xml")
    templates = [f"{elsewhere}/{{stem}}.xml", "{stem}.geojson", "{stem}.json"]
    settings = make_settings(slide_root, tmp_path / "out", annotation_templates=templates)
    harness = Harness(settings, instance)
    first = tick(harness, None)
    assert harness.materialize("demo_slide_01").success
    (elsewhere / "demo_slide_01.xml").write_text("<ASAP_Annotations/>")
    changed = tick(harness, first.cursor)
    assert {(a, k) for a, k, _ in reported(changed)} == {("annotation_file", "demo_slide_01")}


def test_keys_are_the_same_in_every_output_root(harness: Harness, tmp_path: Path) -> None:
    tick(harness, None)
    other = Harness(
        make_settings(harness.settings.slide_root, tmp_path / "other"), harness.instance
    )
    result = tick(other, None)
    assert set(other.pipeline.registry.registered()) == set(DEMO_KEYS)
    assert harness.instance.get_dynamic_partitions("slides") == sorted(DEMO_KEYS)  # no duplicates
    assert isinstance(result, dg.SensorResult) and not result.dynamic_partitions_requests
    assert slide_key("case 03 (HE).tiff") in DEMO_KEYS
