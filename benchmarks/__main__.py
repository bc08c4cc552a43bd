"""``python -m benchmarks [suite ...]``: run the benchmarks and print their figures.

Kernel suites print seconds, tiles per second and the ratio to their baseline, measured in
the same run, then any other ``ratio_vs_<name>`` of a row as ``1.23x <name>``; the automation
suite prints the seconds of each tick and what it did.
"""

from __future__ import annotations

import importlib
import sys

SUITES = (
    "bench_coverage",
    "bench_overlay",
    "bench_pixels",
    "bench_pictures",
    "bench_tissue",
    "bench_ray",
    "bench_backfill",
    "bench_memory",
    "bench_automation",
)


def _line(row: dict) -> str:
    if "tiles_per_s" in row:
        others = "".join(
            f"  {value:.2f}x {key.removeprefix('ratio_vs_')}"
            for key, value in row.items()
            if key.startswith("ratio_vs_") and key != "ratio_vs_baseline"
        )
        return (
            f"{row['name']:<56} {row['seconds']:>9.4f} {row['tiles_per_s']:>10.0f} "
            f"{row['ratio_vs_baseline']:>11.1f}x{others}"
        )
    return f"{row['name']:<56} {row['seconds']:>9.3f}   {row.get('note', '')}"


def main(names: list[str]) -> None:
    print(f"{'benchmark':<56} {'seconds':>9} {'tiles/s':>10} {'vs baseline':>12}")
    for name in names or SUITES:
        module = importlib.import_module(f"benchmarks.{name}")
        for row in module.run():
            print(_line(row), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
