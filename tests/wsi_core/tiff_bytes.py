"""Hand-made classic little-endian TIFF files, byte by byte, for tests of damaged structure.

tifffile's writer refuses to write what these tests need (loops, pages past the end, claims
no data backs), so the bytes are packed here with :mod:`struct`. Offsets are bytes from the
start of the file.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence

SHORT, LONG, IFD = 3, 4, 13
_FORMATS = {SHORT: "H", LONG: "I", IFD: "I"}

Tags = Mapping[int, tuple[int, Sequence[int]]]
"""Tag number -> (TIFF type, values): integer tags only, which is all these tests need."""


def header(first_ifd: int) -> bytes:
    """The 8-byte classic little-endian header pointing to the first IFD."""
    return b"II*\x00" + struct.pack("<I", first_ifd)


def ifd_size(tags: Tags) -> int:
    """Bytes of the IFD of ``tags`` together with its out-of-line values."""
    extra = sum(_value_bytes(kind, values) for kind, values in tags.values())
    return 2 + 12 * len(tags) + 4 + sum(n for n in [extra] if n > 0)


def ifd(tags: Tags, at: int, next_ifd: int = 0) -> bytes:
    """The IFD of ``tags`` placed at byte ``at``, values longer than 4 bytes right after it."""
    entries = b""
    values = b""
    values_at = at + 2 + 12 * len(tags) + 4
    for tag in sorted(tags):
        kind, items = tags[tag]
        packed = struct.pack("<" + _FORMATS[kind] * len(items), *items)
        if len(packed) <= 4:
            field = packed.ljust(4, b"\x00")
        else:
            field = struct.pack("<I", values_at + len(values))
            values += packed
        entries += struct.pack("<HHI", tag, kind, len(items)) + field
    return struct.pack("<H", len(tags)) + entries + struct.pack("<I", next_ifd) + values


def image_tags(
    width: int,
    height: int,
    offsets: Sequence[int],
    counts: Sequence[int],
    *,
    tile: int | None = None,
    rows_per_strip: int | None = None,
    compression: int = 1,
    samples: int = 1,
) -> dict[int, tuple[int, Sequence[int]]]:
    """Tags of an 8-bit grey (``samples=1``) or RGB (``samples=3``) image, stripped or tiled."""
    tags: dict[int, tuple[int, Sequence[int]]] = {
        256: (LONG, [width]),
        257: (LONG, [height]),
        258: (SHORT, [8] * samples),
        259: (SHORT, [compression]),
        262: (SHORT, [1 if samples == 1 else 2]),
        277: (SHORT, [samples]),
    }
    if tile is None:
        tags[273] = (LONG, list(offsets))
        tags[278] = (LONG, [height if rows_per_strip is None else rows_per_strip])
        tags[279] = (LONG, list(counts))
    else:
        tags[322] = (LONG, [tile])
        tags[323] = (LONG, [tile])
        tags[324] = (LONG, list(offsets))
        tags[325] = (LONG, list(counts))
    return tags


def _value_bytes(kind: int, values: Sequence[int]) -> int:
    size = struct.calcsize("<" + _FORMATS[kind] * len(values))
    return size if size > 4 else 0
