"""``s3://`` slide and output roots against a real S3 API (moto's server on 127.0.0.1).

memory:// hides what S3 does differently: ETags as data versions, listings in pages,
conditional writes, one PUT per table, TIFF slides and masks read in place by range requests,
and the cost of every request. Objects are uploaded and overwritten with plain boto3 (another
writer, as in real life), never through the s3fs instance the pipeline uses.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pytest
import s3fs
from s3_server import PAGE_SIZE, S3Bucket, md5_hex, recorded_requests
from wsi_assets_support import DEMO_KEYS, Harness, failure_messages, make_settings

from wsi_assets.pipeline import demo
from wsi_assets.pipeline.keys import slide_key
from wsi_assets.pipeline.pictures import PICTURE_FILE, THUMBNAIL_FILE
from wsi_assets.pipeline.registry import Registration, Registry
from wsi_assets.pipeline.slides import SlideStore
from wsi_assets.pipeline.summary import summary_rows
from wsi_assets.pipeline.tissue_masks import MASK_FILE
from wsi_assets.sources import recorded_versions
from wsi_core.tables import ANNOTATION_COVERAGE, SLIDE_METADATA, TABLES
from wsi_core.tables.slide_metadata import describe_slide
from wsi_core.tissue import TISSUE_MASK

SLIDES = "slides"
OUTPUT = "tables"
SLIDE_01, SLIDE_02, SLIDE_03 = demo.DEMO_SLIDES
REGISTRY = f"{OUTPUT}/_registry/slides"
#: Storage requests allowed for all four tables of one new slide, the kernels' own reads of
#: the slide and its overlay aside.
REQUESTS_PER_SLIDE = 15
#: Pictures beside the tables: one per table and the slide's thumbnail, one PUT each.
PICTURES_PER_SLIDE = len(TABLES) + 1
#: The slide's tissue mask and its picture, one PUT each.
MASK_OBJECTS = 2
#: Replacing them: for each a refused PUT, the owner check (HEAD and GET for the mask, a GET
#: for the picture) and the PUT.
MASK_REPLACE_REQUESTS = 7


@pytest.fixture
def s3_harness(s3_bucket: S3Bucket, demo_source: Path, instance: dg.DagsterInstance) -> Harness:
    """The demo slides, annotations and masks under s3://bucket/slides; tables to
    s3://bucket/tables."""
    for path in sorted(demo_source.iterdir()):
        s3_bucket.put(f"{SLIDES}/{path.name}", path.read_bytes())
    return Harness(make_settings(s3_bucket.url(SLIDES), s3_bucket.url(OUTPUT)), instance)


def tick(harness: Harness, cursor: str | None) -> dg.SensorResult | dg.SkipReason:
    return harness.discover(cursor)


def versions(result: dg.SensorResult | dg.SkipReason) -> dict[tuple[str, str], str]:
    """(source asset, slide) -> version of every file version a tick reported."""
    assert isinstance(result, dg.SensorResult)
    return {
        (e.asset_key.to_user_string(), str(e.partition)): str(e.metadata["version"].value)
        for e in result.asset_events or []
        if isinstance(e, dg.AssetMaterialization)
    }


@dataclass
class LocalCopies:
    """The local copies the pipeline made of remote files, and the temporary folder used."""

    temp: Path
    made: list[str] = field(default_factory=list)

    def leftovers(self) -> list[Path]:
        return sorted(self.temp.glob("wsi-*"))


@pytest.fixture
def local_copies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LocalCopies:
    copies = LocalCopies(tmp_path / "temp")
    copies.temp.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(copies.temp))
    original = SlideStore.readable

    @contextmanager
    def spy(self: SlideStore, uri: str) -> Iterator[str]:
        with original(self, uri) as path:
            if path != uri:  # a local file is read in place, not copied
                copies.made.append(uri)
            yield path

    monkeypatch.setattr(SlideStore, "readable", spy)
    return copies


def read_table(root: str, table: str, filesystem: object = None) -> pa.Table:
    """A whole table (every slide) through pyarrow.dataset, in a fixed row order."""
    data = ds.dataset(
        f"{root}/{table}", filesystem=filesystem, format="parquet", partitioning="hive"
    ).to_table()
    order = [name for name in ("slide", "tile_y", "tile_x") if name in data.column_names]
    return data.sort_by([(name, "ascending") for name in order])


