"""The ``slides`` dynamic partitions: one partition per slide, keyed by
:func:`wsi_assets.pipeline.keys.slide_key` (a pure function of the slide's relative path)."""

from __future__ import annotations

import dagster as dg

PARTITIONS_NAME = "slides"
SLIDES = dg.DynamicPartitionsDefinition(name=PARTITIONS_NAME)
#: The run tag Dagster sets to a run's partition key.
PARTITION_TAG = "dagster/partition"
