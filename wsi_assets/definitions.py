"""The Dagster code location: ``dagster dev`` (workspace.yaml) loads ``defs`` from here.

Settings come from ``WSI_*`` environment variables with defaults that work on a fresh clone
(see ``wsi_assets.config``). Tests and tools build their own with ``build_defs(settings)``.
"""

from __future__ import annotations

from dagster import AssetSelection, Definitions, define_asset_job, in_process_executor

from . import checks, schedules, sensors
from .assets import build_assets
from .config import WSISettings
from .keys import SLIDE_JOB, TABLE_KEYS

RESOURCE_KEY = "settings"


def build_job():
    """The per-slide job: the four tables and their checks, one slide partition per run, all
    steps in the run's own process (no process per step; a many-slide engine such as Ray can
    come later as another job)."""
    return define_asset_job(
        SLIDE_JOB,
        selection=AssetSelection.assets(*TABLE_KEYS),
        executor_def=in_process_executor,
        description="All tables of one slide (runs from the sensor, the sweep, or the UI).",
    )


def build_defs(settings: WSISettings | None = None) -> Definitions:
    """Assets, checks, job, sensor and schedule bound to ``settings`` (default: from env)."""
    settings = WSISettings.from_env() if settings is None else settings
    return Definitions(
        assets=build_assets(settings),
        asset_checks=checks.build(),
        jobs=[build_job()],
        sensors=[sensors.build()],
        schedules=[schedules.build()],
        resources={RESOURCE_KEY: settings},
        executor=in_process_executor,
    )


defs = build_defs()
