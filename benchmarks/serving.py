"""Serving comparison on STS-B dev pairs, side by side in one run: which engine encodes a bi-encoder fastest on CPU?

    <venv>/bin/python benchmarks/serving.py [--model DIR] [--dev-pairs N] [--repeats R] [--only torch-fp32,...]

Contenders (each in its own process, one after another, `--repeats` rounds in alternating order; medians reported):
torch fp32 (`SentenceTransformer.encode`), torch bf16 (the same under CPU autocast, where the CPU has bf16), ONNX fp32
and ONNX int8 (dynamic, by ISA), OpenVINO fp32 and OpenVINO int8 (static, calibrated on STS-B train sentences). The
ONNX / OpenVINO files are written once, before any timing, by sentence-transformers' own exporters into a work copy
of `--model` (a sentence-transformers folder: default the bundled all-MiniLM-L6-v2; pass a `poolhead export` of a bi
winner to measure it). Per contender: load seconds (apart), encode seconds of both dev sides at batch 32 after one
untimed warm-up batch (tokenization included), pairs/s, dev Spearman of cos(u, v), peak RSS of its process, model file
size. A contender whose packages do not run here is reported as unavailable with the reason. Results:
benchmarks/results/<time>-serving.json / .md (next to this script).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    BATCH_SIZE,
    default_data_dir,
    describe_machine,
    machine,
    minilm_path,
    peak_rss_mb,
    read_sts,
    save_report,
    spearman,
    versions,
)

CONTENDERS = {  # name -> (backend, file_name relative to the folder or None for torch, precision)
    "torch-fp32": ("torch", None, "fp32"),
    "torch-bf16": ("torch", None, "bf16"),
    "onnx-fp32": ("onnx", "onnx/model.onnx", "fp32"),
    "onnx-int8": ("onnx", None, "int8"),  # file named by the CPU's ISA, see onnx_int8_file
    "openvino-fp32": ("openvino", "openvino/openvino_model.xml", "fp32"),
    "openvino-int8": ("openvino", "openvino/openvino_model_qint8_quantized.xml", "int8"),
}


def onnx_int8_file() -> str:
    flags = set(Path("/proc/cpuinfo").read_text().split())
    isa = next((i for i in ("avx512_vnni", "avx512f", "avx2") if i in flags), "avx2").replace("f", "")
    return f"onnx/model_qint8_{isa}.onnx"


def file_of(name: str) -> str | None:
    backend, file_name, precision = CONTENDERS[name]
    return onnx_int8_file() if name == "onnx-int8" else file_name


def model_bytes(folder: Path, name: str) -> int:
    """Bytes of the weights the contender loads (torch: model.safetensors; OpenVINO: .xml + .bin; ONNX: .onnx)."""
    f = file_of(name)
    if f is None:
        return sum(p.stat().st_size for p in folder.glob("*.safetensors"))
    path = folder / f
    return path.stat().st_size + (path.with_suffix(".bin").stat().st_size if path.suffix == ".xml" else 0)


def own_peak_rss_mb() -> float:
    """This process's peak RSS since exec (VmHWM); ru_maxrss would carry over the parent's peak through exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return peak_rss_mb()


# --- one contender, in its own process ------------------------------------------------------------------------------
def one(name: str, folder: Path, dev: Path, pairs: int, out: Path) -> None:
    import contextlib

    import torch
    from sentence_transformers import SentenceTransformer

    backend, _, precision = CONTENDERS[name]
    s1, s2, gold = read_sts(dev, pairs)
    kwargs = {} if backend == "torch" else {"backend": backend, "model_kwargs": {"file_name": file_of(name)}}
    start = time.perf_counter()
    model = SentenceTransformer(str(folder), device="cpu", **kwargs)
    load = time.perf_counter() - start
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" and backend == "torch" \
        else contextlib.nullcontext()
    with autocast:
        model.encode(s1[:BATCH_SIZE], batch_size=BATCH_SIZE)  # warm-up, untimed
        start = time.perf_counter()
        u = model.encode(s1, batch_size=BATCH_SIZE, convert_to_tensor=True)
        v = model.encode(s2, batch_size=BATCH_SIZE, convert_to_tensor=True)
        cos = torch.nn.functional.cosine_similarity(u.float(), v.float()).cpu()
        seconds = time.perf_counter() - start
    out.write_text(json.dumps({"name": name, "load_seconds": load, "encode_seconds": seconds, "pairs": len(gold),
                               "pairs_per_second": len(gold) / seconds, "dev_spearman": spearman(cos, gold),
                               "peak_rss_mb": own_peak_rss_mb(), "model_mb": model_bytes(folder, name) / 2**20}))


