#!/usr/bin/env bash
# The GPU path of issue 16 in one call of the device tool (run from the repo root there, with .gpu carried):
#   bash benchmarks/gpu_prepare.sh      # here, once
#   run(command="bash benchmarks/gpu.sh", carry=[".gpu"])
# 1. preflight: imports and one poolhead build on the GPU (stops here, cheaply, if anything is missing);
# 2. GEMM ceiling at MiniLM's shapes (1,024 and 8,192 tokens) in fp32 and bf16;
# 3. benchmarks/run.py over STS-B (4 epochs, all pairs, 1 repeat): poolhead vs HF Trainer / ST trainer / ST encode,
#    fp32 and bf16, each contender on the GPU in its own process.
# `bash benchmarks/gpu.sh probe` runs benchmarks/probes/gpu_probe.py instead of 1-3.
# MiniLM's weights arrive rounded to fp16 (see gpu_prepare.sh): every contender starts from the same rounded weights.
set -u
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT"
exec > >(tee -a "$OUT/gpu.log") 2>&1
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 WANDB_MODE=offline TOKENIZERS_PARALLELISM=false
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .gpu/whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/.gpu/site:$PWD/src:$PWD/benchmarks POOLHEAD_DATA_DIR=$PWD/.gpu/data
mkdir -p /tmp/minilm && cp -r .gpu/minilm16/. /tmp/minilm/ && rm /tmp/minilm/model16.safetensors
python3 - <<'PY' || exit 1
from safetensors.torch import load_file, save_file
w = load_file(".gpu/minilm16/model16.safetensors")
save_file({k: v.float() if v.is_floating_point() else v for k, v in w.items()}, "/tmp/minilm/model.safetensors")
PY
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv
if [ "${1:-}" = eval ]; then   # gpu.sh eval: poolhead's evaluation against ST encode, fp32, 1 epoch
  for c in "poolhead_run.py --mode bi --pooling mean" st_encode.py; do
    name=$(echo $c | cut -d. -f1)
    timeout 100 python3 benchmarks/contenders/$c --train .gpu/data/stsb/sts-train.csv --dev .gpu/data/stsb/sts-dev.csv \
      --epochs 1 --precision fp32 --out "$OUT/$name.json" > "$OUT/$name.log" 2>&1
    python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(r['name'], 'eval pairs/s', r['eval_pairs']/r['eval_seconds'], 'dev', r['dev_spearman'], r.get('error'))" "$OUT/$name.json"
  done; exit
fi
if [ "${1:-}" = probe ]; then timeout 300 python3 benchmarks/probes/gpu_probe.py "${@:2}"; exit; fi   # gpu.sh probe [--bert-base]
echo "== preflight"
timeout 120 python3 - <<'PY' || exit 1
import torch, transformers, lightning, sentence_transformers, datasets, hydra
from hydra import compose, initialize_config_dir
import poolhead
print("torch", torch.__version__, "transformers", transformers.__version__, "lightning", lightning.__version__,
      "sentence-transformers", sentence_transformers.__version__, "cuda", torch.cuda.get_device_name())
with initialize_config_dir(f"{__import__('os').getcwd()}/conf", version_base="1.3"):
    cfg = compose("train", overrides=["encoder=minilm", "data=stsb", "data.dir=.gpu/data/stsb", "mode=bi",
                                      "pooling=mean", "paths.output_dir=/tmp/pre", "paths.cache_dir=/tmp/pre/cache"])
from poolhead.run.plan import resolve_precision
print("precision auto ->", resolve_precision("auto"))
datamodule, model = poolhead.build(cfg)
print("built", type(model).__name__, sum(p.numel() for p in model.parameters()))
PY
echo "== GEMM ceiling"
python3 - <<'PY'
import torch
from ceiling import gemm_ceiling
for tokens in (1024, 8192):
    for dtype in (torch.float32, torch.bfloat16):
        c = gemm_ceiling(tokens, 384, 1536, dtype, repeats=10)
        print(f"tokens {tokens} {c['dtype']}: {c['ceiling_gflops'] / 1000:.1f} TFLOP/s (FLOP-weighted over a layer's 12 products)")
PY
echo "== contenders"
before=$(ls benchmarks/results)
timeout ${RUN_TIMEOUT:-420} python3 benchmarks/run.py --epochs 4 --repeats 1 --precisions fp32,bf16 --timeout 150 \
  --skip hf_trainer_max_length,bare_loop,hf_predict,hf_trainer_grouped:fp32,st_bi:fp32
for f in $(comm -13 <(echo "$before") <(ls benchmarks/results)); do cp "benchmarks/results/$f" "$OUT/gpu-$f"; done
tar czf "$OUT/runs.tgz" benchmarks/runs 2>/dev/null
ls -la "$OUT"
