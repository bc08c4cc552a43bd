"""The demo-data generator: deterministic, readable by the kernels, never overwrites."""

import hashlib
from pathlib import Path

from wsi_assets.pipeline import demo
from wsi_core.parsers import open_annotations
from wsi_core.slide import open_slide


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_demo_files_are_deterministic_and_never_overwritten(tmp_path: Path) -> None:
    slides = demo.scaled(demo.DEMO_SLIDES, 0.125)
    demo.generate(tmp_path / "a", slides)
    demo.generate(tmp_path / "b", slides)
    assert _digests(tmp_path / "a") == _digests(tmp_path / "b")
    assert len(_digests(tmp_path / "a")) == 9

    mine = tmp_path / "a" / "demo_slide_01.xml"
    mine.write_text("a user's edit")
    assert demo.generate(tmp_path / "a", slides) == []
    assert mine.read_text() == "a user's edit"


def test_demo_slides_have_real_mpp_pyramids_and_labelled_annotations(demo_source: Path) -> None:
    for slide in demo.DEMO_SLIDES:
        with open_slide(demo_source / slide.name) as reader:
            assert reader.mpp == (demo.SLIDE_MPP, demo.SLIDE_MPP)
            assert reader.level_count >= 2
        with open_slide(demo_source / slide.mask_name()) as mask:
            assert mask.mpp == (demo.MASK_MPP, demo.MASK_MPP)
        parser = open_annotations(str(demo_source / slide.annotation_name()))
        assert parser.class_labels() == ["Stroma", "Tumor"]
