"""``python -m benchmarks``: run every benchmark and print one table (seconds, tiles/s, ratio)."""

from __future__ import annotations

import importlib
import sys

SUITES = ("bench_coverage", "bench_overlay")


def main(names: list[str]) -> None:
    print(f"{'benchmark':<52} {'seconds':>9} {'tiles/s':>10} {'vs baseline':>12}")
    for name in names or SUITES:
        module = importlib.import_module(f"benchmarks.{name}")
        for row in module.run():
            print(
                f"{row['name']:<52} {row['seconds']:>9.4f} {row['tiles_per_s']:>10.0f} "
                f"{row['ratio_vs_baseline']:>11.1f}x"
            )


if __name__ == "__main__":
    main(sys.argv[1:])
