"""A process-wide lever, A against B: each arm in its own processes, alternating A B B A ...

    python benchmarks/process_ab.py --b keep_freed_memory=false [--a ...] [--processes 4] [--passes 3]
    python benchmarks/process_ab.py --b keep_freed_memory=false --a mode=bi --a pooling=mean --b mode=bi ...

For levers that ab_step.py cannot interleave in one process because they change the process itself (the
allocator: `keep_freed_memory`). Each process builds poolhead's model (cross, cls, MiniLM, real STS-B batches;
ceiling.training_steps), warms up, and times `--passes` passes of `--steps` full training steps; it also counts the
minor page faults and the kernel (system) CPU time of those passes and its peak RSS. Prints medians over processes
of each process's median pass, the spread and B/A; writes results/<stamp>-process-ab.md/.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import common


def child(overrides: list[str], steps: int, pairs: int, passes: int) -> dict:
    from ceiling import training_steps

    step, batches, tokens, _, cfg = training_steps(steps, pairs, None, overrides)
    seconds, faults, system = [], [], []
    for _ in range(passes):
        before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        for batch in batches:
            step(batch)
        after = resource.getrusage(resource.RUSAGE_SELF)
        seconds.append(time.perf_counter() - start)
        faults.append((after.ru_minflt - before.ru_minflt) / steps)
        system.append((after.ru_stime - before.ru_stime) / steps * 1e3)
    return {"pass_seconds": [round(s, 3) for s in seconds], "seconds": round(statistics.median(seconds), 3),
            "faults_per_step": round(statistics.median(faults)),
            "system_ms_per_step": round(statistics.median(system), 1),
            "peak_rss_mb": round(common.peak_rss_mb(), 1), "precision": str(cfg.trainer.precision),
            "real_tokens": tokens}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--a", action="append", default=[], help="Hydra override of config A (repeatable)")
    p.add_argument("--b", action="append", default=[], help="Hydra override of config B (repeatable)")
    p.add_argument("--processes", type=int, default=4, help="processes per config")
    p.add_argument("--passes", type=int, default=3, help="timed passes per process (its median is its number)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--pairs", type=int, default=640)
    p.add_argument("--child", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        print("RESULT " + json.dumps(child(json.loads(a.child), a.steps, a.pairs, a.passes)))
        return
    arms = {"A": a.a, "B": a.b}
    order = [name for i in range(a.processes) for name in (("A", "B") if i % 2 == 0 else ("B", "A"))]
    runs: dict[str, list[dict]] = {"A": [], "B": []}
    load_before = os.getloadavg()
    for name in order:
        cmd = [sys.executable, __file__, "--child", json.dumps(arms[name]), "--steps", str(a.steps),
               "--pairs", str(a.pairs), "--passes", str(a.passes)]
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=common.BENCH)
        line = next((s for s in out.stdout.splitlines() if s.startswith("RESULT ")), None)
        if line is None:
            raise SystemExit(f"process {name} failed (rc {out.returncode}):\n{out.stderr[-3000:]}")
        runs[name].append(json.loads(line.removeprefix("RESULT ")))
        print(name, runs[name][-1], flush=True)
    med = {k: statistics.median(r["seconds"] for r in v) for k, v in runs.items()}
    summary = {k: {"median_pass_seconds": med[k], "range": [min(r["seconds"] for r in v), max(r["seconds"] for r in v)],
                   "faults_per_step": statistics.median(r["faults_per_step"] for r in v),
                   "system_ms_per_step": statistics.median(r["system_ms_per_step"] for r in v),
                   "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in v)} for k, v in runs.items()}
    command = "python benchmarks/process_ab.py " + " ".join(
        [f"--a {o}" for o in a.a] + [f"--b {o}" for o in a.b]
        + [f"--processes {a.processes} --passes {a.passes} --steps {a.steps} --pairs {a.pairs}"])
    result = {"machine": common.machine(), "command": command, "order": order, "runs": runs, "summary": summary,
              "b_over_a": round(med["B"] / med["A"], 3), "load_average_before": load_before,
              "load_average_after": os.getloadavg()}
    lines = [f"# A/B of a process-wide lever ({common.describe_machine(result['machine'])})", "",
             f"Command: `{command}`; order {' '.join(order)}; load average before {load_before[0]:.2f}, after "
             f"{result['load_average_after'][0]:.2f} (2 cores: > 0.5 means others ran).", "",
             "| config | overrides | median s per pass (of process medians) | range over processes | minor faults/step "
             "| kernel ms/step | peak RSS MB |", "| --- | --- | ---: | --- | ---: | ---: | ---: |"]
    for k in ("A", "B"):
        s = summary[k]
        lines.append(f"| {k} | {' '.join(arms[k]) or '(defaults)'} | {s['median_pass_seconds']:.3f} | "
                     f"{s['range'][0]:.3f}-{s['range'][1]:.3f} | {s['faults_per_step']:.0f} | "
                     f"{s['system_ms_per_step']:.1f} | {s['peak_rss_mb']:.0f} |")
    lines += ["", f"B / A (time): **{result['b_over_a']:.3f}** ({runs['A'][0]['precision']}, {a.steps} steps a pass)."]
    common.save_report("process-ab", result, lines)


if __name__ == "__main__":
    main()
