"""``storage_options`` reach fsspec from every reader that opens a URL.

The test S3 server (moto, on loopback) is made reachable through the options alone: the
``AWS_*`` environment is pointed at a closed loopback port and holds no credentials, so a
reader that dropped the options could neither find credentials nor reach the bucket (and
could never reach the internet either). The same files read locally give the expected values.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import s3fs
from botocore.exceptions import NoCredentialsError
from shapely.geometry import Point, box

from wsi_core.parsers import (
    ASAPParser,
    Darwin7JSONParser,
    EMPAIAParser,
    GeoJSONParser,
    open_annotations,
)
from wsi_core.remote import TIFF_MAGIC, open_tiff_url
from wsi_core.slide import open_slide
from wsi_core.synthetic import write_pyramid_tiff
from wsi_core.tiff_reader import TiffReader
from wsi_core.tiling import tile_overlay, tile_overlay_overlap

# Nothing listens on the discard port of loopback: the environment's endpoint leads nowhere.
NOWHERE = "http://127.0.0.1:9"

ASAP_XML = b"""<?xml version="1.0"?>
<ASAP_Annotations><Annotations>
  <Annotation Name="T1" Type="Polygon" PartOfGroup="Tumor"><Coordinates>
    <Coordinate Order="0" X="10" Y="10"/><Coordinate Order="1" X="90" Y="20"/>
    <Coordinate Order="2" X="40" Y="80"/>
  </Coordinates></Annotation>
</Annotations></ASAP_Annotations>
"""

GEOJSON = {
    "type": "FeatureCollection",
    "features": [
        {
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [50, 0], [50, 40], [0, 0]]]},
            "properties": {"classification": {"name": "Tumor"}, "label": "T"},
        }
    ],
}

DARWIN = {
    "version": "2.0",
    "annotations": [
        {
            "name": "Tumor",
            "polygon": {"paths": [[{"x": 0, "y": 0}, {"x": 30, "y": 0}, {"x": 0, "y": 30}]]},
        }
    ],
}

EMPAIA = {
    "items": [{"name": "Tumor", "type": "polygon", "coordinates": [[5, 5], [60, 5], [5, 60]]}]
}


@pytest.fixture
def options(s3_bucket, s3_endpoint, monkeypatch):
    """The test bucket, reachable only through the returned storage options."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", NOWHERE)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    s3fs.S3FileSystem.clear_instance_cache()  # no client built with the old environment
    return {"endpoint_url": s3_endpoint, "key": "testing", "secret": "testing"}


@pytest.fixture
def rgb() -> np.ndarray:
    return np.random.default_rng(7).integers(0, 256, (301, 417, 3), dtype=np.uint8)


def test_without_the_options_the_bucket_is_out_of_reach(s3_bucket, options, rgb, tmp_path):
    """The control: the environment alone does not reach the bucket."""
    path = write_pyramid_tiff(tmp_path / "slide.tiff", rgb, 0.5, 2)
    s3_bucket.put("slide.tiff", path.read_bytes())
    with pytest.raises(NoCredentialsError):
        open_slide(s3_bucket.url("slide.tiff"))
    s3_bucket.put("a.xml", ASAP_XML)
    with pytest.raises(NoCredentialsError):
        open_annotations(s3_bucket.url("a.xml"))


def test_open_tiff_url(s3_bucket, options, rgb, tmp_path):
    path = write_pyramid_tiff(tmp_path / "slide.tiff", rgb, 0.5, 1)
    s3_bucket.put("slide.tiff", path.read_bytes())
    with open_tiff_url(s3_bucket.url("slide.tiff"), options) as handle:
        assert handle.read(4) in TIFF_MAGIC


@pytest.mark.parametrize("opener", [open_slide, TiffReader])
def test_slide_readers(s3_bucket, options, rgb, tmp_path, opener):
    path = write_pyramid_tiff(tmp_path / "slide.tiff", rgb, (0.5, 0.25), 3, tile=(64, 64))
    s3_bucket.put("slide.tiff", path.read_bytes())
    url = s3_bucket.url("slide.tiff")
    with opener(url, storage_options=options) as remote, TiffReader(path) as local:
        assert isinstance(remote, TiffReader) and remote.path == url
        assert remote.level_dimensions == local.level_dimensions
        assert remote.mpp == local.mpp == (0.5, 0.25)
        for level in range(local.level_count):
            np.testing.assert_array_equal(
                remote.read_tile(-20, 30, 150, 90, level), local.read_tile(-20, 30, 150, 90, level)
            )


