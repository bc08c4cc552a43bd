"""The automation on the instance teams run at scale: a real PostgreSQL on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from pg_server import database
from test_automation import Automation, every, run_requested, sweep_tick, swept, touch
from wsi_assets_support import DEMO_KEYS, Harness, make_settings

from wsi_core.tables import ANNOTATION_COVERAGE, TABLES


@pytest.fixture
def pg_instance(postgres_url: str) -> Iterator[dg.DagsterInstance]:
    with database(postgres_url) as url:
        overrides = {"storage": {"postgres": {"postgres_url": url}}}
        with dg.instance_for_test(overrides=overrides) as instance:
            yield instance


def test_new_slides_edited_annotations_and_missing_tables_on_postgres(
    pg_instance: dg.DagsterInstance, slide_root: Path, tmp_path: Path
) -> None:
    harness = Harness(make_settings(slide_root, tmp_path / "out"), pg_instance)
    assert type(pg_instance.event_log_storage).__name__ == "PostgresEventLogStorage"
    automation = Automation(harness)
    harness.discover()
    first = automation.tick()
    assert first == every(DEMO_KEYS)
    run_requested(harness, first)
    assert automation.tick() == {}
    touch(slide_root / "demo_slide_02.geojson")
    harness.discover()
    edited = automation.tick()
    assert edited == {ANNOTATION_COVERAGE: {"demo_slide_02"}}
    run_requested(harness, edited)
    Path(harness.pipeline.tables.path(TABLES[-1], "demo_slide_01").path).unlink()
    assert swept(sweep_tick(harness, now=2e10)) == {"demo_slide_01": [TABLES[-1]]}
