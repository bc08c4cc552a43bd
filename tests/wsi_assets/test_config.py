"""Settings: defaults for a fresh clone, WSI_* environment overrides, validation."""

import os

import pytest

from wsi_assets.config import DEFAULT_OUTPUT_ROOT, DEMO_SLIDE_ROOT, WSISettings


def test_defaults_work_on_a_fresh_clone() -> None:
    settings = WSISettings.from_env({})
    assert settings.slide_root == os.path.abspath(DEMO_SLIDE_ROOT)
    assert settings.output_root == os.path.abspath(DEFAULT_OUTPUT_ROOT)
    assert settings.last == "keep" and settings.mpp > 0
    assert len(settings.label_classes) >= 2


def test_environment_overrides() -> None:
    settings = WSISettings.from_env(
        {
            "WSI_SLIDE_ROOT": "s3://lab/slides/",
            "WSI_OUTPUT_ROOT": "s3://lab/tables",
            "WSI_MPP": "0.5",
            "WSI_TILE_EXTENT": "512",
            "WSI_STRIDE": "256",
            "WSI_LAST": "shift",
            "WSI_LABEL_CLASSES": '{"tumor": "Tumor.*", "necrosis": "(?i)necro.*"}',
            "WSI_ANNOTATION_TEMPLATES": "{stem}.geojson, annotations/{stem}.xml",
            "WSI_OVERLAY_TEMPLATES": '["s3://lab/masks/{stem}.tif"]',
            "WSI_ROI": "POLYGON((64 64, 448 64, 448 448, 64 448, 64 64))",
        }
    )
    assert settings.slide_root == "s3://lab/slides"
    assert settings.output_root == "s3://lab/tables"
    assert (settings.mpp, settings.tile_extent, settings.stride, settings.last) == (
        0.5,
        512,
        256,
        "shift",
    )
    assert settings.label_classes == {"tumor": "Tumor.*", "necrosis": "(?i)necro.*"}
    assert settings.annotation_templates == ["{stem}.geojson", "annotations/{stem}.xml"]
    assert settings.overlay_templates == ["s3://lab/masks/{stem}.tif"]
    assert settings.roi_wkt.startswith("POLYGON")


@pytest.mark.parametrize(
    "overrides",
    [
        {"last": "sometimes"},
        {"tile_extent": 0},
        {"label_classes": {"bad name": "x"}},
        {"label_classes": {"ok": "("}},
    ],
)
def test_bad_settings_fail_early(overrides: dict) -> None:
    with pytest.raises((ValueError, TypeError)):  # pydantic's ValidationError is a ValueError
        WSISettings.from_env({}, **overrides)