# --- preparation: the backend files, by sentence-transformers' exporters --------------------------------------------
def prepare(source: Path, work: Path, train: Path, wanted: list[str], calibration: int = 300) -> dict[str, str]:
    """Copy `source` to `work` and write the backend files the wanted contenders load, unless `source` has them (a
    `poolhead export --backend` folder: its own checked files are measured); {contender: why not} for those whose
    packages cannot run here."""
    from sentence_transformers import SentenceTransformer

    shutil.copytree(source, work, dirs_exist_ok=True)
    missing: dict[str, str] = {}
    for backend in ("onnx", "openvino"):
        names = [n for n in wanted if CONTENDERS[n][0] == backend and not (work / file_of(n)).exists()]
        if not names:
            continue
        try:
            model = SentenceTransformer(str(work), device="cpu", backend=backend)
            if f"{backend}-fp32" in names:
                with tempfile.TemporaryDirectory() as tmp:
                    model.save_pretrained(tmp)
                    shutil.copytree(Path(tmp) / backend, work / backend, dirs_exist_ok=True)
            if f"{backend}-int8" in names:
                quantize(model, backend, work, train, calibration)
        except Exception as err:  # ImportError, or an optimum release that does not fit the installed transformers
            for n in names:
                missing[n] = f"{type(err).__name__}: {str(err).splitlines()[0][:300]}"
    return missing


