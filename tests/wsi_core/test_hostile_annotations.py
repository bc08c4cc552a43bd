"""Annotation files that are broken or hostile, the class-label setting, and label counts.

The rule: a parser returns right geometry, or raises an ``AnnotationError`` whose message
starts with the file's path and says where in the file the problem is. A wrong argument
(a source of no supported kind, a label property that is no string) stays the caller's
``TypeError`` / ``ValueError``; storage errors (``OSError``) pass unchanged for retries.
"""

from __future__ import annotations

import io
import json
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from shapely.geometry import Point

from wsi_core.errors import AnnotationError
from wsi_core.parsers import (
    ASAPParser,
    Darwin7JSONParser,
    EMPAIAParser,
    GeoJSONParser,
    open_annotations,
)
from wsi_core.parsers import base as parsers_base
from wsi_core.parsers.base import AnnotationParser
from wsi_core.parsers.decode import MAX_COORDINATE

PARSERS: list[Callable[..., AnnotationParser]] = [
    open_annotations,
    ASAPParser,
    GeoJSONParser,
    Darwin7JSONParser,
    EMPAIAParser,
]


def write(tmp_path: Path, name: str, content: str | dict | list) -> Path:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return path


def use(parser: AnnotationParser) -> None:
    """Every query of ``parser``, so that lazily built geometry is built too."""
    each: Any = parser  # every format has get_polygons and get_points, with its own filters
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        list(each.get_polygons())
        list(each.get_points())
        parser.class_labels()
        parser.label_counts()


def refused(opener: Callable[..., AnnotationParser], path: Path, match: str | None = None) -> str:
    """The problem ``opener`` reports for ``path``, which must be an AnnotationError naming
    the file; ``match`` must be found in it."""
    with pytest.raises(AnnotationError, match=match) as info:
        use(opener(path))
    assert str(info.value).startswith(f"{path}: "), str(info.value)
    assert info.value.path == str(path)
    return info.value.problem


def asap(x: str, y: str = "1") -> str:
    return (
        '<ASAP_Annotations><Annotations><Annotation Name="a" Type="Polygon" PartOfGroup="g">'
        f'<Coordinates><Coordinate Order="0" X="{x}" Y="{y}"/><Coordinate Order="1" X="5" Y="5"/>'
        '<Coordinate Order="2" X="0" Y="5"/></Coordinates></Annotation></Annotations>'
        "</ASAP_Annotations>"
    )


def geojson_polygon(value: Any) -> dict:
    ring = [[0, 0], [value, 0], [5, 5], [0, 0]]
    return {
        "type": "Feature",
        "properties": {},
        "geometry": {"type": "Polygon", "coordinates": [ring]},
    }


# Library errors become AnnotationError ------------------------------------------------------

HOSTILE_JSON = {
    "type-list": {"type": []},
    "type-object": {"type": {"a": 1}},
    "features-of-strings": {"type": "FeatureCollection", "features": ["a", "b"]},
    "geometry-type-list": {"type": "Feature", "geometry": {"type": [], "coordinates": []}},
    "properties-list": {"type": "Feature", "properties": [1], "geometry": None},
    "ring-of-objects": {
        "type": "Feature",
        "geometry": {"type": "Polygon", "coordinates": [[{"x": 1}, {"y": 2}, {}]]},
    },
    "ring-of-rings": {
        "type": "Feature",
        "geometry": {"type": "Polygon", "coordinates": [[[[0, 0]], [[1, 1]], [[1, 0]]]]},
    },
    "darwin-path-of-lists": {"version": "2.0", "annotations": [{"polygon": {"paths": [[[1, 2]]]}}]},
    "darwin-name-object": {
        "version": "2.0",
        "annotations": [{"name": {"a": 1}, "keypoint": {"x": 1, "y": 2}}],
    },
    "darwin-box-strings": {
        "version": "2.0",
        "annotations": [{"bounding_box": {"x": "1", "y": 2, "w": 3, "h": 4}}],
    },
    "empaia-items-of-lists": {"items": [[1, 2]]},
    "empaia-point-objects": {"items": [{"type": "point", "coordinates": {"x": 1}}]},
    "nested-deeply": json.loads("[" * 50 + "]" * 50),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_JSON))
