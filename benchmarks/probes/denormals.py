"""Do subnormal floats slow fp32 training here? One process, real STS-B training, flush-to-zero toggled by block.

    python benchmarks/probes/denormals.py [--epochs 2] [--block 10] [--precision 32-true] [--pairs 0 (all)]

Trains poolhead (cross, cls, MiniLM; poolhead.build) through whole epochs of STS-B train in length-grouped order,
switching `torch.set_flush_denormal` on and off every --block steps (off, on, on, off, ...: neighbouring blocks see
the same stretch of training and of the machine), and counts subnormal values in the weights and AdamW moments at each
epoch's end. Prints seconds per 1,000 real tokens for off and on blocks per epoch; writes
results/<stamp>-denormals.md/.json. A CPU that handles subnormals with microcode assists (many Intel cores) slows
down once they appear; flushing them changes values below 1.2e-38 to 0, which AdamW's eps (1e-8) already outweighs.
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
from ceiling import stsb_config, training_step


def subnormal_share(tensors: list[torch.Tensor]) -> tuple[int, int]:
    tiny = torch.finfo(torch.float32).tiny
    count = total = 0
    for t in tensors:
        if t.dtype != torch.float32:
            continue
        count += int(((t != 0) & (t.abs() < tiny)).sum())
        total += t.numel()
    return count, total


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--block", type=int, default=10, help="steps per block between flush-to-zero switches")
    p.add_argument("--precision", default="32-true")
    p.add_argument("--pairs", type=int, default=0, help="first N train pairs (0: all)")
    a = p.parse_args()
    torch.manual_seed(0)
    import poolhead

    cfg = stsb_config(a.pairs or 10**9, a.precision)
    datamodule, model = poolhead.build(cfg)
    step = training_step(model, cfg)
    blocks, counts = [], []
    for epoch in range(a.epochs):
        batches = list(datamodule.train_dataloader())
        for start in range(0, len(batches), a.block):
            flush = (start // a.block) % 4 in (1, 2)
            torch.set_flush_denormal(flush)
            chunk = batches[start:start + a.block]
            tokens = sum(int(side["attention_mask"].sum()) for b in chunk for side in b["features"])
            begin = time.perf_counter()
            for batch in chunk:
                step(batch)
            blocks.append({"epoch": epoch, "start": start, "flush": flush, "steps": len(chunk), "tokens": tokens,
                           "seconds": time.perf_counter() - begin})
        torch.set_flush_denormal(False)
        moments = [s[k] for s in step.optimizer.state.values() for k in ("exp_avg", "exp_avg_sq") if k in s]
        weights = [q.detach() for q in model.parameters()]
        counts.append({"epoch": epoch, "weights": subnormal_share(weights), "moments": subnormal_share(moments)})
        print(f"epoch {epoch}: subnormal weights {counts[-1]['weights']}, AdamW moments {counts[-1]['moments']}",
              flush=True)
    lines = [f"# Subnormals and fp32 training speed ({a.precision})", "",
             f"Command: `python benchmarks/probes/denormals.py --epochs {a.epochs} --block {a.block} --precision "
             f"{a.precision} --pairs {a.pairs}`", "", f"Machine: {common.describe_machine(common.machine())}", "",
             "| epoch | flush off: s per 1k real tokens (median of blocks) | flush on | on/off | "
             "subnormal weights | subnormal AdamW moments |", "| --- | --- | --- | --- | --- | --- |"]
    for c in counts:
        per = {f: [b["seconds"] * 1000 / b["tokens"] for b in blocks if b["epoch"] == c["epoch"] and b["flush"] == f]
               for f in (False, True)}
        off, on = statistics.median(per[False]), statistics.median(per[True])
        c.update(off=off, on=on)
        lines.append(f"| {c['epoch']} | {off:.3f} | {on:.3f} | {on / off:.3f} | {c['weights'][0]:,} of "
                     f"{c['weights'][1]:,} | {c['moments'][0]:,} of {c['moments'][1]:,} |")
    common.save_report("denormals", {"args": vars(a), "machine": common.machine(), "blocks": blocks,
                                     "epochs": counts}, lines)


if __name__ == "__main__":
    main()
