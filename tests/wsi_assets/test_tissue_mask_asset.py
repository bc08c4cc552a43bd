"""The tissue mask as an asset of every slide, in a real Dagster instance: built beside the
tables, read by ``overlay_overlap`` when the slide has no mask of its own (the user's mask
always wins), shown with its picture, kept current by the sweep, removed by ``retire``."""

from __future__ import annotations

import base64
import io
import json
import re
import time
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
from PIL import Image
from test_assets import latest_metadata
from test_automation import Automation, run_requested, sweep_tick, swept
from wsi_assets_support import DEMO_KEYS, Harness

from wsi_assets.automation import GRACE_SECONDS
from wsi_assets.pipeline.steps import Pipeline
from wsi_assets.retire import retire
from wsi_core.tables import OVERLAY_OVERLAP, TILE_GRID
from wsi_core.tissue import TISSUE_MASK, read_tissue_mask

KEY = "demo_slide_01"


def drop_own_mask(slide_root: Path, stem: str = KEY) -> None:
    (slide_root / f"{stem}_tissue_mask.tiff").unlink()


def block_means(mask: np.ndarray, mask_mpp: float, grid, base_mpp: float) -> np.ndarray:
    """Brute force: per tile, the share of tissue pixels among the mask pixels under it
    (tiles are whole mask pixels here: their level-0 edges fall on mask pixel edges; a tile
    past the slide's edge counts only the mask pixels it covers)."""
    scale = base_mpp / mask_mpp  # mask pixels per level-0 pixel
    out = []
    for row in grid.to_pylist():
        edges = np.array(
            [row["x0"], row["y0"], row["x0"] + row["extent0_x"], row["y0"] + row["extent0_y"]]
        )
        c0, r0, c1, r1 = edges * scale
        assert np.allclose([c0, r0, c1, r1], np.round([c0, r0, c1, r1])), "not whole pixels"
        c0, r0, c1, r1 = (round(float(v)) for v in (c0, r0, c1, r1))
        block = mask[r0 : min(r1, mask.shape[0]), c0 : min(c1, mask.shape[1])]
        out.append(block.mean() if block.size else np.nan)
    return np.array(out)


def test_a_slide_without_a_mask_gets_one_and_overlay_overlap_reads_it(
    harness: Harness, slide_root: Path
) -> None:
    drop_own_mask(slide_root)
    harness.discover()
    assert harness.materialize(KEY).success

    path = Path(harness.pipeline.masks.path(KEY).path)
    mask, mpp = read_tissue_mask(path)
    assert 0.05 < mask.mean() < 0.95  # tissue and background both found
    meta = harness.table("slide_metadata", KEY).to_pylist()[0]
    assert meta["base_mpp_x"] == meta["base_mpp_y"] and mpp[0] == mpp[1]
    grid = harness.table(TILE_GRID, KEY)
    overlap = harness.table(OVERLAY_OVERLAP, KEY)
    expected = block_means(mask, mpp[0], grid, meta["base_mpp_x"])
    got = overlap["tissue_fraction"].to_numpy(zero_copy_only=False).astype(float)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    assert 0 < np.nanmean(got) < 1

    said = latest_metadata(harness, OVERLAY_OVERLAP, KEY)
    assert said["overlay_source"].value == TISSUE_MASK
    assert said["overlay_file"].value == str(path)
    mask_said = latest_metadata(harness, TISSUE_MASK, KEY)
    assert mask_said["dagster/uri"].value == str(path)
    assert mask_said["tissue_fraction"].value == pytest.approx(mask.mean())
    parameters = json.loads(json.dumps(harness.settings.table_params(TISSUE_MASK)))
    assert mask_said["parameters"].value == parameters  # every tissue setting, as JSON
    stored = harness.pipeline.masks.provenance(KEY)
    assert stored is not None and mask_said["provenance"].value == stored.id
    assert said["tissue_mask_provenance"].value == stored.id
    # the picture: a PNG of the mask over the slide, the one stored beside the mask
    (encoded,) = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", mask_said["picture"].value)
    shown = Image.open(io.BytesIO(base64.b64decode(encoded))).convert("RGB")
    stored = Image.open(path.parent / "_preview.png").convert("RGB")
    if shown.size == stored.size:  # else the event holds a scaled-down copy
        np.testing.assert_array_equal(np.asarray(shown), np.asarray(stored))
    else:
        assert shown.width < stored.width and shown.height < stored.height
    record = harness.instance.get_latest_materialization_event(dg.AssetKey(TISSUE_MASK))
    assert record is not None
    assert record.tags["dagster/code_version"] == harness.settings.code_version(TISSUE_MASK)


