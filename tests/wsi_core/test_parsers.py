"""Annotation parsers: real third-party files (shared_data) and small synthetic documents."""

from __future__ import annotations

import contextlib
import functools
import io
import json
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import shapely
from shapely.geometry import MultiPolygon, Point, Polygon, box

from wsi_core.errors import AnnotationError
from wsi_core.parsers import (
    ASAPParser,
    Darwin7JSONParser,
    EMPAIAParser,
    GeoJSONParser,
    InvalidGeometryWarning,
    open_annotations,
)

# ---------------------------------------------------------------------------------------------
# helpers


def vertex_count(polygon: Polygon) -> int:
    """Vertices as the file lists them (shapely closes the ring with a repeat of the first)."""
    return len(polygon.exterior.coords) - 1


def asap_xml(*annotations: str) -> str:
    return (
        '<?xml version="1.0"?>\n<ASAP_Annotations>\n<Annotations>\n'
        + "\n".join(annotations)
        + "\n</Annotations>\n</ASAP_Annotations>\n"
    )


def asap_annotation(name: str, kind: str, group: str, points, orders=None) -> str:
    orders = range(len(points)) if orders is None else orders
    coordinates = "".join(
        f'<Coordinate Order="{o}" X="{x}" Y="{y}" />'
        for o, (x, y) in zip(orders, points, strict=True)
    )
    return (
        f'<Annotation Name="{name}" Type="{kind}" PartOfGroup="{group}" Color="#F4FA58">'
        f"<Coordinates>{coordinates}</Coordinates></Annotation>"
    )


def feature(geometry: dict, **properties) -> dict:
    return {"type": "Feature", "geometry": geometry, "properties": properties}


def polygon_geometry(*rings) -> dict:
    return {"type": "Polygon", "coordinates": [[list(p) for p in ring] for ring in rings]}


def collection(*features) -> dict:
    return {"type": "FeatureCollection", "features": list(features)}


def write(tmp_path: Path, name: str, content: str | dict | list) -> Path:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return path


