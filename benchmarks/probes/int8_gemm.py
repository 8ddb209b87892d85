"""int8 against fp32 matrix products at MiniLM's inference shapes: how much can an int8 backend gain on this CPU?

    python benchmarks/probes/int8_gemm.py [--tokens 512] [--repeats 9]

Times each of a layer's four forward products (QKV, attention out, FFN up, FFN down) as torch fp32 `nn.Linear` and
as fbgemm's dynamically quantized int8 `Linear` (activations quantized per call, as ONNX Runtime's dynamic int8
does), in alternating rounds; the fastest of `--repeats` rounds each (a ceiling: other load only slows a round).
On a CPU without VNNI or AMX, int8 products use AVX2's 16-bit multiply-adds, so their gain over fp32 bounds what any
int8 serving backend can reach (issue 31's 3x bar).
Writes results/<stamp>-int8-gemm.md/.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from functools import partial
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: common.py
import common

SHAPES = [(384, 1152), (384, 384), (384, 1536), (1536, 384)]  # MiniLM-L6: in -> out features of each product


def fastest_per_call(fns: list, calls: int, repeats: int) -> list[float]:
    """Seconds per call of each of `fns`, timed in alternating rounds: the fastest round of each."""
    for fn in fns:
        fn(), fn()  # warm-up
    rounds: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, times in zip(fns, rounds):
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            times.append((time.perf_counter() - start) / calls)
    return [min(times) for times in rounds]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens", type=int, default=512, help="rows of each product (a batch's tokens)")
    p.add_argument("--repeats", type=int, default=9)
    a = p.parse_args()
    torch.manual_seed(0)
    load_before = os.getloadavg()[0]
    rows, seconds = [], []  # seconds: (fp32, int8) per call of each product
    with torch.no_grad():
        for k, n in SHAPES:
            x, fp32 = torch.randn(a.tokens, k), torch.nn.Linear(k, n)
            int8 = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(fp32), {torch.nn.Linear}, torch.qint8)
            flop = 2 * a.tokens * k * n
            t32, t8 = fastest_per_call([partial(fp32, x), partial(int8, x)], 20, a.repeats)
            seconds.append((t32, t8))
            rows.append({"shape": f"{a.tokens}x{k} @ {k}x{n}", "fp32_gflops": round(flop / t32 / 1e9, 1),
                         "int8_gops": round(flop / t8 / 1e9, 1), "int8_over_fp32": round(t32 / t8, 2)})
    total = sum(2 * a.tokens * k * n for k, n in SHAPES)
    t32, t8 = (sum(column) for column in zip(*seconds))  # one layer: its four products in turn
    result = {"command": f"python benchmarks/probes/int8_gemm.py --tokens {a.tokens} --repeats {a.repeats}",
              "machine": common.machine(), "quantized_engine": torch.backends.quantized.engine, "rows": rows,
              "layer_int8_over_fp32": round(t32 / t8, 2), "layer_gflop": round(total / 1e9, 3),
              "load_average": [load_before, os.getloadavg()[0]]}
    lines = ["# int8 vs fp32 products at MiniLM's inference shapes", "", f"Command: `{result['command']}`", "",
             (f"Machine: {common.describe_machine(result['machine'])}; torch quantized engine "
              f"{result['quantized_engine']}; load average before {load_before:.2f}, after "
              f"{result['load_average'][1]:.2f} (2 cores: > 0.5 means others ran)"), "",
             "| product | fp32 GFLOP/s | int8 GOP/s | int8 / fp32 |", "| --- | ---: | ---: | ---: |"]
    lines += [f"| {r['shape']} | {r['fp32_gflops']} | {r['int8_gops']} | {r['int8_over_fp32']}x |" for r in rows]
    lines += ["", (f"A whole layer's four products (time-weighted): int8 is **{result['layer_int8_over_fp32']}x** "
                   "fp32. Everything else a serving pass does (tokenization, attention, layer norms, GELU) gains "
                   "nothing.")]
    common.save_report("int8-gemm", result, lines)


if __name__ == "__main__":
    main()
