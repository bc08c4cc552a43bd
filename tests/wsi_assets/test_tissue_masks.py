"""Tissue masks stored beside the tables: what is written, its provenance and code version,
ownership, errors that name the slide, and agreement with the demo slides' own masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from shapely.geometry import box
from skimage.morphology import closing, dilation, disk, erosion, footprint_rectangle
from wsi_assets_support import make_settings

from wsi_assets.pipeline.errors import ForeignFileError, InputFileError
from wsi_assets.pipeline.settings import SettingsError
from wsi_assets.pipeline.slides import SlideStore
from wsi_assets.pipeline.tables import TableStore
from wsi_assets.pipeline.tissue_masks import (
    GENERATED_MASK,
    MARK,
    NO_OVERLAY,
    USER_OVERLAY,
    OverlayChoice,
    TissueMaskStore,
    build_tissue_mask,
    choose_overlay,
    detect_in_file,
)
from wsi_core.synthetic import write_pyramid_tiff
from wsi_core.tables import build_overlay_overlap, build_slide_metadata, build_tile_grid
from wsi_core.tables.overlay_overlap import align_overlay
from wsi_core.tissue import TISSUE_MASK, mask_description, read_tissue_mask


def slide_files(settings, name: str):
    """The input files of the slide whose file is ``name``."""
    store = SlideStore(settings)
    (slide,) = [s for s in store.scan() if s.relpath == name]
    return store.files(slide)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_the_demo_slides_masks_come_back(slide_root: Path, tmp_path: Path) -> None:
    """The demo slides are painted from their own 0/255 masks at 8 um/px, blurred by two
    3 x 3 box passes at that scale: beyond two mask pixels from a mask edge, tissue is fully
    painted or fully absent. There the detected mask (on the same grid) misses no tissue,
    and adds only what closing (a 32 um disk, 4 pixels) adds to the painted area (the mask
    grown by the blur's two pixels): the narrow channels between nearby pieces."""
    settings = make_settings(slide_root, tmp_path / "out")
    store = SlideStore(settings)
    radius = round(settings.tissue_parameters().closing_um / 8.0)
    for slide in store.scan():
        files = store.files(slide)
        stored = build_tissue_mask(settings, files)
        ours, mpp = read_tissue_mask(stored.uri)
        truth, truth_mpp = read_tissue_mask(files.files["overlay"].uri)
        assert mpp == pytest.approx(truth_mpp) and ours.shape == truth.shape
        square = footprint_rectangle((5, 5))
        clear = ~(dilation(truth, square) & ~erosion(truth, square))
        assert not (truth & ~ours & clear).any(), slide.relpath
        closed = closing(dilation(truth, square), disk(radius), mode="ignore")
        assert not (ours & ~closed & clear).any(), slide.relpath
        assert iou(ours, truth) >= 0.9, slide.relpath


def test_stored_mask_provenance_and_code_version(slide_root: Path, tmp_path: Path) -> None:
    settings = make_settings(slide_root, tmp_path / "out")
    files = slide_files(settings, "demo_slide_01.tiff")
    stored = build_tissue_mask(settings, files)

    path = tmp_path / "out" / TISSUE_MASK / f"slide={files.slide.key}" / "tissue_mask.tiff"
    assert stored.uri == str(path)
    mask, mpp = read_tissue_mask(path)
    direct = detect_in_file(str(slide_root / "demo_slide_01.tiff"), settings)
    np.testing.assert_array_equal(mask, direct.mask)
    assert mpp == pytest.approx(direct.mpp)
    assert stored.facts["tissue_fraction"] == pytest.approx(direct.tissue_fraction)
    assert mask_description(path).startswith(MARK + "\n")

    store = TissueMaskStore(TableStore(settings.output_root))
    assert store.provenance(files.slide.key) == stored.provenance
    assert stored.provenance.inputs == {"slide": files.version("slide")}
    assert stored.provenance.code_version == settings.code_version(TISSUE_MASK)

    # every tissue parameter, and the slide resolution settings, enter the code version
    other = make_settings(slide_root, tmp_path / "out", tissue={"closing_um": 40})
    assert other.code_version(TISSUE_MASK) != settings.code_version(TISSUE_MASK)
    assert other.table_params(TISSUE_MASK)["tissue"]["closing_um"] == 40
    mpp_set = make_settings(slide_root, tmp_path / "out", slide_mpp=0.3)
    assert mpp_set.code_version(TISSUE_MASK) != settings.code_version(TISSUE_MASK)
    # and other tables' settings do not
    tiles = make_settings(slide_root, tmp_path / "out", tile_extent=64, stride=64)
    assert tiles.code_version(TISSUE_MASK) == settings.code_version(TISSUE_MASK)

    rebuilt = build_tissue_mask(other, files)  # ours: replaced
    assert store.provenance(files.slide.key) == rebuilt.provenance != stored.provenance
    assert store.remove(files.slide.key) == str(path) and not path.exists()
    assert store.remove(files.slide.key) is None


def test_a_foreign_file_is_never_overwritten_or_removed(slide_root: Path, tmp_path: Path) -> None:
    settings = make_settings(slide_root, tmp_path / "out")
    files = slide_files(settings, "demo_slide_01.tiff")
    store = TissueMaskStore(TableStore(settings.output_root))
    path = Path(store.path(files.slide.key).path)
    path.parent.mkdir(parents=True)
    write_pyramid_tiff(path, np.zeros((16, 16), np.uint8), 8.0, 1)  # someone's own mask
    before = path.read_bytes()
    with pytest.raises(ForeignFileError, match=r"tissue_mask\.tiff: a file not written by"):
        build_tissue_mask(settings, files)
    with pytest.raises(ForeignFileError, match="left where it is"):
        store.remove(files.slide.key)
    assert path.read_bytes() == before
    assert store.provenance(files.slide.key) is None


def test_a_slide_without_resolution_names_the_file_and_the_setting(tmp_path: Path) -> None:
    root = tmp_path / "slides"
    root.mkdir()
    write_pyramid_tiff(
        root / "bare.tiff", np.full((64, 64, 3), 240, np.uint8), 1.0, 1, resolution_unit=None
    )
    settings = make_settings(root, tmp_path / "out")
    with pytest.raises(InputFileError, match=r"bare\.tiff: .*set WSI_SLIDE_MPP"):
        build_tissue_mask(settings, slide_files(settings, "bare.tiff"))
    with_mpp = make_settings(root, tmp_path / "out", slide_mpp=2.0)
    stored = build_tissue_mask(with_mpp, slide_files(with_mpp, "bare.tiff"))
    assert stored.facts["tissue_fraction"] == 0.0 and stored.facts["mpp"] == [8.0, 8.0]


def test_bad_tissue_settings_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WSI_TISSUE", '{"closing": 3}')
    with pytest.raises(
        SettingsError, match=r"WSI_TISSUE: .*unknown tissue parameters \['closing'\]"
    ):
        make_settings("slides", "out")
    monkeypatch.setenv("WSI_TISSUE", '{"min_saturation": 0.5, "max_saturation": 0.2}')
    with pytest.raises(SettingsError, match=r"WSI_TISSUE: .*min_saturation"):
        make_settings("slides", "out")
    monkeypatch.setenv("WSI_TISSUE", '{"pen_hue": null, "target_mpp": 16}')
    parameters = make_settings("slides", "out").tissue_parameters()
    assert parameters.pen_hue is None and parameters.target_mpp == 16


def test_a_users_overlay_wins_over_the_generated_mask(slide_root: Path, tmp_path: Path) -> None:
    """The demo slides have their own masks: those are chosen. Without one, the stored
    tissue mask is, with its provenance id as the version; with neither, nothing."""
    settings = make_settings(slide_root, tmp_path / "out")
    store = TissueMaskStore(TableStore(settings.output_root))
    files = slide_files(settings, "demo_slide_01.tiff")
    user = files.files["overlay"]
    assert choose_overlay(files, store) == OverlayChoice(user.uri, USER_OVERLAY, user.version)

    Path(user.uri).unlink()
    files = slide_files(settings, "demo_slide_01.tiff")
    assert choose_overlay(files, store) == OverlayChoice(None, NO_OVERLAY, "missing")
    stored = build_tissue_mask(settings, files)
    chosen = choose_overlay(files, store)
    assert chosen == OverlayChoice(stored.uri, GENERATED_MASK, stored.provenance.id)

    # and overlay_overlap reads it like a user's mask: tiles of 64 level-0 pixels (0.5 um)
    # are 4 x 4 mask pixels (8 um), so each tile's tissue fraction is that block's mean
    slide = files.files["slide"].uri
    meta, _ = build_slide_metadata(
        slide, slide_key="k", uri=slide, relpath="r", file_size=1, target_mpp=0.5
    )
    row = meta.to_pylist()[0]
    extent0, base = (row["level_width"][0], row["level_height"][0]), (0.5, 0.5)
    alignment = align_overlay(chosen.uri, extent0, base)
    assert (alignment.source, alignment.warning, alignment.mpp) == ("file", None, (8.0, 8.0))
    grid = build_tile_grid(meta, 64, 64, "keep")
    overlap, seen = build_overlay_overlap(grid, chosen.uri, box(0, 0, 64, 64), alignment)
    assert seen == ["0", "255"]
    mask, _ = read_tissue_mask(chosen.uri)
    blocks = mask.reshape(mask.shape[0] // 4, 4, mask.shape[1] // 4, 4).mean(axis=(1, 3))
    rows, cols = grid["tile_y"].to_numpy() // 64, grid["tile_x"].to_numpy() // 64
    np.testing.assert_array_equal(overlap["tissue_fraction"].to_numpy(), blocks[rows, cols])
