"""How long the word-embedding backward takes inside a real training step, timed without torch.profiler.

    python benchmarks/probes/embedding_backward.py [--override keep_freed_memory=false]

torch.profiler books 17-21% of a bf16 step's self time to the `fill_` of embedding_dense_backward's fresh
30,522 x 384 gradient (ceiling.py's "zeroing" row) even when no page fault happens. This times that autograd node
directly (a pre-hook and a hook on its grad_fn, perf_counter) over passes of poolhead's step (ceiling.training_steps)
and counts the process's minor page faults, so the two can be told apart. Writes results/<stamp>-embedding-backward.md/.json.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: common.py, ceiling.py
import common
from ceiling import training_steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--override", action="append", default=[], help="a Hydra override (repeatable)")
    p.add_argument("--passes", type=int, default=3)
    p.add_argument("--steps", type=int, default=20)
    a = p.parse_args()
    step, batches, _, model, cfg = training_steps(a.steps, 640, None, a.override)
    backward_ms: list[float] = []
    started: dict[str, float] = {}

    def time_its_backward(module, inputs, output):
        output.grad_fn.register_prehook(lambda grads: started.__setitem__("t", time.perf_counter()))
        output.grad_fn.register_hook(lambda gi, go: backward_ms.append((time.perf_counter() - started["t"]) * 1e3))

    model.encoder.model.get_input_embeddings().register_forward_hook(time_its_backward)
    passes = []
    for _ in range(a.passes):
        backward_ms.clear()
        before, start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
        for batch in batches:
            step(batch)
        passes.append({"seconds": round(time.perf_counter() - start, 3),
                       "embedding_backward_ms_median": round(statistics.median(backward_ms), 2),
                       "embedding_backward_ms_max": round(max(backward_ms), 2),
                       "faults_per_step": round((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / a.steps)})
    command = "python benchmarks/probes/embedding_backward.py " + " ".join(f"--override {o}" for o in a.override)
    result = {"machine": common.machine(), "command": command.strip(), "precision": str(cfg.trainer.precision),
              "passes": passes}
    lines = [f"# Word-embedding backward inside a training step ({common.describe_machine(result['machine'])})", "",
             f"Command: `{result['command']}`; cross, cls, MiniLM, {result['precision']}, {a.steps} steps a pass.", "",
             "| pass | seconds | embedding backward ms (median) | max | minor page faults/step |",
             "| ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {i + 1} | {r['seconds']:.3f} | {r['embedding_backward_ms_median']:.2f} | "
              f"{r['embedding_backward_ms_max']:.2f} | {r['faults_per_step']} |" for i, r in enumerate(passes)]
    common.save_report("embedding-backward", result, lines)


if __name__ == "__main__":
    main()
