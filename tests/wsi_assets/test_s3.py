"""``s3://`` slide and output roots against a real S3 API (moto's server on 127.0.0.1).

memory:// hides what S3 does differently: ETags as data versions, listings that come in
pages, s3fs's cached directory listings in a long-lived process, one PUT per table, and TIFF
slides and masks read in place by range requests (no local copy). Objects are uploaded and
overwritten with plain boto3 (another writer, as in real life), never through the s3fs
instance the pipeline uses.
"""

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pytest
import s3fs
from dagster import (
    AssetKey,
    AssetRecordsFilter,
    AssetSelection,
    Definitions,
    SensorResult,
    SkipReason,
    build_sensor_context,
    define_asset_job,
    instance_for_test,
)
from s3_server import PAGE_SIZE, S3Bucket, md5_hex
from wsi_assets_support import Pipeline, make_settings

from wsi_assets import demo, storage
from wsi_assets.definitions import build_defs
from wsi_assets.keys import (
    ANNOTATION_COVERAGE,
    SLIDE_METADATA,
    SOURCE_KEYS,
    TABLE_KEYS,
    TABLES,
    TILE_GRID,
)
from wsi_assets.partitions import PARTITIONS_NAME
from wsi_assets.registry import SlideRegistry
from wsi_assets.run_demo import summary_rows
from wsi_assets.sensors import observed_versions

SLIDES = "slides"
OUTPUT = "tables"
SLIDE_01, SLIDE_02, SLIDE_03 = demo.DEMO_SLIDES
#: Partition keys of the demo slides (file names made UI-safe).
KEYS = {
    SLIDE_01.name: "demo_slide_01",
    SLIDE_02.name: "demo_slide_02",
    SLIDE_03.name: "case_03_HE-3101e499",
}
REGISTRY = f"{OUTPUT}/_registry/slides.json"


@pytest.fixture
def s3_pipeline(s3_bucket: S3Bucket, demo_source: Path, instance) -> Pipeline:
    """The demo slides, annotations and masks under s3://bucket/slides; tables to
    s3://bucket/tables."""
    for path in sorted(demo_source.iterdir()):
        s3_bucket.put(f"{SLIDES}/{path.name}", path.read_bytes())
    settings = make_settings(s3_bucket.url(SLIDES), s3_bucket.url(OUTPUT))
    return Pipeline(settings, build_defs(settings), instance)


def tick(pipeline: Pipeline, cursor: str | None) -> SensorResult | SkipReason:
    """One sensor tick as the daemon runs it (with the last cursor), its partitions and
    observations applied."""
    sensor_def = pipeline.defs.get_repository_def().get_sensor_def("slide_sensor")
    with build_sensor_context(
        instance=pipeline.instance, cursor=cursor, resources={"settings": pipeline.settings}
    ) as context:
        result = sensor_def(context)
    if isinstance(result, SensorResult):
        for request in result.dynamic_partitions_requests:
            pipeline.instance.add_dynamic_partitions(
                request.partitions_def_name, list(request.partition_keys)
            )
        for event in result.asset_events:
            pipeline.instance.report_runless_asset_event(event)
    return result


def failure_messages(result) -> str:
    return "\n".join(
        event.step_failure_data.error.message
        for event in result.all_events
        if event.is_step_failure
    )


@dataclass
class LocalCopies:
    """The local copies the assets made of remote files, and the temporary folder they used."""

    temp: Path
    made: list[dict] = field(default_factory=list)  # uri, local path, bytes copied

    def leftovers(self) -> list[Path]:
        return sorted(self.temp.glob("wsi-*"))


@pytest.fixture
def local_copies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LocalCopies:
    """Records every local copy the assets make of a remote file; temporary files go to a
    folder of this test's own."""
    copies = LocalCopies(tmp_path / "temp")
    copies.temp.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(copies.temp))
    original = storage.local_copy

    @contextmanager
    def spy(uri: str) -> Iterator[str]:
        with original(uri) as path:
            copies.made.append({"uri": uri, "path": path, "size": Path(path).stat().st_size})
            yield path

    monkeypatch.setattr(storage, "local_copy", spy)
    return copies


def read_asset(root: str, asset: str, filesystem=None) -> pa.Table:
    """A whole asset (every slide) as one table through pyarrow.dataset's hive partitioning,
    in a fixed row order."""
    table = ds.dataset(
        f"{root}/{asset}", filesystem=filesystem, format="parquet", partitioning="hive"
    ).to_table()
    order = [name for name in ("slide", "tile_y", "tile_x") if name in table.column_names]
    return table.sort_by([(name, "ascending") for name in order])