def test_a_users_mask_wins_and_the_metadata_says_so(harness: Harness, slide_root: Path) -> None:
    harness.discover()
    key = "demo_slide_02"
    assert harness.materialize(key).success
    said = latest_metadata(harness, OVERLAY_OVERLAP, key)
    assert said["overlay_source"].value == "user file"
    assert said["overlay_file"].value == str(slide_root / f"{key}_tissue_mask.tiff")
    assert Path(harness.pipeline.masks.path(key).path).exists()  # built all the same
    # the user's mask, not ours: the tissue fractions are those of the user's file
    user, mpp = read_tissue_mask(slide_root / f"{key}_tissue_mask.tiff")
    meta = harness.table("slide_metadata", key).to_pylist()[0]
    expected = block_means(user, mpp[0], harness.table(TILE_GRID, key), meta["base_mpp_x"])
    got = harness.table(OVERLAY_OVERLAP, key)["tissue_fraction"].to_numpy(zero_copy_only=False)
    np.testing.assert_allclose(got.astype(float), expected, rtol=0, atol=1e-12)


def test_overlay_mpp_settings_never_move_the_generated_mask(
    harness: Harness, slide_root: Path
) -> None:
    """WSI_OVERLAY_MPP* are for users' files: a wrong override would fail a user's mask,
    and leaves the tissue mask's overlay_overlap as it was."""
    drop_own_mask(slide_root)
    plain = harness.pipeline
    for table in ("slide_metadata", TILE_GRID, TISSUE_MASK, OVERLAY_OVERLAP):
        plain.build(table, KEY)
    before = harness.table(OVERLAY_OVERLAP, KEY)
    skewed = Pipeline(harness.rebuild(overlay_mpp_override=3.0, overlay_mpp=5.0).settings)
    skewed.build(OVERLAY_OVERLAP, KEY)
    assert harness.table(OVERLAY_OVERLAP, KEY).equals(before)


def test_changing_wsi_tissue_rebuilds_the_mask_and_overlay_overlap_only(
    harness: Harness, slide_root: Path
) -> None:
    drop_own_mask(slide_root)
    automation = Automation(harness)
    harness.discover()
    run_requested(harness, automation.tick())
    assert automation.tick() == {}
    later = time.time() + 2 * GRACE_SECONDS
    assert swept(sweep_tick(harness, later)) == {}
    old_mask = harness.pipeline.masks.provenance(KEY)
    before = {
        t: harness.table(t, KEY) for t in ("slide_metadata", TILE_GRID, "annotation_coverage")
    }

    tissue = harness.rebuild(tissue={"closing_um": 0, "min_object_um2": 0, "max_hole_um2": 0})
    requests = swept(sweep_tick(tissue, later))
    # only the slide that reads the mask needs its overlay_overlap again
    assert requests == {
        key: [TISSUE_MASK, OVERLAY_OVERLAP] if key == KEY else [TISSUE_MASK] for key in DEMO_KEYS
    }
    for key, tables in requests.items():
        assert tissue.materialize(key, tables).success
    new_mask = tissue.pipeline.masks.provenance(KEY)
    assert new_mask is not None and old_mask is not None and new_mask.id != old_mask.id
    origin = tissue.pipeline.tables.read(OVERLAY_OVERLAP, KEY)[1]
    assert origin is not None and origin.inputs[TISSUE_MASK] == new_mask.id
    for table, data in before.items():  # the other tables were not touched
        assert tissue.table(table, KEY).equals(data)
    assert swept(sweep_tick(tissue, later)) == {}
    # Dagster's graph has overlay_overlap below tissue_mask for every slide (no conditional
    # edges): declarative automation follows the new masks with overlay_overlap, nothing else
    follow = Automation(tissue)
    follow.cursor = automation.cursor
    assert set(follow.tick()) <= {OVERLAY_OVERLAP}


def test_retire_removes_the_mask(harness: Harness, slide_root: Path) -> None:
    harness.discover()
    assert harness.materialize(KEY).success
    path = Path(harness.pipeline.masks.path(KEY).path)
    assert path.exists() and (path.parent / "_preview.png").exists()
    (slide_root / f"{KEY}.tiff").unlink()
    assert retire(harness.instance, harness.settings, [KEY]) == 0
    assert not path.exists() and not (path.parent / "_preview.png").exists()
