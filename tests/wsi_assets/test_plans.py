"""Plans: which tables are missing or out of date, decided from the output root and the
slide root alone (the same answer for every engine)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from wsi_assets_support import DEMO_KEYS, make_settings

from wsi_assets.pipeline.outputs import SLIDE_OUTPUTS
from wsi_assets.pipeline.plans import CURRENT, MISSING, OUT_OF_DATE, plan
from wsi_assets.pipeline.settings import Settings
from wsi_assets.pipeline.steps import Pipeline
from wsi_core.tables import ANNOTATION_COVERAGE, OVERLAY_OVERLAP, SLIDE_METADATA, TILE_GRID
from wsi_core.tissue import TISSUE_MASK

KEY = "demo_slide_01"


def build_all(pipeline: Pipeline) -> None:
    for slide in pipeline.slides.scan():
        for table in SLIDE_OUTPUTS:
            pipeline.build(table, slide.key)


def todo(settings: Settings) -> dict[str, list[str]]:
    pipeline = Pipeline(settings)
    return {p.slide.key: p.todo for p in plan(pipeline, pipeline.slides.scan())}


def touch(path: Path) -> None:
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))


def test_new_slides_need_every_table_and_built_ones_none(slide_root: Path, tmp_path: Path) -> None:
    settings = make_settings(slide_root, tmp_path / "out")
    pipeline = Pipeline(settings)
    plans = plan(pipeline, pipeline.slides.scan())
    assert [p.slide.key for p in plans] == sorted(DEMO_KEYS)
    assert all(p.todo == list(SLIDE_OUTPUTS) for p in plans)
    assert {s.state for p in plans for s in p.states.values()} == {MISSING}
    build_all(pipeline)
    again = plan(pipeline, pipeline.slides.scan())
    assert {s.state for p in again for s in p.states.values()} == {CURRENT}


def test_each_input_change_reaches_exactly_the_tables_that_read_it(
    slide_root: Path, tmp_path: Path
) -> None:
    settings = make_settings(slide_root, tmp_path / "out")
    build_all(Pipeline(settings))
    touch(slide_root / "demo_slide_01.xml")
    touch(slide_root / "demo_slide_02_tissue_mask.tiff")
    needs = todo(settings)
    assert needs == {
        "demo_slide_01": [ANNOTATION_COVERAGE],
        "demo_slide_02": [OVERLAY_OVERLAP],
        "case_03_HE-3101e499": [],
    }
    pipeline = Pipeline(settings)
    (state,) = [p for p in plan(pipeline, pipeline.slides.scan()) if p.slide.key == KEY]
    assert state.states[ANNOTATION_COVERAGE].reason == "annotation file changed"
    touch(slide_root / "demo_slide_01.tiff")
    assert todo(settings)[KEY] == list(SLIDE_OUTPUTS)


def test_settings_changes_reach_the_tables_they_affect(slide_root: Path, tmp_path: Path) -> None:
    settings = make_settings(slide_root, tmp_path / "out")
    build_all(Pipeline(settings))
    wider = make_settings(slide_root, tmp_path / "out", tile_extent=256, stride=256)
    assert todo(wider)[KEY] == [TILE_GRID, ANNOTATION_COVERAGE, OVERLAY_OVERLAP]
    classes = make_settings(slide_root, tmp_path / "out", label_classes={"tumor": "Tumor"})
    assert todo(classes)[KEY] == [ANNOTATION_COVERAGE]
    pipeline = Pipeline(wider)
    (state,) = [p for p in plan(pipeline, pipeline.slides.scan()) if p.slide.key == KEY]
    assert state.states[TILE_GRID].reason.startswith("settings or code changed (code version")
    assert state.states[OVERLAY_OVERLAP].reason == "tile_grid table changed"


def test_missing_files_in_the_output_root_and_switching_roots(
    slide_root: Path, tmp_path: Path
) -> None:
    first = make_settings(slide_root, tmp_path / "a")
    build_all(Pipeline(first))
    (tmp_path / "a" / SLIDE_METADATA / f"slide={KEY}" / "part-0.parquet").unlink()
    # rebuilt from the same inputs, it gets the provenance the tables below were built from
    assert todo(first)[KEY] == [SLIDE_METADATA]
    build_all(Pipeline(first))

    second = make_settings(slide_root, tmp_path / "b")
    assert set(map(tuple, todo(second).values())) == {tuple(SLIDE_OUTPUTS)}
    build_all(Pipeline(second))
    touch(slide_root / "demo_slide_02.geojson")  # changes while the other root is in use
    build_all(Pipeline(second))
    back = todo(first)  # root a has the old coverage of demo_slide_02
    assert back == {
        "demo_slide_01": [],
        "demo_slide_02": [ANNOTATION_COVERAGE],
        "case_03_HE-3101e499": [],
    }


def test_removed_companions_and_vanished_slides(slide_root: Path, tmp_path: Path) -> None:
    settings = make_settings(slide_root, tmp_path / "out")
    build_all(Pipeline(settings))
    (slide_root / "demo_slide_01.xml").unlink()
    shutil.move(slide_root / "demo_slide_02.tiff", tmp_path / "elsewhere.tiff")
    pipeline = Pipeline(settings)
    slides = {
        s.key: s for s in Pipeline(make_settings(tmp_path / "none", tmp_path / "x")).slides.scan()
    }
    assert slides == {}
    every = [pipeline.slides.slide(r) for r in ("demo_slide_01.tiff", "demo_slide_02.tiff")]
    plans = {p.slide.key: p for p in plan(pipeline, every)}
    assert plans["demo_slide_01"].todo == [ANNOTATION_COVERAGE]
    assert plans["demo_slide_02"].slide_file_missing and plans["demo_slide_02"].todo == []
    assert plans["demo_slide_01"].states[ANNOTATION_COVERAGE].state == OUT_OF_DATE


def test_the_tissue_mask_reaches_overlay_overlap_only_where_it_is_read(
    slide_root: Path, tmp_path: Path
) -> None:
    """demo_slide_01 loses its own mask: its overlay_overlap then reads the tissue mask, so a
    new tissue setting makes both out of date there, and only the mask elsewhere."""
    settings = make_settings(slide_root, tmp_path / "out")
    build_all(Pipeline(settings))
    (slide_root / "demo_slide_01_tissue_mask.tiff").unlink()
    assert todo(settings)[KEY] == [OVERLAY_OVERLAP]
    pipeline = Pipeline(settings)
    (state,) = [p for p in plan(pipeline, pipeline.slides.scan()) if p.slide.key == KEY]
    assert state.states[OVERLAY_OVERLAP].reason == "overlay file, tissue_mask changed"
    pipeline.build(OVERLAY_OVERLAP, KEY)
    assert todo(settings)[KEY] == []

    tissue = make_settings(slide_root, tmp_path / "out", tissue={"closing_um": 40})
    assert todo(tissue) == {
        "demo_slide_01": [TISSUE_MASK, OVERLAY_OVERLAP],
        "demo_slide_02": [TISSUE_MASK],
        "case_03_HE-3101e499": [TISSUE_MASK],
    }
    # the tiling target is not a tissue setting
    assert todo(make_settings(slide_root, tmp_path / "out", mpp=2.0))[KEY][0] == SLIDE_METADATA
    assert TISSUE_MASK not in todo(make_settings(slide_root, tmp_path / "out", mpp=2.0))[KEY]
    # a deleted mask is rebuilt with the provenance overlay_overlap was computed from
    Path(pipeline.masks.path(KEY).path).unlink()
    assert todo(settings)[KEY] == [TISSUE_MASK]
