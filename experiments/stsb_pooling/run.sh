#!/usr/bin/env bash
# The whole study, resumable: run it again (any session, any clone) and it continues. Each sweep skips the jobs whose
# committed records (runs/<sweep>/<job>/results.json) hold `ok` results of the same config hash, resumes a job from
# its last.ckpt where this machine still has one, and retrains the rest. Then the report, figure and status.
#   bash experiments/stsb_pooling/run.sh            # from the repo root, after `make install`
#   bash experiments/stsb_pooling/run.sh hydra/launcher=parallel   # extra overrides go to both sweeps: here 2 jobs
#                                                                   # side by side, 1 thread each
# POOLHEAD_ROOT=/path/to/checkout points the sweep folders (and logs) at another checkout, e.g. to run pinned code
# from a git worktree while the records land in the main checkout.
set -u
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
$PY train.py -m experiment=stsb_probe "$@"
$PY train.py -m experiment=stsb_pooling "$@"
$PY train.py -m experiment=stsb_head_lr "$@"    # 7 jobs: bi classification with the head at 1e-3 (README)
$PY experiments/stsb_pooling/analyze.py \
  --probe "${POOLHEAD_ROOT:-.}/experiments/stsb_pooling/runs/probe" \
  --finetune "${POOLHEAD_ROOT:-.}/experiments/stsb_pooling/runs/finetune" \
  --head-lr "${POOLHEAD_ROOT:-.}/experiments/stsb_pooling/runs/head_lr" ${PAUSES:+--pauses "$PAUSES"}