def test_sensor_registers_slides_and_reports_etags(
    s3_harness: Harness, s3_bucket: S3Bucket, demo_source: Path
) -> None:
    page = s3_bucket.client.list_objects_v2(Bucket=s3_bucket.name, Prefix=f"{SLIDES}/")
    assert page["IsTruncated"] and page["KeyCount"] == PAGE_SIZE  # listings take pages
    first = tick(s3_harness, None)
    assert s3_harness.instance.get_dynamic_partitions("slides") == sorted(DEMO_KEYS)
    assert s3_bucket.keys(f"{REGISTRY}/") == sorted(f"{REGISTRY}/{k}.json" for k in DEMO_KEYS)
    registry = Registry(s3_harness.settings.output_root)
    assert registry.lookup(slide_key(SLIDE_03.name)) == Registration(
        "case_03_HE-3101e499", "case 03 (HE).tiff"
    )
    assert versions(first) == {}  # nothing read from these files yet
    for slide in demo.DEMO_SLIDES:  # each run records the ETags of the files it read
        key = slide_key(slide.name)
        assert s3_harness.materialize(key).success
        files = (
            ("slide", slide.name),
            ("annotation", slide.annotation_name()),
            (
                "overlay",
                slide.mask_name(),
            ),
        )
        for kind, name in files:
            etag = md5_hex((demo_source / name).read_bytes())
            assert s3_bucket.etag(f"{SLIDES}/{name}") == etag
            recorded = recorded_versions(s3_harness.instance, kind, [key])
            assert recorded[key].startswith(f"etag-{etag}-")
    assert isinstance(tick(s3_harness, first.cursor), dg.SkipReason)

    slide = f"{SLIDES}/{SLIDE_01.name}"
    s3_bucket.put(slide, s3_bucket.get(slide))  # the same bytes again: same ETag, no change
    assert isinstance(tick(s3_harness, first.cursor), dg.SkipReason)
    s3_bucket.put(slide, (demo_source / SLIDE_02.name).read_bytes())
    etag = md5_hex((demo_source / SLIDE_02.name).read_bytes())
    changed = versions(tick(s3_harness, first.cursor))
    assert list(changed) == [("slide_file", "demo_slide_01")]
    assert changed[("slide_file", "demo_slide_01")].startswith(f"etag-{etag}-")


def test_tables_on_s3_equal_tables_from_a_local_folder(
    s3_harness: Harness,
    s3_bucket: S3Bucket,
    demo_source: Path,
    tmp_path: Path,
    local_copies: LocalCopies,
) -> None:
    tick(s3_harness, None)
    for key in DEMO_KEYS:
        result = s3_harness.materialize(key)
        assert result.success and all(c.passed for c in result.get_asset_check_evaluations())
    with dg.instance_for_test() as local_instance:
        local = Harness(make_settings(demo_source, tmp_path / "local"), local_instance)
        local.discover()
        for key in DEMO_KEYS:
            assert local.materialize(key).success
    remote = s3fs.S3FileSystem(skip_instance_cache=True)
    for table in TABLES:
        on_s3 = read_table(f"{s3_bucket.name}/{OUTPUT}", table, remote)
        on_disk = read_table(local.settings.output_root, table)
        assert on_s3.num_rows > 0 and on_s3.num_rows == on_disk.num_rows
        if table == SLIDE_METADATA:  # where the slide was read from differs, nothing else
            assert sorted(on_s3["uri"].to_pylist()) == sorted(
                s3_bucket.url(f"{SLIDES}/{s.name}") for s in demo.DEMO_SLIDES
            )
            on_s3, on_disk = on_s3.drop_columns(["uri"]), on_disk.drop_columns(["uri"])
        assert on_s3.equals(on_disk), table
    assert summary_rows(s3_harness.pipeline.tables) == summary_rows(local.pipeline.tables)
    tables = {f"{OUTPUT}/{t}/slide={k}/part-0.parquet" for t in TABLES for k in DEMO_KEYS}
    pictures = {f"{OUTPUT}/{t}/slide={k}/{PICTURE_FILE}" for t in TABLES for k in DEMO_KEYS}
    pictures |= {f"{OUTPUT}/{SLIDE_METADATA}/slide={k}/{THUMBNAIL_FILE}" for k in DEMO_KEYS}
    pictures |= {f"{OUTPUT}/{TISSUE_MASK}/slide={k}/{PICTURE_FILE}" for k in DEMO_KEYS}
    # the masks differ only in the slide file version their description records
    masks = {f"{OUTPUT}/{TISSUE_MASK}/slide={k}/{MASK_FILE}" for k in DEMO_KEYS}
    stored = set(s3_bucket.keys(f"{OUTPUT}/")) - set(s3_bucket.keys(f"{REGISTRY}/"))
    assert stored == tables | pictures | masks
    for key in stored:  # one PUT each: a plain MD5 ETag, no multipart suffix, no temp object
        assert s3_bucket.etag(key) == md5_hex(s3_bucket.get(key))
    for key in pictures:  # the same picture whichever store the slide and tables are in
        local_file = Path(local.settings.output_root) / key.removeprefix(f"{OUTPUT}/")
        assert s3_bucket.get(key) == local_file.read_bytes(), key
    assert local_copies.made == [] and local_copies.leftovers() == []  # TIFFs read in place


