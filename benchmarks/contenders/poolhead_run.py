"""Contender: poolhead itself: `python train.py ...` from the repo root in a child process, result translated.

Timers are poolhead's own, read from RUN/results.json: train = its TrainThroughput callback (fit time minus the
per-epoch validation passes; tokenization happens before fit); eval = val pairs / seconds of its trainer.predict over
the val split (poolhead's default eval batches of 128, sorted by length: larger eval batches are one of the levers
the comparison is about). wall_seconds
(the whole child process, imports and model load included) is reported too. Peak RSS is the child's (getrusage
RUSAGE_CHILDREN; this wrapper imports nothing heavy). The training-pair count is limited by writing the first N rows
to DIR/sts-train.csv; DIR/sts-dev.csv is a copy of --dev (both in a temp dir). Checkpointing is switched off
(see NO_CHECKPOINTS).
"""

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common

PRECISION = {"fp32": "32-true", "bf16": "bf16-mixed"}
# No checkpoint files, as HF/ST run with save_strategy="no"; this also makes poolhead report the last epoch's dev
# Spearman like every other contender (by default it reports its best epoch, picked on that same dev set).
NO_CHECKPOINTS = ["~callbacks.model_checkpoint", "~callbacks.last_checkpoint", "+trainer.enable_checkpointing=false"]


def extra(p):
    p.add_argument("--mode", choices=["cross", "bi"], default="cross")
    p.add_argument("--pooling", default=None, help="default: cls for cross, mean for bi")
    p.add_argument("--run-dir", default=None, help="hydra.run.dir (default: a temp dir)")


def main():
    args = common.contender_args(__doc__, extra)
    pooling = args.pooling or ("cls" if args.mode == "cross" else "mean")
    name = f"poolhead_{args.mode}[{pooling}]"
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "stsb"
        data.mkdir()
        n_train = common.write_subset(args.train, data / "sts-train.csv", args.max_train)
        common.write_subset(args.dev, data / "sts-dev.csv", None)
        run = Path(args.run_dir or Path(tmp) / "run")
        cmd = [sys.executable, "train.py", "encoder=minilm", "data=stsb", f"data.dir={data}", f"mode={args.mode}",
               f"pooling={pooling}", "head=regression", f"trainer.max_epochs={args.epochs}",
               f"data.batch_size={common.BATCH_SIZE}",
               f"optim.lr={common.LR}", f"optim.warmup_ratio={common.WARMUP_RATIO}",
               f"encoder.max_length={common.MAX_LENGTH}", f"seed={common.SEED}",
               f"trainer.precision={PRECISION[args.precision]}", "logger=csv", f"hydra.run.dir={run}",
               *NO_CHECKPOINTS]
        fail = dict(name=name, precision=args.precision, command=" ".join(cmd), versions=common.versions("lightning"))
        if not (common.REPO / "train.py").exists():
            common.write_result(args.out, error="train.py does not exist yet", **fail)
            sys.exit(1)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=common.REPO, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        sys.stdout.write(proc.stdout), sys.stderr.write(proc.stderr)  # into the harness's log of this run
        fail |= dict(wall_seconds=wall, peak_rss=common.peak_rss_mb(children=True))
        try:
            res = json.loads((run / "results.json").read_text())
        except (OSError, ValueError) as err:
            res = {"status": "failed", "error": f"no results.json ({err})"}
        if proc.returncode != 0 or res.get("status") != "ok":
            tail = (proc.stderr or proc.stdout)[-3000:]
            common.write_result(args.out, error=f"rc={proc.returncode}: {res.get('error')}", log_tail=tail, **fail)
            sys.exit(1)

    timing, trained = res["timing"], res["data"]["train"]
    if trained != n_train:
        print(f"warning: poolhead trained on {trained} rows, the subset file has {n_train}", file=sys.stderr)
    eval_pairs = res["data"]["val"]
    common.write_result(
        args.out, train_pairs=trained * args.epochs, train_seconds=timing["train_seconds"],
        eval_pairs=eval_pairs, eval_seconds=eval_pairs / timing["eval_samples_per_second"],
        dev_spearman=res["metrics"]["val/spearman"], poolhead_timing=timing, poolhead_env=res.get("env"), **fail,
    )


if __name__ == "__main__":
    main()
