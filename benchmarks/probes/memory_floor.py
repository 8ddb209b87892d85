"""The per-step work that grows with the weights, not the tokens: what it costs here, and how much of a step's time
budget it takes at a given model-FLOPs utilisation.

    python benchmarks/probes/memory_floor.py [--utilisation 0.65] [--tokens 890] [--ceiling GFLOPS]

Times (median of 10, after a warm-up) what every full fine-tuning step does over all of MiniLM's weights (counted
from the model), whatever the batch: the fused AdamW update, gradient-norm clipping, and zeroing the dense
word-embedding gradient; plus a 256 MB copy for the memory bandwidth. Then: at `--utilisation` of `--ceiling` (bf16
GEMM GFLOP/s from ceiling.py), a step of `--tokens` real tokens (STS-B cross, batch 32: ~890) may take 6 x matmul
weights x tokens / (u x ceiling) seconds; the fixed work's share of that budget is printed. Writes
results/<stamp>-memory-floor.md/.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: common.py, ceiling.py
import common
from ceiling import matmul_weights


def median_seconds(fn, repeats: int = 10) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--utilisation", type=float, default=0.65)
    p.add_argument("--tokens", type=int, default=890)
    p.add_argument("--ceiling", type=float, default=2080.0, help="bf16 GEMM GFLOP/s (ceiling.py)")
    a = p.parse_args()
    from transformers import AutoModel

    minilm = AutoModel.from_pretrained(common.minilm_path())
    weights, word_embedding = sum(q.numel() for q in minilm.parameters()), minilm.embeddings.word_embeddings.weight
    matmul = matmul_weights(minilm)
    source = torch.randn(64 * 2**20)
    target = torch.empty_like(source)
    copy_s = median_seconds(lambda: target.copy_(source))
    weight = torch.nn.Parameter(torch.randn(weights))
    weight.grad = torch.randn(weights) * 1e-3
    adamw = torch.optim.AdamW([weight], lr=3e-5, fused=True)
    parts = {"fused AdamW update (all weights)": median_seconds(adamw.step),
             "gradient-norm clipping (all weights)": median_seconds(lambda: torch.nn.utils.clip_grad_norm_([weight],
                                                                                                       1.0)),
             "zeroing the dense word-embedding gradient": median_seconds(torch.zeros_like(word_embedding).zero_)}
    fixed = sum(parts.values())
    budget = 6 * matmul * a.tokens / (a.utilisation * a.ceiling * 1e9)
    result = {"args": vars(a), "machine": common.machine(), "copy_gb_per_s": 2 * source.numel() * 4 / copy_s / 1e9,
              "weights": weights, "matmul_weights": matmul, "seconds": parts, "fixed_seconds": fixed,
              "budget_seconds": budget, "share_of_budget": fixed / budget}
    lines = ["# Fixed per-step work against a step's time budget", "",
             f"Command: `python benchmarks/probes/memory_floor.py --utilisation {a.utilisation} --tokens {a.tokens} "
             f"--ceiling {a.ceiling}`", "", f"Machine: {common.describe_machine(result['machine'])}", "",
             f"Memory copy: {result['copy_gb_per_s']:.1f} GB/s (read + write, 256 MB).", "",
             "| work per step, whatever the batch | ms |", "| --- | --- |"]
    lines += [f"| {name} | {s * 1e3:.1f} |" for name, s in parts.items()]
    lines += [f"| **sum** | **{fixed * 1e3:.1f}** |", "",
              f"A step of {a.tokens} real tokens at {a.utilisation:.0%} of {a.ceiling:.0f} GFLOP/s may take "
              f"{budget * 1e3:.1f} ms; the fixed work alone is {fixed / budget:.0%} of that, leaving "
              f"{max(budget - fixed, 0) * 1e3:.1f} ms for the matrix products, dropout, casts and the rest."]
    common.save_report("memory-floor", result, lines)


if __name__ == "__main__":
    main()