def _kind(method: str, path: str, bucket: str) -> str:
    """A request as 'METHOD object' or 'LIST prefix' (moto serves path-style URLs)."""
    parts = urlsplit(path)
    key = unquote(parts.path).removeprefix(f"/{bucket}").lstrip("/")
    if method == "GET" and not key:
        return "LIST " + unquote(
            dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p).get("prefix", "")
        )
    return f"{method} {key}"


def test_one_slide_costs_few_storage_requests(
    s3_harness: Harness, s3_bucket: S3Bucket, capsys: pytest.CaptureFixture[str]
) -> None:
    tick(s3_harness, None)
    slide = SLIDE_01
    read_by_kernels = {f"{SLIDES}/{slide.name}", f"{SLIDES}/{slide.mask_name()}"}

    def job() -> list[str]:
        with recorded_requests() as seen:
            assert s3_harness.materialize(slide_key(slide.name)).success
        kinds = [_kind(method, path, s3_bucket.name) for method, path in seen]
        return [k for k in kinds if k.split(" ", 1)[1] not in read_by_kernels]

    first = job()
    assert len(first) <= REQUESTS_PER_SLIDE + PICTURES_PER_SLIDE + MASK_OBJECTS, first
    counts = Counter(k.split(" ", 1)[0] for k in first)
    assert counts["HEAD"] == 0, "\n".join(first)  # no existence check before a read
    assert counts["PUT"] == len(TABLES) + PICTURES_PER_SLIDE + MASK_OBJECTS
    # the thumbnail is read from the slide once, and not read back by the later tables
    assert not [k for k in first if k.startswith("GET") and k.endswith(THUMBNAIL_FILE)], first
    again = job()  # replacing our own files costs a footer (or picture) read and a refused PUT
    budget = REQUESTS_PER_SLIDE + 3 * PICTURES_PER_SLIDE + 2 * len(TABLES) + MASK_REPLACE_REQUESTS
    assert len(again) <= budget, again
    with capsys.disabled():
        print(f"\nS3 requests for one slide's four tables: {len(first)} new, {len(again)} again")


def test_objects_changed_by_another_writer_are_seen_in_the_same_process(
    s3_harness: Harness, s3_bucket: S3Bucket, demo_source: Path
) -> None:
    first = tick(s3_harness, None)
    key = slide_key(SLIDE_01.name)
    assert s3_harness.materialize(key).success
    before = s3_harness.table(ANNOTATION_COVERAGE, key)
    for suffix in (".tiff", ".xml", "_tissue_mask.tiff"):
        data = (demo_source / f"{SLIDE_01.stem}{suffix}").read_bytes()
        s3_bucket.put(f"{SLIDES}/demo_slide_04{suffix}", data)
    added = tick(s3_harness, first.cursor)
    assert isinstance(added, dg.SensorResult)
    (partitions,) = added.dynamic_partitions_requests or []
    assert list(partitions.partition_keys or []) == ["demo_slide_04"]
    assert s3_harness.materialize("demo_slide_04").success
    meta = s3_harness.table(SLIDE_METADATA, "demo_slide_04").to_pylist()[0]
    assert meta["file_size"] == (demo_source / SLIDE_01.name).stat().st_size

    annotation = f"{SLIDES}/{SLIDE_01.annotation_name()}"
    etag = s3_bucket.put(annotation, s3_bucket.get(annotation).replace(b"Tumor", b"Necrosis"))
    changed = versions(tick(s3_harness, added.cursor))
    assert list(changed) == [("annotation_file", key)]
    assert changed[("annotation_file", key)].startswith(f"etag-{etag}-")
    result = s3_harness.materialize(key, [ANNOTATION_COVERAGE])
    assert result.success, failure_messages(result)
    after = s3_harness.table(ANNOTATION_COVERAGE, key)
    assert before["coverage_tumor"].to_numpy().max() > 0.1
    assert after["coverage_tumor"].to_numpy().max() == 0.0
    assert after["coverage_stroma"].equals(before["coverage_stroma"])