@contextlib.contextmanager
def no_warnings() -> Iterator[None]:
    """A block in which any warning fails the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


SQUARE_CW = [(0, 0), (10, 0), (10, 10), (0, 10)]  # clockwise on screen (y down)
BOW_TIE = [(0, 0), (2, 2), (2, 0), (0, 2)]  # self-intersecting: two triangles of area 1


# ---------------------------------------------------------------------------------------------
# real files: ASAP


def test_asap_patient_004_node_4(shared_data: Path) -> None:
    parser = ASAPParser(shared_data / "annotations/asap/patient_004_node_4.xml")
    with no_warnings():
        polygons = list(parser.get_polygons())
    assert len(polygons) == 3
    assert all(isinstance(p, Polygon) and p.is_valid for p in polygons)
    assert sum(vertex_count(p) for p in polygons) == 35
    assert [vertex_count(p) for p in polygons] == [8, 15, 12]
    minx, miny, maxx, maxy = shapely.union_all(polygons).bounds
    assert (round(minx), round(miny), round(maxx), round(maxy)) == (10626, 75345, 13483, 89161)
    assert (minx, maxx) == pytest.approx((10626.2002, 13482.7998))
    # first vertex of the file comes first
    assert polygons[0].exterior.coords[0] == pytest.approx((12711.2998, 88778.1016))
    assert parser.class_labels() == ["Tumor"]
    assert len(parser.get_class_polygons("Tumor")) == 3
    assert len(parser.get_class_polygons("Tum")) == 0
    assert len(list(parser.get_polygons(part_of_group="Tumor"))) == 3
    assert len(list(parser.get_polygons(name="Tumor.*"))) == 0  # Name is "Annotation N"
    assert len(list(parser.get_polygons(name="Annotation [12]"))) == 2
    assert list(parser.get_points()) == []


def test_asap_tumor_031(shared_data: Path) -> None:
    parser = ASAPParser(shared_data / "annotations/asap/tumor_031.xml")
    polygons = list(parser.get_polygons())
    assert len(polygons) == 10
    assert all(p.is_valid for p in polygons)
    assert sum(vertex_count(p) for p in polygons) == 563
    assert parser.class_labels() == ["negative", "tissue"]
    assert len(list(parser.get_polygons(part_of_group="tissue"))) == 6
    assert len(parser.get_class_polygons("negative")) == 4
    assert len(parser.get_class_polygons("tissue|negative")) == 10
    assert shapely.union_all(polygons).bounds == pytest.approx(
        (43969.5, 91075.7, 69929.2, 176404.7), abs=0.1
    )


# ---------------------------------------------------------------------------------------------
# real files: GeoJSON


def test_geojson_qupath05_name_is_class(shared_data: Path) -> None:
    parser = GeoJSONParser(shared_data / "annotations/geojson/qupath05.geojson")
    polygons = list(parser.get_polygons())
    assert len(polygons) == 3
    assert [vertex_count(p) for p in polygons] == [163, 115, 118]
    assert polygons[0].exterior.coords[0] == (8909.0, 6277.0)
    assert shapely.union_all(polygons).bounds == (8184.0, 5424.0, 9891.0, 6563.0)
    # no classification: the class is properties.name
    assert parser.class_labels() == ["I", "UT"]
    assert [p.bounds for p in parser.get_class_polygons("UT")] == [(8837.0, 6277.0, 9070.0, 6563.0)]
    assert len(parser.get_class_polygons("I")) == 2
    assert len(list(parser.get_polygons(name="UT"))) == 1
    assert len(list(parser.get_polygons(name="U"))) == 0
    assert len(list(parser.get_polygons(objectType="annotation"))) == 3
    assert len(list(parser.get_polygons(classification__name=".*"))) == 0


def test_geojson_qupath_cell_detections(shared_data: Path) -> None:
    parser = GeoJSONParser(shared_data / "annotations/geojson/test_cell_detections.geojson")
    polygons = list(parser.get_polygons())
    # the cell boundary only; nucleusGeometry is not a second polygon
    assert [p.bounds for p in polygons] == [(512, 512, 1024, 1024), (512, 1024, 1024, 1536)]
    # the second "square" is really a triangle in the file
    assert [p.area for p in polygons] == [512 * 512, 512 * 512 / 2]
    assert parser.class_labels() == ["Other"]
    assert len(parser.get_class_polygons("Other")) == 2
    assert len(list(parser.get_polygons(classification__name="Other"))) == 2
    assert len(list(parser.get_polygons(filters={"classification.name": "Oth.*"}))) == 2
    assert len(list(parser.get_polygons(classification_name="Other"))) == 2  # compatibility
    assert len(list(parser.get_polygons(objectType="cell"))) == 2
    # a property name no keyword can spell, through a dotted path
    big_nuclei = list(parser.get_polygons(filters={"measurements.Nucleus: Area µm^2": r"1\d\..*"}))
    assert [p.bounds for p in big_nuclei] == [(512, 1024, 1024, 1536)]


def test_geojson_legacy_bare_list(shared_data: Path) -> None:
    parser = GeoJSONParser(shared_data / "annotations/geojson/test_object_classification.geojson")
    polygons = list(parser.get_polygons())
    assert len(polygons) == 1
    assert polygons[0].bounds == pytest.approx((61756.34, 929.31, 61822.29, 977.25))
    assert polygons[0].exterior.coords[0] == (61781.95, 929.31)
    assert vertex_count(polygons[0]) == 24
    assert parser.class_labels() == ["Other"]
    assert len(list(parser.get_polygons(classification__colorRGB="-16744320"))) == 1
    assert len(list(parser.get_polygons(isLocked="false"))) == 1


def test_geojson_dsa_label(shared_data: Path) -> None:
    path = shared_data / "annotations/geojson/123.annotation.geojson"
    parser = GeoJSONParser(path)
    assert [p.bounds for p in parser.get_polygons()] == [
        (512, 512, 1333, 1333),
        (1512, 1512, 2333, 2333),
    ]
    tumor = list(parser.get_polygons(label="Tumor"))
    assert len(tumor) == 1 and tumor[0].equals(box(1512, 1512, 2333, 2333))
    assert tumor[0].exterior.coords[0] == (1512, 1512)
    assert len(list(parser.get_polygons(group="Other"))) == 2
    # neither classification nor name: no class label unless the class property is named
    assert parser.class_labels() == []
    labelled = GeoJSONParser(path, class_property="label")
    assert labelled.class_labels() == ["Other", "Tumor"]
    assert labelled.get_class_polygons("Tumor")[0].equals(box(1512, 1512, 2333, 2333))


# ---------------------------------------------------------------------------------------------
# real files: V7 Darwin


def even_odd_area(rings: list[Polygon]) -> float:
    """Area of the region covered by an odd number of rings, by symmetric difference."""
    return functools.reduce(shapely.symmetric_difference, rings).area


def test_darwin_103s(shared_data: Path) -> None:
    path = shared_data / "annotations/darwin/103S.json"
    document = json.loads(path.read_text())
    parser = Darwin7JSONParser(path)
    with no_warnings():
        polygons = list(parser.get_polygons())
    assert len(polygons) == 4
    assert all(p.is_valid for p in polygons)
    assert parser.class_labels() == ["stroma (area)", "tumor (area)"]
    assert len(parser.get_class_polygons(r"stroma \(area\)")) == 2
    assert len(list(parser.get_polygons(name=r"tumor \(area\)"))) == 2
    assert len(list(parser.get_polygons(name="tumor"))) == 0

    # the 6-path stroma region: nested rings become one valid MultiPolygon
    multi = polygons[0]
    paths = next(
        a for a in document["annotations"] if len(a.get("polygon", {}).get("paths", [])) == 6
    )
    rings = [Polygon([(p["x"], p["y"]) for p in ring]) for ring in paths["polygon"]["paths"]]
    assert isinstance(multi, MultiPolygon)
    assert len(multi.geoms) == 3
    assert sorted(len(part.interiors) for part in multi.geoms) == [0, 1, 2]
    assert multi.area == pytest.approx(even_odd_area(rings), rel=1e-9)
    assert multi.area == pytest.approx(2820845.76, abs=0.01)
    # every ring of the file is in the result, with its vertices in file order
    result_rings = [
        list(r.coords) for part in multi.geoms for r in (part.exterior, *part.interiors)
    ]
    for ring in rings:
        assert list(ring.exterior.coords) in result_rings

    single = polygons[1]
    first = next(
        a for a in document["annotations"] if len(a.get("polygon", {}).get("paths", [])) == 1
    )
    assert single.exterior.coords[0] == (
        first["polygon"]["paths"][0][0]["x"],
        first["polygon"]["paths"][0][0]["y"],
    )
    assert shapely.union_all(polygons).bounds == pytest.approx(
        (15324.65, 18789.24, 20302.26, 22021.58)
    )

    points = list(parser.get_points())
    assert len(points) == 5
    assert points[0].coords[0] == (15957.38, 19211.73)
    assert len(list(parser.get_points(name=r"lymphocyte \(cell\)"))) == 5
    assert list(parser.get_points(name="tumor.*")) == []

    # bounding-box-only annotations appear only when asked for
    with_boxes = list(parser.get_polygons(include_boxes=True))
    assert len(with_boxes) == 4 + 8
    cells = list(parser.get_polygons(name=r"tumor \(cell\)", include_boxes=True))
    assert len(cells) == 7
    assert cells[0].bounds == pytest.approx(
        (15441.76, 19014.93, 15441.76 + 11.31, 19014.93 + 12.51)
    )
    (roi,) = parser.get_polygons(name="ROI.*", include_boxes=True)
    assert roi.area == pytest.approx(4597.51 * 5122.94)
    assert parser.get_class_polygons(r"tumor \(cell\)") == []


def test_open_annotations_picks_parser(shared_data: Path) -> None:
    folder = shared_data / "annotations"
    expected = {
        "asap/patient_004_node_4.xml": ASAPParser,
        "asap/tumor_031.xml": ASAPParser,
        "geojson/qupath05.geojson": GeoJSONParser,
        "geojson/test_cell_detections.geojson": GeoJSONParser,
        "geojson/test_object_classification.geojson": GeoJSONParser,
        "geojson/123.annotation.geojson": GeoJSONParser,
        "darwin/103S.json": Darwin7JSONParser,
    }
    for name, parser_class in expected.items():
        parser = open_annotations(folder / name)
        assert type(parser) is parser_class, name
        assert parser.path == str(folder / name)
    assert len(list(open_annotations(folder / "darwin/103S.json").get_polygons())) == 4
    metadata = folder / "darwin/.v7/metadata.json"
    with pytest.raises(AnnotationError, match=r"metadata\.json"):
        open_annotations(metadata)


# ---------------------------------------------------------------------------------------------
# synthetic: repair


def test_bow_tie_repaired_with_one_warning(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "bowtie.xml",
        asap_xml(
            asap_annotation("A", "Polygon", "T", BOW_TIE),
            asap_annotation("B", "Polygon", "T", SQUARE_CW),
            asap_annotation("C", "Polygon", "T", [(x + 5, y) for x, y in BOW_TIE]),
        ),
    )
    parser = ASAPParser(path)
    with pytest.warns(InvalidGeometryWarning) as record:
        polygons = list(parser.get_polygons())
    assert len(record) == 1
    message = str(record[0].message)
    assert "bowtie.xml" in message and "repaired 2 invalid" in message
    assert len(polygons) == 3
    assert all(p.is_valid for p in polygons)
    assert isinstance(polygons[0], MultiPolygon) and polygons[0].area == pytest.approx(2.0)
    assert polygons[1].equals(Polygon(SQUARE_CW))
    # the filter selects before repair: asking for the valid one alone warns about nothing
    with no_warnings():
        assert [p.area for p in parser.get_polygons(name="B")] == [100.0]
    with pytest.warns(InvalidGeometryWarning, match="repaired 2 invalid"):
        assert len(parser.get_class_polygons("T")) == 3
    with pytest.warns(InvalidGeometryWarning, match="repaired 1 invalid"):
        assert len(list(parser.get_polygons(name="A|B"))) == 2
    assert parser.class_labels() == ["T"]


def test_geojson_invalid_shapes_repaired_and_degenerate_dropped(tmp_path: Path) -> None:
    spike = [(0, 0), (10, 0), (10, 10), (10, 20), (10, 10), (0, 10)]  # polygon with a spike
    line = [(0, 0), (5, 5), (10, 10)]  # collinear: no area at all
    document = collection(
        feature(polygon_geometry(BOW_TIE), name="bowtie"),
        feature(polygon_geometry(spike), name="spike"),
        feature(polygon_geometry(line), name="line"),
        feature(polygon_geometry([(0, 0), (1, 1)]), name="two points"),
        feature(
            {
                "type": "MultiPolygon",
                "coordinates": [
                    [[list(p) for p in SQUARE_CW]],
                    [[[5, 5], [15, 5], [15, 15], [5, 15]]],
                ],
            },
            name="overlapping parts",
        ),
    )
    parser = GeoJSONParser(write(tmp_path, "shapes.geojson", document))
    with pytest.warns(InvalidGeometryWarning) as record:
        polygons = list(parser.get_polygons())
    assert len(record) == 1
    assert "shapes.geojson" in str(record[0].message)
    assert "repaired 3" in str(record[0].message) and "dropped 2" in str(record[0].message)
    assert len(polygons) == 3
    assert all(p.is_valid and p.geom_type in ("Polygon", "MultiPolygon") for p in polygons)
    assert polygons[1].area == pytest.approx(100.0)  # the spike is gone, the square stays
    assert parser.class_labels() == ["bowtie", "overlapping parts", "spike"]


# ---------------------------------------------------------------------------------------------
# synthetic: holes and nesting


def test_geojson_polygon_with_hole_and_multipolygon(tmp_path: Path) -> None:
    outer = [(0, 0), (0, 10), (10, 10), (10, 0), (0, 0)]
    hole = [(2, 2), (4, 2), (4, 4), (2, 4), (2, 2)]
    document = collection(
        feature(
            polygon_geometry(outer, hole), classification={"name": "Tumor", "color": [255, 0, 0]}
        ),
        feature(
            {
                "type": "MultiPolygon",
                "coordinates": [[outer, hole], [[[20, 0], [30, 0], [30, 10], [20, 0]]]],
            },
            classification={"name": "Stroma", "colorRGB": -1},
        ),
    )
    parser = GeoJSONParser(write(tmp_path, "holes.geojson", document))
    with no_warnings():
        first, second = parser.get_polygons()
    assert isinstance(first, Polygon) and len(first.interiors) == 1
    assert first.area == 96.0
    assert list(first.exterior.coords) == outer and list(first.interiors[0].coords) == hole
    assert isinstance(second, MultiPolygon) and second.area == 96.0 + 50.0
    assert parser.class_labels() == ["Stroma", "Tumor"]


def darwin_path(points) -> list[dict]:
    return [{"x": x, "y": y} for x, y in points]


def test_darwin_rings_by_containment(tmp_path: Path) -> None:
    outer = [(0, 0), (100, 0), (100, 100), (0, 100)]
    hole = [(10, 10), (10, 50), (50, 50), (50, 10)]
    island = [(20, 20), (40, 20), (40, 40), (20, 40)]
    far = [(200, 0), (210, 0), (210, 10), (200, 10)]
    document = {
        "version": "2.0",
        "item": {"name": "x.tif"},
        "annotations": [
            # hole listed before its exterior; an island inside the hole; a separate part
            {
                "name": "nested",
                "polygon": {
                    "paths": [
                        darwin_path(hole),
                        darwin_path(island),
                        darwin_path(outer),
                        darwin_path(far),
                    ]
                },
            },
            {"name": "single", "polygon": {"paths": [darwin_path(outer)]}},
            {"name": "old single", "polygon": {"path": darwin_path(outer)}},
            {
                "name": "old complex",
                "complex_polygon": {"path": [darwin_path(outer), darwin_path(hole)]},
            },
            {"name": "box", "bounding_box": {"x": 5, "y": 6, "w": 10, "h": 20}},
            {"name": "cell", "keypoint": {"x": 1.5, "y": 2.5}},
            {"name": "tag", "tag": {}},
        ],
    }
    parser = Darwin7JSONParser(write(tmp_path, "v7.json", document))
    with no_warnings():
        nested, single, old_single, old_complex = parser.get_polygons()
    assert isinstance(nested, MultiPolygon) and nested.is_valid
    assert nested.area == pytest.approx(100 * 100 - 40 * 40 + 20 * 20 + 10 * 10)
    # exteriors in file order: island, outer (with hole), far
    assert [len(p.interiors) for p in nested.geoms] == [0, 1, 0]
    assert list(nested.geoms[0].exterior.coords)[:-1] == island
    assert list(nested.geoms[1].interiors[0].coords)[:-1] == hole
    assert list(single.exterior.coords)[:-1] == outer
    assert old_single.equals(single)
    assert isinstance(old_complex, Polygon) and old_complex.area == 100 * 100 - 40 * 40
    (boxed,) = parser.get_polygons(name="box", include_boxes=True)
    assert boxed.bounds == (5, 6, 15, 26) and boxed.exterior.coords[0] == (5, 6)
    assert [p.coords[0] for p in parser.get_points()] == [(1.5, 2.5)]
    assert parser.class_labels() == ["nested", "old complex", "old single", "single"]


def test_darwin_overlapping_rings_are_repaired_not_invalid(tmp_path: Path) -> None:
    a = [(0, 0), (10, 0), (10, 10), (0, 10)]
    b = [(5, 5), (15, 5), (15, 15), (5, 15)]
    document = {
        "version": "2.0",
        "annotations": [{"name": "x", "polygon": {"paths": [darwin_path(a), darwin_path(b)]}}],
    }
    parser = Darwin7JSONParser(io.StringIO(json.dumps(document)))
    with pytest.warns(InvalidGeometryWarning, match="<stream>"):
        (geometry,) = parser.get_polygons()
    assert geometry.is_valid
    assert geometry.area == pytest.approx(even_odd_area([Polygon(a), Polygon(b)]))


# ---------------------------------------------------------------------------------------------
# synthetic: vertex order and the ASAP details


def test_vertex_order_and_orientation_preserved(tmp_path: Path) -> None:
    counter_clockwise = SQUARE_CW[::-1]
    start_elsewhere = SQUARE_CW[2:] + SQUARE_CW[:2]
    # ASAP: Order attributes out of document order
    xml = asap_xml(
        asap_annotation(
            "cw", "Polygon", "g", [SQUARE_CW[i] for i in (2, 0, 3, 1)], orders=[2, 0, 3, 1]
        ),
        asap_annotation("ccw", "Polygon", "g", counter_clockwise),
    )
    cw, ccw = ASAPParser(io.StringIO(xml)).get_polygons()
    assert list(cw.exterior.coords)[:-1] == SQUARE_CW
    assert list(ccw.exterior.coords)[:-1] == counter_clockwise
    assert cw.exterior.is_ccw != ccw.exterior.is_ccw

    geo = collection(
        feature(polygon_geometry(start_elsewhere)), feature(polygon_geometry(counter_clockwise))
    )
    first, second = GeoJSONParser(io.StringIO(json.dumps(geo))).get_polygons()
    assert list(first.exterior.coords)[:-1] == start_elsewhere
    assert list(second.exterior.coords)[:-1] == counter_clockwise

    emp = {
        "items": [
            {"name": "a", "type": "polygon", "coordinates": [list(p) for p in start_elsewhere]}
        ]
    }
    (only,) = EMPAIAParser(io.StringIO(json.dumps(emp))).get_polygons()
    assert list(only.exterior.coords)[:-1] == start_elsewhere


def test_asap_points_decimal_commas_and_types(tmp_path: Path) -> None:
    xml = asap_xml(
        '<Annotation Name="r" Type="Rectangle" PartOfGroup="None">'
        "<Coordinates>"
        '<Coordinate Order="0" X="1,5" Y="2,25" /><Coordinate Order="1" X="11,5" Y="2,25" />'
        '<Coordinate Order="2" X="11,5" Y="12,25" /><Coordinate Order="3" X="1,5" Y="12,25" />'
        "</Coordinates></Annotation>",
        asap_annotation("s", "Spline", "g", SQUARE_CW),
        asap_annotation("d", "Dot", "cells", [(3, 4)]),
        asap_annotation("ps", "PointSet", "cells", [(1, 1), (2, 2), (3, 3)]),
        asap_annotation("p", "Point", "other", [(7.25, 8.5)]),
        asap_annotation("m", "Measurement", "g", [(0, 0), (5, 5)]),
    )
    parser = ASAPParser(write(tmp_path, "types.xml", xml))
    rectangle, spline = parser.get_polygons()
    assert rectangle.bounds == (1.5, 2.25, 11.5, 12.25)
    assert spline.area == 100
    # PartOfGroup="None" is ASAP for "no group"
    assert parser.class_labels() == ["g"]
    assert list(parser.get_polygons(part_of_group="None")) == []
    points = list(parser.get_points())
    assert [p.coords[0] for p in points] == [(3, 4), (1, 1), (2, 2), (3, 3), (7.25, 8.5)]
    assert len(list(parser.get_points(part_of_group="cells"))) == 4
    assert len(list(parser.get_points(name="ps"))) == 3


def test_asap_bad_coordinates_name_the_place(tmp_path: Path) -> None:
    missing = asap_xml(
        '<Annotation Name="bad" Type="Polygon"><Coordinates><Coordinate Order="0" Y="1" />'
        "</Coordinates></Annotation>"
    )
    with pytest.raises(
        AnnotationError, match=r"missing\.xml: Annotation #0 \('bad'\), Coordinate #0: no X"
    ):
        ASAPParser(write(tmp_path, "missing.xml", missing))
    for value in ("abc", "1.234,5", "nan"):
        with pytest.raises(AnnotationError, match=r"number|finite"):
            ASAPParser(
                io.StringIO(
                    asap_xml(asap_annotation("n", "Polygon", "g", [(value, 1), (2, 2), (3, 1)]))
                )
            )
    with pytest.raises(AnnotationError, match="not an ASAP annotation file"):
        ASAPParser(write(tmp_path, "other.xml", "<root><Annotation/></root>"))


# ---------------------------------------------------------------------------------------------
# synthetic: filters


def test_filters_fullmatch(tmp_path: Path) -> None:
    xml = asap_xml(
        asap_annotation("Annotation 1", "Polygon", "Tumor", SQUARE_CW),
        asap_annotation("Annotation 10", "Polygon", "Tumor 2", SQUARE_CW),
        asap_annotation("Tumor 1", "Polygon", "Stroma", SQUARE_CW),
        '<Annotation Type="Polygon"><Coordinates>'
        + "".join(
            f'<Coordinate Order="{i}" X="{x}" Y="{y}" />' for i, (x, y) in enumerate(SQUARE_CW)
        )
        + "</Coordinates></Annotation>",
    )
    parser = ASAPParser(io.StringIO(xml))

    def count(**filters: str) -> int:
        return len(list(parser.get_polygons(**filters)))

    assert count() == 4
    assert count(name="Annotation 1") == 1
    assert count(name="Annotation 1.*") == 2
    assert count(name="Annotation") == 0
    assert count(name="Tumor.*") == 1
    assert count(name=".*") == 3  # the nameless annotation matches nothing
    assert count(part_of_group="Tumor") == 1
    assert count(name="Annotation.*", part_of_group="Tumor.*") == 2
    assert len(parser.get_class_polygons("Tumor")) == 1
    assert len(parser.get_class_polygons("Tumor.*")) == 2
    assert parser.class_labels() == ["Stroma", "Tumor", "Tumor 2"]


def test_geojson_nested_filters_both_spellings() -> None:
    def at(index: int) -> dict:  # feature i lies at x = 100 * i, so a result tells who matched
        return polygon_geometry([(x + 100 * index, y) for x, y in SQUARE_CW])

    document = collection(
        feature(
            at(0),
            name="a",
            classification={"name": "Tumor 1", "color": [1, 2, 3]},
            object_type="annotation",
        ),
        feature(
            at(1),
            name="b",
            classification={"name": "Stroma", "colorRGB": -1},
            object_type="detection",
        ),
        feature(at(2), name="c", classification="Tumor legacy"),
        feature(at(3), name="d", classification_name="Literal", **{"odd.key": {"x y": "deep"}}),
        feature(
            at(4), name="e", classification={"names": ["Tumor", "Positive"], "color": [0, 0, 0]}
        ),
        feature(at(5)),
    )
    parser = GeoJSONParser(io.StringIO(json.dumps(document)))

    def which(filters=None, **keywords) -> list[int]:
        return [round(p.bounds[0] / 100) for p in parser.get_polygons(filters, **keywords)]

    assert which(classification__name="Tumor.*") == [0, 2]  # a legacy string is the name
    assert which(filters={"classification.name": "Tumor.*"}) == [0, 2]
    assert which(classification_name="Tumor.*") == [0, 2]  # compatibility: no such property...
    assert which(classification_name="Literal") == [3]  # ...unless one exists: then it is a name
    assert which(object_type="annotation") == [0]  # a single "_" naming a property is a name
    assert which(filters={"odd.key.x y": "deep"}) == [3]
    assert which(filters={("odd.key", "x y"): "deep"}) == [3]
    assert which(classification__name="Stroma", name="b") == [1]
    assert which(classification__name="Stroma", name="a") == []
    assert which(filters={"classification.name": "Stroma"}, name="b") == [1]
    assert which(classification__colorRGB="-1") == [1]
    assert which(classification__color=".*") == []  # a list never matches
    assert which(name="a|b|c") == [0, 1, 2]
    assert which(name="a|b|c.+") == [0, 1]
    assert which(missing__path=".*") == []
    assert which(classification__name=None) == [0, 1, 2, 3, 4, 5]  # None does not filter
    assert parser.class_labels() == ["Stroma", "Tumor 1", "Tumor legacy", "Tumor: Positive", "d"]
    assert [round(p.bounds[0] / 100) for p in parser.get_class_polygons("Tumor.*")] == [0, 2, 4]


def test_geojson_points_and_collections() -> None:
    document = [
        feature({"type": "Point", "coordinates": [1, 2]}, name="p"),
        feature({"type": "MultiPoint", "coordinates": [[3, 4, 0], [5, 6]]}, name="mp"),
        feature(
            {
                "type": "GeometryCollection",
                "geometries": [
                    polygon_geometry(SQUARE_CW),
                    {"type": "Point", "coordinates": [7, 8]},
                    {"type": "LineString", "coordinates": [[0, 0], [1, 1]]},
                ],
            },
            name="gc",
        ),
        {"type": "Feature", "geometry": None, "properties": {"name": "empty"}},
    ]
    parser = GeoJSONParser(io.StringIO(json.dumps(document)))
    assert [p.coords[0] for p in parser.get_points()] == [(1, 2), (3, 4), (5, 6), (7, 8)]
    assert [p.coords[0] for p in parser.get_points(name="mp")] == [(3, 4), (5, 6)]
    assert all(isinstance(p, Point) for p in parser.get_points())
    (square,) = parser.get_polygons()
    assert square.area == 100
    single = GeoJSONParser(
        io.StringIO(json.dumps(feature(polygon_geometry(SQUARE_CW), name="one")))
    )
    assert [p.area for p in single.get_polygons(name="one")] == [100]


# ---------------------------------------------------------------------------------------------
# synthetic: EMPAIA


def test_empaia() -> None:
    document = {
        "items": [
            {
                "name": "tumor",
                "type": "polygon",
                "coordinates": [[0, 0], [10, 0], [10, 10], [0, 10]],
            },
            {"name": "stroma", "type": "polygon", "coordinates": [[0, 0], [2, 2], [2, 0], [0, 2]]},
            {"name": "tumor", "type": "point", "coordinates": [5, 6]},
            {
                "name": "roi",
                "type": "rectangle",
                "upper_left": [100, 200],
                "width": 30,
                "height": 40,
            },
            {"name": "ruler", "type": "line", "coordinates": [[0, 0], [1, 1]]},
            {
                "item_type": "point",
                "items": [{"name": "cell", "type": "point", "coordinates": [1, 1]}],
            },
        ]
    }
    parser = EMPAIAParser(io.StringIO(json.dumps(document)))
    with pytest.warns(InvalidGeometryWarning, match="repaired 1"):
        polygons = list(parser.get_polygons())
    assert [round(p.area) for p in polygons] == [100, 2, 1200]
    assert polygons[2].bounds == (100, 200, 130, 240)
    assert [p.bounds for p in parser.get_polygons(name="tumor")] == [(0, 0, 10, 10)]
    assert [p.coords[0] for p in parser.get_points()] == [(5, 6), (1, 1)]
    assert [p.coords[0] for p in parser.get_points(name="cell")] == [(1, 1)]
    assert parser.class_labels() == ["roi", "stroma", "tumor"]
    assert len(parser.get_class_polygons("tumor|roi")) == 2
    assert isinstance(open_annotations(io.StringIO(json.dumps(document))), EMPAIAParser)


# ---------------------------------------------------------------------------------------------
# synthetic: safety and errors


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<ASAP_Annotations><Annotations>
<Annotation Name="&lol3;" Type="Polygon"/>
</Annotations></ASAP_Annotations>
"""