# ------------------------------------------------------------------------------------- (a)
def test_sensor_tick_registers_slides_and_requests_runs(
    s3_pipeline: Pipeline, s3_bucket: S3Bucket, demo_source: Path
) -> None:
    # The listing of slides/ takes several pages (9 objects, PAGE_SIZE keys a page).
    page = s3_bucket.client.list_objects_v2(Bucket=s3_bucket.name, Prefix=f"{SLIDES}/")
    assert page["IsTruncated"] and page["KeyCount"] == PAGE_SIZE

    first = tick(s3_pipeline, cursor=None)
    assert isinstance(first, SensorResult)
    keys = sorted(KEYS.values())
    (partitions,) = first.dynamic_partitions_requests
    assert sorted(partitions.partition_keys) == keys
    assert sorted(s3_pipeline.instance.get_dynamic_partitions(PARTITIONS_NAME)) == keys
    registry = json.loads(s3_bucket.get(REGISTRY))["slides"]
    assert {key: entry["uri"] for key, entry in registry.items()} == {
        key: s3_bucket.url(f"{SLIDES}/{name}") for name, key in KEYS.items()
    }
    assert SlideRegistry(s3_pipeline.settings.output_root).resolve(KEYS[SLIDE_03.name]).uri == (
        f"s3://{s3_bucket.name}/slides/case 03 (HE).tiff"
    )
    # One run per slide, all four tables, keyed by the slide object's ETag.
    requests = {request.partition_key: request for request in first.run_requests}
    assert sorted(requests) == keys
    for name, key in KEYS.items():
        etag = md5_hex((demo_source / name).read_bytes())
        assert requests[key].run_key.startswith(f"{key}:etag-{etag}-")
        assert set(requests[key].asset_selection) == set(TABLE_KEYS)
    assert len(first.asset_events) == 9  # slide, annotation and overlay of three slides

    # Nothing changed: the next tick (same cursor) lists again and skips.
    assert isinstance(tick(s3_pipeline, cursor=first.cursor), SkipReason)
    assert s3_bucket.keys(f"{OUTPUT}/") == [REGISTRY]


# ------------------------------------------------------------------------------------- (b)
def test_tables_on_s3_equal_tables_from_a_local_folder(
    s3_pipeline: Pipeline,
    s3_bucket: S3Bucket,
    demo_source: Path,
    tmp_path: Path,
    local_copies: LocalCopies,
) -> None:
    tick(s3_pipeline, cursor=None)
    for key in KEYS.values():
        result = s3_pipeline.materialize(key)
        assert result.success
        assert all(check.passed for check in result.get_asset_check_evaluations())

    local_settings = make_settings(demo_source, tmp_path / "local-output")
    with instance_for_test() as local_instance:
        local = Pipeline(local_settings, build_defs(local_settings), local_instance)
        local.discover()
        assert sorted(SlideRegistry(local_settings.output_root).load()) == sorted(KEYS.values())
        for key in KEYS.values():
            assert local.materialize(key).success

    remote = s3fs.S3FileSystem(skip_instance_cache=True)
    for asset in TABLES:
        on_s3 = read_asset(f"{s3_bucket.name}/{OUTPUT}", asset, remote)
        on_disk = read_asset(local_settings.output_root, asset)
        assert on_s3.num_rows > 0 and on_s3.num_rows == on_disk.num_rows
        if asset == SLIDE_METADATA:  # where the slide was read from differs, nothing else
            assert sorted(on_s3["uri"].to_pylist()) == sorted(
                s3_bucket.url(f"{SLIDES}/{name}") for name in KEYS
            )
            assert sorted(on_disk["uri"].to_pylist()) == sorted(
                str(demo_source / name) for name in KEYS
            )
            on_s3, on_disk = on_s3.drop_columns(["uri"]), on_disk.drop_columns(["uri"])
        assert on_s3.equals(on_disk), asset
    metadata = read_asset(f"{s3_bucket.name}/{OUTPUT}", SLIDE_METADATA, remote).to_pylist()
    assert {row["relpath"]: row["file_size"] for row in metadata} == {
        name: (demo_source / name).stat().st_size for name in KEYS
    }
    # run_demo's summary reads the S3 tables through the product's own filesystem access.
    assert summary_rows(s3_pipeline.settings.output_root) == summary_rows(
        local_settings.output_root
    )
    assert len(summary_rows(s3_pipeline.settings.output_root)) == len(KEYS)

    # Exactly one object per table (written in one PUT: a plain MD5 ETag, no multipart "-N"
    # suffix) plus the registry; no temporary or partial objects.
    expected = {REGISTRY} | {
        f"{OUTPUT}/{asset}/slide={key}/part-0.parquet" for asset in TABLES for key in KEYS.values()
    }
    assert set(s3_bucket.keys(f"{OUTPUT}/")) == expected
    for key in expected - {REGISTRY}:
        assert s3_bucket.etag(key) == md5_hex(s3_bucket.get(key))

    # The slides and masks are TIFFs: read in place on S3, never copied to a local file.
    assert [copy for copy in local_copies.made if storage.is_url(copy["uri"])] == []
    assert local_copies.leftovers() == []
    assert list(local_copies.temp.iterdir()) == []


