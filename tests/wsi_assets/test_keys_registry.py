"""Partition keys, the key -> URI registry, and the storage helpers (local and fsspec memory)."""

import json
import os
import uuid

import numpy as np
import pytest

from wsi_assets import storage
from wsi_assets.partitions import MAX_STEM, assign_keys, is_valid_key, slide_key
from wsi_assets.registry import SlideRegistry, UnknownSlideError

UI_UNSAFE = [" ", ",", "[", "]", "(", ")", "...", "/", "\\", "*", "?", ":"]


@pytest.mark.parametrize(
    ("relpath", "expected"),
    [
        ("CMU-1-Small-Region.svs", "CMU-1-Small-Region"),
        ("sub/dir/TCGA-AA-3520.01.svs", "TCGA-AA-3520.01"),
        ("a.ome.tiff", "a"),
    ],
)
def test_plain_names_keep_their_stem(relpath: str, expected: str) -> None:
    assert slide_key(relpath) == expected


@pytest.mark.parametrize(
    "relpath",
    [
        "case 03 (HE).tiff",
        "weird[1],2.svs",
        "a...b.svs",
        "x/" + "y" * 200 + ".ndpi",
        "é.svs",
        "...svs",
        "-a-.svs",
    ],
)
def test_changed_names_are_safe_bounded_and_hashed(relpath: str) -> None:
    key = slide_key(relpath)
    assert is_valid_key(key)
    assert not any(bad in key for bad in UI_UNSAFE)
    assert ".." not in key
    assert len(key) <= MAX_STEM + 9
    assert key == slide_key(relpath)  # stable
    assert len(key.rsplit("-", 1)[1]) == 8  # hash suffix because the name had to change


def test_collisions_get_hash_suffixes_case_insensitively() -> None:
    keys = assign_keys(["a/s1.svs", "b/s1.svs", "s2.tiff", "S2.svs", "s3.svs"], taken=["S3"])
    assert len({k.lower() for k in keys.values()}) == 5
    assert keys["a/s1.svs"].startswith("s1-") and keys["b/s1.svs"].startswith("s1-")
    assert keys["s3.svs"].startswith("s3-")  # "S3" is taken already
    assert all(is_valid_key(k) for k in keys.values())


def test_registry_survives_a_new_process_and_keeps_keys(tmp_path) -> None:
    registry = SlideRegistry(str(tmp_path / "out"))
    first = registry.register({"/s/a.svs": "a.svs", "/s/b c.svs": "b c.svs"})
    assert first["/s/a.svs"] == "a"
    # a second slide named "a" arrives later: the first keeps its key
    second = SlideRegistry(str(tmp_path / "out")).register(
        {"/s/x/a.svs": "x/a.svs", "/s/a.svs": "a.svs"}
    )
    assert second["/s/a.svs"] == "a" and second["/s/x/a.svs"].startswith("a-")
    again = SlideRegistry(str(tmp_path / "out"))
    assert again.resolve("a").uri == "/s/a.svs"
    assert again.resolve(first["/s/b c.svs"]).relpath == "b c.svs"
    with pytest.raises(UnknownSlideError, match="not in the registry"):
        again.resolve("nope")
    document = json.loads((tmp_path / "out" / "_registry" / "slides.json").read_text())
    assert set(document["slides"]) == {"a", first["/s/b c.svs"], second["/s/x/a.svs"]}
    assert not [p for p in (tmp_path / "out" / "_registry").iterdir() if p.name.endswith(".tmp")]


def test_registry_and_atomic_writes_on_an_fsspec_url() -> None:
    root = f"memory://wsi-test-{uuid.uuid4().hex}/out"
    registry = SlideRegistry(root)
    keys = registry.register({f"memory://b/slides/{n}.svs": f"{n}.svs" for n in ("p", "q")})
    assert (
        SlideRegistry(root).resolve(keys["memory://b/slides/p.svs"]).uri
        == "memory://b/slides/p.svs"
    )
    uri = storage.join(root, "t", "x.bin")
    storage.write_bytes_atomic(uri, b"abc")
    assert storage.read_bytes(uri) == b"abc"
    assert storage.file_version(uri) != storage.MISSING
    assert storage.file_version(storage.join(root, "nope")) == storage.MISSING
    assert list(storage.list_files(storage.join(root, "t"))) == [uri]
    with storage.local_copy(uri) as path:
        assert open(path, "rb").read() == b"abc"


def test_local_versions_change_with_the_file(tmp_path) -> None:
    path = tmp_path / "f.xml"
    path.write_text("a")
    before = storage.file_version(str(path))
    listed = storage.list_files(str(tmp_path))
    assert storage.version_from_info(str(path), listed[str(path)]) == before
    path.write_text("bb")
    assert storage.file_version(str(path)) != before


def test_read_slide_file_reads_remote_tiffs_in_place_and_copies_the_rest(tmp_path) -> None:
    from wsi_core.slide import open_slide
    from wsi_core.synthetic import write_pyramid_tiff

    tiff = write_pyramid_tiff(tmp_path / "s.tiff", np.zeros((64, 96), np.uint8), 0.5, 1)
    root = "memory://read-slide-file"
    storage.write_bytes_atomic(storage.join(root, "s.tiff"), tiff.read_bytes())
    storage.write_bytes_atomic(storage.join(root, "s.mrxs"), b"not a tiff")
    seen: list[str] = []

    def read(location: str):
        seen.append(location)
        if storage.is_url(location) or location.endswith(".tiff"):
            with open_slide(location) as slide:
                return slide.level_dimensions
        return open(location, "rb").read()  # the local copy an OpenSlide format would get

    # A TIFF URL goes to wsi_core as it is: no copy.
    assert storage.read_slide_file(storage.join(root, "s.tiff"), read) == ((96, 64),)
    assert seen == [storage.join(root, "s.tiff")]
    # Anything else: wsi_core asks for a local copy (LocalCopyRequired), which is made,
    # read under the file's own name, and removed.
    seen.clear()
    assert storage.read_slide_file(storage.join(root, "s.mrxs"), read) == b"not a tiff"
    assert seen[0] == storage.join(root, "s.mrxs")
    assert len(seen) == 2 and os.path.basename(seen[1]) == "s.mrxs"
    assert not os.path.exists(seen[1])
    # Local files are read in place.
    seen.clear()
    assert storage.read_slide_file(str(tiff), read) == ((96, 64),)
    assert seen == [str(tiff)]
