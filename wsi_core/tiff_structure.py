"""A TIFF file's page structure, checked from its header alone, before any reader trusts it.

tifffile and libtiff are forgiving: a page (IFD) whose offset lies past the end of the file is
logged and dropped, a tag whose value was cut off is skipped, and a next-IFD chain that loops
back after more than 100 pages makes tifffile's ``series`` walk for ever. Forgiveness is wrong
for slides: a TIFF cut short would open with its upper levels silently gone and be tiled at
another level. :func:`read_tiff_layout` walks every IFD of the file itself (the top-level
chain and, recursively, the IFDs listed in ``SubIFDs`` tags) and refuses, with a
:class:`~wsi_core.errors.SlideError` naming the file:

* an IFD, or the out-of-line value of any tag of a known type, that does not lie wholly inside
  the file ("truncated: ...");
* an IFD reached twice (a loop in the next-IFD chain or the ``SubIFDs`` tree), more than
  :data:`MAX_PAGES` IFDs, an IFD with more than :data:`MAX_TAGS` tags, a page with more than
  :data:`MAX_SEGMENTS` strips or tiles, or strip/tile offset and byte-count lists of different
  lengths.

It also records, per IFD, the byte just past the end of its strip or tile data, so that the
caller can refuse a page whose data runs past the end of the file
(:meth:`TiffLayout.check_data`): readers name the pyramid levels they use, and every other
page is checked too, since a file whose tail is missing is an incomplete copy.

Offsets and sizes are bytes from the start of the file. Reading costs the IFDs and the strip
and tile offset arrays (a few megabytes for a gigapixel level), never pixel data; through a
URL these reads go through the same block cache as the reader's (:mod:`wsi_core.remote`).

Hamamatsu NDPI files (named ``.ndpi``, which is how tifffile recognises them) keep 64-bit
offsets in extra bytes beside a classic TIFF structure; for them only the IFD chain itself is
checked (no loops, no IFD past the end), not tag values or pixel data.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO

import numpy as np
import tifffile

from wsi_core.errors import SlideError
from wsi_core.remote import TIFF_MAGIC

#: Most IFDs (pages, SubIFDs included) a file may have. Whole-slide images have a handful
#: (levels, label, macro, thumbnail) and multi-channel OME pyramids a few hundred; the bound
#: only stops a damaged or hostile file from being walked for ever (10,000 pages).
MAX_PAGES = 10_000

#: Most tags one IFD may have; tifffile itself drops an IFD with more (4096).
MAX_TAGS = 4096

#: Most strips or tiles one page may list: 2**24, enough for a 1,000,000 x 1,000,000 pixel
#: level in 256-pixel tiles. Bounds the offset arrays read (128 MiB at 8 bytes an entry).
MAX_SEGMENTS = 2**24

# Bytes per value of each TIFF field type (TIFF 6.0, BigTIFF, tifffile's extras).
_TYPE_BYTES = {
    1: 1,  # BYTE
    2: 1,  # ASCII
    3: 2,  # SHORT
    4: 4,  # LONG
    5: 8,  # RATIONAL
    6: 1,  # SBYTE
    7: 1,  # UNDEFINED
    8: 2,  # SSHORT
    9: 4,  # SLONG
    10: 8,  # SRATIONAL
    11: 4,  # FLOAT
    12: 8,  # DOUBLE
    13: 4,  # IFD
    14: 2,  # UNICODE
    15: 8,  # COMPLEX
    16: 8,  # LONG8
    17: 8,  # SLONG8
    18: 8,  # IFD8
}

# Types an offset, byte count or IFD offset may have, as numpy unsigned integer codes.
_OFFSET_TYPES = {3: "u2", 4: "u4", 13: "u4", 16: "u8", 18: "u8"}

_STRIP_OFFSETS, _STRIP_BYTE_COUNTS = 273, 279
_TILE_OFFSETS, _TILE_BYTE_COUNTS = 324, 325
_SUB_IFDS = 330
_NDPI_TAG = 65420

# The tags whose values the walk reads: where pixel data lies, and the SubIFD tree.
_VALUE_TAGS = frozenset(
    {_STRIP_OFFSETS, _STRIP_BYTE_COUNTS, _TILE_OFFSETS, _TILE_BYTE_COUNTS, _SUB_IFDS}
)


@dataclass(frozen=True)
class IFDInfo:
    """One IFD: where it is, what to call it, and where its pixel data ends.

    ``where`` is "page 3" for the top-level chain and "page 0, SubIFD 1" for SubIFDs.
    ``data_end`` is the byte just past its last non-empty strip or tile (``None`` when it has
    no data or, for NDPI, when it is not checked).
    """

    offset: int
    where: str
    data_end: int | None


@dataclass(frozen=True)
class TiffLayout:
    """The IFDs of a TIFF file whose structure lies wholly inside it, and the file's size.

    ``main_pages`` is the length of the top-level IFD chain (what tifffile calls pages).
    """

    size: int
    ifds: tuple[IFDInfo, ...]
    main_pages: int

    def check_data(self, path: str, names: Mapping[int, str] | None = None) -> None:
        """Raise :class:`SlideError` if any IFD's strip or tile data runs past the end.

        ``names`` maps IFD offsets to what the reader calls them ("level 2"); those IFDs are
        checked first, so a cut file is reported by the level it costs, then every other IFD
        by its place in the file.
        """
        names = names or {}
        first = [ifd for ifd in self.ifds if ifd.offset in names]
        rest = [ifd for ifd in self.ifds if ifd.offset not in names]
        for ifd in first + rest:
            if ifd.data_end is not None and ifd.data_end > self.size:
                what = f"{names[ifd.offset]} ({ifd.where})" if ifd.offset in names else ifd.where
                raise SlideError(
                    path,
                    f"truncated: the data of {what} ends at byte {ifd.data_end:,} but the file "
                    f"has {self.size:,} bytes",
                )


@dataclass(frozen=True)
class _Format:
    """Byte layout of one TIFF flavour."""

    order: str  # "<" or ">"
    offset_code: str  # struct code of an offset in an entry's value field
    count_code: str  # struct code of an IFD's entry count
    entry_count_code: str  # struct code of one entry's value count
    next_code: str  # struct code of the next-IFD offset
    entry_bytes: int
    inline_bytes: int  # values up to this many bytes sit in the entry itself
    ndpi: bool = False

    @property
    def count_bytes(self) -> int:
        return struct.calcsize(self.count_code)

    @property
    def next_bytes(self) -> int:
        return struct.calcsize(self.next_code)


def read_tiff_layout(path: str, handle: IO[bytes], *, name: str | None = None) -> TiffLayout:
    """Walk the IFDs of the TIFF open in ``handle`` (seekable, binary) and check them.

    ``path`` is what errors name; ``name`` is the file name whose extension decides the NDPI
    layout, as in tifffile (default: ``path``). The file's size comes from seeking to its
    end, which costs no read for fsspec files. Raises :class:`SlideError` for anything the
    module docstring lists; data past the end is left to :meth:`TiffLayout.check_data`.
    The handle's position is left anywhere: seek before reading it again.
    """
    return _Walker(path, handle, name if name is not None else path).walk()


def is_tiff_file(path: str) -> bool:
    """Whether the local file ``path`` starts with a TIFF or BigTIFF header."""
    with open(path, "rb") as handle:
        return handle.read(4) in TIFF_MAGIC


def read_tiff_layout_of_file(path: str) -> TiffLayout:
    """:func:`read_tiff_layout` of the local file ``path``."""
    with open(path, "rb") as handle:
        return read_tiff_layout(path, handle)


class _Walker:
    """One walk over the IFDs of one file (see :func:`read_tiff_layout`)."""

    def __init__(self, path: str, handle: IO[bytes], name: str) -> None:
        self.path = path
        self.handle = handle
        self.size = handle.seek(0, os.SEEK_END)
        self.name = name
        self.visited: dict[int, str] = {}
        self.ifds: list[IFDInfo] = []

    def fail(self, problem: str) -> SlideError:
        return SlideError(self.path, problem)

    def read(self, offset: int, length: int) -> bytes:
        """``length`` bytes at ``offset``, which the caller has checked lie in the file."""
        self.handle.seek(offset)
        data = self.handle.read(length)
        if len(data) != length:  # the file shrank under us, or the size was wrong
            raise self.fail(
                f"truncated: {length:,} bytes at byte {offset:,} could not be read "
                f"(the file has {self.size:,} bytes)"
            )
        return data

    def header(self) -> tuple[_Format, int]:
        """The file's byte layout and the offset of its first IFD."""
        if self.size < 8:
            raise self.fail(f"truncated: the file has {self.size} bytes, fewer than a TIFF header")
        head = self.read(0, min(16, self.size))
        order = {b"II": "<", b"MM": ">"}.get(head[:2])
        if order is None:
            raise self.fail("not a TIFF file (it does not start with a TIFF byte-order mark)")
        (version,) = struct.unpack(order + "H", head[2:4])
        if version == 42:
            ndpi = order == "<" and os.path.splitext(self.name)[1].lower() == ".ndpi"
            if ndpi:  # as tifffile reads NDPI: every IFD offset has 8 bytes, the first too
                if len(head) < 12:
                    raise self.fail("truncated: the NDPI header is cut short")
                layout = _Format(order, "I", "H", "I", "Q", 12, 4, ndpi=True)
                return layout, struct.unpack(order + "Q", head[4:12])[0]
            layout = _Format(order, "I", "H", "I", "I", 12, 4)
            return layout, struct.unpack(order + "I", head[4:8])[0]
        if version == 43:
            if len(head) < 16:
                raise self.fail("truncated: the BigTIFF header is cut short")
            offset_size, zero = struct.unpack(order + "HH", head[4:8])
            if offset_size != 8 or zero != 0:
                raise self.fail(f"not a valid BigTIFF header (offset size {offset_size})")
            layout = _Format(order, "Q", "Q", "Q", "Q", 20, 8)
            return layout, struct.unpack(order + "Q", head[8:16])[0]
        raise self.fail(f"not a TIFF file (unknown TIFF version {version})")

    def walk(self) -> TiffLayout:
        layout, offset = self.header()
        page, source = 0, "the TIFF header"
        while offset != 0:
            where = f"page {page}"
            offset, subifds = self.visit(layout, offset, where, source)
            self.walk_subifds(layout, subifds, where)
            page, source = page + 1, f"the next-IFD offset of {where}"
        return TiffLayout(self.size, tuple(self.ifds), page)

    def walk_subifds(self, layout: _Format, offsets: list[int], parent: str) -> None:
        """Visit the SubIFD tree under ``parent`` (depth first, without recursion)."""
        stack = [(parent, i, offset) for i, offset in enumerate(offsets)][::-1]
        while stack:
            owner, i, offset = stack.pop()
            where = f"{owner}, SubIFD {i}"
            # Readers take SubIFDs from the parent's list, not from their next-IFD links,
            # so the links are not followed.
            _, children = self.visit(layout, offset, where, f"the SubIFDs tag of {owner}")
            stack.extend([(where, j, child) for j, child in enumerate(children)][::-1])

    def visit(self, layout: _Format, offset: int, where: str, source: str) -> tuple[int, list[int]]:
        """Check the IFD at ``offset`` (``where`` in the file, pointed to by ``source``);
        return its next-IFD offset and its SubIFD offsets."""
        tags, block = self.ifd_block(layout, offset, where, source)
        next_at = tags * layout.entry_bytes
        (next_offset,) = struct.unpack(
            layout.order + layout.next_code, block[next_at : next_at + layout.next_bytes]
        )
        if layout.ndpi:  # 64-bit values live in extra bytes: only the chain is checked
            self.ifds.append(IFDInfo(offset, where, None))
            return next_offset, []
        values = self.tag_values(layout, tags, block, where)
        ends = [
            self.data_end(where, values, _STRIP_OFFSETS, _STRIP_BYTE_COUNTS),
            self.data_end(where, values, _TILE_OFFSETS, _TILE_BYTE_COUNTS),
        ]
        known = [end for end in ends if end is not None]
        self.ifds.append(IFDInfo(offset, where, max(known) if known else None))
        children = [int(v) for v in values.get(_SUB_IFDS, ())]
        if len(children) > MAX_PAGES:
            raise self.fail(f"{where} lists {len(children):,} SubIFDs (MAX_PAGES {MAX_PAGES:,})")
        if 0 in children:
            raise self.fail(f"{where}'s SubIFDs tag lists offset 0, which is no IFD")
        return next_offset, children

    def ifd_block(self, layout: _Format, offset: int, where: str, source: str) -> tuple[int, bytes]:
        """The number of tags of the IFD at ``offset`` and its bytes after the count (entries,
        next-IFD offset, NDPI high bits), once the IFD is known new, bounded and in the file."""
        if offset in self.visited:
            raise self.fail(
                f"the IFD chain loops: {source} leads back to byte {offset:,}, the IFD of "
                f"{self.visited[offset]}"
            )
        if len(self.visited) >= MAX_PAGES:
            raise self.fail(
                f"more than {MAX_PAGES:,} pages (IFDs); a damaged file or no slide "
                "(wsi_core.tiff_structure.MAX_PAGES)"
            )
        self.visited[offset] = where
        if offset + layout.count_bytes > self.size:
            raise self.fail(
                f"truncated: the IFD of {where} starts at byte {offset:,} but the file has "
                f"{self.size:,} bytes"
            )
        (tags,) = struct.unpack(
            layout.order + layout.count_code, self.read(offset, layout.count_bytes)
        )
        if tags > MAX_TAGS:
            raise self.fail(
                f"the IFD of {where} at byte {offset:,} claims {tags:,} tags (a TIFF page "
                f"has at most {MAX_TAGS:,}); the file is damaged"
            )
        entries_at = offset + layout.count_bytes
        length = tags * layout.entry_bytes + layout.next_bytes + (4 * tags if layout.ndpi else 0)
        if entries_at + length > self.size:
            raise self.fail(
                f"truncated: the IFD of {where} (bytes {offset:,} to {entries_at + length:,}) "
                f"runs past the end of the file ({self.size:,} bytes)"
            )
        return tags, self.read(entries_at, length)

    def tag_values(
        self, layout: _Format, tags: int, block: bytes, where: str
    ) -> dict[int, np.ndarray]:
        """Check that every tag's value lies in the file; return the values of the offset,
        byte-count and SubIFDs tags."""
        values: dict[int, np.ndarray] = {}
        entry = struct.Struct(layout.order + "HH" + layout.entry_count_code)
        for i in range(tags):
            raw = block[i * layout.entry_bytes : (i + 1) * layout.entry_bytes]
            tag, kind, count = entry.unpack_from(raw)
            field = raw[entry.size :]
            item_bytes = _TYPE_BYTES.get(kind)
            if item_bytes is None:
                if tag in _VALUE_TAGS:
                    raise self.fail(f"{where}: tag {_tag_name(tag)} has unknown type {kind}")
                continue  # tifffile skips such a tag too; nothing of it is read
            size = count * item_bytes
            if size > layout.inline_bytes:
                (value_at,) = struct.unpack(layout.order + layout.offset_code, field)
                if value_at + size > self.size:
                    raise self.fail(
                        f"truncated: the value of tag {_tag_name(tag)} of {where} (bytes "
                        f"{value_at:,} to {value_at + size:,}) runs past the end of the file "
                        f"({self.size:,} bytes)"
                    )
            if tag in _VALUE_TAGS:
                values[tag] = self.integers(layout, where, tag, kind, count, field)
        return values

    def integers(
        self, layout: _Format, where: str, tag: int, kind: int, count: int, field: bytes
    ) -> np.ndarray:
        """The unsigned integers of an offset, byte-count or SubIFDs tag, whose bytes the
        caller has checked lie in the file; more than :data:`MAX_SEGMENTS` are refused."""
        code = _OFFSET_TYPES.get(kind)
        if code is None:
            raise self.fail(f"{where}: tag {_tag_name(tag)} has type {kind}, not an offset")
        if count > MAX_SEGMENTS:
            raise self.fail(
                f"{where} lists {count:,} values in tag {_tag_name(tag)}, more than "
                f"{MAX_SEGMENTS:,} strips or tiles (wsi_core.tiff_structure.MAX_SEGMENTS)"
            )
        dtype = np.dtype(layout.order + code)
        size = count * dtype.itemsize
        if size <= layout.inline_bytes:
            return np.frombuffer(field[:size], dtype=dtype)
        (value_at,) = struct.unpack(layout.order + layout.offset_code, field)
        return np.frombuffer(self.read(value_at, size), dtype=dtype)

    def data_end(
        self, where: str, values: Mapping[int, np.ndarray], offsets_tag: int, counts_tag: int
    ) -> int | None:
        """The byte just past the last non-empty segment listed by the two tags, or None."""
        offsets, counts = values.get(offsets_tag), values.get(counts_tag)
        if offsets is None or counts is None:
            return None
        if len(offsets) != len(counts):
            raise self.fail(
                f"{where} lists {len(offsets):,} {_tag_name(offsets_tag)} but "
                f"{len(counts):,} {_tag_name(counts_tag)}"
            )
        used = counts > 0  # an empty segment (a sparse tile) has no data to lose
        starts = offsets[used].astype(np.uint64)
        ends = starts + counts[used].astype(np.uint64)
        if not ends.size:
            return None
        if np.any(ends < starts):  # wrapped past 2**64: far past the end of any file
            return 2**64
        return int(ends.max())


def _tag_name(tag: int) -> str:
    """``"StripOffsets (273)"``: the tag's name, as tifffile knows it, and its number."""
    name = tifffile.TIFF.TAGS.get(tag, None)
    return f"{name} ({tag})" if name else str(tag)
