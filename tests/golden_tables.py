"""The golden tables (tests/golden/tables_before_refactor.json, written by the code before the
layers were reorganised) and how a table is compared with them.

Every column is compared value for value through its fingerprint, except the coverage columns:
the coverage kernel was rewritten since (issue 11) and its values may differ from the earlier
kernel's in the last bits, so they are compared with the earlier kernel's values
(tests/golden/coverage_values.json, whose fingerprints are the golden ones) to 1e-12.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
from table_fingerprint import fingerprint

from wsi_core.tables import ANNOTATION_COVERAGE

_FOLDER = Path(__file__).resolve().parent / "golden"
GOLDEN = json.loads((_FOLDER / "tables_before_refactor.json").read_text())
COVERAGE_VALUES = json.loads((_FOLDER / "coverage_values.json").read_text())
DEMO_CASE = "demo_scale_0.25_tile_128_mpp_1"
REAL_CASE = "cmu1_small_region_classified_geojson_mask_tile_256_mpp_0.5"


def assert_golden(table: str, got: pa.Table, case: str, key: str) -> None:
    """``got`` equals the golden table ``table`` of ``key`` in ``case``: every column value for
    value, the coverage columns to 1e-12."""
    want = GOLDEN[case][key][table]
    mine = fingerprint(got)
    if table == ANNOTATION_COVERAGE:
        values = COVERAGE_VALUES[case][key]
        for name, expected in values.items():
            np.testing.assert_allclose(
                np.array(got[name].to_pylist(), dtype=float),
                np.array(expected, dtype=float),
                rtol=0,
                atol=1e-12,
                err_msg=f"{key} {name}",
            )
        mine = {**mine, "columns": {k: v for k, v in mine["columns"].items() if k not in values}}
        want = {**want, "columns": {k: v for k, v in want["columns"].items() if k not in values}}
    assert mine == want, (key, table)