def test_mpp_override_and_options_together(s3_bucket, options, rgb, tmp_path):
    path = write_pyramid_tiff(tmp_path / "bare.tiff", rgb, 0.5, 2, resolution_unit=None)
    s3_bucket.put("bare.tiff", path.read_bytes())
    with open_slide(s3_bucket.url("bare.tiff"), 0.25, storage_options=options) as slide:
        assert slide.mpp == (0.25, 0.25) and slide.closest_level(0.5) == 1


@pytest.mark.parametrize(
    ("key", "data", "parser", "kwargs"),
    [
        ("a.xml", ASAP_XML, ASAPParser, {}),
        ("a.geojson", json.dumps(GEOJSON).encode(), GeoJSONParser, {}),
        ("b.geojson", json.dumps(GEOJSON).encode(), GeoJSONParser, {"class_property": "label"}),
        ("a.json", json.dumps(DARWIN).encode(), Darwin7JSONParser, {}),
        ("e.json", json.dumps(EMPAIA).encode(), EMPAIAParser, {}),
    ],
)
def test_annotation_parsers(s3_bucket, options, tmp_path, key, data, parser, kwargs):
    s3_bucket.put(key, data)
    url = s3_bucket.url(key)
    local = tmp_path / key
    local.write_bytes(data)
    expected = parser(local, **kwargs)
    for remote in (
        parser(url, storage_options=options, **kwargs),
        *([open_annotations(url, storage_options=options)] if not kwargs else []),
    ):
        assert type(remote) is parser and remote.path == url
        assert remote.class_labels() == expected.class_labels()
        got = [g.wkb for g in remote.get_class_polygons(".*")]
        assert got == [g.wkb for g in expected.get_class_polygons(".*")] and got


@pytest.mark.parametrize("roi", [box(0, 0, 64, 64), Point(32, 32).buffer(30)], ids=["box", "disc"])
def test_overlay_kernels(s3_bucket, options, tmp_path, roi):
    mask = np.zeros((120, 160), dtype=np.uint8)
    mask[20:90, 30:140] = 255
    path = write_pyramid_tiff(tmp_path / "mask.tiff", mask, mpp=2.0, n_levels=2, resample="nearest")
    s3_bucket.put("mask.tiff", path.read_bytes())
    url = s3_bucket.url("mask.tiff")
    xs, ys = [0, 64, 128, 192, 256], [0, 64, 64, 128, 256]
    remote = tile_overlay_overlap(roi, url, xs, ys, 1.0, 1.0, storage_options=options)
    assert remote == tile_overlay_overlap(roi, str(path), xs, ys, 1.0, 1.0)
    assert any(r and 0 < r["255"] < 1 for r in remote)
    patches = tile_overlay(roi, url, xs, ys, 1.0, 1.0, storage_options=options)
    for got, want in zip(patches, tile_overlay(roi, str(path), xs, ys, 1.0, 1.0), strict=True):
        np.testing.assert_array_equal(got.data, want.data)
        np.testing.assert_array_equal(got.mask, want.mask)


def test_local_paths_ignore_the_options(tmp_path: Path, rgb):
    """Options are for URLs; a local file opens as before whatever they say."""
    unusable = {"endpoint_url": NOWHERE, "anon": True}
    path = write_pyramid_tiff(tmp_path / "slide.tiff", rgb, 0.5, 1)
    with open_slide(path, storage_options=unusable) as slide:
        assert slide.level_dimensions == ((417, 301),)
    with TiffReader(path, storage_options=unusable) as slide:
        assert slide.level_dimensions == ((417, 301),)
    annotations = tmp_path / "a.xml"
    annotations.write_bytes(ASAP_XML)
    assert open_annotations(annotations, storage_options=unusable).class_labels() == ["Tumor"]
    assert ASAPParser(annotations, storage_options=unusable).class_labels() == ["Tumor"]
