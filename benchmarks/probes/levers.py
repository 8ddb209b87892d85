"""Which speed levers pay on this machine: seconds per training step of MiniLM on STS-B, one lever at a time.

    python benchmarks/probes/levers.py               # 60 steps per variant (first 10 not counted), ~5 minutes on 2 cores
    python benchmarks/probes/levers.py --steps 120

A bare loop (tokenize once, length-grouped batches of 32, MSE on labels / 5, grad clip 1, AdamW lr 3e-5), each
variant in its own process: forward / backward / optimizer seconds per step, so each lever's share is visible.
What it decided in poolhead: fused AdamW is the default (optim.fused), bi mode encodes both sides in one pass,
bf16-mixed is the CPU default, torch.compile stays off (`compile=false`); the malloc variant is a
shell setting, measured only (poolhead does not change allocator settings in a user's process). Results: results/<stamp>-levers.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: common.py, ceiling.py
import common

VARIANTS = {  # name: (mode, precision, fused AdamW, bi sides in one pass, torch.compile, length-grouped batches)
    "cross fp32, foreach AdamW": ("cross", "fp32", False, False, False, True),
    "cross fp32, fused AdamW": ("cross", "fp32", True, False, False, True),
    "cross bf16, foreach AdamW": ("cross", "bf16", False, False, False, True),
    "cross bf16, fused AdamW": ("cross", "bf16", True, False, False, True),
    "cross bf16, fused, random batches": ("cross", "bf16", True, False, False, False),
    "cross bf16, fused, torch.compile(dynamic)": ("cross", "bf16", True, False, True, True),
    "cross bf16, fused, glibc malloc keeps freed memory": ("cross", "bf16", True, False, False, True),
    "bi bf16, fused, two encoder passes": ("bi", "bf16", True, False, False, True),
    "bi bf16, fused, one pass for both sides": ("bi", "bf16", True, True, False, True),
}
# process environment per variant: glibc returns large freed blocks to the OS (mmap/munmap, then page faults on
# reuse) unless told to keep them; set before the process starts, as a user would in the shell
ENV = {"cross bf16, fused, glibc malloc keeps freed memory":
       {"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=4294967296"}}
WARMUP = 10


def measure(name: str, steps: int, data_dir: str) -> dict:
    import torch
    import torch.nn.functional as F
    from transformers import AutoModel, AutoTokenizer

    from poolhead.data.sampling import LengthGroupedBatchSampler

    mode, precision, fused, one_pass, compiled, grouped = VARIANTS[name]
    common.seed_everything()
    tok = AutoTokenizer.from_pretrained(common.minilm_path())
    model = AutoModel.from_pretrained(common.minilm_path()).train()
    head = torch.nn.Linear(model.config.hidden_size, 1)
    a, b, y = common.read_sts(f"{data_dir}/sts-train.csv")
    labels = torch.tensor(y) / 5
    kw = dict(truncation=True, max_length=common.MAX_LENGTH)
    sides = [tok(a, b, **kw)] if mode == "cross" else [tok(a, **kw), tok(b, **kw)]
    lengths = sum(np.array([len(ids) for ids in side["input_ids"]]) for side in sides)
    if grouped:
        batches = list(LengthGroupedBatchSampler(lengths, common.BATCH_SIZE, seed=common.SEED))
    else:
        perm = np.random.default_rng(common.SEED).permutation(len(y))
        batches = [perm[i:i + common.BATCH_SIZE].tolist() for i in range(0, len(perm), common.BATCH_SIZE)]
    params = [*model.parameters(), *head.parameters()]
    opt = torch.optim.AdamW(params, lr=common.LR, fused=fused)
    encoder = torch.compile(model, dynamic=True) if compiled else model

    def pad(side, idx, length=None):
        items = [{k: side[k][i] for k in ("input_ids", "token_type_ids", "attention_mask")} for i in idx]
        return dict(tok.pad(items, padding="max_length" if length else True, max_length=length, return_tensors="pt"))

    def mean_pool(h, mask):
        m = mask.unsqueeze(-1).to(h.dtype)
        return (h * m).sum(1) / m.sum(1).clamp(min=1e-9)

    parts = []
    for idx in batches[:steps]:
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            if mode == "cross":
                pred = head(encoder(**pad(sides[0], idx)).last_hidden_state[:, 0]).squeeze(-1)
            elif one_pass:
                n = max(len(side["input_ids"][i]) for side in sides for i in idx)
                both = [pad(side, idx, n) for side in sides]
                joined = {k: torch.cat([f[k] for f in both]) for k in both[0]}
                u, v = mean_pool(encoder(**joined).last_hidden_state, joined["attention_mask"]).chunk(2)
                pred = torch.cosine_similarity(u, v)
            else:
                u, v = (mean_pool(encoder(**f).last_hidden_state, f["attention_mask"])
                        for f in (pad(side, idx) for side in sides))
                pred = torch.cosine_similarity(u, v)
            loss = F.mse_loss(pred.float(), labels[idx])
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(params, common.MAX_GRAD_NORM)
        opt.step()
        opt.zero_grad(set_to_none=True)
        parts.append((t1 - t0, t2 - t1, time.perf_counter() - t2))
    p = np.array(parts)
    counted = p[WARMUP:]
    step = float(counted.sum(1).mean())
    forward, backward, optimizer = counted.mean(0).tolist()
    return {"variant": name, "steps": len(counted), "first_step_seconds": float(p[0].sum()), "step_seconds": step,
            "forward": forward, "backward": backward, "optimizer": optimizer,
            "pairs_per_second": common.BATCH_SIZE / step}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=60, help=f"steps per variant; the first {WARMUP} are not counted")
    p.add_argument("--data-dir", default=str(common.default_data_dir()))
    p.add_argument("--variant", help=argparse.SUPPRESS)  # internal: measure one variant, print JSON
    a = p.parse_args()
    if a.variant:
        print(json.dumps(measure(a.variant, a.steps, a.data_dir)))
        return
    rows = []
    for name in VARIANTS:
        print(f"[{datetime.now():%H:%M:%S}] {name}", flush=True)
        proc = subprocess.run([sys.executable, __file__, "--variant", name, "--steps", str(a.steps),
                               "--data-dir", a.data_dir], capture_output=True, text=True,
                              env=os.environ | ENV.get(name, {}))
        if proc.returncode != 0:
            raise SystemExit(f"{name} failed:\n{proc.stderr[-3000:]}")
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    lines = [f"# Speed levers, one at a time ({stamp})", "", f"Machine: {common.describe_machine(common.machine())}",
             "", f"Command: `python benchmarks/probes/levers.py --steps {a.steps}`; MiniLM, STS-B train, batch "
             f"{common.BATCH_SIZE}, seconds per step averaged over steps {WARMUP + 1}-{a.steps}.", "",
             "| variant | first step s | step s | forward s | backward s | optimizer s | pairs/s |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['variant']} | {r['first_step_seconds']:.2f} | {r['step_seconds']:.3f} | {r['forward']:.3f} "
              f"| {r['backward']:.3f} | {r['optimizer']:.3f} | {r['pairs_per_second']:.1f} |" for r in rows]
    out = common.BENCH / "results" / f"{stamp}-levers"
    out.with_suffix(".json").write_text(json.dumps({"machine": common.machine(), "rows": rows}, indent=2) + "\n")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"\nwritten: {out}.md")


if __name__ == "__main__":
    main()
