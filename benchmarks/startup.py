"""How long the `poolhead` command takes to answer before any work: `--help`, `--version` and each
subcommand's `--help`, each started REPEATS times in a fresh interpreter (the median kept). Target: under 1 s
on a 2-core CPU.

    python benchmarks/startup.py            # -> benchmarks/results/<stamp>-startup.md
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
REPEATS = 7
COMMANDS = [["--help"], ["--version"], ["train", "--help"], ["predict", "--help"], ["eval", "--help"],
            ["export", "--help"], ["cache", "--help"]]
TARGET_S = 1.0


def seconds(argv: list[str]) -> float:
    """Median wall-clock seconds of `python -m poolhead ARGV` (interpreter start included, output dropped)."""
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "poolhead", *argv], check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bare_python() -> float:
    """The interpreter alone, for scale."""
    start = time.perf_counter()
    for _ in range(REPEATS):
        subprocess.run([sys.executable, "-c", "pass"], check=True)
    return (time.perf_counter() - start) / REPEATS


def main() -> None:
    rows = [(" ".join(argv), seconds(argv)) for argv in COMMANDS]
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    lines = [f"# poolhead start-up, {stamp}", "",
             f"`python benchmarks/startup.py`: median of {REPEATS} starts of `python -m poolhead ...`; "
             f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), Python "
             f"{platform.python_version()}; `python -c pass` takes {bare_python():.3f} s. "
             f"Target: < {TARGET_S} s.",
             "", "| command | seconds | under target |", "|---|---|---|"]
    lines += [f"| `poolhead {name}` | {value:.3f} | {'yes' if value < TARGET_S else 'NO'} |"
              for name, value in rows]
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{stamp}-startup.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
