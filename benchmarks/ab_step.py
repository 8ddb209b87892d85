"""One lever, A against B, in one process: poolhead training steps on real STS-B batches, passes interleaved.

    python benchmarks/ab_step.py --b encoder.skip_unread_tokens=false [--a ...] [--passes 8] [--steps 20]

Builds the model twice (config A: the defaults plus --a overrides; config B: plus --b), with the same weights and
batches, and times full training steps (forward, backward, clip, AdamW) pass by pass, alternating A, B, B, A, ...
so that a slower or busier stretch of the machine hits both alike (a 2-core VM drifts by 10-20% over minutes,
more than most levers). Prints the median seconds per pass, the spread and B/A; writes results/<stamp>-ab.md/.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import common
import torch
from ceiling import training_steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--a", action="append", default=[], help="Hydra override of config A (repeatable)")
    p.add_argument("--b", action="append", default=[], help="Hydra override of config B (repeatable)")
    p.add_argument("--passes", type=int, default=8, help="timed passes per config")
    p.add_argument("--steps", type=int, default=20, help="training steps per pass")
    p.add_argument("--pairs", type=int, default=640)
    a = p.parse_args()
    torch.manual_seed(0)
    runs = {}
    for name, overrides in (("A", a.a), ("B", a.b)):
        torch.manual_seed(0)
        step, batches, tokens, model, cfg = training_steps(a.steps, a.pairs, None, overrides)
        runs[name] = {"step": step, "batches": batches, "tokens": tokens, "overrides": overrides, "seconds": [],
                      "precision": str(cfg.trainer.precision),
                      "model": f"{model.mode}, {type(model.pooling).__name__}"}
    load_before = os.getloadavg()
    for i in range(a.passes):
        for name in ("A", "B") if i % 2 == 0 else ("B", "A"):
            start = time.perf_counter()
            for batch in runs[name]["batches"]:
                runs[name]["step"](batch)
            runs[name]["seconds"].append(time.perf_counter() - start)
    rows = {}
    for name, run in runs.items():
        seconds = run["seconds"]
        rows[name] = {"overrides": run["overrides"], "precision": run["precision"], "model": run["model"],
                      "seconds_per_pass": seconds,
                      "median": statistics.median(seconds), "min": min(seconds), "max": max(seconds),
                      "real_tokens_per_second": run["tokens"] / statistics.median(seconds)}
    ratios = [b / a_ for a_, b in zip(runs["A"]["seconds"], runs["B"]["seconds"], strict=True)]
    result = {"command": "python benchmarks/ab_step.py " + " ".join([*(f"--a {o}" for o in a.a),
                                                                     *(f"--b {o}" for o in a.b)])
              + f" --passes {a.passes} --steps {a.steps} --pairs {a.pairs}",
              "machine": common.machine(),
              "load_average_before": load_before, "load_average_after": os.getloadavg(), "runs": rows,
              "b_over_a_per_pass_pair": ratios, "b_over_a_median": statistics.median(ratios)}
    lines = [f"# A/B: {' '.join(a.b) or '(defaults)'} against {' '.join(a.a) or 'the defaults'}", "",
             f"Command: `{result['command']}`", "", f"Machine: {common.describe_machine(result['machine'])}", "",
             f"Load average before {load_before[0]:.2f}, after {result['load_average_after'][0]:.2f}.",
             f"Each pass: {a.steps} training steps of MiniLM (A: {rows['A']['model']}, {rows['A']['precision']}; "
             f"B: {rows['B']['model']}, {rows['B']['precision']}) on the same real "
             f"STS-B batches; passes alternate A B B A ...", "",
             "| config | overrides | median s/pass | min | max | real tokens/s |",
             "| --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {n} | {' '.join(r['overrides']) or '(defaults)'} | {r['median']:.3f} | {r['min']:.3f} "
              f"| {r['max']:.3f} | {r['real_tokens_per_second']:.0f} |" for n, r in rows.items()]
    lines += ["", f"B/A time per neighbouring pass pair: median {result['b_over_a_median']:.3f} "
                  f"(range {min(ratios):.3f}-{max(ratios):.3f}); < 1 means B is faster."]
    common.save_report("ab", result, lines)


if __name__ == "__main__":
    main()
