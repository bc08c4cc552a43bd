"""``python -m wsi_assets.run_demo``: the ``make run`` entry point.

1. With no ``WSI_SLIDE_ROOT`` set, writes the synthetic demo slides into ``./data/demo``
   (missing files only).
2. Evaluates the slide sensor once against the persistent Dagster instance (``DAGSTER_HOME``)
   and applies its result as the daemon would: registers the slides, adds their partitions,
   records the source files' data versions.
3. Runs, in process and in that instance, every slide whose tables are missing or stale (the
   same rule as the sweep schedule), one run per slide, so the runs show up in ``dagster dev``.
4. Prints a summary table and where the Parquet files are.

Exit status 1 when any slide failed (its error names the file).
"""

import argparse
import os
import sys
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from dagster import DagsterInstance, Definitions

from . import demo, storage
from .config import WSISettings
from .definitions import build_defs
from .keys import ANNOTATION_COVERAGE, OVERLAY_OVERLAP, SLIDE_JOB, SLIDE_METADATA, TILE_GRID
from .schedules import sweep
from .sensors import apply_sensor_tick
from .tables import asset_root

TRIGGER_TAG = "wsi_tiles/trigger"
#: Console log level of the demo runs (the full logs are in the instance, see dagster dev).
FAILURE_PREFIX = "dagster._core.definitions.events.Failure: "
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def run_stale(instance: DagsterInstance, defs: Definitions) -> dict[str, bool]:
    """Run every slide with missing or stale tables in process; slide key -> success."""
    job = defs.resolve_job_def(SLIDE_JOB)
    outcome: dict[str, bool] = {}
    for request in sweep(instance, defs.get_repository_def().asset_graph):
        key = request.partition_key
        tables = ", ".join(asset.to_user_string() for asset in request.asset_selection or [])
        print(f"  materializing {key} ({tables})")
        result = job.execute_in_process(
            instance=instance,
            partition_key=key,
            asset_selection=list(request.asset_selection or []),
            raise_on_error=False,
            tags={TRIGGER_TAG: "run_demo"},
            run_config=QUIET,
        )
        outcome[key] = result.success
        if not result.success:
            for event in result.all_events:
                if event.is_step_failure and event.step_failure_data.error is not None:
                    message = event.step_failure_data.error.message.strip()
                    print(f"    FAILED {event.step_key}: {message.removeprefix(FAILURE_PREFIX)}")
    return outcome


def _read(output_root: str, asset: str) -> pa.Table | None:
    """A whole asset as one table (hive layout), or None when nothing is written yet."""
    root = asset_root(output_root, asset)
    if not storage.list_files(root):
        return None
    fs, path = storage.filesystem(root)
    return ds.dataset(path, filesystem=fs, format="parquet", partitioning="hive").to_table()


def summary_rows(output_root: str) -> list[dict[str, object]]:
    """One summary row per slide: level, mpp, tiles, mean coverage per class, mean tissue."""
    meta = _read(output_root, SLIDE_METADATA)
    if meta is None:
        return []
    grid, coverage, overlap = (
        _read(output_root, name) for name in (TILE_GRID, ANNOTATION_COVERAGE, OVERLAY_OVERLAP)
    )
    rows = []
    for slide in meta.to_pylist():
        key = slide["slide_key"]
        row: dict[str, object] = {
            "slide": key,
            "level": slide["level"],
            "mpp": round(slide["mpp_x"], 3),
            "size": f"{slide['extent_x']}x{slide['extent_y']}",
            "tiles": _count(grid, key),
        }
        row.update(_means(coverage, key, "coverage_"))
        row.update(_means(overlap, key, "tissue_fraction"))
        rows.append(row)
    return rows


def _count(table: pa.Table | None, key: str) -> int:
    if table is None:
        return 0
    return int(pc.sum(pc.equal(table["slide_key"], key)).as_py() or 0)


def _means(table: pa.Table | None, key: str, prefix: str) -> dict[str, object]:
    """Mean of each column starting with ``prefix`` over the slide's tiles ('-' if unmeasured)."""
    if table is None:
        return {}
    rows = table.filter(pc.equal(table["slide_key"], key))
    means: dict[str, object] = {}
    for column in rows.column_names:
        if column.startswith(prefix):
            value = pc.mean(rows[column]).as_py()  # nulls skipped; all null: nothing measured
            means[column] = "-" if value is None else round(float(value), 3)
    return means


def format_table(rows: Sequence[dict[str, object]]) -> str:
    """Rows as a fixed-width text table."""
    if not rows:
        return "(no slides)"
    columns = list(dict.fromkeys(name for row in rows for name in row))
    cells = [[str(row.get(name, "")) for name in columns] for row in rows]
    widths = [max(len(name), *(len(line[i]) for line in cells)) for i, name in enumerate(columns)]
    lines = ["  ".join(name.ljust(width) for name, width in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * width for width in widths))
    lines += [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
        for line in cells
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """See the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scale", type=float, default=1.0, help="demo slide size factor (tests use < 1)"
    )
    args = parser.parse_args(argv)
    settings = WSISettings.from_env()
    if not os.environ.get("WSI_SLIDE_ROOT"):
        written = demo.generate(settings.slide_root, demo.scaled(demo.DEMO_SLIDES, args.scale))
        print(f"demo slides in {settings.slide_root} ({len(written)} files written)")
    defs = build_defs(settings)
    with DagsterInstance.get() as instance:
        apply_sensor_tick(instance, defs)
        outcome = run_stale(instance, defs)
        partitions = instance.get_dynamic_partitions("slides")
    succeeded = sum(outcome.values())
    fresh = "" if outcome else " (every table was already materialized and fresh)"
    print(
        f"\n{len(partitions)} slide partitions; {succeeded} runs succeeded, "
        f"{len(outcome) - succeeded} failed{fresh}\n"
    )
    print(format_table(summary_rows(settings.output_root)))
    print(
        "\nParquet tables (hive layout, one folder per asset): "
        f"{settings.output_root}/<asset>/slide=<key>/part-0.parquet"
    )
    print(f"Dagster instance: {os.environ.get('DAGSTER_HOME')} (browse it: make dev)")
    return 0 if all(outcome.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
