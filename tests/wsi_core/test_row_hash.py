"""row_hash: deterministic ids whatever the key order or numeric width."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import PurePosixPath

import numpy as np
import pytest

from wsi_core.tiling.utils import row_hash

SLIDE_ROW = {
    "path": "data/slide_001.svs",
    "extent_x": 40000,
    "extent_y": 30000,
    "tile_extent_x": 512,
    "tile_extent_y": 512,
    "stride_x": 512,
    "stride_y": 512,
    "mpp_x": 0.25,
    "mpp_y": 0.25,
    "level": 0,
    "downsample": 1.0,
}
# Pinned: changing the canonical encoding changes every stored id, so it must be deliberate.
SLIDE_ROW_ID = "4740b44e50c09aca6f4d248eb092aa246f1c14aa926aac88c2388adc5743b15a"


def test_pinned_golden_hex():
    assert row_hash(SLIDE_ROW)["id"] == SLIDE_ROW_ID


def test_canonical_encoding_spelled_out():
    # The documented encoding for a tiny row, hashed here by hand: keys sorted by their
    # encoding, s"..." strings, i<int>, d<repr float>.
    canonical = 'wsi_core.row_hash/1\n{s"a":s"x",s"b":i1,s"c":d0.5}'
    expected = hashlib.sha256(canonical.encode("ascii")).hexdigest()
    assert row_hash({"c": 0.5, "b": 1, "a": "x"})["id"] == expected


def test_key_order_does_not_matter():
    reordered = dict(reversed(list(SLIDE_ROW.items())))
    assert list(reordered) != list(SLIDE_ROW)
    assert row_hash(reordered)["id"] == SLIDE_ROW_ID


def test_numpy_scalars_hash_like_python_scalars():
    numpy_row = {
        key: (np.int64(v) if isinstance(v, int) else np.float64(v) if isinstance(v, float) else v)
        for key, v in SLIDE_ROW.items()
    }
    assert isinstance(numpy_row["extent_x"], np.int64)
    assert row_hash(numpy_row)["id"] == SLIDE_ROW_ID
    assert row_hash({"a": np.int32(5)})["id"] == row_hash({"a": 5})["id"]
    assert row_hash({"a": np.uint16(5)})["id"] == row_hash({"a": 5})["id"]
    assert row_hash({"a": np.float32(0.5)})["id"] == row_hash({"a": 0.5})["id"]
    assert row_hash({"a": np.str_("x")})["id"] == row_hash({"a": "x"})["id"]
    assert row_hash({"a": np.bool_(True)})["id"] == row_hash({"a": True})["id"]


def test_arrays_nested_containers_and_tuples():
    a = {"v": np.array([[1, 2], [3, 4]], dtype=np.int64), "m": {"y": 2.5, "x": [1, (2, 3)]}}
    b = {"m": {"x": [1, [2, 3]], "y": np.float64(2.5)}, "v": [[1, 2], [3, 4]]}
    assert row_hash(a)["id"] == row_hash(b)["id"]
    assert row_hash({"v": np.array([1, 2], dtype=np.int32)})["id"] == row_hash({"v": [1, 2]})["id"]


def test_different_data_different_ids():
    ids = {
        row_hash(r)["id"]
        for r in [
            {"a": 1},
            {"a": 1.0},  # int and float are different cell types
            {"a": True},
            {"a": "1"},
            {"a": [1]},
            {"a": None},
            {"b": 1},
            {"a": 2},
            {"a": {"b": 1}},
        ]
    }
    assert len(ids) == 9


def test_existing_id_is_ignored_and_replaced():
    first = row_hash(SLIDE_ROW)
    again = row_hash(first)
    assert again["id"] == first["id"] == SLIDE_ROW_ID
    assert row_hash({**SLIDE_ROW, "id": "stale"})["id"] == SLIDE_ROW_ID


def test_custom_column_and_input_untouched():
    row = dict(SLIDE_ROW)
    out = row_hash(row, column="slide_id")
    assert out["slide_id"] == SLIDE_ROW_ID
    assert "slide_id" not in row and "id" not in out
    assert {k: v for k, v in out.items() if k != "slide_id"} == row


def test_other_value_types():
    row = {"p": PurePosixPath("a/b.svs"), "raw": b"\x00\xff", "nan": float("nan")}
    assert row_hash(row)["id"] == row_hash(dict(row))["id"]
    assert row_hash({"p": PurePosixPath("a/b.svs")})["id"] == row_hash({"p": "a/b.svs"})["id"]
    assert row_hash({"x": np.float64("nan")})["id"] == row_hash({"x": float("nan")})["id"]
    with pytest.raises(TypeError):
        row_hash({"x": object()})


def test_same_in_a_fresh_interpreter():
    # Python's str hash is salted per process; the id must not depend on it.
    code = f"from wsi_core.tiling.utils import row_hash;print(row_hash({SLIDE_ROW!r})['id'])"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "12345"},
        cwd=str(_project_root()),
    )
    assert out.stdout.strip() == SLIDE_ROW_ID


def _project_root():
    from pathlib import Path

    return Path(__file__).resolve().parents[2]