def test_hostile_json_reads_or_names_the_file(tmp_path, name):
    """Every parser reads the document (a value of the wrong type is no label, say) or raises
    an AnnotationError naming the file; never a TypeError or KeyError of its own."""
    path = write(tmp_path, f"{name}.json", HOSTILE_JSON[name])
    for opener in PARSERS:
        try:
            use(opener(path))
        except AnnotationError as error:
            problem = str(error)
        else:
            continue
        assert problem.startswith(f"{path}: "), problem


def test_type_list_says_what_is_wrong(tmp_path):
    path = write(tmp_path, "odd.geojson", {"type": []})
    assert refused(GeoJSONParser, path) == (
        "not GeoJSON: the top-level 'type' is a JSON array, not a string"
    )
    refused(open_annotations, path, "unrecognised annotation JSON")
    refused(open_annotations, write(tmp_path, "odd.json", {"type": [], "features": []}))


def test_deep_nesting_is_refused(tmp_path):
    path = write(tmp_path, "deep.json", "[" * 100_000 + "]" * 100_000)
    for opener in PARSERS:
        if opener is not ASAPParser:  # to ASAP it is no XML at all
            refused(opener, path, "nested too deeply")
    # expat does not recurse: deep XML is no danger, and holds no annotation here
    nested_xml = "<ASAP_Annotations>" + "<a>" * 100_000 + "</a>" * 100_000 + "</ASAP_Annotations>"
    assert ASAPParser(write(tmp_path, "deep.xml", nested_xml)).label_counts() == {}


def test_errors_while_building_geometry_name_the_file(tmp_path, monkeypatch):
    """Polygons are built on first use; a failure there names the file too."""
    labelled = {**geojson_polygon(5), "properties": {"name": "Tumor"}}
    parser = GeoJSONParser(write(tmp_path, "a.geojson", labelled))

    def broken(*args: object) -> None:
        raise ValueError("GEOS says no")

    monkeypatch.setattr(parsers_base, "finish_polygon", broken)
    for query in (
        lambda: list(parser.get_polygons()),
        lambda: parser.get_class_polygons(".*"),
        parser.class_labels,
        parser.label_counts,
    ):
        with pytest.raises(AnnotationError, match="cannot build the polygons: ValueError: GEOS"):
            query()


def test_missing_file_is_an_annotation_error(tmp_path):
    for opener in PARSERS:
        refused(opener, tmp_path / "absent.xml", "no such file")


def test_wrong_arguments_stay_the_callers(tmp_path):
    path = write(tmp_path, "a.geojson", geojson_polygon(5))
    for opener in PARSERS:
        with pytest.raises(TypeError, match="annotation source must be"):
            opener(42)
        for bad in ("", 3):
            with pytest.raises(ValueError, match="label_property must be"):
                opener(path, label_property=bad)
    with pytest.raises(re.error):  # a malformed pattern is the caller's
        GeoJSONParser(path).get_class_polygons("(")


def test_storage_errors_pass_unchanged(tmp_path):
    class Flaky(io.RawIOBase):
        def read(self, size: int = -1) -> bytes:
            raise TimeoutError("storage timed out")

    for opener in PARSERS:
        with pytest.raises(TimeoutError, match="storage timed out"):
            opener(Flaky())


# Absurd coordinates -------------------------------------------------------------------------

HUGE_VALUES = ["1e9", "-1e9", "1e12", "1e300", "12345678901234567890123456789012345678901234567"]


