"""The settings poolhead's ONNX exporter and sessions pick, each on and off: the graph (opset 20: attention as
MatMul / Softmax ops; opset 23: ONNX's Attention op, one kernel; 23 + 3-D: that op on [batch, seq, hidden], no
transposes), ONNX Runtime's residual + LayerNorm fusion (SkipLayerNormFusion: fused, its default, or unfused),
in fp32 and int8 (ONNX Runtime's dynamic quantization, as poolhead quantizes), and subnormal numbers flushed
to zero or not (session.set_denormal_as_zero; torch fp32 too, for the baseline); and whether its threads stop
spinning when a run ends (session.force_spinning_stop), which matters where torch pools between runs.

    .venv/bin/python benchmarks/onnx_levers.py [--rounds 3] [--dev-pairs N]

The bundled all-MiniLM-L6-v2's encoder on both sides of the STS-B dev pairs, tokenized once and sorted by
length (as sentence-transformers batches), batch 32. Timed: the encoder alone (no tokenization, no pooling),
every contender in this one process, rounds in alternating order; medians with the range, against torch fp32
(the same batches through the Hugging Face model), each checked against it (max |diff| of the real tokens'
states, cosine of the first token's state). Then sentence-transformers' encode (tokenization, the picked int8
graph in place of the encoder, torch pooling) with poolhead's settings, and with each of the two that act
beside torch left out (spinning stopped, subnormals flushed); and, for int8 with ONNX Runtime's
defaults and with poolhead's settings, where the time goes (ONNX Runtime's profiler, share per op type).
Results: benchmarks/results/<time>-onnx-levers.json / .md."""

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
    st_on_onnx,
    versions,
)

from poolhead.use.export.onnx_files import (
    ORT_SETTINGS,
    onnx_isa,
    ort_session,
    quantize_int8,
    session_options,
    write_graph,
)

NAMES = ["input_ids", "attention_mask", "token_type_ids"]
GRAPHS = {"opset 20": (20, False), "opset 23": (23, False), "opset 23 + 3-D attention": (23, True)}
UNFUSED = {"optimization.disable_specified_optimizers": ORT_SETTINGS["optimization.disable_specified_optimizers"]}
FLUSHED = {"session.set_denormal_as_zero": ORT_SETTINGS["session.set_denormal_as_zero"]}


def flush_subnormals(settings: dict[str, str]) -> None:
    """This thread's subnormal mode as a fresh process whose first session had `settings` would have it (ONNX
    Runtime sets the calling thread's mode once per process, at its first session; its own threads per
    session): every contender here shares one process."""
    torch.set_flush_denormal(settings.get("session.set_denormal_as_zero") == "1")


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
    """{'<graph> fp32': file, '<graph> int8': file} by poolhead's exporter and quantizer."""
    from transformers import AutoModel

    encoder = AutoModel.from_pretrained(minilm_path(), attn_implementation="sdpa").eval()
    files = {}
    for i, (graph, (opset, flat)) in enumerate(GRAPHS.items()):
        fp32 = write_graph(encoder, NAMES, folder / f"{i}.onnx", opset=opset, attention_3d=flat)
        files[f"{graph} fp32"] = fp32
        files[f"{graph} int8"] = quantize_int8(fp32, folder / f"{i}-int8.onnx", onnx_isa())
    return files


def contenders(files: dict[str, Path]) -> dict[str, tuple[Path | None, dict[str, str]]]:
    """name -> (file, session settings); torch fp32 first (its settings: whether subnormals are flushed)."""
    out: dict[str, tuple[Path | None, dict[str, str]]] = {"torch-fp32": (None, {})}
    out["torch-fp32, subnormals flushed"] = (None, FLUSHED)
    picked = list(GRAPHS)[-1]
    for precision in ("fp32", "int8"):
        for graph in GRAPHS:
            for settings in ({}, UNFUSED):
                fusion = "unfused" if settings else "fused"
                out[f"onnx-{precision}, {graph}, SkipLayerNorm {fusion}"] = (files[f"{graph} {precision}"], settings)
        out[f"onnx-{precision}, {picked}, SkipLayerNorm unfused, subnormals flushed"] = (
            files[f"{picked} {precision}"],
            {**UNFUSED, **FLUSHED},
        )
    return out


