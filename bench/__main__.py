"""`make bench`: run every benchmark under bench/ several times and print one table of figures, spreads and targets.

    python -m bench [--runs 3] [--only push,imports] [-- extra arguments passed to every benchmark]

Each benchmark runs `--runs` times in its own process (three by default: one run's figure can be luck). The table
shows, for every figure, the median of the runs and their spread (lowest to highest), beside its target. Every
benchmark prints the floor it measured in the same run as a figure of its own (a row whose name says floor or
theoretical minimum): the ratio rows compare against that run's floor, never against a figure remembered from
another day or machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
NOT_BENCHMARKS = {"__init__.py", "__main__.py", "common.py"}


@dataclass
class Figure:
    bench: str
    name: str
    unit: str
    target: str
    values: list[str] = field(default_factory=list)

    def summary(self) -> tuple[str, str]:
        """(median, spread): numbers as numbers; text figures (a yes/no, a range) as the distinct texts seen."""
        try:
            numbers = [float(value) for value in self.values]
        except ValueError:
            distinct = list(dict.fromkeys(self.values))
            return " | ".join(distinct), ""
        median = statistics.median(numbers)
        spread = f"{_number(min(numbers))}–{_number(max(numbers))}" if len(numbers) > 1 else ""
        return _number(median), spread


def _number(value: float) -> str:
    if value == int(value) and abs(value) >= 100:
        return f"{int(value):,}"
    return f"{value:,.3f}".rstrip("0").rstrip(".")


def _load_average() -> str:
    try:
        return " ".join(f"{value:.1f}" for value in os.getloadavg())
    except OSError:
        return "?"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=int(os.environ.get("BENCH_RUNS", "3")))
    parser.add_argument("--only", default="", help="comma-separated benchmark names (file stems), default: all")
    parser.add_argument("extra", nargs="*", help="arguments passed to every benchmark (after --)")
    args = parser.parse_args()
    wanted = {name.strip() for name in args.only.split(",") if name.strip()}

    figures: dict[tuple[str, str], Figure] = {}
    failures: list[str] = []
    for script in sorted(HERE.glob("*.py")):
        if script.name in NOT_BENCHMARKS or (wanted and script.stem not in wanted):
            continue
        for run in range(1, args.runs + 1):
            print(f"== {script.name}, run {run} of {args.runs} (load average {_load_average()})", flush=True)
            started = time.monotonic()
            result = subprocess.run(
                [sys.executable, "-m", f"bench.{script.stem}", *args.extra], cwd=HERE.parent, text=True,
                capture_output=True,
            )
            for line in result.stdout.splitlines():
                if line.startswith("FIGURE\t"):
                    _, name, value, unit, target = (line.split("\t") + [""] * 5)[:5]
                    entry = figures.setdefault((script.stem, name), Figure(script.stem, name, unit, target))
                    entry.values.append(value)
                else:
                    print(f"   {line}")
            print(f"   ({time.monotonic() - started:.0f} s)", flush=True)
            if result.returncode != 0:
                failures.append(f"{script.name} (run {run})")
                print(result.stderr[-2000:])

    header = ("bench", "figure", f"median of {args.runs}", "spread", "unit", "target")
    rows = [(f.bench, f.name, *f.summary(), f.unit, f.target) for f in figures.values()]
    widths = [max(len(row[i]) for row in [*rows, header]) for i in range(len(header))]
    print()
    for row in [header, tuple("-" * width for width in widths), *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    if failures:
        print(f"\nfailed: {', '.join(failures)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
