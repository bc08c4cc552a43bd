"""Partition keys: a pure function of the path relative to the slide root."""

from __future__ import annotations

import itertools

import pytest

from wsi_assets.pipeline.keys import MAX_STEM, is_valid_key, path_hash, slide_key


@pytest.mark.parametrize(
    ("relpath", "expected"),
    [
        ("demo_slide_01.tiff", "demo_slide_01"),
        ("CMU-1-Small-Region.svs", "CMU-1-Small-Region"),
        ("TCGA-A1.B2.ome.tiff", "TCGA-A1.B2"),
        ("case 03 (HE).tiff", "case_03_HE-3101e499"),
        ("site_a/x.svs", "x-6cae6f92"),
    ],
)
def test_keys_of_the_demo_and_real_slides(relpath: str, expected: str) -> None:
    assert slide_key(relpath) == expected


@pytest.mark.parametrize(
    "relpath",
    [
        "a b/c (1).svs",
        "x" * 200 + ".svs",
        "..weird...name...svs",
        "ünïcode.svs",
        "site_a/scan.svs",
        "-dash-.tiff",
        "a,b[1].svs",
    ],
)
def test_other_names_are_safe_bounded_and_hashed(relpath: str) -> None:
    key = slide_key(relpath)
    assert is_valid_key(key), key
    assert len(key) <= MAX_STEM + 9
    assert key.endswith("-" + path_hash(relpath))
    assert ".." not in key and "," not in key and " " not in key


def test_slides_in_folders_with_one_name_get_different_keys() -> None:
    keys = {slide_key(f"site_{s}/slide.svs") for s in "abc"}
    assert len(keys) == 3
    assert all(key.startswith("slide-") for key in keys)


def test_a_key_does_not_depend_on_order_or_on_other_slides() -> None:
    paths = ["b.svs", "a.svs", "case 1.tiff", "f/b.svs"]
    first = {p: slide_key(p) for p in paths}
    for order in itertools.permutations(paths):
        assert {p: slide_key(p) for p in order} == first
