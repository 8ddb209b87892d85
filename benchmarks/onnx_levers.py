"""The two ONNX Runtime settings poolhead's exporter picks, each alone and both: the opset (20: attention as
MatMul / Softmax ops; 23: ONNX's Attention op, one kernel) and ONNX Runtime's residual + LayerNorm fusion
(SkipLayerNormFusion: on, its default, or off), in fp32 and int8 (ONNX Runtime's dynamic quantization, as
poolhead quantizes).

    .venv/bin/python benchmarks/onnx_levers.py [--rounds 3] [--dev-pairs N]

The bundled all-MiniLM-L6-v2's encoder on both sides of the STS-B dev pairs, tokenized once and sorted by
length (as sentence-transformers batches), batch 32. Timed: the encoder alone (no tokenization, no pooling),
every contender in this one process, rounds in alternating order; medians with the range, against torch fp32
(the same batches through the Hugging Face model), each checked against it (max |diff| of the states, cosine
of the first token's state). Then, for int8 with the default and with the picked settings, where the time goes
(ONNX Runtime's profiler, share per op type). Results: benchmarks/results/<time>-onnx-levers.json / .md."""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    BATCH_SIZE,
    default_data_dir,
    describe_machine,
    machine,
    minilm_path,
    read_sts,
    save_report,
    versions,
)

from poolhead.use.export.onnx_files import ORT_UNFUSED, onnx_isa, ort_session, quantize_int8, write_graph

NAMES = ["input_ids", "attention_mask", "token_type_ids"]


def batches(pairs: int | None) -> list[dict[str, np.ndarray]]:
    from transformers import AutoTokenizer

    s1, s2, _ = read_sts(default_data_dir() / "sts-dev.csv", pairs)
    texts = sorted(s1 + s2, key=len, reverse=True)
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    return [
        {
            k: v.astype(np.int64)
            for k, v in tokenizer(
                texts[i : i + BATCH_SIZE], padding=True, truncation=True, max_length=256, return_tensors="np"
            ).items()
        }
        for i in range(0, len(texts), BATCH_SIZE)
    ]


def write_files(folder: Path) -> dict[str, Path]:
    """{'opset20-fp32': file, 'opset20-int8': ..., 'opset23-...'} by poolhead's exporter and quantizer."""
    from transformers import AutoModel

    encoder = AutoModel.from_pretrained(minilm_path(), attn_implementation="sdpa").eval()
    files = {}
    for opset in (20, 23):
        fp32 = write_graph(encoder, NAMES, folder / f"opset{opset}.onnx", opset=opset)
        files[f"opset{opset}-fp32"] = fp32
        files[f"opset{opset}-int8"] = quantize_int8(fp32, folder / f"opset{opset}-int8.onnx", onnx_isa())
    return files


def contenders(files: dict[str, Path]) -> dict[str, tuple[Path | None, str | None]]:
    """name -> (file, the fusion switched off); torch fp32 first."""
    out: dict[str, tuple[Path | None, str | None]] = {"torch-fp32": (None, None)}
    for precision in ("fp32", "int8"):
        for opset in (20, 23):
            for unfused in (None, ORT_UNFUSED):
                name = f"onnx-{precision} opset {opset}, SkipLayerNorm {'unfused' if unfused else 'fused'}"
                out[name] = (files[f"opset{opset}-{precision}"], unfused)
    return out


def runner(file: Path | None, unfused: str | None):
    if file is None:
        from transformers import AutoModel

        model = AutoModel.from_pretrained(minilm_path(), attn_implementation="sdpa").eval()

        def run_torch(batch):
            with torch.inference_mode():
                return model(**{k: torch.from_numpy(v) for k, v in batch.items()}).last_hidden_state.numpy()

        return run_torch
    session = ort_session(file, unfused)
    return lambda batch: session.run(["last_hidden_state"], batch)[0]


def time_all(run, data) -> tuple[float, list[np.ndarray]]:
    run(data[0])  # warm-up
    start = time.perf_counter()
    out = [run(b) for b in data]
    return time.perf_counter() - start, out


def agreement(out: list[np.ndarray], ref: list[np.ndarray], data) -> tuple[float, float]:
    """(max |diff| of the real tokens' states, mean cosine of the first token's state) against torch fp32."""
    diff = max(
        float(np.abs(a - b)[batch["attention_mask"] == 1].max()) for a, b, batch in zip(out, ref, data, strict=True)
    )
    a, b = np.concatenate([o[:, 0] for o in out]), np.concatenate([r[:, 0] for r in ref])
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    return diff, float(cos.mean())


