"""The Ray of a run: dagster-ray's ``LocalRay``, connected only when a run has many slides.

A run of one slide (a sensor's run, a click in the UI) never starts Ray: the resource is
configured not to connect when it is set up, and :meth:`SlideRay.start` is called only by a
run with several slides. Then it reuses a Ray this process already holds, else connects to the
cluster at ``RAY_ADDRESS`` (``ray.init`` reads it), else starts one local Ray for the run. At
the end of the run dagster-ray disconnects what this resource connected: a local Ray it
started is shut down, a cluster is only left, and a Ray it did not start is not touched.

Under the in-process executor (this project's) every step of a run shares the resource, so a
run starts at most one Ray.
"""

from __future__ import annotations

import os

import dagster as dg
from dagster_ray import Lifecycle, LocalRay

RAY_ADDRESS = "RAY_ADDRESS"


class SlideRay(LocalRay):
    """Ray for batched runs. Build it with :func:`slide_ray` (connects on first use, not when
    the run starts)."""

    def start(self, context: dg.AssetExecutionContext) -> str:
        """Make Ray available to this process and say which one it is."""
        import ray

        if ray.is_initialized():
            return "the Ray this process already had"
        address = os.environ.get(RAY_ADDRESS)
        self.connect(context)
        if address:
            return f"the Ray cluster at {address}"
        return "a local Ray started for this run"


def slide_ray() -> SlideRay:
    """The resource as the definitions use it. The lifecycle is given here, not as a field
    default: Dagster's config schema takes nested defaults from the field's class, so a
    subclass default would be replaced by dagster-ray's (connect at start-up)."""
    return SlideRay(lifecycle=Lifecycle(connect=False, cleanup="never"))