def quantize(model, backend: str, work: Path, train: Path, calibration: int = 300) -> None:
    from sentence_transformers.backend import (
        export_dynamic_quantized_onnx_model,
        export_static_quantized_openvino_model,
    )

    if backend == "onnx":
        export_dynamic_quantized_onnx_model(model, onnx_int8_file().split("qint8_")[1].removesuffix(".onnx"),
                                            str(work))
        return
    from optimum.intel import OVQuantizationConfig

    s1, s2, _ = read_sts(train, calibration)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "train.csv").write_text("sentence\n" + "\n".join(
            '"' + s.replace('"', '""') + '"' for s in (s1 + s2)[:calibration]) + "\n")
        export_static_quantized_openvino_model(model, OVQuantizationConfig(num_samples=calibration), str(work),
                                               dataset_name=tmp, dataset_config_name="default",
                                               dataset_split="train", column_name="sentence")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, help="a sentence-transformers folder (default: the bundled all-MiniLM-L6-v2)")
    p.add_argument("--data-dir", type=Path, default=default_data_dir(), help="holds sts-dev.csv and sts-train.csv")
    p.add_argument("--dev-pairs", type=int, default=None, help="the first N dev pairs (default: all 1,500)")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--calibration", type=int, default=300,
                   help="STS-B train sentences that calibrate OpenVINO int8 (default 300, sentence-transformers' own)")
    p.add_argument("--only", default=",".join(CONTENDERS), help="comma-separated contenders")
    p.add_argument("--one", help=argparse.SUPPRESS)
    p.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    dev = args.data_dir / "sts-dev.csv"
    if args.one:
        one(args.one, args.folder, dev, args.dev_pairs, args.out)
        return 0
    wanted = [n.strip() for n in args.only.split(",") if n.strip()]
    m = machine()
    if "torch-bf16" in wanted and not {"avx512_bf16", "amx_bf16"} & set(m["cpu_flags"]):
        wanted.remove("torch-bf16")  # no bf16 arithmetic on this CPU: autocast would emulate it
    source = args.model or Path(minilm_path())
    busy_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "model"
        start = time.perf_counter()
        provided = [n for n in wanted if file_of(n) and (source / file_of(n)).exists()]
        missing = prepare(source, work, args.data_dir / "sts-train.csv", wanted, args.calibration)
        prepare_seconds = time.perf_counter() - start
        runs: dict[str, list[dict]] = {n: [] for n in wanted if n not in missing}
        for r in range(args.repeats):
            order = list(runs) if r % 2 == 0 else list(runs)[::-1]
            for name in order:
                out = Path(tmp) / f"{name}-{r}.json"
                cmd = [sys.executable, __file__, "--one", name, "--folder", str(work),
                       "--data-dir", str(args.data_dir), "--out", str(out)]
                cmd += ["--dev-pairs", str(args.dev_pairs)] if args.dev_pairs else []
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode != 0:
                    missing[name] = proc.stderr.strip().splitlines()[-1][:300] if proc.stderr.strip() else "failed"
                    runs.pop(name, None)
                    break
                runs[name].append(json.loads(out.read_text()))
                print(f"  {name} round {r + 1}: {runs[name][-1]['pairs_per_second']:.1f} pairs/s", flush=True)
    busy_after = os.getloadavg()
    med = {n: {k: statistics.median(x[k] for x in rs) for k in rs[0] if k != "name"} for n, rs in runs.items() if rs}
    base = med.get("torch-fp32", {}).get("pairs_per_second")
    rerun = f"{Path(sys.executable)} benchmarks/serving.py" + (f" --model {args.model}" if args.model else "") + \
        (f" --dev-pairs {args.dev_pairs}" if args.dev_pairs else "") + f" --repeats {args.repeats}" + \
        (f" --calibration {args.calibration}" if args.calibration != 300 else "") + \
        (f" --only {args.only}" if args.only != ",".join(CONTENDERS) else "")
    label = str(args.model) if args.model else "all-MiniLM-L6-v2 (the bundled copy, zero-shot)"
    lines = [f"# Serving comparison: {label}, {next(iter(med.values()))['pairs'] if med else 0:.0f} STS-B dev "
             "pairs", "", f"Machine: {describe_machine(m)}", "",
             "Load average (1, 5, 15 min) before " + " ".join(f"{x:.2f}" for x in busy_before) + ", after "
             + " ".join(f"{x:.2f}" for x in busy_after) + f" on {os.cpu_count()} cores (above it: the CPU was shared)",
             "", (f"Backend files of the model folder itself (its own, as exported): {', '.join(provided)}. "
                  if provided else "") + ("" if set(provided) >= set(wanted) - {"torch-fp32", "torch-bf16"} else
                  f"Other backend files written in {prepare_seconds:.0f} s (untimed; OpenVINO int8 calibrated on "
                  f"{args.calibration} STS-B train sentences). ") + f"Medians of {args.repeats} round(s); "
             "encode = both dev sides at batch 32, tokenization included, after one warm-up batch.", "",
             "| contender | pairs/s | x torch fp32 | dev Spearman | loss vs fp32 (points) | load s | peak RSS MB | "
             "model MB |", "|---|---|---|---|---|---|---|---|"]
    ref = med.get("torch-fp32", {}).get("dev_spearman")
    for n, x in med.items():
        speed = f"{x['pairs_per_second'] / base:.2f}" if base else "-"
        loss = f"{(ref - x['dev_spearman']) * 100:.2f}" if ref is not None else "-"
        lines.append(f"| {n} | {x['pairs_per_second']:.1f} | {speed} | {x['dev_spearman']:.4f} | {loss} | "
                     f"{x['load_seconds']:.1f} | {x['peak_rss_mb']:.0f} | {x['model_mb']:.1f} |")
    for n, why in missing.items():
        lines.append(f"| {n} | unavailable: {why.replace('|', '/')} | | | | | | |")
    lines += ["", f"Rerun: `{rerun}`"]
    save_report("serving", {"machine": m, "model": str(source), "dev_pairs": args.dev_pairs, "repeats": args.repeats,
                            "calibration": args.calibration, "provided": provided,
                            "prepare_seconds": prepare_seconds, "load_average_before": busy_before,
                            "load_average_after": busy_after, "medians": med, "runs": runs, "unavailable": missing,
                            "versions": versions("sentence-transformers", "onnxruntime", "openvino", "optimum",
                                                 "optimum-intel", "optimum-onnx", "nncf"), "rerun": rerun}, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
