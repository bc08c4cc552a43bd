"""Helpers shared by the wsi_assets tests: settings that point at temporary folders, and a
harness that runs the Dagster definitions against a real (temporary) instance."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pyarrow as pa

from wsi_assets import sensors
from wsi_assets.definitions import SLIDE_JOB, build_defs
from wsi_assets.pipeline.settings import Settings
from wsi_assets.pipeline.steps import Pipeline

#: Test slides are the demo set at a quarter of the size: level 1 (1 um/px) is 512-768 px.
SCALE = 0.25
TILE = 128
#: Partition keys of the demo slides.
DEMO_KEYS = ("case_03_HE-3101e499", "demo_slide_01", "demo_slide_02")


def make_settings(slide_root: str | Path, output_root: str | Path, **overrides: object) -> Settings:
    """Settings for tests: given roots, small tiles (the environment is cleared by conftest)."""
    values: dict[str, object] = {"tile_extent": TILE, "stride": TILE, "mpp": 1.0, **overrides}
    return Settings.load(slide_root=str(slide_root), output_root=str(output_root), **values)


@dataclass
class Harness:
    """Definitions bound to test settings, the instance they run in, and the engine-neutral
    pipeline over the same settings."""

    settings: Settings
    instance: dg.DagsterInstance

    def __post_init__(self) -> None:
        self.defs = build_defs(self.settings)
        self.pipeline = Pipeline(self.settings)

    def discover(self, cursor: str | None = None) -> dg.SensorResult | dg.SkipReason:
        """One ``slide_sensor`` tick with no per-tick limit, applied to the instance."""
        return sensors.tick(self.instance, self.settings, cursor)

    def materialize(
        self, key: str, tables: Sequence[str] | None = None, raise_on_error: bool = True
    ) -> dg.ExecuteInProcessResult:
        """Run the slide job for one partition (all tables, or ``tables``)."""
        job = self.defs.resolve_job_def(SLIDE_JOB)
        selection = None if tables is None else [dg.AssetKey(t) for t in tables]
        return job.execute_in_process(
            instance=self.instance,
            partition_key=key,
            asset_selection=selection,
            raise_on_error=raise_on_error,
        )

    def table(self, table: str, key: str) -> pa.Table:
        return self.pipeline.tables.read(table, key)[0]

    def rebuild(self, **overrides: object) -> Harness:
        """The same roots and instance with other settings (other code versions)."""
        settings = make_settings(self.settings.slide_root, self.settings.output_root, **overrides)
        return Harness(settings, self.instance)


def failure_messages(result: dg.ExecuteInProcessResult) -> str:
    """The descriptions of every step failure of a run, one per line."""
    lines = []
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data.error is not None:
            cause = event.step_failure_data.user_failure_data
            lines.append(cause.description if cause else event.step_failure_data.error.message)
    return "\n".join(line or "" for line in lines)
