"""Pictures beside the tables: ``{output_root}/{table}/slide={key}/_preview.png``.

Each table step draws its picture (:func:`wsi_core.pictures.table_picture`) and stores it in
its table's slide folder, where any tool can show it. The names start with ``_`` so that
readers of the hive layout skip them: ``pyarrow.dataset`` ignores files starting with ``_`` or
``.``, and ``read_parquet('{table}/*/*.parquet')`` in duckdb matches only the Parquet files.

The slide is read once, by ``slide_metadata``: its step also stores the slide's thumbnail
(``slide_metadata/slide={key}/_thumbnail.png``), over which the other tables are drawn.

Like the tables, pictures are written atomically and never over a file this project did not
write: each carries a PNG text chunk naming its table and slide, checked before it is
replaced (:class:`~wsi_assets.pipeline.errors.ForeignFileError` otherwise).
"""

from __future__ import annotations

import io
import zlib

from PIL import Image
from upath import UPath

from wsi_assets.pipeline.errors import ForeignFileError
from wsi_assets.pipeline.locations import read_bytes, remove_stale_temporaries, uri_of, write_atomic
from wsi_assets.pipeline.outputs import SLIDE_OUTPUTS
from wsi_assets.pipeline.tables import TableStore
from wsi_core.pictures import Thumbnail, thumbnail_from_png, thumbnail_png
from wsi_core.tables import SLIDE_METADATA

PICTURE_FILE = "_preview.png"
THUMBNAIL_FILE = "_thumbnail.png"
#: PNG text key whose value names the table and slide a file was written for.
OWNER_TEXT = "wsi_tiles.file"
#: Where a PNG's first chunk starts (after the signature and the 13-byte IHDR chunk).
_AFTER_IHDR = 8 + 4 + 4 + 13 + 4
_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def mark(png: bytes, owner: str) -> bytes:
    """``png`` with a ``tEXt`` chunk ``OWNER_TEXT = owner`` right after its header."""
    if not png.startswith(_SIGNATURE) or png[12:16] != b"IHDR":
        raise ValueError("not a PNG")
    body = OWNER_TEXT.encode() + b"\0" + owner.encode()
    chunk = b"tEXt" + body
    crc = zlib.crc32(chunk).to_bytes(4, "big")
    return png[:_AFTER_IHDR] + len(body).to_bytes(4, "big") + chunk + crc + png[_AFTER_IHDR:]


def owner_of(data: bytes) -> str | None:
    """The ``OWNER_TEXT`` of a PNG (None when absent or not a PNG)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            value = image.text.get(OWNER_TEXT)  # type: ignore[attr-defined]
    except (OSError, ValueError, SyntaxError):
        return None
    return value if isinstance(value, str) else None


class PictureStore:
    """The pictures (and the slides' thumbnails) beside the tables of one output root."""

    def __init__(self, tables: TableStore) -> None:
        self.tables = tables

    def path(self, table: str, key: str, name: str = PICTURE_FILE) -> UPath:
        """Where the picture ``name`` of slide ``key``'s ``table`` lives."""
        return self.tables.path(table, key).parent / name

    def write(self, table: str, key: str, png: bytes, name: str = PICTURE_FILE) -> str:
        """Store ``png`` atomically and return its URI; :class:`ForeignFileError` rather than
        replace a file this project did not write."""
        path = self.path(table, key, name)
        owner = f"{table}/{key}/{name}"
        payload = mark(png, owner)
        remove_stale_temporaries(path)
        try:
            write_atomic(path, payload, create=True)
        except FileExistsError:
            if owner_of(read_bytes(path)) != owner:
                raise ForeignFileError(
                    uri_of(path),
                    "a file not written by wsi_tiles is in the way; move it, then re-run",
                ) from None
            write_atomic(path, payload)
        return uri_of(path)

    def read(self, table: str, key: str, name: str = PICTURE_FILE) -> bytes | None:
        """The stored picture (None when there is none)."""
        try:
            return read_bytes(self.path(table, key, name))
        except FileNotFoundError:
            return None

    def write_thumbnail(self, key: str, thumbnail: Thumbnail) -> Thumbnail:
        """Store slide ``key``'s thumbnail beside its ``slide_metadata`` and return it as
        stored (its 256 colours): every picture is drawn over exactly what a later reader
        gets, so a picture does not depend on the process that drew it."""
        png = thumbnail_png(thumbnail)
        self.write(SLIDE_METADATA, key, png, THUMBNAIL_FILE)
        return thumbnail_from_png(png)

    def thumbnail(self, key: str) -> Thumbnail | None:
        """Slide ``key``'s stored thumbnail (None when there is none, or it cannot be read:
        the caller reads the slide again)."""
        data = self.read(SLIDE_METADATA, key, THUMBNAIL_FILE)
        if data is None:
            return None
        try:
            return thumbnail_from_png(data, uri_of(self.path(SLIDE_METADATA, key, THUMBNAIL_FILE)))
        except ValueError:
            return None

    def remove(self, key: str) -> list[str]:
        """Delete slide ``key``'s pictures and thumbnail that this project wrote; return
        their URIs. Files of other writers are left alone."""
        removed = []
        for table in SLIDE_OUTPUTS:
            for name in (PICTURE_FILE, THUMBNAIL_FILE):
                path = self.path(table, key, name)
                data = self.read(table, key, name)
                if data is not None and owner_of(data) == f"{table}/{key}/{name}":
                    path.fs.rm_file(path.path)
                    removed.append(uri_of(path))
        return removed
