"""Settings: WSI_* variables through pydantic-settings, validated at once, one object for the
code versions and the run-time resource."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import pytest

from wsi_assets.definitions import RESOURCE_KEY, build_defs
from wsi_assets.pipeline.settings import Settings, SettingsError
from wsi_core.tables import ANNOTATION_COVERAGE, OVERLAY_OVERLAP, SLIDE_METADATA, TABLES, TILE_GRID


def test_defaults_work_on_a_fresh_clone() -> None:
    settings = Settings.load()
    assert settings.slide_root == os.path.abspath("data/demo")
    assert settings.output_root == os.path.abspath("data/output")
    assert (settings.mpp, settings.tile_extent, settings.stride, settings.last) == (
        1.0,
        256,
        256,
        "keep",
    )
    assert settings.label_classes == {"tumor": "(?i)tumou?r.*", "stroma": "(?i)stroma.*"}
    assert settings.roi_geometry().bounds == (0.0, 0.0, 256.0, 256.0)


def test_environment_variables_keep_their_names(monkeypatch: pytest.MonkeyPatch) -> None:
    values = {
        "WSI_SLIDE_ROOT": "s3://lab/slides/",
        "WSI_OUTPUT_ROOT": "relative/out",
        "WSI_MPP": "0.5",
        "WSI_TILE_EXTENT": "512",
        "WSI_STRIDE": "384",
        "WSI_LAST": "shift",
        "WSI_LABEL_CLASSES": '{"tumor": "Tumor.*"}',
        "WSI_ROI": "POLYGON((0 0, 10 0, 10 10, 0 10, 0 0))",
        "WSI_ANNOTATION_TEMPLATES": "{stem}.xml, ../notes/{key}.geojson",
        "WSI_OVERLAY_TEMPLATES": '["{stem}_mask.tif"]',
        "WSI_SLIDE_EXTENSIONS": ".svs,.ndpi",
        "WSI_SLIDE_MPP": "0.25",
        "WSI_OVERLAY_MPP": "8",
        "WSI_STORAGE_OPTIONS": '{"anon": true}',
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    settings = Settings.load()
    assert settings.slide_root == "s3://lab/slides"
    assert settings.output_root == os.path.abspath("relative/out")
    assert (settings.mpp, settings.tile_extent, settings.stride, settings.last) == (
        0.5,
        512,
        384,
        "shift",
    )
    assert settings.label_classes == {"tumor": "Tumor.*"}
    assert settings.roi_geometry().area == 100.0
    assert settings.annotation_templates == ["{stem}.xml", "../notes/{key}.geojson"]
    assert settings.overlay_templates == ["{stem}_mask.tif"]
    assert settings.slide_extensions == [".svs", ".ndpi"]
    assert (settings.slide_mpp, settings.overlay_mpp) == (0.25, 8.0)
    assert settings.storage_options == {"anon": True}
    assert Settings.load(mpp=2.0).mpp == 2.0  # explicit values win over the environment


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("WSI_MPP", "-1", "greater than 0"),
        ("WSI_MPP", "fast", "valid number"),
        ("WSI_TILE_EXTENT", "0", "greater than 0"),
        ("WSI_LAST", "wrap", "'keep', 'shift' or 'drop'"),
        ("WSI_LABEL_CLASSES", '{"tumor": "([unclosed"}', "bad regular expression"),
        ("WSI_LABEL_CLASSES", '{"1st": "x"}', "must match"),
        ("WSI_LABEL_CLASSES", "{not json", "Expecting property name"),
        ("WSI_ROI", "POLYGON((", "not a WKT geometry"),
        ("WSI_ROI", "POINT(1 1)", "polygon with an area"),
        ("WSI_ANNOTATION_TEMPLATES", "{slide}.xml", "only {stem}, {name} and {key}"),
        ("WSI_STORAGE_OPTIONS", "[1, 2]", "valid dictionary"),
    ],
)
def test_a_bad_value_fails_naming_its_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, says: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as caught:
        Settings.load()
    assert f"{variable}: " in str(caught.value)
    assert says in str(caught.value)


def test_each_code_version_follows_only_the_settings_its_table_depends_on() -> None:
    base = Settings.load()
    versions = {table: base.code_version(table) for table in TABLES}
    changes = {
        "mpp": (0.5, {SLIDE_METADATA, TILE_GRID}),
        "tile_extent": (512, {TILE_GRID}),
        "last": ("drop", {TILE_GRID}),
        "label_classes": ({"tumor": "T.*"}, {ANNOTATION_COVERAGE}),
        "roi": ("POLYGON((0 0, 8 0, 8 8, 0 8, 0 0))", {ANNOTATION_COVERAGE, OVERLAY_OVERLAP}),
        "overlay_mpp": (4.0, {OVERLAY_OVERLAP}),
        "output_root": ("/elsewhere", set()),
    }
    for name, (value, affected) in changes.items():
        changed = Settings.load(**{name: value})
        moved = {t for t in TABLES if changed.code_version(t) != versions[t]}
        assert moved == affected, name


def test_one_settings_object_feeds_code_versions_and_the_resource(tmp_path: Path) -> None:
    settings = Settings.load(slide_root=str(tmp_path), tile_extent=64)
    defs = build_defs(settings)
    graph = defs.resolve_asset_graph()
    for table in TABLES:
        assert graph.get(dg.AssetKey(table)).code_version == settings.code_version(table)
    resource = defs.resources[RESOURCE_KEY] if defs.resources else None
    assert resource is settings
