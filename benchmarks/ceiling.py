"""The machine's ceiling at the model's own shapes, and where a poolhead training step spends its time.

    python benchmarks/ceiling.py [--steps 20] [--pairs 640] [--out benchmarks/results]

1. Ceiling: GEMM GFLOP/s for each matrix product of one MiniLM layer (forward and both backward products) at a
   training batch's token count (32 STS-B cross pairs ~ 1024 tokens), fp32 and (where the CPU has bf16 units) bf16;
   the FLOP-weighted ceiling is total FLOPs / total seconds over those shapes.
2. Step: poolhead's own model (poolhead.build, data=stsb, mode=cross, pooling=cls, the default trainer precision),
   `--steps` training steps on real length-grouped STS-B batches under torch.profiler: self CPU time by kind of op,
   and model FLOPs utilisation = 6 x matmul parameters x real tokens per second / ceiling.
Prints what it measured and writes `<time>-ceiling.md/.json`. Run it on a quiet machine: other processes on the
cores show up as lower GFLOP/s (the file records the load average).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import common
import torch

KINDS = [  # (kind, substrings of profiler op names); first match wins
    ("matmul (mm/addmm/bmm/linear)", ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear")),
    ("attention (sdpa fwd/bwd, softmax)", ("scaled_dot_product", "flash_attention", "softmax")),
    ("optimizer (AdamW)", ("adam",)),
    ("embedding backward", ("embedding_dense_backward", "embedding_backward", "index_add", "embedding")),
    ("layernorm", ("layer_norm",)),
    ("gelu", ("gelu",)),
    ("dropout", ("dropout", "bernoulli", "native_dropout", "aten::random_")),  # random_: poolhead.speed.dropout's draws
    ("casts and copies", ("aten::copy_", "aten::to", "aten::_to_copy", "clone", "contiguous")),
    ("zeroing (fill_/zero_)", ("fill_", "zero_")),
    ("gradient clipping (norms)", ("norm", "clip", "_foreach_mul")),
    ("elementwise (add/mul/div/...)", ("aten::add", "aten::mul", "aten::div", "aten::sub", "aten::tanh", "aten::where",
                                        "masked_fill", "aten::sum", "aten::mean")),
]


def gemm_ceiling(tokens: int, hidden: int, inner: int, dtype: torch.dtype, repeats: int = 5) -> dict:
    """GFLOP/s of every product of one encoder layer in training, and the FLOP-weighted total."""
    shapes = []
    for k, n in ((hidden, 3 * hidden), (hidden, hidden), (hidden, inner), (inner, hidden)):  # qkv, out, up, down
        shapes += [(tokens, k, n), (tokens, n, k), (k, tokens, n)]  # forward, grad input, grad weight
    rows, total_flops, total_seconds = [], 0.0, 0.0
    device = common.device()  # the GPU where there is one
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for m, k, n in shapes:
        a, b = torch.randn(m, k, dtype=dtype, device=device), torch.randn(k, n, dtype=dtype, device=device)
        for _ in range(3):
            a @ b
        times = []
        for _ in range(repeats):
            sync()
            start = time.perf_counter()
            for _ in range(10):
                a @ b
            sync()
            times.append((time.perf_counter() - start) / 10)
        seconds, flops = statistics.median(times), 2.0 * m * k * n
        rows.append({"shape": f"{m}x{k} @ {k}x{n}", "gflops": round(flops / seconds / 1e9, 1)})
        total_flops, total_seconds = total_flops + flops, total_seconds + seconds
    return {"dtype": str(dtype).removeprefix("torch."), "ceiling_gflops": round(total_flops / total_seconds / 1e9, 1),
            "shapes": rows}


def stsb_config(pairs: int, precision: str | None, overrides: list[str] = ()):
    """poolhead's config (cross, cls, MiniLM) on a copy of the first `pairs` STS-B training pairs."""
    from hydra import compose, initialize_config_dir

    data = common.default_data_dir()
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / "poolhead-ceiling"
    (tmp / "stsb").mkdir(parents=True, exist_ok=True)
    lines = (data / "sts-train.csv").read_text(encoding="utf-8").splitlines(keepends=True)[:pairs]
    (tmp / "stsb" / "sts-train.csv").write_text("".join(lines), encoding="utf-8")
    (tmp / "stsb" / "sts-dev.csv").write_text("".join(lines[:64]), encoding="utf-8")
    with initialize_config_dir(str(common.REPO / "src/poolhead/conf"), version_base="1.3"):
        return compose("train", overrides=["encoder=minilm", "data=stsb", f"data.dir={tmp / 'stsb'}", "mode=cross",
                                           "pooling=cls", f"paths.output_dir={tmp / 'run'}",
                                           f"paths.cache_dir={tmp / 'cache'}"]
                       + ([f"trainer.precision={precision}"] if precision else []) + list(overrides))


