"""Annotation parsers: ASAP XML, GeoJSON, V7 Darwin JSON and EMPAIA JSON to shapely geometry.

Every parser takes a path, an fsspec URL or an open text stream, and returns valid shapely
geometry in level-0 slide pixels (x = column, y = row), vertices in file order. Filters are
regular expressions matched against the whole value (``re.fullmatch``).
"""

from wsi_core.parsers.asap import ASAPParser
from wsi_core.parsers.base import AnnotationParser, InvalidGeometryWarning
from wsi_core.parsers.darwin import Darwin7JSONParser
from wsi_core.parsers.detect import open_annotations
from wsi_core.parsers.empaia import EMPAIAParser
from wsi_core.parsers.geojson import GeoJSONParser

__all__ = [
    "ASAPParser",
    "AnnotationParser",
    "Darwin7JSONParser",
    "EMPAIAParser",
    "GeoJSONParser",
    "InvalidGeometryWarning",
    "open_annotations",
]
