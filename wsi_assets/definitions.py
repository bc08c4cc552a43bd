"""The Dagster code location: ``dagster dev`` (``workspace.yaml``) loads ``defs`` from here.

Settings are read from ``WSI_*`` environment variables when the location loads, not when this
module is imported; tests and tools build their own definitions with ``build_defs(settings)``.
"""

import dagster as dg

from wsi_assets.assets import build_assets
from wsi_assets.automation import TABLE_KEYS, automation_sensor, sweep_sensor
from wsi_assets.pipeline.settings import Settings
from wsi_assets.ray_resource import slide_ray
from wsi_assets.sensors import slide_sensor

#: The job that builds one slide's tables (the sweep's runs, ``make run``, a click in the UI).
SLIDE_JOB = "slide_tables"
RESOURCE_KEY = "settings"
#: The Ray of runs with many slides (connected only by them).
RAY_KEY = "ray"


def slide_job():
    """The tables of one slide partition per run, every step in the run's own process."""
    return dg.define_asset_job(
        SLIDE_JOB,
        selection=dg.AssetSelection.assets(*TABLE_KEYS),
        executor_def=dg.in_process_executor,
        description="The tables of one slide.",
    )


def build_defs(settings: Settings) -> dg.Definitions:
    """Assets, checks, job and sensors bound to ``settings``; the same object is the run-time
    resource and the source of the tables' code versions."""
    return dg.Definitions(
        assets=build_assets(settings),
        jobs=[slide_job()],
        sensors=[slide_sensor(), automation_sensor(), sweep_sensor(SLIDE_JOB)],
        resources={RESOURCE_KEY: settings, RAY_KEY: slide_ray()},
        executor=dg.in_process_executor,
    )


@dg.definitions
def defs() -> dg.Definitions:
    """The code location, with settings from the environment."""
    return build_defs(Settings.load())
