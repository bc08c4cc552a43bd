"""Helpers shared by the wsi_assets tests (imported by conftest.py and test modules)."""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
from dagster import AssetKey, DagsterInstance, Definitions, ExecuteInProcessResult

from wsi_assets.config import WSISettings
from wsi_assets.definitions import build_defs
from wsi_assets.keys import SLIDE_JOB
from wsi_assets.sensors import apply_sensor_tick
from wsi_assets.tables import read_table

#: Test slides are the demo set at a quarter of the size: level 1 (1 um/px) is 512-768 px.
SCALE = 0.25
TILE = 128


def make_settings(
    slide_root: str | Path, output_root: str | Path, **overrides: object
) -> WSISettings:
    """Settings for tests: given roots, small tiles, nothing from the environment."""
    values = {"tile_extent": TILE, "stride": TILE, "mpp": 1.0, **overrides}
    return WSISettings.from_env(
        {}, slide_root=str(slide_root), output_root=str(output_root), **values
    )


@dataclass
class Pipeline:
    """Definitions bound to test settings, with the instance they run in."""

    settings: WSISettings
    defs: Definitions
    instance: DagsterInstance

    def discover(self):
        """One sensor evaluation, applied (partitions added, observations recorded)."""
        return apply_sensor_tick(self.instance, self.defs)

    def materialize(
        self, key: str, selection: Sequence[str] | None = None, raise_on_error: bool = True
    ) -> ExecuteInProcessResult:
        """Run the slide job for one partition (all tables, or ``selection``)."""
        job = self.defs.resolve_job_def(SLIDE_JOB)
        assets = None if selection is None else [AssetKey(name) for name in selection]
        return job.execute_in_process(
            instance=self.instance,
            partition_key=key,
            asset_selection=assets,
            raise_on_error=raise_on_error,
        )

    def table(self, asset: str, key: str) -> pa.Table:
        return read_table(self.settings.output_root, asset, key)

    def rebuild(self, **overrides: object) -> "Pipeline":
        """The same roots and instance with other settings (new code versions)."""
        settings = make_settings(self.settings.slide_root, self.settings.output_root, **overrides)
        return Pipeline(settings, build_defs(settings), self.instance)