# ------------------------------------------------------------------------------------- (c)
def test_source_data_versions_are_etags(
    s3_pipeline: Pipeline, s3_bucket: S3Bucket, demo_source: Path
) -> None:
    first = tick(s3_pipeline, cursor=None)
    by_sensor = {asset: observed_versions(s3_pipeline.instance, asset) for asset in SOURCE_KEYS}
    for slide in demo.DEMO_SLIDES:
        key = KEYS[slide.name]
        files = dict(zip(SOURCE_KEYS, (slide.name, slide.annotation_name(), slide.mask_name())))
        for asset, name in files.items():
            etag = s3_bucket.etag(f"{SLIDES}/{name}")
            assert etag == md5_hex((demo_source / name).read_bytes())
            assert by_sensor[asset][key].startswith(f"etag-{etag}-"), (asset, key)

    # "Observe sources" (HEAD per object, not the listing) records the very same versions.
    job = define_asset_job("observe_sources", selection=AssetSelection.assets(*SOURCE_KEYS))
    defs = Definitions.merge(s3_pipeline.defs, Definitions(jobs=[job]))
    observed = defs.resolve_job_def("observe_sources").execute_in_process(
        instance=s3_pipeline.instance
    )
    assert observed.success
    assert {a: observed_versions(s3_pipeline.instance, a) for a in SOURCE_KEYS} == by_sensor

    # The table records the version of the slide it read.
    key = KEYS[SLIDE_01.name]
    assert s3_pipeline.materialize(key, [SLIDE_METADATA]).success
    record = s3_pipeline.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(SLIDE_METADATA), asset_partitions=[key]), limit=1
    ).records[0]
    source_version = record.asset_materialization.metadata["source_version"].value
    assert source_version == by_sensor[SOURCE_KEYS[0]][key]

    # Uploading the same bytes again (new LastModified, same ETag) is no change...
    slide_key = f"{SLIDES}/{SLIDE_01.name}"
    s3_bucket.put(slide_key, s3_bucket.get(slide_key))
    assert isinstance(tick(s3_pipeline, cursor=first.cursor), SkipReason)
    # ...while other bytes are.
    s3_bucket.put(slide_key, (demo_source / SLIDE_02.name).read_bytes())
    changed = tick(s3_pipeline, cursor=first.cursor)
    (request,) = changed.run_requests
    assert request.partition_key == key
    etag = md5_hex((demo_source / SLIDE_02.name).read_bytes())
    assert request.run_key.startswith(f"{key}:etag-{etag}-")


# ------------------------------------------------------------------------------------- (d)
def test_new_and_overwritten_objects_are_seen_in_the_same_process(
    s3_pipeline: Pipeline, s3_bucket: S3Bucket, demo_source: Path
) -> None:
    """A long-lived process (the sensor's code server, ``run_demo``) must not serve an old
    listing or old object details after another writer changed the bucket."""
    first = tick(s3_pipeline, cursor=None)
    key_01 = KEYS[SLIDE_01.name]
    # Every kind of read and write (listing, HEAD, GET, PUT) has been done in this process.
    assert s3_pipeline.materialize(key_01, [SLIDE_METADATA, TILE_GRID, ANNOTATION_COVERAGE]).success
    before = s3_pipeline.table(ANNOTATION_COVERAGE, key_01)

    # A new slide (a copy of slide 01 with its annotation and mask) beside the others.
    for suffix in (".tiff", ".xml", "_tissue_mask.tiff"):
        data = (demo_source / f"{SLIDE_01.stem}{suffix}").read_bytes()
        s3_bucket.put(f"{SLIDES}/demo_slide_04{suffix}", data)
    added = tick(s3_pipeline, cursor=first.cursor)
    assert isinstance(added, SensorResult)
    (partitions,) = added.dynamic_partitions_requests
    assert list(partitions.partition_keys) == ["demo_slide_04"]
    (request,) = added.run_requests
    assert request.partition_key == "demo_slide_04"
    assert set(request.asset_selection) == set(TABLE_KEYS)
    # Runs in this same process see the new objects too (size, annotation, mask).
    assert s3_pipeline.materialize("demo_slide_04").success
    meta = s3_pipeline.table(SLIDE_METADATA, "demo_slide_04").to_pylist()[0]
    assert meta["file_size"] == (demo_source / SLIDE_01.name).stat().st_size
    coverage = s3_pipeline.table(ANNOTATION_COVERAGE, "demo_slide_04")
    assert coverage.drop_columns(["slide_key"]).equals(before.drop_columns(["slide_key"]))

    # Slide 01's annotation is overwritten: its tumour polygons become necrosis.
    annotation = f"{SLIDES}/{SLIDE_01.annotation_name()}"
    relabelled = s3_bucket.get(annotation).replace(b"Tumor", b"Necrosis")
    etag = s3_bucket.put(annotation, relabelled)
    changed = tick(s3_pipeline, cursor=added.cursor)
    assert isinstance(changed, SensorResult)
    assert not changed.dynamic_partitions_requests
    (request,) = changed.run_requests
    assert request.partition_key == key_01
    assert list(request.asset_selection) == [AssetKey(ANNOTATION_COVERAGE)]
    assert f"annotation=etag-{etag}-" in request.run_key
    (event,) = changed.asset_events
    assert event.asset_key == SOURCE_KEYS[1] and event.partition == key_01

    # The requested run reads the new object, not a cached view of the old one.
    result = s3_pipeline.materialize(key_01, [ANNOTATION_COVERAGE])
    assert result.success, failure_messages(result)
    after = s3_pipeline.table(ANNOTATION_COVERAGE, key_01)
    assert before["coverage_tumor"].to_numpy().max() > 0.1
    assert after["coverage_tumor"].to_numpy().max() == 0.0
    assert after["coverage_stroma"].equals(before["coverage_stroma"])


