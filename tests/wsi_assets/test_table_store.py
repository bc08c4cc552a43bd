"""The table store: atomic hive-layout Parquet with provenance, never over a foreign file."""

from __future__ import annotations

import uuid
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from wsi_assets.pipeline.errors import ForeignFileError, MissingTableError
from wsi_assets.pipeline.tables import FOOTER_BYTES, Provenance, TableStore

TABLE = pa.table({"slide_key": ["s"] * 3, "tile_x": [0, 256, 512]})
ORIGIN = Provenance("tile_grid", "1-abc", {"slide_metadata": "0123456789abcdef"})


def test_write_read_and_provenance_round_trip(tmp_path: Path) -> None:
    store = TableStore(str(tmp_path))
    stored = store.write("tile_grid", "s", TABLE, ORIGIN)
    assert stored.uri == str(tmp_path / "tile_grid" / "slide=s" / "part-0.parquet")
    data, origin = store.read("tile_grid", "s")
    assert data.select(["slide_key", "tile_x"]).to_pylist() == TABLE.to_pylist()
    assert origin == ORIGIN and origin.id == ORIGIN.id
    assert store.listing("tile_grid").keys() == {"s"}
    assert store.provenances("tile_grid", ["s"]) == {"s": ORIGIN}
    assert [p.name for p in (tmp_path / "tile_grid" / "slide=s").iterdir()] == ["part-0.parquet"]


def test_provenance_ids_change_with_every_part() -> None:
    ids = {
        ORIGIN.id,
        Provenance("tile_grid", "1-abd", ORIGIN.inputs).id,
        Provenance("tile_grid", "1-abc", {"slide_metadata": "x"}).id,
        Provenance("annotation_coverage", "1-abc", ORIGIN.inputs).id,
    }
    assert len(ids) == 4
    assert Provenance.from_json(ORIGIN.to_json()) == ORIGIN


def test_a_foreign_file_is_never_overwritten(tmp_path: Path) -> None:
    store = TableStore(str(tmp_path))
    path = tmp_path / "tile_grid" / "slide=s" / "part-0.parquet"
    path.parent.mkdir(parents=True)
    pq.write_table(TABLE, path)  # someone else's Parquet file
    before = path.read_bytes()
    with pytest.raises(ForeignFileError, match=r"part-0.parquet: a file not written by wsi_tiles"):
        store.write("tile_grid", "s", TABLE, ORIGIN)
    assert path.read_bytes() == before
    path.write_text("notes")  # not even Parquet
    with pytest.raises(ForeignFileError):
        store.write("tile_grid", "s", TABLE, ORIGIN)
    assert path.read_text() == "notes"


def test_our_own_table_is_replaced_atomically(tmp_path: Path) -> None:
    store = TableStore(str(tmp_path))
    store.write("tile_grid", "s", TABLE, ORIGIN)
    newer = Provenance("tile_grid", "2-xyz", ORIGIN.inputs)
    store.write("tile_grid", "s", TABLE.slice(0, 1), newer)
    data, origin = store.read("tile_grid", "s")
    assert data.num_rows == 1 and origin == newer
    assert not list((tmp_path / "tile_grid").rglob("*.tmp"))


def test_missing_table_names_the_file_and_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(MissingTableError, match=r"slide=k/part-0.parquet: no tile_grid table"):
        TableStore(str(tmp_path)).read("tile_grid", "k")


def test_remote_footers_are_read_from_the_tail(monkeypatch: pytest.MonkeyPatch) -> None:
    root = f"memory://tables-{uuid.uuid4().hex}"
    store = TableStore(root)
    big = pa.table({"slide_key": ["s"] * 200_000, "tile_x": list(range(200_000))})
    store.write("tile_grid", "s", big, ORIGIN)
    fs = fsspec.filesystem("memory")
    size = fs.size(f"{root}/tile_grid/slide=s/part-0.parquet".removeprefix("memory://"))
    assert size > FOOTER_BYTES
    reads: list[tuple[int | None, int | None]] = []
    original = type(fs).cat_file

    def spy(self, path, start=None, end=None, **kwargs):
        reads.append((start, end))
        return original(self, path, start=start, end=end, **kwargs)

    monkeypatch.setattr(type(fs), "cat_file", spy)
    assert store.provenances("tile_grid", ["s"]) == {"s": ORIGIN}
    assert reads == [(-FOOTER_BYTES, None)]