def training_step(model, cfg):
    """One full training step of `model` as a function of the batch: forward under the config's autocast, loss,
    backward, clipping at 1.0, AdamW step (the config's optimizer, also `step.optimizer`), zeroing."""
    from poolhead.run.plan import autocast_dtype

    model.train()
    optimizer = model.optimizer_factory([p for p in model.parameters() if p.requires_grad], lr=model.lr)
    dtype = autocast_dtype(cfg.trainer.precision)

    def step(batch: dict) -> None:
        with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
            loss = model.head.loss(model(batch["features"]), batch["labels"])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()

    step.optimizer = optimizer
    return step


def training_steps(steps: int, pairs: int, precision: str | None, overrides: list[str] = ()):
    """poolhead's model (poolhead.build) on the first `pairs` STS-B training pairs, warmed up: returns (step, the
    `steps` batches to time, their real tokens, the model, its config); step(batch) is one full training step."""
    import poolhead

    cfg = stsb_config(pairs, precision, overrides)
    datamodule, model = poolhead.build(cfg)
    step = training_step(model, cfg)
    batches = list(datamodule.train_dataloader())
    for batch in batches[:3]:  # warm-up
        step(batch)
    chosen = [batches[i % len(batches)] for i in range(3, 3 + steps)]
    real_tokens = sum(int(side["attention_mask"].sum()) for batch in chosen for side in batch["features"])
    return step, chosen, real_tokens, model, cfg


def encoded_tokens(batches: list[dict]) -> int:
    """Token positions the encoder computes, padding included: every side padded to the batch's widest (a bi batch
    is one pass over both sides, modes.Bi)."""
    return sum(len(batch["features"]) * len(batch["features"][0]["attention_mask"])
               * max(side["attention_mask"].shape[1] for side in batch["features"]) for batch in batches)


def matmul_weights(encoder: torch.nn.Module) -> int:
    """Weights of the encoder's matrix products (its Linear layers, the pooler aside): model FLOPs per token are
    2x this to evaluate, 6x to train."""
    return sum(m.weight.numel() for name, m in encoder.named_modules()
               if isinstance(m, torch.nn.Linear) and "pooler" not in name)


def self_seconds_by_kind(prof: torch.profiler.profile) -> tuple[dict[str, float], float]:
    """Self CPU seconds of a profile grouped by KINDS, and their total."""
    by_kind, total = defaultdict(float), 0.0
    for event in prof.key_averages():
        if event.key.startswith("ProfilerStep") or event.self_cpu_time_total <= 0:
            continue
        kind = next((k for k, names in KINDS if any(n in event.key for n in names)), "other")
        by_kind[kind] += event.self_cpu_time_total / 1e6
        total += event.self_cpu_time_total / 1e6
    return by_kind, total


def matmul_rate(prof: torch.profiler.profile) -> dict:
    """FLOPs and self seconds of the profiled pass's matrix products (mm/addmm/bmm, shapes recorded): how fast the
    products themselves ran inside the step, beside the isolated ceiling; also by op and inner x outer size."""
    by_product: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for event in prof.events():
        shapes = event.input_shapes
        if event.name in ("aten::mm", "aten::addmm"):
            (m, k), (_, n) = shapes[1:3] if event.name == "aten::addmm" else shapes[:2]  # addmm: bias first
            batch = 1
        elif event.name == "aten::bmm":
            (batch, m, k), (_, _, n) = shapes[:2]
        else:
            continue
        product = by_product[f"{event.name.removeprefix('aten::')} k={k} n={n}" if batch == 1 else "bmm (attention)"]
        product[0] += 2.0 * batch * m * k * n
        product[1] += event.self_cpu_time_total / 1e6
    flops, seconds = sum(f for f, _ in by_product.values()), sum(t for _, t in by_product.values())
    return {"gflop": round(flops / 1e9, 1), "seconds": round(seconds, 3),
            "gflops_per_second": round(flops / seconds / 1e9, 1) if seconds else None,
            "by_product": {name: {"gflop": round(f / 1e9, 2), "seconds": round(t, 3),
                                  "gflops_per_second": round(f / t / 1e9, 1)}
                           for name, (f, t) in sorted(by_product.items(), key=lambda kv: -kv[1][1]) if t > 0}}


