"""``python -m wsi_assets.retire KEY [KEY ...]``: retire slides that left the slide root.

Deletes each slide's tables (only files this project wrote), its registration, and its
``slides`` partition in the Dagster instance (``DAGSTER_HOME``), so that the UI, the sweep and
``pyarrow.dataset`` scans of the output root forget it. Remove or move the slide file first:
a slide still under the slide root is registered again by the next sensor tick. Settings
come from the same ``WSI_*`` variables as the code location.
"""

import argparse
import sys
from collections.abc import Sequence

import dagster as dg

from wsi_assets.partitions import PARTITIONS_NAME
from wsi_assets.pipeline.settings import Settings, SettingsError
from wsi_assets.pipeline.steps import Pipeline
from wsi_core.errors import WSIError


def retire(instance: dg.DagsterInstance, settings: Settings, keys: Sequence[str]) -> int:
    """Retire ``keys``; print what was removed; 0 when every key was retired."""
    pipeline = Pipeline(settings)
    failed = 0
    for key in keys:
        try:
            removed = pipeline.retire(key)
        except WSIError as error:
            print(f"{key}: {error}", file=sys.stderr)
            failed += 1
            continue
        if instance.has_dynamic_partition(PARTITIONS_NAME, key):
            instance.delete_dynamic_partition(PARTITIONS_NAME, key)
            removed.append(f"partition {key}")
        print(f"{key}: removed {', '.join(removed) or 'nothing (unknown slide)'}")
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("keys", nargs="+", metavar="KEY", help="partition keys of the slides")
    args = parser.parse_args(argv)
    try:
        settings = Settings.load()
    except SettingsError as error:
        print(error, file=sys.stderr)
        return 2
    with dg.DagsterInstance.get() as instance:
        return retire(instance, settings, args.keys)


if __name__ == "__main__":
    sys.exit(main())
