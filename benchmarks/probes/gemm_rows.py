"""The GEMM ceiling at MiniLM's shapes for several batch sizes in tokens: does a smaller batch multiply slower?

    python benchmarks/probes/gemm_rows.py [--tokens 128,256,512,1024,2048]

A length-grouped STS-B training batch of 32 pairs holds ~300 to ~2,000 tokens (~600 on average), while ceiling.py
measures at 1,024. This runs ceiling.gemm_ceiling (one layer's 12 training products, FLOP-weighted) at each token
count, in fp32 and, where the CPU has bf16 units, bf16. Writes results/<stamp>-gemm-rows.md/.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: common.py, ceiling.py
import common
from ceiling import gemm_ceiling


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens", default="128,256,512,1024,2048", help="comma-separated GEMM row counts")
    a = p.parse_args()
    from poolhead.run.plan import cpu_computes_bf16

    dtypes = [torch.float32] + ([torch.bfloat16] if cpu_computes_bf16() else [])
    tokens = [int(t) for t in a.tokens.split(",")]
    rows = [{"tokens": t, **gemm_ceiling(t, 384, 1536, dtype)} for t in tokens for dtype in dtypes]
    result = {"command": f"python benchmarks/probes/gemm_rows.py --tokens {a.tokens}", "machine": common.machine(),
              "rows": rows}
    lines = ["# GEMM ceiling by batch size in tokens (MiniLM's layer products, FLOP-weighted)", "",
             f"Command: `{result['command']}`", "", f"Machine: {common.describe_machine(result['machine'])}", "",
             "| tokens | dtype | GFLOP/s | slowest product | fastest product |", "| ---: | --- | ---: | --- | --- |"]
    for r in rows:
        slow, fast = (f(r["shapes"], key=lambda s: s["gflops"]) for f in (min, max))
        lines.append(f"| {r['tokens']} | {r['dtype']} | {r['ceiling_gflops']} | {slow['shape']}: {slow['gflops']} "
                     f"| {fast['shape']}: {fast['gflops']} |")
    common.save_report("gemm-rows", result, lines)


if __name__ == "__main__":
    main()
