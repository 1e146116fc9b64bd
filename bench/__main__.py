"""`make bench`: run every benchmark under bench/ and print one table of figures and targets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    rows: list[tuple[str, str, str, str, str]] = []
    failures = []
    for script in sorted(HERE.glob("*.py")):
        if script.name in {"__init__.py", "__main__.py", "common.py"}:
            continue
        print(f"== {script.name}", flush=True)
        result = subprocess.run(
            [sys.executable, "-m", f"bench.{script.stem}"], cwd=HERE.parent, text=True, capture_output=True
        )
        for line in result.stdout.splitlines():
            if line.startswith("FIGURE\t"):
                _, name, value, unit, target = (line.split("\t") + [""] * 5)[:5]
                rows.append((script.stem, name, value, unit, target))
            else:
                print(f"   {line}")
        if result.returncode != 0:
            failures.append(script.name)
            print(result.stderr[-2000:])
    header = ("bench", "figure", "value", "unit", "target")
    widths = [max(len(row[i]) for row in [*rows, header]) for i in range(5)]
    print()
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    if failures:
        print(f"\nfailed: {', '.join(failures)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