def _documents(value: str) -> dict[str, str]:
    """One file per format and coordinate field, with ``value`` (JSON text) in it."""
    darwin = '{{"version": "2.0", "annotations": [{{"name": "a", {}}}]}}'.format
    xy = '{{"x": {}, "y": {}}}'.format
    return {
        "asap-x.xml": asap(value),
        "asap-y.xml": asap("1", value),
        "polygon.geojson": json.dumps(geojson_polygon(0)).replace("[5, 5]", f"[5, {value}]"),
        "point.geojson": f'{{"type": "Point", "coordinates": [{value}, 1]}}',
        "multipoint.geojson": f'{{"type": "MultiPoint", "coordinates": [[1, 1], [1, {value}]]}}',
        "darwin-path.json": darwin(
            f'"polygon": {{"paths": [[{xy(0, 0)}, {xy(value, 0)}, {xy(5, 5)}]]}}'
        ),
        "darwin-keypoint.json": darwin(f'"keypoint": {xy(1, value)}'),
        "darwin-point.json": darwin(f'"point": {xy(value, 1)}'),
        "darwin-box.json": darwin(f'"bounding_box": {{"x": 1, "y": 1, "w": {value}, "h": 1}}'),
        "empaia-polygon.json": (
            f'{{"items": [{{"type": "polygon", "coordinates": [[0, 0], [{value}, 0], [5, 5]]}}]}}'
        ),
        "empaia-point.json": f'{{"items": [{{"type": "point", "coordinates": [1, {value}]}}]}}',
        "empaia-rectangle.json": (
            f'{{"items": [{{"type": "rectangle", "upper_left": [{value}, 1], '
            '"width": 1, "height": 1}]}'
        ),
    }


@pytest.mark.timeout(30)
@pytest.mark.parametrize("value", HUGE_VALUES)
def test_absurd_coordinates_are_refused_with_the_place(tmp_path, value):
    for name, text in _documents(value).items():
        path = write(tmp_path, name, text)
        problem = refused(open_annotations, path, "beyond")
        assert "MAX_COORDINATE" in problem and "level-0 pixels" in problem
        # the place comes first: an ASAP annotation and coordinate, or a JSON path
        place = problem.split(": coordinate ")[0]
        assert place != problem and place.strip(), problem


@pytest.mark.timeout(30)
def test_coordinates_up_to_the_bound_are_kept(tmp_path):
    bound = int(MAX_COORDINATE)
    kept = GeoJSONParser(write(tmp_path, "edge.geojson", geojson_polygon(bound)))
    assert kept.label_counts() == {None: 1}
    (polygon,) = kept.get_polygons()
    assert polygon.bounds[2] == bound
    refused(GeoJSONParser, write(tmp_path, "over.geojson", geojson_polygon(bound + 1)), "beyond")
    refused(ASAPParser, write(tmp_path, "over.xml", asap(f"-{bound}.5")), r"X='-10000000\.5'")


def test_absurd_coordinate_message_names_the_place(tmp_path):
    path = write(
        tmp_path,
        "far.geojson",
        {"type": "FeatureCollection", "features": [geojson_polygon(5), geojson_polygon(1e12)]},
    )
    problem = refused(GeoJSONParser, path)
    assert problem.startswith(
        "features[1].geometry.coordinates[0][1]: coordinate (1000000000000.0, 0) is beyond "
    )


# Darwin points --------------------------------------------------------------------------------


def test_darwin_point_is_read_like_a_keypoint():
    document = {
        "version": "2.0",
        "annotations": [
            {"name": "cell", "point": {"x": 3.5, "y": 4}},
            {"name": "lymphocyte", "keypoint": {"x": 5, "y": 6}},
            {"name": "cell", "point": [1, 2]},  # not an {x, y} object: no point, as for keypoint
            {
                "name": "region",
                "polygon": {"paths": [[{"x": 0, "y": 0}, {"x": 4, "y": 0}, {"x": 4, "y": 4}]]},
            },
        ],
    }
    parser = Darwin7JSONParser(io.StringIO(json.dumps(document)))
    assert [p.coords[0] for p in parser.get_points()] == [(3.5, 4.0), (5.0, 6.0)]
    assert [p.coords[0] for p in parser.get_points(name="cell")] == [(3.5, 4.0)]
    assert parser.label_counts() == {"region": 1}  # points are no polygons
    with pytest.raises(AnnotationError, match=r"annotations\[0\]\.point: coordinate 'a'"):
        Darwin7JSONParser(
            io.StringIO('{"version": "2.0", "annotations": [{"point": {"x": "a", "y": 1}}]}')
        )
    with pytest.raises(AnnotationError, match=r"annotations\[0\]\.point: .* not finite"):
        Darwin7JSONParser(
            io.StringIO('{"version": "2.0", "annotations": [{"point": {"x": NaN, "y": 1}}]}')
        )


