"""``tile_dataset``: the labelled tiles of every slide, checked against a brute-force pandas
join of the per-slide Parquet tables with the same rules, kept current per slide (only the
fragments of changed slides are recomputed), by declarative automation in a real instance."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from test_automation import Automation, run_requested
from wsi_assets_support import DEMO_KEYS, Harness, make_settings

from wsi_assets.automation import DATASET_KEY
from wsi_assets.pipeline.outputs import SLIDE_OUTPUTS
from wsi_assets.pipeline.settings import Settings, SettingsError
from wsi_assets.pipeline.steps import Pipeline
from wsi_assets.pipeline.tile_dataset import build_tile_dataset, summarize
from wsi_core.tables import ANNOTATION_COVERAGE
from wsi_core.tables.tile_dataset import TILE_DATASET, DatasetRules
from wsi_core.tiling.utils import row_hash

KEYS = ["slide_key", "tile_x", "tile_y", "level"]
#: Tiles small enough (32 um) that the demo slides' annotated regions fill some of them.
SMALL = {"tile_extent": 32, "stride": 32}


def build_tables(pipeline: Pipeline) -> None:
    for slide in pipeline.slides.scan():
        for table in SLIDE_OUTPUTS:
            pipeline.build(table, slide.key)


def expected_split(key: str, rules: DatasetRules) -> str:
    """The documented rule, written again: SHA-256 of "seed\\nkey", its first 8 bytes over
    2**64, against the cumulative fractions train, validation, test."""
    draw = int(hashlib.sha256(f"{rules.seed}\n{key}".encode()).hexdigest()[:16], 16) / 2**64
    train, validation = rules.split["train"], rules.split["validation"]
    return "train" if draw < train else "validation" if draw < train + validation else "test"


def brute_force(root: Path, settings: Settings) -> pd.DataFrame:
    """The dataset by hand: a pandas join of the stored per-slide tables, then the rules row
    by row in plain Python."""
    rules, classes = settings.dataset_rules(), list(settings.label_classes)
    read = {
        t: pd.read_parquet(root / t).drop(columns="slide")
        for t in SLIDE_OUTPUTS
        if t != "tissue_mask"
    }
    joined = (
        read["tile_grid"]
        .merge(read["annotation_coverage"], on=KEYS)
        .merge(read["overlay_overlap"][[*KEYS, "tissue_fraction"]], on=KEYS)
        .merge(read["slide_metadata"][["slide_key", "uri"]], on="slide_key")
    )
    rows = []
    for row in joined.to_dict("records"):
        tissue = row["tissue_fraction"]
        if rules.min_tissue_fraction > 0 and not (
            pd.notna(tissue) and tissue >= rules.min_tissue_fraction
        ):
            continue
        coverage = {name: row[f"coverage_{name}"] for name in classes}
        annotated = any(pd.notna(v) for v in coverage.values())
        if not annotated and not rules.keep_unannotated:
            continue
        best = None
        for name in classes:  # highest coverage among classes at their threshold; ties: first
            value = coverage[name]
            reaches = pd.notna(value) and value >= rules.threshold(name)
            if reaches and (best is None or value > coverage[best]):
                best = name
        if best is None and annotated:
            if rules.unlabelled is None:
                continue
            best = rules.unlabelled
        identity = {
            "slide_key": row["slide_key"],
            "level": int(row["level"]),
            "tile_x": int(row["tile_x"]),
            "tile_y": int(row["tile_y"]),
            "tile_extent_x": int(row["tile_extent_x"]),
            "tile_extent_y": int(row["tile_extent_y"]),
        }
        rows.append(
            {
                **identity,
                "path": row["uri"],
                "x0": row["x0"],
                "y0": row["y0"],
                "extent0_x": row["extent0_x"],
                "extent0_y": row["extent0_y"],
                "mpp_x": row["mpp_x"],
                "mpp_y": row["mpp_y"],
                "label": best,
                **{f"coverage_{name}": coverage[name] for name in classes},
                "tissue_fraction": tissue,
                "split": expected_split(row["slide_key"], rules),
                "row_hash": row_hash(identity, "row_hash")["row_hash"],
            }
        )
    return pd.DataFrame(rows)


def stored_dataset(root: Path) -> pd.DataFrame:
    return pd.read_parquet(root / TILE_DATASET).drop(columns="slide")


def same_rows(got: pd.DataFrame, want: pd.DataFrame) -> None:
    order = ["slide_key", "tile_y", "tile_x"]
    got = got.sort_values(order).reset_index(drop=True)
    want = want[got.columns].sort_values(order).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want, check_dtype=False, check_categorical=False)


@pytest.mark.parametrize(
    "rules",
    [
        {},
        {
            "min_tissue_fraction": 0.0,
            "thresholds": {"tumor": 0.2},
            "default_threshold": 0.7,
            "unlabelled": None,
            "keep_unannotated": True,
            "seed": 7,
            "split": {"train": 0.34, "validation": 0.33, "test": 0.33},
        },
    ],
)
def test_the_dataset_equals_a_brute_force_join(
    slide_root: Path, tmp_path: Path, rules: dict
) -> None:
    (slide_root / "demo_slide_02.geojson").unlink()  # a slide without annotation
    settings = make_settings(slide_root, tmp_path / "out", dataset=rules, **SMALL)
    pipeline = Pipeline(settings)
    build_tables(pipeline)
    outcome = build_tile_dataset(pipeline)
    assert outcome.rebuilt == sorted(DEMO_KEYS) and not outcome.waiting
    got = stored_dataset(tmp_path / "out")
    want = brute_force(tmp_path / "out", settings)
    assert len(want) > 10 and want["label"].nunique() >= 2  # not a vacuous comparison
    same_rows(got, want)
    # splits are per slide: one set per slide, never a slide in two
    assert (got.groupby("slide_key")["split"].nunique() == 1).all()
    assert got["row_hash"].is_unique
    if rules:
        assert got[got.slide_key == "demo_slide_02"]["label"].isna().all()
        assert (got.slide_key == "demo_slide_02").any()
    else:
        assert "demo_slide_02" not in set(got.slide_key)  # unannotated: left out by default
        assert set(got.label) <= {"tumor", "stroma", "background"}


def test_one_changed_annotation_recomputes_only_its_slide(slide_root: Path, tmp_path: Path):
    settings = make_settings(slide_root, tmp_path / "out", **SMALL)
    pipeline = Pipeline(settings)
    build_tables(pipeline)
    build_tile_dataset(pipeline)
    before = stored_dataset(tmp_path / "out")
    fragments = {key: Path(pipeline.tables.path(TILE_DATASET, key).path) for key in DEMO_KEYS}
    stamps = {key: os.stat(path).st_mtime_ns for key, path in fragments.items()}
    again = build_tile_dataset(pipeline)
    assert again.rebuilt == [] and again.reused == sorted(DEMO_KEYS)

    # demo_slide_01's tumour region becomes stroma
    annotation = slide_root / "demo_slide_01.xml"
    annotation.write_text(
        annotation.read_text().replace('PartOfGroup="Tumor"', 'PartOfGroup="Stroma"')
    )
    pipeline.build(ANNOTATION_COVERAGE, "demo_slide_01")
    changed = build_tile_dataset(pipeline)
    assert changed.rebuilt == ["demo_slide_01"]
    assert {k: os.stat(p).st_mtime_ns for k, p in fragments.items() if k != "demo_slide_01"} == {
        k: v for k, v in stamps.items() if k != "demo_slide_01"
    }
    after = stored_dataset(tmp_path / "out")
    others = lambda frame: frame[frame.slide_key != "demo_slide_01"].reset_index(drop=True)  # noqa: E731
    pd.testing.assert_frame_equal(others(after), others(before))
    mine_before = before[before.slide_key == "demo_slide_01"]
    mine_after = after[after.slide_key == "demo_slide_01"]
    assert (mine_before.label == "tumor").any() and not (mine_after.label == "tumor").any()
    same_rows(after, brute_force(tmp_path / "out", settings))


def test_retired_slides_leave_the_dataset_and_settings_are_checked(
    slide_root: Path, tmp_path: Path
) -> None:
    settings = make_settings(slide_root, tmp_path / "out")
    pipeline = Pipeline(settings)
    build_tables(pipeline)
    build_tile_dataset(pipeline)
    (slide_root / "demo_slide_01.tiff").unlink()
    removed = pipeline.retire("demo_slide_01")
    assert str(pipeline.tables.path(TILE_DATASET, "demo_slide_01")) in removed
    assert "demo_slide_01" not in set(stored_dataset(tmp_path / "out").slide_key)
    with pytest.raises(SettingsError, match=r"WSI_DATASET: .*sum to 1"):
        make_settings(
            slide_root,
            tmp_path / "out",
            dataset={"split": {"train": 1.0, "validation": 0.5, "test": 0.0}},
        )
    with pytest.raises(
        SettingsError, match=r"WSI_DATASET: .*unknown tile_dataset rules \['min_tissue'\]"
    ):
        make_settings(slide_root, tmp_path / "out", dataset={"min_tissue": 0.3})


def test_automation_keeps_the_dataset_current(harness: Harness, slide_root: Path) -> None:
    automation = Automation(harness)
    job = harness.defs.resolve_implicit_job_def_def_for_assets([DATASET_KEY])
    assert job is not None

    def tick_and_run() -> bool:
        """One tick of automation (its cursor kept): True when it asks for the dataset."""
        result = dg.evaluate_automation_conditions(
            defs=harness.defs, instance=harness.instance, cursor=automation.cursor
        )
        automation.cursor = result.cursor
        return bool(result.get_num_requested(DATASET_KEY))

    harness.discover()
    requested = automation.tick()  # the slides' tables
    run_requested(harness, requested)
    assert tick_and_run()  # the tables were materialized: the dataset follows
    result = job.execute_in_process(instance=harness.instance, asset_selection=[DATASET_KEY])
    assert result.success
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert set(checks) == {"one_split_per_slide", "unique_row_hash"}
    assert all(c.passed for c in checks.values())
    event = harness.instance.get_latest_materialization_event(DATASET_KEY)
    assert event is not None and event.asset_materialization is not None
    metadata = event.asset_materialization.metadata
    got = stored_dataset(Path(harness.settings.output_root))
    assert metadata["dagster/row_count"].value == len(got)
    counts = got.assign(label=got.label.fillna("(none)")).groupby(["label", "split"]).size()
    assert metadata["tiles_per_label_and_split"].value == {
        label: {split: int(n) for (lab, split), n in counts.items() if lab == label}
        for label in counts.index.get_level_values(0)
    }
    splits = {k: expected_split(k, harness.settings.dataset_rules()) for k in DEMO_KEYS}
    assert metadata["slides_per_split"].value == {
        s: sum(v == s for v in splits.values()) for s in ("train", "validation", "test")
    }
    assert sorted(metadata["fragments_rebuilt"].value) == sorted(DEMO_KEYS)
    assert not tick_and_run()  # nothing changed since

    annotation = slide_root / "demo_slide_01.xml"
    stat = annotation.stat()
    os.utime(annotation, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    harness.discover()
    requested = automation.tick()
    assert requested == {ANNOTATION_COVERAGE: {"demo_slide_01"}}
    run_requested(harness, requested)
    assert tick_and_run()
    assert job.execute_in_process(instance=harness.instance, asset_selection=[DATASET_KEY]).success
    event = harness.instance.get_latest_materialization_event(DATASET_KEY)
    assert event is not None and event.asset_materialization is not None
    assert event.asset_materialization.metadata["fragments_rebuilt"].value == ["demo_slide_01"]
    assert np.isfinite(got.tissue_fraction).all()


def test_the_summary_finds_a_slide_in_two_sets_and_repeated_ids(
    slide_root: Path, tmp_path: Path
) -> None:
    """What the asset's two checks read: a fragment that repeats a slide's rows with one row
    moved to another set is caught by both."""
    pipeline = Pipeline(make_settings(slide_root, tmp_path / "out", **SMALL))
    build_tables(pipeline)
    outcome = build_tile_dataset(pipeline)
    sound = summarize(pipeline, outcome.slides)
    assert sound.slides_in_two_splits == [] and sound.repeated_row_hashes == 0
    assert sound.tiles == len(stored_dataset(tmp_path / "out"))
    key = "demo_slide_01"
    data, origin = pipeline.tables.read(TILE_DATASET, key)
    assert origin is not None and data.num_rows > 1
    splits = data["split"].to_pylist()
    moved = "test" if splits[0] != "test" else "train"
    bad = data.set_column(
        data.schema.get_field_index("split"), "split", pa.array([moved, *splits[1:]])
    )
    pipeline.tables.write(TILE_DATASET, "a_copy", bad, origin)
    found = summarize(pipeline, [*outcome.slides, "a_copy"])
    assert found.slides_in_two_splits == [key]
    assert found.repeated_row_hashes == data.num_rows
