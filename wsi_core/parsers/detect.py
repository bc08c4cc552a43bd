"""``open_annotations``: pick the parser from the file's extension and content.

The parser returned gives geometry in level-0 pixels, like every parser.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from wsi_core.errors import AnnotationError, annotation_errors
from wsi_core.parsers.asap import ASAPParser
from wsi_core.parsers.base import AnnotationParser, JSONAnnotationParser, check_label_property
from wsi_core.parsers.darwin import Darwin7JSONParser
from wsi_core.parsers.decode import load_json
from wsi_core.parsers.empaia import EMPAIAParser
from wsi_core.parsers.geojson import GEOMETRY_TYPES, GeoJSONParser
from wsi_core.parsers.source import Source, read_source
from wsi_core.remote import is_url

_JSON_SUFFIXES = frozenset({".json", ".geojson"})
_FORMATS = "ASAP XML, GeoJSON, V7 Darwin JSON or EMPAIA JSON"


def _suffix(name: str) -> str:
    """The lower-case extension of a path or of a URL's path."""
    path = urlsplit(name).path if is_url(name) else name
    return os.path.splitext(path)[1].lower()


def _first_character(data: bytes | str) -> str:
    """The first character of the content after a BOM and whitespace."""
    head = data[:4096]
    if isinstance(head, (bytes, bytearray)):
        head = head.decode("utf-8", errors="ignore")
    return head.lstrip("\ufeff \t\r\n")[:1]


def json_parser_class(document: Any) -> type[JSONAnnotationParser] | None:
    """The parser class for a decoded JSON document, or ``None`` when none fits.

    A list, a FeatureCollection, a Feature or a bare geometry is GeoJSON; an object with an
    ``annotations`` list and a ``version``, ``item`` (2.0) or ``image`` (1.0) member is V7
    Darwin; an object with an ``items`` list is EMPAIA.
    """
    if isinstance(document, list):
        return GeoJSONParser
    if not isinstance(document, Mapping):
        return None
    kind = document.get("type")
    if (
        kind in ("FeatureCollection", "Feature")
        or (isinstance(kind, str) and kind in GEOMETRY_TYPES)
        or (kind is None and isinstance(document.get("features"), list))
    ):
        return GeoJSONParser
    if isinstance(document.get("annotations"), list) and any(
        key in document for key in ("version", "item", "image")
    ):
        return Darwin7JSONParser
    if isinstance(document.get("items"), list):
        return EMPAIAParser
    return None


def open_annotations(
    source: Source,
    *,
    label_property: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> AnnotationParser:
    """Open an annotation file with the parser its format needs.

    ``.xml`` is ASAP. ``.json`` and ``.geojson`` are told apart by content (see
    :func:`json_parser_class`). Any other extension (or a stream) is sniffed: ``<`` starts ASAP
    XML, ``{`` or ``[`` JSON. A file that fits no format raises
    :class:`~wsi_core.errors.AnnotationError` naming it. The file is read and decoded once.

    ``label_property`` says where the class label is, for the parser picked: for GeoJSON a
    dotted path into ``properties`` (``"label"`` for Digital Slide Archive exports), for ASAP
    the ``Annotation`` attribute (``"PartOfGroup"`` by default, ``"Name"``, ...); V7 Darwin and
    EMPAIA files keep it in ``name`` only, and any other value raises ``AnnotationError``
    naming the file. ``None`` reads each format's own class field. ``storage_options`` go to
    fsspec when ``source`` is a URL (endpoint, credentials; see :mod:`wsi_core.remote`).

    Whatever goes wrong in reading the file is an ``AnnotationError`` naming it, a missing file
    included; other ``OSError`` (denied, network) propagate for the caller to retry.
    """
    check_label_property(label_property)
    name, data = read_source(source, storage_options)
    with annotation_errors(name, "cannot read the annotations"):
        return _parse(name, data, label_property)


def _parse(name: str, data: bytes | str, label_property: str | None) -> AnnotationParser:
    """The parser for ``data``, read from ``name`` (see :func:`open_annotations`)."""
    suffix = _suffix(name)
    first = _first_character(data)
    if suffix == ".xml" or (suffix not in _JSON_SUFFIXES and first == "<"):
        return ASAPParser._from_data(name, data, label_property)
    if suffix not in _JSON_SUFFIXES and first not in ("{", "["):
        raise AnnotationError(name, f"unrecognised annotation format (expected {_FORMATS})")
    document = load_json(name, data)
    parser_class = json_parser_class(document)
    if parser_class is None:
        raise AnnotationError(
            name, f"unrecognised annotation JSON (expected {_FORMATS.replace('ASAP XML, ', '')})"
        )
    return parser_class._from_document(name, document, label_property)