# ------------------------------------------------------------------------------------- (e)
def test_bad_slide_object_fails_only_its_own_partition(
    s3_pipeline: Pipeline, s3_bucket: S3Bucket, local_copies: LocalCopies
) -> None:
    s3_bucket.put(f"{SLIDES}/broken.tiff", b"II*\x00 this is not a tiff")
    first = tick(s3_pipeline, cursor=None)
    assert len(first.run_requests) == 4  # the broken object is a slide like any other
    registry = SlideRegistry(s3_pipeline.settings.output_root).load()
    broken_uri = s3_bucket.url(f"{SLIDES}/broken.tiff")
    (broken,) = [key for key, entry in registry.items() if entry.uri == broken_uri]

    result = s3_pipeline.materialize(broken, raise_on_error=False)
    assert not result.success
    message = failure_messages(result)
    assert f"Failure: {broken_uri}: " in message, message  # the object, not its local copy
    assert str(local_copies.temp) not in message
    assert not result.get_asset_materialization_events()
    assert [key for key in s3_bucket.keys(f"{OUTPUT}/") if f"slide={broken}" in key] == []
    assert local_copies.made == []  # a TIFF (by its magic bytes): read in place, not copied
    assert local_copies.leftovers() == []

    key_02 = KEYS[SLIDE_02.name]
    assert s3_pipeline.materialize(key_02).success  # the other slides go on
    assert s3_bucket.keys(f"{OUTPUT}/") == sorted(
        [REGISTRY] + [f"{OUTPUT}/{asset}/slide={key_02}/part-0.parquet" for asset in TABLES]
    )
    assert local_copies.leftovers() == []


# ------------------------------------------------------------------------------------- (f)
def test_slide_metadata_of_a_large_slide_fetches_its_header_not_the_file(
    s3_bucket: S3Bucket, tmp_path: Path, local_copies: LocalCopies, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What reading a remote TIFF in place is for: the metadata of a slide costs its header
    (a block or two of range requests), not a download of the whole object."""
    from wsi_assets.assets.slide_metadata import describe_slide
    from wsi_core.remote import URL_BLOCK_BYTES
    from wsi_core.synthetic import write_pyramid_tiff

    image = np.random.default_rng(7).integers(0, 256, (2048, 1536, 3), dtype=np.uint8)
    path = write_pyramid_tiff(tmp_path / "large.tiff", image, 0.25, 3, compression=None)
    size = path.stat().st_size
    uri = s3_bucket.url(f"{SLIDES}/large.tiff")
    s3_bucket.put(f"{SLIDES}/large.tiff", path.read_bytes())

    fetched: list[tuple[int, int]] = []  # (start, end) byte ranges GET from S3
    fetch_range = s3fs.core.S3File._fetch_range

    def counting(self, start: int, end: int) -> bytes:
        fetched.append((start, end))
        return fetch_range(self, start, end)

    monkeypatch.setattr(s3fs.core.S3File, "_fetch_range", counting)
    read = lambda location: describe_slide(location, 0.5, None)  # noqa: E731
    remote = storage.read_slide_file(uri, read)
    assert remote == describe_slide(str(path), 0.5, None)
    assert local_copies.made == []
    # A few blocks (the first page's header, the IFDs written after each level's data).
    total = sum(end - start for start, end in fetched)
    assert 0 < total <= 4 * URL_BLOCK_BYTES < size / 5, (size, fetched)
