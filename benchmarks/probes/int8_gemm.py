"""int8 against fp32 matrix products at MiniLM's inference shapes: how much can an int8 backend gain on this CPU?

    python benchmarks/probes/int8_gemm.py [--tokens 512] [--repeats 5]

Times each of a layer's four forward products (QKV, attention out, FFN up, FFN down) as torch fp32 `nn.Linear` and
as fbgemm's dynamically quantized int8 `Linear` (activations quantized per call, as ONNX Runtime's and OpenVINO's
dynamic int8 do), median of `--repeats` rounds. On a CPU without VNNI or AMX, int8 products use AVX2's 16-bit
multiply-adds, so their gain over fp32 bounds what any int8 serving backend can reach (issue 31's 3x bar).
Writes results/<stamp>-int8-gemm.md/.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: common.py
import common

SHAPES = [(384, 1152), (384, 384), (384, 1536), (1536, 384)]  # MiniLM-L6: in -> out features of each product


def seconds_per_call(fn, calls: int, repeats: int) -> float:
    fn(), fn()  # warm-up
    rounds = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        rounds.append((time.perf_counter() - start) / calls)
    return statistics.median(rounds)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens", type=int, default=512, help="rows of each product (a batch's tokens)")
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args()
    torch.manual_seed(0)
    rows = []
    with torch.no_grad():
        for k, n in SHAPES:
            x, fp32 = torch.randn(a.tokens, k), torch.nn.Linear(k, n)
            int8 = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(fp32), {torch.nn.Linear}, torch.qint8)
            flop = 2 * a.tokens * k * n
            t32, t8 = (seconds_per_call(lambda m=m: m(x), 20, a.repeats) for m in (fp32, int8))
            rows.append({"shape": f"{a.tokens}x{k} @ {k}x{n}", "fp32_gflops": round(flop / t32 / 1e9, 1),
                         "int8_gops": round(flop / t8 / 1e9, 1), "int8_over_fp32": round(t32 / t8, 2)})
    total = sum(2 * a.tokens * k * n for k, n in SHAPES)
    t32 = sum(2 * a.tokens * k * n / (r["fp32_gflops"] * 1e9) for (k, n), r in zip(SHAPES, rows))
    t8 = sum(2 * a.tokens * k * n / (r["int8_gops"] * 1e9) for (k, n), r in zip(SHAPES, rows))
    result = {"command": f"python benchmarks/probes/int8_gemm.py --tokens {a.tokens} --repeats {a.repeats}",
              "machine": common.machine(), "quantized_engine": torch.backends.quantized.engine, "rows": rows,
              "layer_int8_over_fp32": round(t32 / t8, 2), "layer_gflop": round(total / 1e9, 3)}
    lines = ["# int8 vs fp32 products at MiniLM's inference shapes", "", f"Command: `{result['command']}`", "",
             f"Machine: {common.describe_machine(result['machine'])}; torch quantized engine "
             f"{result['quantized_engine']}", "",
             "| product | fp32 GFLOP/s | int8 GOP/s | int8 / fp32 |", "| --- | ---: | ---: | ---: |"]
    lines += [f"| {r['shape']} | {r['fp32_gflops']} | {r['int8_gops']} | {r['int8_over_fp32']}x |" for r in rows]
    lines += ["", f"A whole layer's four products (time-weighted): int8 is **{result['layer_int8_over_fp32']}x** "
              "fp32. Everything else a serving pass does (tokenization, attention, layer norms, GELU) gains nothing."]
    common.save_report("int8-gemm", result, lines)


if __name__ == "__main__":
    main()
