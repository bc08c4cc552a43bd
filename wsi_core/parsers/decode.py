"""Decoding annotation files into Python values, with errors that name the file and the place.

JSON keeps the file's own encoding (UTF-8, -16 or -32, with or without BOM); XML is parsed with
defusedxml, so entity declarations and external references are refused; a coordinate (level-0
pixels, as the file stores it) must be a finite number no larger than :data:`MAX_COORDINATE`
in absolute value. Every failure is an
:class:`~wsi_core.errors.AnnotationError` naming the file and the line and column (JSON, XML)
or the place in the document (coordinates).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from typing import Any
from xml.parsers.expat import ErrorString

import defusedxml
import defusedxml.ElementTree as DefusedET
import numpy as np

from wsi_core.errors import AnnotationError

#: Largest absolute coordinate accepted, in level-0 pixels: 1e7, which is 2.5 m at
#: 0.25 µm/px (a whole-slide image is a few centimetres, 200,000 pixels or so). A larger
#: value is a broken or hostile file, and would make geometry work on a plane of absurd size
#: (coverage grids, spatial indexes, float precision), so it is refused where it is read.
MAX_COORDINATE = 1e7


def _strip_bom(text: str) -> str:
    return text[1:] if text.startswith("\ufeff") else text


def load_json(name: str, data: bytes | str) -> Any:
    """Decode JSON, raising :class:`AnnotationError` with the line and column on failure."""
    try:
        if isinstance(data, (bytes, bytearray)):
            # json.loads on bytes detects UTF-8 (with or without BOM), UTF-16 and UTF-32.
            return json.loads(data)
        return json.loads(_strip_bom(data))
    except json.JSONDecodeError as error:
        raise AnnotationError(
            name, f"malformed JSON at line {error.lineno}, column {error.colno}: {error.msg}"
        ) from None
    except UnicodeDecodeError as error:
        raise AnnotationError(
            name, f"not valid text at byte {error.start}: {error.reason}"
        ) from None
    except RecursionError:
        raise AnnotationError(name, "JSON nested too deeply to be an annotation file") from None
    except ValueError as error:  # e.g. an integer of more digits than Python converts
        raise AnnotationError(name, f"malformed JSON: {error}") from None


def load_xml(name: str, data: bytes | str) -> ET.Element:
    """Parse XML with defusedxml: no entity declarations, no external references.

    Raises :class:`AnnotationError` naming the file and, for malformed XML, the line and the
    1-based column; an entity or external-reference document (billion laughs, XXE) is refused.
    """
    if isinstance(data, str):
        data = _strip_bom(data)
    try:
        return DefusedET.fromstring(
            data, forbid_dtd=False, forbid_entities=True, forbid_external=True
        )
    except ET.ParseError as error:
        line, column = error.position
        reason = ErrorString(error.code) if error.code else str(error)
        raise AnnotationError(
            name, f"malformed XML at line {line}, column {column + 1}: {reason}"
        ) from None
    except defusedxml.DefusedXmlException as error:
        raise AnnotationError(
            name,
            f"refused unsafe XML ({type(error).__name__}: {error}); entity declarations and "
            "external references are not allowed in annotation files",
        ) from None


def finite_xy(name: str, where: str, x: Any, y: Any) -> tuple[float, float]:
    """``(x, y)`` (level-0 pixels) as floats, or an :class:`AnnotationError` naming the place
    when either is no number, is not finite, or exceeds :data:`MAX_COORDINATE`."""
    for value in (x, y):
        # bool is an int subclass; True as a coordinate is a broken file, not 1.0.
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise AnnotationError(name, f"{where}: coordinate {_shown(value)} is not a number")
    # Compared before float(): an int of a thousand digits would overflow the conversion.
    if not all(abs(value) <= MAX_COORDINATE for value in (x, y)):
        if all(isinstance(value, int) or np.isfinite(value) for value in (x, y)):
            raise out_of_range(name, where, f"({_shown(x)}, {_shown(y)})")
        raise AnnotationError(name, f"{where}: coordinate ({_shown(x)}, {_shown(y)}) is not finite")
    return float(x), float(y)


def check_coordinate(name: str, where: str, value: float, shown: str) -> float:
    """``value`` (level-0 pixels, shown in the file as ``shown``) if finite and within
    :data:`MAX_COORDINATE`, else an :class:`AnnotationError` naming the place."""
    if not np.isfinite(value):
        raise AnnotationError(name, f"{where}: {shown} is not finite")
    if abs(value) > MAX_COORDINATE:
        raise out_of_range(name, where, shown)
    return value


def out_of_range(name: str, where: str, shown: str) -> AnnotationError:
    """The error for a coordinate beyond :data:`MAX_COORDINATE` at ``where``."""
    return AnnotationError(
        name,
        f"{where}: coordinate {shown} is beyond ±{MAX_COORDINATE:.0e} level-0 pixels "
        "(2.5 m at 0.25 µm/px; wsi_core.parsers.decode.MAX_COORDINATE), no slide is that large",
    )


def _shown(value: Any) -> str:
    """``repr(value)`` cut short: a hostile file may hold a number of thousands of digits."""
    text = repr(value) if not isinstance(value, int) or abs(value) < 10**30 else "a huge integer"
    return text if len(text) <= 40 else text[:37] + "..."
