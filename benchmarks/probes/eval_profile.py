"""Where evaluation time goes: poolhead's own prediction loop (predict.outputs) on STS-B dev, timed and profiled.

    python benchmarks/probes/eval_profile.py [--precision bf16-mixed] [--mode bi] [--pooling mean] [--repeats 3]

Builds poolhead (poolhead.build; MiniLM), predicts every dev pair in its length-bucketed eval batches under
inference_mode, reports the median of --repeats unprofiled passes as pairs/s and model FLOPs utilisation (2 x matmul
weights x real tokens per second / --ceiling), then the self CPU time of one profiled pass by kind (ceiling.KINDS).
Writes results/<stamp>-eval-profile.md/.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from poolhead.run.plan import autocast_dtype

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: common.py, ceiling.py
import common
from ceiling import gemm_ceiling, matmul_weights, self_seconds_by_kind, stsb_config


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--precision", default="bf16-mixed")
    p.add_argument("--mode", default="bi")
    p.add_argument("--pooling", default="mean")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--ceiling", type=float, help="GEMM GFLOP/s of this precision (default: measured, ceiling.py)")
    a = p.parse_args()
    if a.ceiling is None:
        a.ceiling = gemm_ceiling(1024, 384, 1536, autocast_dtype(a.precision) or torch.float32)["ceiling_gflops"]
    import poolhead
    from poolhead.run.evaluate import outputs

    cfg = stsb_config(10**9, a.precision, [f"mode={a.mode}", f"pooling={a.pooling}", "data.dir=" +
                                           str(common.default_data_dir())])
    datamodule, model = poolhead.build(cfg)
    datamodule.setup("fit")
    loader = datamodule.predict_dataloader("val")
    pairs = len(datamodule.rows("val"))
    real_tokens = sum(int(side["attention_mask"].sum()) for batch in loader for side in batch["features"])
    outputs(model, loader)  # warm-up
    seconds = []
    for _ in range(a.repeats):
        start = time.perf_counter()
        outputs(model, loader)
        seconds.append(time.perf_counter() - start)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        outputs(model, loader)
    by_kind, total = self_seconds_by_kind(prof)
    matmul_params = matmul_weights(model.encoder.model)
    median = statistics.median(seconds)
    result = {"args": vars(a), "machine": common.machine(), "pairs": pairs, "real_tokens": real_tokens,
              "seconds": seconds, "pairs_per_second": pairs / median,
              "mfu": 2 * matmul_params * real_tokens / median / (a.ceiling * 1e9),
              "self_cpu_seconds": dict(sorted(by_kind.items(), key=lambda kv: -kv[1])), "self_cpu_total": total}
    lines = [f"# Evaluation profile: {a.mode}/{a.pooling}, {a.precision}", "",
             f"Command: `python benchmarks/probes/eval_profile.py --precision {a.precision} --mode {a.mode} --pooling "
             f"{a.pooling} --repeats {a.repeats} --ceiling {a.ceiling}`", "",
             f"Machine: {common.describe_machine(result['machine'])}", "",
             f"STS-B dev, {pairs} pairs, {real_tokens:,} real tokens: median {median:.2f} s of "
             f"{[round(s, 2) for s in seconds]} = **{result['pairs_per_second']:.0f} pairs/s**, "
             f"model FLOPs utilisation {result['mfu']:.0%} of {a.ceiling:.0f} GFLOP/s.", "",
             "| self CPU time, one profiled pass | seconds | share |", "| --- | --- | --- |"]
    lines += [f"| {kind} | {sec:.3f} | {sec / total:.0%} |" for kind, sec in result["self_cpu_seconds"].items()]
    common.save_report("eval-profile", result, lines)


if __name__ == "__main__":
    main()
