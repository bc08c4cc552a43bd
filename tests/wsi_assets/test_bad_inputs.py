"""Never a silent wrong table: inputs that used to give wrong tables with every check green
now give the right table (saying how in the metadata) or fail their own partition, naming the
file and the setting that fixes it. A good demo slide beside them keeps its right tables."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
from golden_tables import DEMO_CASE, assert_golden
from shapely.geometry import Polygon, box
from test_assets import latest_metadata
from wsi_assets_support import TILE, Harness, failure_messages, make_settings

from wsi_core.synthetic import write_pyramid_tiff
from wsi_core.tables import ANNOTATION_COVERAGE, OVERLAY_OVERLAP, SLIDE_METADATA, TABLES, TILE_GRID
from wsi_core.tiling import annotation_coverage, grid_tile_array

GOOD = "demo_slide_01"


def good_slide_is_right(harness: Harness) -> None:
    """The demo slide beside the bad ones: built, and value-equal to its golden tables."""
    assert harness.materialize(GOOD).success
    for table in TABLES:
        assert_golden(table, harness.table(table, GOOD), DEMO_CASE, GOOD)


def plain_slide(path: Path, mpp: float | None, size: tuple[int, int] = (512, 768)) -> Path:
    """A grey two-level slide of ``size`` (height, width) level-0 pixels; ``mpp`` None
    records no resolution."""
    image = np.full((*size, 3), 200, np.uint8)
    unit = None if mpp is None else "CENTIMETER"
    return write_pyramid_tiff(path, image, mpp or 1.0, 2, resolution_unit=unit)


def test_slide_mpp_is_a_fallback_not_an_override(
    slide_root: Path, tmp_path: Path, instance
) -> None:
    plain_slide(slide_root / "no_mpp.tiff", None)
    bare = Harness(make_settings(slide_root, tmp_path / "a"), instance)
    bare.discover()
    failed = bare.materialize("no_mpp", raise_on_error=False)
    assert not failed.success
    message = failure_messages(failed)
    assert message.startswith(str(slide_root / "no_mpp.tiff") + ": ")
    assert "set WSI_SLIDE_MPP" in message

    harness = Harness(make_settings(slide_root, tmp_path / "b", slide_mpp=0.25), instance)
    assert harness.materialize("no_mpp").success
    no_mpp = harness.table(SLIDE_METADATA, "no_mpp").to_pylist()[0]
    assert (no_mpp["base_mpp_x"], no_mpp["base_mpp_y"]) == (0.25, 0.25)
    source = latest_metadata(harness, SLIDE_METADATA, "no_mpp")["mpp_source"].value
    assert source == "WSI_SLIDE_MPP (the file records none)"
    good_slide_is_right(harness)  # its recorded 0.5 um/px is kept: the golden tables
    assert latest_metadata(harness, SLIDE_METADATA, GOOD)["mpp_source"].value == (
        "recorded in the file"
    )

    forced = Harness(make_settings(slide_root, tmp_path / "c", slide_mpp_override=0.25), instance)
    assert forced.materialize(GOOD, [SLIDE_METADATA]).success
    assert forced.table(SLIDE_METADATA, GOOD)["base_mpp_x"].to_pylist() == [0.25]
    assert latest_metadata(forced, SLIDE_METADATA, GOOD)["mpp_source"].value.startswith(
        "WSI_SLIDE_MPP_OVERRIDE"
    )


def test_the_resolution_actually_used_is_reported(tmp_path: Path, instance) -> None:
    root = tmp_path / "slides"
    root.mkdir()
    write_pyramid_tiff(root / "flat.tiff", np.full((512, 512, 3), 90, np.uint8), 0.5, 1)
    harness = Harness(make_settings(root, tmp_path / "out", mpp=1.0), instance)
    harness.discover()
    assert harness.materialize("flat").success
    for table in (SLIDE_METADATA, TILE_GRID):
        metadata = latest_metadata(harness, table, "flat")
        assert metadata["mpp_used"].value == [0.5, 0.5]
        (warning,) = metadata["warnings"].value
        assert warning.startswith("tiles are at 0.5 x 0.5 um/px (level 0), not the 1 um/px")


def test_annotations_beyond_the_slide_are_clipped(tmp_path: Path, instance) -> None:
    root = tmp_path / "slides"
    root.mkdir()
    plain_slide(root / "edge.tiff", 1.0, size=(320, 320))  # tiles of 128: the last reach 384
    square = [[200, 200], [1000, 200], [1000, 1000], [200, 1000], [200, 200]]
    feature = {
        "type": "Feature",
        "properties": {"classification": {"name": "Tumor"}},
        "geometry": {"type": "Polygon", "coordinates": [square]},
    }
    (root / "edge.geojson").write_text(
        json.dumps({"type": "FeatureCollection", "features": [feature]})
    )
    harness = Harness(make_settings(root, tmp_path / "out"), instance)
    harness.discover()
    assert harness.materialize("edge").success
    got = harness.table(ANNOTATION_COVERAGE, "edge")["coverage_tumor"].to_numpy()
    origins = grid_tile_array((320, 320), TILE, TILE, "keep")
    inside = Polygon(square).intersection(box(0, 0, 320, 320))
    expected = annotation_coverage([inside], box(0, 0, TILE, TILE), origins, 1.0)
    assert np.allclose(got, expected, atol=1e-12)
    corner = {tuple(o): i for i, o in enumerate(origins.tolist())}[(256, 256)]
    assert got[corner] == pytest.approx(64 * 64 / TILE**2)  # not 1.0: the slide ends at 320
    metadata = latest_metadata(harness, ANNOTATION_COVERAGE, "edge")
    assert metadata["polygons_clipped_to_slide"].value == 1


def test_labels_that_match_no_class_fail_a_warning_check(
    shared_data: Path,
    tmp_path: Path,
    instance,
) -> None:
    root = tmp_path / "slides"
    root.mkdir()
    stem = "CMU-1-Small-Region"
    (root / f"{stem}.svs").symlink_to(shared_data / "slides" / f"{stem}.svs")
    (root / f"{stem}.geojson").symlink_to(
        shared_data / "annotations" / "geojson" / "123.annotation.geojson"
    )
    classes = {"tumor": "(?i)tumou?r.*", "other": "Other"}
    settings = make_settings(
        root, tmp_path / "a", mpp=0.5, tile_extent=256, stride=256, label_classes=classes
    )
    harness = Harness(settings, instance)
    harness.discover()
    result = harness.materialize(stem, [SLIDE_METADATA, TILE_GRID, ANNOTATION_COVERAGE])
    assert result.success
    (check,) = [
        e for e in result.get_asset_check_evaluations() if e.check_name == "labels_match_classes"
    ]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert "(no label)" in check.description and "WSI_LABEL_PROPERTY" in check.description
    assert not harness.table(ANNOTATION_COVERAGE, stem)["coverage_tumor"].to_numpy().any()

    labelled = Harness(
        settings.model_copy(update={"output_root": str(tmp_path / "b"), "label_property": "label"}),
        instance,
    )
    result = labelled.materialize(stem, [SLIDE_METADATA, TILE_GRID, ANNOTATION_COVERAGE])
    (check,) = [
        e for e in result.get_asset_check_evaluations() if e.check_name == "labels_match_classes"
    ]
    assert check.passed
    coverage = labelled.table(ANNOTATION_COVERAGE, stem)
    assert coverage["coverage_tumor"].to_numpy().max() == 1.0
    assert coverage["coverage_other"].to_numpy().max() > 0


def test_overlays_are_aligned_with_their_slide_or_refused(
    slide_root: Path,
    tmp_path: Path,
    instance,
) -> None:
    mask = np.zeros((48, 32), np.uint8)  # 1/16 of the 768 x 512 demo_slide_01
    mask[:, :16] = 255
    plain_slide(slide_root / "twin.tiff", 0.5, size=(768, 512))
    write_pyramid_tiff(slide_root / "twin_tissue_mask.tiff", mask, 1.0, 1, resolution_unit=None)
    write_pyramid_tiff(slide_root / "wide.tiff", np.full((768, 512, 3), 200, np.uint8), 0.5, 2)
    write_pyramid_tiff(
        slide_root / "wide_tissue_mask.tiff",
        np.zeros((48, 40), np.uint8),
        1.0,
        1,
        resolution_unit=None,
    )
    write_pyramid_tiff(slide_root / "short.tiff", np.full((768, 512, 3), 200, np.uint8), 0.5, 2)
    write_pyramid_tiff(slide_root / "short_tissue_mask.tiff", np.zeros((40, 32), np.uint8), 8.0, 1)
    write_pyramid_tiff(slide_root / "near.tiff", np.full((768, 512, 3), 200, np.uint8), 0.5, 2)
    write_pyramid_tiff(slide_root / "near_tissue_mask.tiff", np.zeros((46, 32), np.uint8), 8.0, 1)
    harness = Harness(make_settings(slide_root, tmp_path / "out", overlay_mpp=4.0), instance)
    harness.discover()

    wrong = harness.materialize("twin", raise_on_error=False)  # the fallback does not fit
    assert not wrong.success
    assert "does not fit its slide: covers 128 x 192 um at 4 um/px" in failure_messages(wrong)
    by_size = Harness(make_settings(slide_root, tmp_path / "by-size"), instance)
    assert by_size.materialize("twin").success
    metadata = latest_metadata(by_size, OVERLAY_OVERLAP, "twin")
    assert metadata["overlay_mpp_source"].value.startswith("the slide's, scaled")
    assert metadata["overlay_mpp"].value == [8.0, 8.0]
    tissue = by_size.table(OVERLAY_OVERLAP, "twin")["tissue_fraction"].to_pylist()
    assert tissue[:2] == [1.0, 0.0]  # left half tissue: the mask lies where it should

    wide = by_size.materialize("wide", raise_on_error=False)
    assert not wide.success
    message = failure_messages(wide)
    assert message.startswith(str(slide_root / "wide_tissue_mask.tiff") + ": ")
    assert "not the slide's" in message and "set WSI_OVERLAY_MPP" in message

    short = harness.materialize("short", raise_on_error=False)  # 8 um recorded, 17 % short
    assert not short.success and "does not fit its slide" in failure_messages(short)
    assert harness.materialize("near").success  # 4 % short: built, with a warning
    (warning,) = latest_metadata(harness, OVERLAY_OVERLAP, "near")["warnings"].value
    assert "4% off" in warning
    good_slide_is_right(harness)  # its mask records 8 um/px: WSI_OVERLAY_MPP=4 changes nothing


def tiny_tiff(path: Path, size: int, next_ifd: int = 0) -> Path:
    """A 200-byte stripped TIFF whose header claims ``size`` x ``size`` pixels at 0.25 um/px
    and whose page chain goes on at ``next_ifd`` (0: ends; 8: loops back to itself)."""
    entries = [
        (256, 4, 1, size),  # ImageWidth, LONG
        (257, 4, 1, size),  # ImageLength
        (258, 3, 1, 8),  # BitsPerSample
        (259, 3, 1, 1),  # Compression: none
        (262, 3, 1, 1),  # Photometric: black is zero
        (273, 4, 1, 174),  # StripOffsets
        (277, 3, 1, 1),  # SamplesPerPixel
        (278, 4, 1, size),  # RowsPerStrip
        (279, 4, 1, 10),  # StripByteCounts
        (282, 5, 1, 158),  # XResolution, RATIONAL after the IFD (8 + 150 bytes)
        (283, 5, 1, 166),  # YResolution
        (296, 3, 1, 3),  # ResolutionUnit: centimetre
    ]
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        packed = struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value)
        ifd += struct.pack("<HHI", tag, kind, count) + packed
    ifd += struct.pack("<I", next_ifd)
    data = b"II*\x00" + struct.pack("<I", 8) + ifd
    data += struct.pack("<II", 40_000, 1) * 2  # 40,000 px/cm = 0.25 um/px
    path.write_bytes(data.ljust(200, b"\x00"))
    return path


def test_a_header_claiming_a_huge_slide_is_refused_without_retries(
    slide_root: Path,
    tmp_path: Path,
    instance,
) -> None:
    tiny_tiff(slide_root / "huge.tiff", 3_000_000)
    harness = Harness(make_settings(slide_root, tmp_path / "out"), instance)
    harness.discover()
    result = harness.materialize("huge", raise_on_error=False)
    assert not result.success
    message = failure_messages(result)
    assert message.startswith(str(slide_root / "huge.tiff") + ": "), message
    retries = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert retries == []
    good_slide_is_right(harness)

    small = Harness(make_settings(slide_root, tmp_path / "small", max_tiles=5), instance)
    refused = small.materialize(GOOD, raise_on_error=False)
    assert not refused.success
    assert "24 tiles of 128 px, more than WSI_MAX_TILES=5" in failure_messages(refused)


@pytest.mark.timeout(120)
def test_damaged_slides_and_annotations_fail_their_own_partition(
    slide_root: Path, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    data = (slide_root / "demo_slide_02.tiff").read_bytes()
    (slide_root / "cut.tiff").write_bytes(data[: len(data) * 2 // 3])  # a copy cut short
    tiny_tiff(slide_root / "loop.tiff", 64, next_ifd=8)  # its page chain loops for ever
    shutil.copy(slide_root / "demo_slide_02.tiff", slide_root / "far.tiff")
    vertex = [[0, 0], [100, 0], [1e12, 100], [0, 100], [0, 0]]
    feature = {
        "type": "Feature",
        "properties": {"classification": {"name": "Tumor"}},
        "geometry": {"type": "Polygon", "coordinates": [vertex]},
    }
    (slide_root / "far.geojson").write_text(
        json.dumps({"type": "FeatureCollection", "features": [feature]})
    )
    harness = Harness(make_settings(slide_root, tmp_path / "out"), instance)
    harness.discover()
    for key, file, says in (
        ("cut", "cut.tiff", "truncated"),
        ("loop", "loop.tiff", "loop"),
        ("far", "far.geojson", "no slide is that large"),
    ):
        result = harness.materialize(key, raise_on_error=False)
        assert not result.success, key
        message = failure_messages(result)
        assert message.startswith(str(slide_root / file) + ": "), message
        assert says in message, message
    good_slide_is_right(harness)
