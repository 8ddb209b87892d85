"""One dropout call, torch's masks against poolhead.speed.dropout's, at MiniLM's training shapes (bf16 and fp32).

    python benchmarks/probes/dropout_probe.py [--rounds 20]

Each round times 20 calls of each, alternating, after a warm-up; prints medians and ranges over the rounds and writes
results/<stamp>-dropout.md/.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: common.py, ceiling.py
import common

from poolhead.speed.dropout import dropout

SHAPES = {"hidden states, 960 tokens x 384": (960, 384), "attention weights, 32 x 12 heads x 30 x 30": (32, 12, 30, 30),
          "feed-forward, 960 x 1536": (960, 1536)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=20)
    a = p.parse_args()
    rows = []
    for label, shape in SHAPES.items():
        for dtype in (torch.bfloat16, torch.float32):
            x = torch.randn(shape, dtype=dtype)
            calls = {"torch": lambda: F.dropout(x, 0.1), "poolhead": lambda: dropout(x, 0.1)}
            times = {name: [] for name in calls}
            for _ in range(a.rounds):
                for name, call in calls.items():
                    call()
                    start = time.perf_counter()
                    for _ in range(20):
                        call()
                    times[name].append((time.perf_counter() - start) / 20 * 1e3)
            med = {name: statistics.median(t) for name, t in times.items()}
            rows.append({"shape": label, "dtype": str(dtype).split(".")[-1], "ms": med,
                         "range": {n: [min(t), max(t)] for n, t in times.items()},
                         "speedup": med["torch"] / med["poolhead"]})
    lines = ["# Dropout per call: torch vs poolhead.speed.dropout (p = 0.1)", "",
             f"Command: `python benchmarks/probes/dropout_probe.py --rounds {a.rounds}`", "",
             f"Machine: {common.describe_machine(common.machine())}", "",
             "| shape | dtype | torch ms | poolhead ms | torch / poolhead |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {r['shape']} | {r['dtype']} | {r['ms']['torch']:.3f} | {r['ms']['poolhead']:.3f} "
              f"| {r['speedup']:.2f}x |" for r in rows]
    common.save_report("dropout", {"args": vars(a), "machine": common.machine(), "rows": rows}, lines)


if __name__ == "__main__":
    main()
