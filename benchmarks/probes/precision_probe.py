"""Is bf16 autocast faster than fp32 on this CPU? One MiniLM training step (forward, backward, fused AdamW) on a
batch shaped like STS-B cross pairs (32 x 32 tokens), each precision in turn, repeated. Decides nothing by itself:
`trainer.precision=auto` reads the CPU's flags (poolhead.run.plan.cpu_computes_bf16); this shows what the choice is worth.

    python benchmarks/probes/precision_probe.py [--steps 10] [--repeats 3]
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import statistics
import time

import torch
from transformers import AutoModel

import poolhead
from poolhead.run.plan import cpu_computes_bf16


def step_seconds(model, optimizer, ids, dtype, steps: int) -> float:
    times = []
    for _ in range(steps + 2):  # two warm-up steps
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=dtype) if dtype else contextlib.nullcontext():
            loss = model(input_ids=ids).last_hidden_state[:, 0].float().pow(2).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        times.append(time.perf_counter() - start)
    return statistics.median(times[2:])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    torch.manual_seed(0)
    model = AutoModel.from_pretrained(poolhead.minilm_path()).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
    ids = torch.randint(1000, 20000, (32, 32))
    results = {"fp32": [], "bf16": []}
    for _ in range(a.repeats):
        for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
            results[name].append(step_seconds(model, optimizer, ids, dtype, a.steps))
    print(f"CPU: {platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} "
          f"threads, capability {torch.backends.cpu.get_cpu_capability()}, bf16 units: {cpu_computes_bf16()}")
    for name, values in results.items():
        print(f"{name}: median step {statistics.median(values) * 1000:.0f} ms over {a.repeats} repeats of "
              f"{a.steps} steps (runs: {', '.join(f'{v * 1000:.0f}' for v in values)} ms)")
    ratio = statistics.median(results["bf16"]) / statistics.median(results["fp32"])
    print(f"bf16 / fp32 step time: {ratio:.2f}x -> trainer.precision=auto picks "
          f"{poolhead.run.plan.resolve_precision('auto', 'cpu')}")


if __name__ == "__main__":
    main()