def runner(file: Path | None, settings: dict[str, str]):
    if file is None:
        from transformers import AutoModel

        model = AutoModel.from_pretrained(minilm_path(), attn_implementation="sdpa").eval()

        def run_torch(batch):
            with torch.inference_mode():
                return model(**{k: torch.from_numpy(v) for k, v in batch.items()}).last_hidden_state.numpy()

        return run_torch
    session = ort_session(file, settings)
    return lambda batch: session.run(["last_hidden_state"], batch)[0]


def beside_torch(file: Path, rounds: int, pairs: int | None) -> dict[str, list[float]]:
    """Seconds of sentence-transformers' encode of both dev sides with `file` in place of the encoder (poolhead's
    engine): poolhead's settings, and each without session.force_spinning_stop or session.set_denormal_as_zero;
    alternating rounds."""
    from sentence_transformers import SentenceTransformer

    s1, s2, _ = read_sts(default_data_dir() / "sts-dev.csv", pairs)
    model = SentenceTransformer(minilm_path(), device="cpu")
    variants = {
        "poolhead's settings": ORT_SETTINGS,
        "threads spinning after a run": without(ORT_SETTINGS, "session.force_spinning_stop"),
        "subnormals kept": without(ORT_SETTINGS, "session.set_denormal_as_zero"),
    }
    seconds: dict[str, list[float]] = collections.defaultdict(list)
    for r in range(rounds):
        for label, settings in list(variants.items())[:: 1 - 2 * (r % 2)]:
            st_on_onnx(model, file, settings)
            flush_subnormals(settings)
            model.encode(s1[:BATCH_SIZE])
            start = time.perf_counter()
            model.encode(s1, batch_size=BATCH_SIZE)
            model.encode(s2, batch_size=BATCH_SIZE)
            seconds[label].append(time.perf_counter() - start)
    return seconds


def without(settings: dict[str, str], key: str) -> dict[str, str]:
    return {k: v for k, v in settings.items() if k != key}


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


def op_shares(file: Path, settings: dict[str, str], data, work: Path) -> dict[str, float]:
    """ONNX Runtime's profile of one pass over every third batch: the share of kernel time per op type."""
    import onnxruntime as ort

    flush_subnormals(settings)
    options = session_options(settings)
    options.enable_profiling, options.profile_file_prefix = True, str(work / "profile")
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
                run = runner(*named[name])
                flush_subnormals(named[name][1])
                took, out = time_all(run, data)
                seconds[name].append(took)
                ref = out if name == "torch-fp32" and not ref else ref
                checks.setdefault(name, (0.0, 1.0) if name == "torch-fp32" else agreement(out, ref, data))
        picked = files["opset 23 + 3-D attention int8"]
        shares = {
            "int8, opset 20, ONNX Runtime's default settings": op_shares(files["opset 20 int8"], {}, data, work),
            "int8, opset 23 + 3-D attention, poolhead's settings": op_shares(picked, ORT_SETTINGS, data, work),
        }
        beside = beside_torch(picked, args.rounds, args.dev_pairs)
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
        "# ONNX Runtime levers: the graph (opset, 3-D attention) x SkipLayerNorm fusion, fp32 and int8; subnormals "
        "flushed; spinning",
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
    lines += [
        "",
        "sentence-transformers' encode of both dev sides (tokenization, the int8 opset 23 + 3-D attention graph in "
        "place of the encoder, torch pooling), with poolhead's ONNX Runtime settings and with each of the two "
        "that act beside torch left out:",
        "",
        "| session settings | s (median) | range s | pairs/s |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {label} | {statistics.median(t):.2f} | {min(t):.2f}-{max(t):.2f} | "
        f"{sentences / 2 / statistics.median(t):.0f} |"
        for label, t in beside.items()
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
        "encode_seconds_by_settings": beside,
        "sentences": sentences,
        "rounds": args.rounds,
    }
    save_report("onnx-levers", result, lines)


if __name__ == "__main__":
    main()
