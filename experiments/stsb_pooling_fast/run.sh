#!/usr/bin/env bash
# The STS-B study by successive halving, resumable: run it again (any session, any clone) and it continues; with
# nothing left to train it rewrites runs/halving.md from the job records. Then the comparison with the full study.
#   bash experiments/stsb_pooling_fast/run.sh          # from the repo root, after `make install`
# Extra overrides go to the sweep. POOLHEAD_ROOT=/path/to/checkout puts the records in another checkout (pinned code
# in a git worktree, records in the main one).
set -u
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
$PY train.py -m experiment=stsb_pooling_fast hydra/launcher=parallel trainer.enable_progress_bar=false "$@"
status=$?
$PY experiments/stsb_pooling_fast/analyze.py --fast "${POOLHEAD_ROOT:-.}/experiments/stsb_pooling_fast/runs"
exit $status