def op_shares(file: Path, unfused: str | None, data, work: Path) -> dict[str, float]:
    """ONNX Runtime's profile of one pass over every third batch: the share of kernel time per op type."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.enable_profiling, options.profile_file_prefix = True, str(work / "profile")
    if unfused:
        options.add_session_config_entry("optimization.disable_specified_optimizers", unfused)
    session = ort.InferenceSession(str(file), options, providers=["CPUExecutionProvider"])
    for batch in data[::3]:
        session.run(["last_hidden_state"], batch)
    per_op: collections.Counter = collections.Counter()
    for event in json.loads(Path(session.end_profiling()).read_text()):
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            per_op[event["args"]["op_name"]] += event["dur"]
    total = sum(per_op.values())
    return {op: us / total for op, us in per_op.most_common(8)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--dev-pairs", type=int, default=None, help="the first N dev pairs (default: all 1,500)")
    args = p.parse_args()
    if not (default_data_dir() / "sts-dev.csv").exists():
        sys.exit(f"skipped: no STS-B dev file at {default_data_dir() / 'sts-dev.csv'} (see ../shared/data)")
    data = batches(args.dev_pairs)
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        files = write_files(work)
        named = contenders(files)
        seconds: dict[str, list[float]] = collections.defaultdict(list)
        checks: dict[str, tuple[float, float]] = {}
        ref: list[np.ndarray] = []
        for r in range(args.rounds):
            for name in list(named) if r % 2 == 0 else list(named)[::-1]:
                took, out = time_all(runner(*named[name]), data)
                seconds[name].append(took)
                ref = out if name == "torch-fp32" and not ref else ref
                checks.setdefault(name, (0.0, 1.0) if name == "torch-fp32" else agreement(out, ref, data))
        default_int8, picked_int8 = (files["opset20-int8"], None), (files["opset23-int8"], ORT_UNFUSED)
        shares = {
            label: op_shares(*which, data, work)
            for label, which in (
                ("int8, opset 20, fused (ONNX Runtime's defaults)", default_int8),
                ("int8, opset 23, unfused (poolhead's)", picked_int8),
            )
        }
    load_after = Path("/proc/loadavg").read_text().split()[:3]
    base = statistics.median(seconds["torch-fp32"])
    sentences = sum(len(b["input_ids"]) for b in data)
    rows = {
        name: {
            "median_s": statistics.median(t),
            "min_s": min(t),
            "max_s": max(t),
            "x_torch_fp32": base / statistics.median(t),
            "sentences_per_s": sentences / statistics.median(t),
            "max_abs_diff": checks[name][0],
            "cls_cosine": checks[name][1],
        }
        for name, t in seconds.items()
    }
    m = machine()
    lines = [
        "# ONNX Runtime levers: opset (Attention op) x SkipLayerNorm fusion, fp32 and int8 (encoder only)",
        "",
        f"Machine: {describe_machine(m)}",
        "",
        f"Load average before {' '.join(load_before)}, after {' '.join(load_after)} on {m['usable_cores']} cores. "
        f"{sentences} sentences (both sides of the STS-B dev pairs), length-sorted batches of {BATCH_SIZE}, "
        f"{sum(b['input_ids'].size for b in data)} tokens with padding; encoder time only; "
        f"medians of {args.rounds} alternating rounds, with the range (min-max).",
        "",
        "| contender | s (median) | range s | sentences/s | x torch fp32 | max abs diff | CLS cosine |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {n} | {r['median_s']:.2f} | {r['min_s']:.2f}-{r['max_s']:.2f} | {r['sentences_per_s']:.0f} | "
        f"{r['x_torch_fp32']:.2f} | {r['max_abs_diff']:.1e} | {r['cls_cosine']:.5f} |"
        for n, r in rows.items()
    ]
    for label, share in shares.items():
        lines += ["", f"Where the time goes, {label}: " + ", ".join(f"{op} {100 * v:.0f}%" for op, v in share.items())]
    pairs = f" --dev-pairs {args.dev_pairs}" if args.dev_pairs else ""
    lines += ["", f"Rerun: `{sys.executable} benchmarks/onnx_levers.py --rounds {args.rounds}{pairs}`"]
    result = {
        "machine": m,
        "versions": versions("torch", "onnxruntime", "onnx", "onnxscript", "transformers"),
        "load_before": load_before,
        "load_after": load_after,
        "rows": rows,
        "op_shares": shares,
        "sentences": sentences,
        "rounds": args.rounds,
    }
    save_report("onnx-levers", result, lines)


if __name__ == "__main__":
    main()