def profile_step(steps: int, pairs: int, precision: str | None, overrides: list[str] = (), repeats: int = 3) -> dict:
    step, chosen, real_tokens, model, cfg = training_steps(steps, pairs, precision, overrides)
    timed = []
    for _ in range(repeats):  # without the profiler: its own overhead would count as the step's
        start = time.perf_counter()
        for batch in chosen:
            step(batch)
        timed.append(time.perf_counter() - start)
    seconds = statistics.median(timed)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=True) as prof:
        for batch in chosen:
            step(batch)
    by_kind, total = self_seconds_by_kind(prof)
    matmul_params = matmul_weights(model.encoder.model)
    return {"precision": str(cfg.trainer.precision), "steps": steps, "seconds": round(seconds, 3),
            "seconds_each_repeat": [round(t, 3) for t in timed], "overrides": list(overrides),
            "real_tokens_per_second": round(real_tokens / seconds, 1), "matmul_params": matmul_params,
            "padded_over_real_tokens": round(encoded_tokens(chosen) / real_tokens, 3),
            "model_gflops_per_second": round(6 * matmul_params * real_tokens / seconds / 1e9, 1),
            "self_cpu_seconds": {k: round(v, 3) for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])},
            "self_cpu_total": round(total, 3), "matmul_in_step": matmul_rate(prof)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--pairs", type=int, default=640, help="STS-B training pairs the batches come from")
    p.add_argument("--tokens", type=int, default=1024, help="rows of the GEMMs (tokens in a training batch)")
    p.add_argument("--repeats", type=int, default=3, help="timed passes over the steps (median reported)")
    p.add_argument("--override", action="append", default=[], help="a Hydra override for the profiled run, e.g. "
                   "encoder.skip_unread_tokens=false (repeatable)")
    p.add_argument("--out", type=Path, default=common.BENCH / "results")
    a = p.parse_args()
    from poolhead.run.plan import autocast_dtype, cpu_computes_bf16, resolve_precision

    load_before = os.getloadavg()
    dtypes = [torch.float32] + ([torch.bfloat16] if cpu_computes_bf16() else [])
    ceilings = [gemm_ceiling(a.tokens, 384, 1536, dtype) for dtype in dtypes]
    step = profile_step(a.steps, a.pairs, None, a.override, a.repeats)
    step_dtype = str(autocast_dtype(step["precision"]) or torch.float32).removeprefix("torch.")
    ceiling = next(c for c in ceilings if c["dtype"] == step_dtype)
    step["mfu"] = round(step["model_gflops_per_second"] / ceiling["ceiling_gflops"], 3)
    in_step = step["matmul_in_step"]
    result = {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
              "capability": torch.backends.cpu.get_cpu_capability(), "bf16_units": cpu_computes_bf16(),
              "precision_auto": resolve_precision("auto", "cpu"), "load_average_before": load_before,
              "load_average_after": os.getloadavg(), "ceilings": ceilings, "step": step,
              "command": "python benchmarks/ceiling.py "
              + " ".join(f"--{k} {v}" for k, v in (("steps", a.steps), ("pairs", a.pairs), ("tokens", a.tokens),
                                                  ("repeats", a.repeats)))
              + "".join(f" --override {o}" for o in a.override)}
    stem = a.out / f"{datetime.now():%Y%m%d-%H%M%S}-ceiling"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2))
    lines = [f"# Ceiling and step profile ({result['cpu']}, {result['threads']} threads, {result['capability']}, "
             f"bf16 units: {result['bf16_units']})", "", f"Command: `{result['command']}`; load average before "
             f"{load_before[0]:.2f}, after {result['load_average_after'][0]:.2f} "
             "(2 cores: > 0.5 means others ran).", "",
             "| dtype | FLOP-weighted ceiling GFLOP/s | per shape |", "| --- | --- | --- |"]
    lines += [f"| {c['dtype']} | {c['ceiling_gflops']} | "
              + ", ".join(f"{r['shape']}: {r['gflops']}" for r in c["shapes"]) + " |" for c in ceilings]
    lines += ["", f"poolhead training step (mode=cross pooling=cls, then overrides {step['overrides']}; MiniLM, "
              f"{step['precision']}, {step['steps']} steps of real STS-B batches, median of "
              f"{len(step['seconds_each_repeat'])} timed passes {step['seconds_each_repeat']} s, unprofiled): "
              f"{step['real_tokens_per_second']} real tokens/s, {step['model_gflops_per_second']} model "
              f"GFLOP/s (6 x {step['matmul_params']:,} matmul parameters per token) = "
              f"**{100 * step['mfu']:.0f}% of the ceiling** (model FLOPs utilisation). The encoder computes "
              f"{step['padded_over_real_tokens']}x the real tokens (padding).", "",
              "Self CPU time of one more pass, under torch.profiler:", "",
              "| self CPU time | seconds | share |", "| --- | --- | --- |"]
    lines += [f"| {k} | {v} | {100 * v / step['self_cpu_total']:.0f}% |" for k, v in step["self_cpu_seconds"].items()]
    if in_step["gflops_per_second"]:
        share = in_step["gflops_per_second"] / ceiling["ceiling_gflops"]
        lines += ["", "The matrix products themselves (the profiled pass's mm/addmm/bmm, FLOPs from their recorded "
                      f"shapes, padding and skipped rows as done): {in_step['gflop']} GFLOP in "
                      f"{in_step['seconds']} s = {in_step['gflops_per_second']} GFLOP/s, **{100 * share:.0f}% of the "
                      "ceiling**. The products taking the most time:", "",
                  "| product | GFLOP | seconds | GFLOP/s |", "| --- | ---: | ---: | ---: |"]
        lines += [f"| {name} | {r['gflop']} | {r['seconds']} | {r['gflops_per_second']} |"
                  for name, r in list(in_step["by_product"].items())[:8]]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"\nwritten: {stem}.md / .json")


if __name__ == "__main__":
    main()