def test_darwin_103s_keypoints_unchanged(shared_data):
    parser = open_annotations(shared_data / "annotations/darwin/103S.json")
    assert isinstance(parser, Darwin7JSONParser)
    assert len(list(parser.get_points())) == 5
    assert all(isinstance(p, Point) for p in parser.get_points())


# label_property and label_counts -------------------------------------------------------------


def test_geojson_label_property(shared_data):
    path = shared_data / "annotations/geojson/123.annotation.geojson"
    assert open_annotations(path).label_counts() == {None: 2}  # no classification, no name
    parser = open_annotations(path, label_property="label")
    assert isinstance(parser, GeoJSONParser)
    assert parser.label_counts() == {"Other": 1, "Tumor": 1}
    assert parser.class_labels() == ["Other", "Tumor"]
    assert len(parser.get_class_polygons("Tumor")) == 1
    assert GeoJSONParser(path, label_property="group").label_counts() == {"Other": 2}
    # class_property is the earlier name of the same setting
    assert GeoJSONParser(path, class_property="label").label_counts() == parser.label_counts()
    with pytest.raises(ValueError, match="name the same setting"):
        GeoJSONParser(path, class_property="label", label_property="group")


def test_geojson_nested_label_property():
    document = {
        "type": "FeatureCollection",
        "features": [
            {**geojson_polygon(5), "properties": {"meta": {"class": "tumour"}, "name": "x"}},
            {**geojson_polygon(6), "properties": {"name": "y"}},
        ],
    }
    parser = open_annotations(io.StringIO(json.dumps(document)), label_property="meta.class")
    assert parser.label_counts() == {"tumour": 1, None: 1}


def test_asap_label_property(shared_data):
    path = shared_data / "annotations/asap/tumor_031.xml"
    assert open_annotations(path).label_counts() == {"negative": 4, "tissue": 6}
    by_name = open_annotations(path, label_property="Name")
    assert by_name.label_counts() == {f"Annotation {i}": 1 for i in range(10)}
    assert ASAPParser(path, label_property="PartOfGroup").label_counts() == {
        "negative": 4,
        "tissue": 6,
    }
    assert ASAPParser(path, label_property="Color").class_labels() != []


@pytest.mark.parametrize(
    ("name", "parser_class", "label"),
    [
        ("darwin/103S.json", Darwin7JSONParser, "V7 Darwin JSON"),
        (None, EMPAIAParser, "EMPAIA JSON"),
    ],
    ids=["darwin", "empaia"],
)
def test_fixed_label_formats_refuse_another_label_property(
    shared_data, tmp_path, name, parser_class, label
):
    if name is None:
        items = {"items": [{"name": "t", "type": "point", "coordinates": [1, 2]}]}
        path = write(tmp_path, "items.json", items)
    else:
        path = shared_data / "annotations" / name
    assert type(open_annotations(path, label_property="name")) is parser_class
    for opener in (open_annotations, parser_class):
        with pytest.raises(AnnotationError) as info:
            opener(path, label_property="class")
        assert str(info.value) == (
            f"{path}: {label} files keep the class label in 'name'; "
            "label_property='class' cannot be read from them"
        )


def test_label_counts_skip_what_repair_removes(tmp_path):
    document = {
        "type": "FeatureCollection",
        "features": [
            {**geojson_polygon(5), "properties": {"classification": {"name": "Tumor"}}},
            {**geojson_polygon(7), "properties": {"classification": {"name": "Tumor"}}},
            {  # a line drawn as a polygon: no area, dropped by repair, not counted
                "type": "Feature",
                "properties": {"classification": {"name": "Stroma"}},
                "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [5, 5], [9, 9], [0, 0]]]},
            },
            {**geojson_polygon(9), "properties": {}},
            {
                "type": "Feature",
                "properties": {"name": "dot"},
                "geometry": {"type": "Point", "coordinates": [1, 1]},
            },
        ],
    }
    parser = GeoJSONParser(write(tmp_path, "counts.geojson", document))
    assert parser.label_counts() == {"Tumor": 2, None: 1}
    assert list(parser.label_counts()) == ["Tumor", None]  # labels sorted, None last
    assert parser.class_labels() == ["Tumor"]