def test_a_bad_slide_object_fails_only_its_own_partition(
    s3_harness: Harness, s3_bucket: S3Bucket, local_copies: LocalCopies
) -> None:
    s3_bucket.put(f"{SLIDES}/broken.tiff", b"II*\x00 this is not a tiff")
    tick(s3_harness, None)
    assert "broken" in s3_harness.instance.get_dynamic_partitions("slides")
    result = s3_harness.materialize("broken", raise_on_error=False)
    assert not result.success
    message = failure_messages(result)
    assert message.startswith(s3_bucket.url(f"{SLIDES}/broken.tiff") + ": "), message
    assert str(local_copies.temp) not in message
    assert not result.get_asset_materialization_events()
    assert [k for k in s3_bucket.keys(f"{OUTPUT}/") if "slide=broken" in k] == []
    assert local_copies.made == []  # a TIFF by its magic bytes: read in place
    assert s3_harness.materialize(slide_key(SLIDE_02.name)).success  # the others go on


def test_slide_metadata_of_a_large_slide_reads_its_header_not_the_file(
    s3_bucket: S3Bucket, tmp_path: Path, local_copies: LocalCopies, monkeypatch: pytest.MonkeyPatch
) -> None:
    from wsi_core.remote import URL_BLOCK_BYTES
    from wsi_core.synthetic import write_pyramid_tiff

    image = np.random.default_rng(7).integers(0, 256, (2048, 1536, 3), dtype=np.uint8)
    path = write_pyramid_tiff(tmp_path / "large.tiff", image, 0.25, 3, compression=None)
    size = path.stat().st_size
    s3_bucket.put(f"{SLIDES}/large.tiff", path.read_bytes())
    fetched: list[tuple[int, int]] = []
    fetch_range = s3fs.core.S3File._fetch_range

    def counting(self: s3fs.core.S3File, start: int, end: int) -> bytes:
        fetched.append((start, end))
        return fetch_range(self, start, end)

    monkeypatch.setattr(s3fs.core.S3File, "_fetch_range", counting)
    store = SlideStore(make_settings(s3_bucket.url(SLIDES), tmp_path / "out"))
    remote = store.read(s3_bucket.url(f"{SLIDES}/large.tiff"), lambda p: describe_slide(p, 0.5))
    assert remote == describe_slide(str(path), 0.5)
    assert local_copies.made == []
    total = sum(end - start for start, end in fetched)
    assert 0 < total <= 4 * URL_BLOCK_BYTES < size / 5, (size, fetched)


def test_concurrent_registrations_on_s3_lose_nothing(s3_bucket: S3Bucket) -> None:
    relpaths = [f"site_{i % 5}/slide {i:03d}.svs" for i in range(120)]
    barrier = threading.Barrier(4)

    def writer(offset: int) -> None:
        registry = Registry(s3_bucket.url(OUTPUT))
        barrier.wait()
        for relpath in relpaths[offset:] + relpaths[:offset]:
            registry.register([relpath])

    threads = [threading.Thread(target=writer, args=(offset,)) for offset in (0, 30, 60, 90)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    registry = Registry(s3_bucket.url(OUTPUT))
    assert set(registry.registered()) == {slide_key(p) for p in relpaths}
    for relpath in relpaths:
        assert registry.lookup(slide_key(relpath)) == Registration(slide_key(relpath), relpath)
    _, clashes = registry.register(["x.svs"]) and registry.register(["x.tiff"])
    assert clashes and clashes[0].startswith("x.tiff: would share partition key 'x' with x.svs")
