"""Why is bf16 autocast slower than fp32 on the GPU at MiniLM's sizes? (benchmarks/gpu.sh found it 2-4x slower for
poolhead, the HF Trainer, the ST trainer and ST encode alike.) Times the same work twice in each variant: a first pass
pays for every new shape (cuBLAS heuristics, kernel loads), a second pass over the same batches does not. Also counts
CUDA kernels per forward with torch.profiler.  python benchmarks/probes/gpu_probe.py  (on the GPU machine, see gpu.sh)"""

import contextlib
import sys
import time
from pathlib import Path

import torch
from transformers import AutoModel, AutoTokenizer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: common.py, ceiling.py
import common

dev = "cuda"
path = common.minilm_path()
tok = AutoTokenizer.from_pretrained(path)
d1, d2, _ = common.read_sts(common.default_data_dir() / "sts-dev.csv")
sentences = sorted(d1 + d2, key=len)
a, b, y = common.read_sts(common.default_data_dir() / "sts-train.csv", 3200)


def batches(multiple=None):
    return [tok(sentences[i:i + 32], padding=True, truncation=True, max_length=128, return_tensors="pt",
                pad_to_multiple_of=multiple).to(dev) for i in range(0, len(sentences), 32)]


def train_batches(multiple=None):
    order = sorted(range(len(a)), key=lambda i: len(a[i]) + len(b[i]))
    out = []
    for i in range(0, len(order), 32):
        idx = order[i:i + 32]
        enc = tok([a[j] for j in idx], [b[j] for j in idx], padding=True, truncation=True, max_length=128,
                  return_tensors="pt", pad_to_multiple_of=multiple).to(dev)
        out.append((enc, torch.tensor([y[j] for j in idx], device=dev)))
    return out


def timed(fn):
    torch.cuda.synchronize()
    t = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return time.perf_counter() - t


def variant(name, dtype_model=torch.float32, autocast=None, tf32=False, multiple=None, config=None):
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.manual_seed(0)
    if config is None:
        model = AutoModel.from_pretrained(path, dtype=dtype_model).to(dev)
    else:  # another encoder's shape, random weights: timing only
        model = AutoModel.from_config(config).to(dev, dtype_model)
    ctx = (lambda: torch.autocast(dev, dtype=autocast)) if autocast else contextlib.nullcontext
    bs = batches(multiple)

    def encode():
        with torch.inference_mode(), ctx():
            for batch in bs:
                model(**batch).last_hidden_state.sum()

    first, second = timed(encode), timed(encode)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof, torch.inference_mode(), ctx():
        model(**bs[len(bs) // 2])
        torch.cuda.synchronize()
    kernels = sum(e.count for e in prof.key_averages() if e.device_type == torch.autograd.DeviceType.CUDA)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-5, fused=True)
    head = torch.nn.Linear(model.config.hidden_size, 1, device=dev, dtype=dtype_model)
    tb = train_batches(multiple)

    def train():
        for enc, labels in tb:
            with ctx():
                out = head(model(**enc).last_hidden_state[:, 0]).squeeze(-1).float()
            torch.nn.functional.mse_loss(out, labels).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)

    t1, t2 = timed(train), timed(train)
    print(f"{name:34s} encode 3000 sentences: first {first:6.2f} s, again {second:6.2f} s; {kernels:4d} CUDA kernels "
          f"a forward | train {len(tb)} steps: first {t1:6.2f} s, again {t2:6.2f} s ({1000 * t2 / len(tb):5.1f} ms/step)",
          flush=True)


print(torch.cuda.get_device_name(), torch.__version__)
if "--bert-base" in __import__("sys").argv:  # does bf16 win once the GEMMs are larger? BERT-base's shape
    from transformers import BertConfig
    base = BertConfig(vocab_size=tok.vocab_size)  # 12 layers, 768 hidden, 3072 inner
    variant("BERT-base shape fp32", config=base)
    variant("BERT-base shape autocast bf16", autocast=torch.bfloat16, config=base)
    variant("BERT-base shape autocast bf16, pad 64", autocast=torch.bfloat16, multiple=64, config=base)
    raise SystemExit
variant("fp32")
variant("autocast bf16", autocast=torch.bfloat16)
variant("fp32 + tf32", tf32=True)
variant("autocast bf16, pad to multiple of 64", autocast=torch.bfloat16, multiple=64)
variant("fp32, pad to multiple of 64", multiple=64)
variant("bf16 weights (no autocast)", dtype_model=torch.bfloat16)