EXTERNAL_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE foo [ <!ENTITY xxe SYSTEM "file:///etc/passwd"> ]>
<ASAP_Annotations><Annotations>
<Annotation Name="&xxe;" Type="Polygon"/>
</Annotations></ASAP_Annotations>
"""


@pytest.mark.parametrize(
    "document", [BILLION_LAUGHS, EXTERNAL_ENTITY], ids=["billion-laughs", "xxe"]
)
def test_defusedxml_rejects_entities(tmp_path: Path, document: str) -> None:
    path = write(tmp_path, "evil.xml", document)
    with pytest.raises(AnnotationError, match=r"evil\.xml: refused unsafe XML"):
        ASAPParser(path)
    with pytest.raises(AnnotationError, match=r"evil\.xml"):
        open_annotations(path)


def test_malformed_xml_names_file_and_line(tmp_path: Path) -> None:
    text = asap_xml(asap_annotation("a", "Polygon", "g", SQUARE_CW)).replace(
        "</Annotations>", "</Annotation>"
    )
    path = write(tmp_path, "broken.xml", text)
    with pytest.raises(AnnotationError) as caught:
        ASAPParser(path)
    assert str(caught.value).startswith(str(path) + ": malformed XML at line 5, column ")
    assert caught.value.path == str(path)
    assert "mismatched tag" in str(caught.value)


def test_malformed_json_names_file_and_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "broken.geojson",
        '{"type": "FeatureCollection",\n "features": [\n   {"type": "Feature",, }\n]}',
    )
    for opener in (GeoJSONParser, Darwin7JSONParser, EMPAIAParser, open_annotations):
        with pytest.raises(
            AnnotationError, match=r"broken\.geojson: malformed JSON at line 3, column 23"
        ):
            opener(path)


def test_wrong_format_names_file(tmp_path: Path) -> None:
    darwin = write(tmp_path, "darwin.json", {"version": "2.0", "annotations": []})
    geojson = write(tmp_path, "shapes.geojson", collection())
    other = write(tmp_path, "other.json", {"foo": 1})
    with pytest.raises(AnnotationError, match=r"darwin\.json: not GeoJSON"):
        GeoJSONParser(darwin)
    with pytest.raises(AnnotationError, match=r"shapes\.geojson: not a V7 Darwin JSON file"):
        Darwin7JSONParser(geojson)
    with pytest.raises(AnnotationError, match=r"shapes\.geojson: not an EMPAIA"):
        EMPAIAParser(geojson)
    with pytest.raises(AnnotationError, match=r"other\.json: unrecognised annotation JSON"):
        open_annotations(other)
    with pytest.raises(AnnotationError, match=r"not GeoJSON: \[0\] is not a Feature"):
        GeoJSONParser(io.StringIO("[1, 2]"))
    with pytest.raises(AnnotationError, match=r"notes\.txt: unrecognised annotation format"):
        open_annotations(write(tmp_path, "notes.txt", "hello"))
    with pytest.raises(
        AnnotationError, match=r"features\[0\]\.geometry\.coordinates\[0\]\[1\] is not a position"
    ):
        GeoJSONParser(
            io.StringIO(
                json.dumps(
                    collection(feature({"type": "Polygon", "coordinates": [[[0, 0], "x", [1, 1]]]}))
                )
            )
        )
    with pytest.raises(
        AnnotationError, match=r"annotations\[0\]\.keypoint: coordinate 'a' is not a number"
    ):
        Darwin7JSONParser(
            io.StringIO(
                json.dumps({"version": "2.0", "annotations": [{"keypoint": {"x": "a", "y": 1}}]})
            )
        )
    assert isinstance(open_annotations(darwin), Darwin7JSONParser)
    assert isinstance(open_annotations(geojson), GeoJSONParser)


# ---------------------------------------------------------------------------------------------
# synthetic: sources


def test_stream_inputs(tmp_path: Path) -> None:
    xml = asap_xml(asap_annotation("a", "Polygon", "g", SQUARE_CW))
    geo = json.dumps(collection(feature(polygon_geometry(SQUARE_CW), name="a")))
    assert [p.area for p in ASAPParser(io.StringIO(xml)).get_polygons()] == [100]
    assert [p.area for p in ASAPParser(io.BytesIO(xml.encode())).get_polygons()] == [100]
    assert [p.area for p in GeoJSONParser(io.StringIO("\ufeff" + geo)).get_polygons()] == [100]
    assert [p.area for p in GeoJSONParser(io.BytesIO(geo.encode("utf-8-sig"))).get_polygons()] == [
        100
    ]
    assert isinstance(open_annotations(io.StringIO(xml)), ASAPParser)
    assert isinstance(open_annotations(io.StringIO(geo)), GeoJSONParser)
    path = write(tmp_path, "named.geojson", geo)
    with open(path, encoding="utf-8") as handle:
        parser = GeoJSONParser(handle)
    assert parser.path == str(path)
    assert GeoJSONParser(io.StringIO(geo)).path == "<stream>"
    with pytest.raises(AnnotationError, match="<stream>: malformed JSON at line 1"):
        GeoJSONParser(io.StringIO("{"))


def test_fsspec_url_input(tmp_path: Path, shared_data: Path) -> None:
    geo = write(tmp_path, "url.geojson", collection(feature(polygon_geometry(SQUARE_CW), name="a")))
    url = geo.as_uri()
    assert url.startswith("file://")
    parser = GeoJSONParser(url)
    assert parser.path == url
    assert [p.area for p in parser.get_polygons(name="a")] == [100]
    assert isinstance(open_annotations(url), GeoJSONParser)
    asap = (shared_data / "annotations/asap/patient_004_node_4.xml").as_uri()
    assert len(list(ASAPParser(asap).get_polygons())) == 3
    assert isinstance(open_annotations(asap), ASAPParser)
    with pytest.raises(AnnotationError, match=r"url\.xml: malformed XML at line 1"):
        ASAPParser(write(tmp_path, "url.xml", "<ASAP_Annotations>").as_uri())


def test_non_finite_coordinates_rejected() -> None:
    text = (
        '{"type": "Feature", "properties": {}, "geometry": '
        '{"type": "Polygon", "coordinates": [[[0, 0], [NaN, 1], [1, 1]]]}}'
    )
    with pytest.raises(
        AnnotationError, match=r"Feature\.geometry\.coordinates\[0\]\[1\]: coordinate .* not finite"
    ):
        GeoJSONParser(io.StringIO(text))


def test_upath_input() -> None:
    upath = pytest.importorskip("upath")
    import fsspec

    memory = fsspec.filesystem("memory")
    memory.pipe(
        "/wsi-core-parsers/one.geojson",
        json.dumps(collection(feature(polygon_geometry(SQUARE_CW), name="a"))).encode(),
    )
    try:
        path = upath.UPath("memory:///wsi-core-parsers/one.geojson")
        parser = open_annotations(path)
        assert isinstance(parser, GeoJSONParser)
        assert [p.area for p in parser.get_polygons(name="a")] == [100]
        assert "one.geojson" in parser.path
    finally:
        memory.rm("/wsi-core-parsers", recursive=True)
