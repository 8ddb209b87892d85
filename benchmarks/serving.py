"""Serving comparison on STS-B dev pairs, side by side in one run: which engine encodes a bi-encoder fastest
on CPU?

    <venv>/bin/python benchmarks/serving.py [--model DIR] [--run RUN] [--dev-pairs N] [--repeats R]
        [--only A,B]

Contenders (each in its own process, one after another, `--repeats` rounds in alternating order; medians
reported): torch fp32 (`SentenceTransformer.encode`), torch bf16 (the same under CPU autocast, where the CPU
has bf16); ONNX fp32 and int8 run directly by ONNX Runtime in place of module 0 (the encoder), sentence-
transformers' own modules doing the rest, as its backend="onnx" does; the same files through sentence-
transformers (`st-onnx-*`, where optimum-onnx imports); OpenVINO fp32 and int8 (static, calibrated on STS-B
train sentences) through sentence-transformers; and with `--run`, `poolhead predict`'s scoring
(`poolhead.load(RUN, backend=...)`) per backend. The ONNX files are written once, before any timing, by
poolhead's exporter (torch.onnx.export, ONNX Runtime's dynamic int8 for this CPU), the OpenVINO files by
sentence-transformers' exporters, into a work copy of `--model` (a sentence-transformers folder: default the
bundled all-MiniLM-L6-v2; a `poolhead export` folder keeps its own checked files). Per contender: load seconds
(apart), encode seconds of both dev sides at batch 32 after one untimed warm-up batch (tokenization included),
pairs/s, dev Spearman of cos(u, v) (predict: of pred), peak RSS of its process, model file size. A contender
whose packages do not run here is reported as unavailable with the reason. Run it in .venv-openvino (`make
.venv-openvino/.installed`) for every row at once. Results: benchmarks/results/<time>-serving.json / .md (next
to this script)."""

from __future__ import annotations

import argparse
import inspect
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
from common import (
    BATCH_SIZE,
    default_data_dir,
    describe_machine,
    machine,
    minilm_path,
    peak_rss_mb,
    read_sts,
    save_report,
    spearman,
    st_on_onnx,
    versions,
)

INT8 = "int8"  # the ONNX int8 file: named by the CPU's ISA (onnx_int8_file)
CONTENDERS = {  # name -> (runner, backend, file relative to the folder (None: torch), precision)
    "torch-fp32": ("st", "torch", None, "fp32"),
    "torch-bf16": ("st", "torch", None, "bf16"),
    "onnx-fp32": ("ort", "onnx", "onnx/model.onnx", "fp32"),
    "onnx-int8": ("ort", "onnx", INT8, "int8"),
    "st-onnx-fp32": ("st", "onnx", "onnx/model.onnx", "fp32"),
    "st-onnx-int8": ("st", "onnx", INT8, "int8"),
    "openvino-fp32": ("st", "openvino", "openvino/openvino_model.xml", "fp32"),
    "openvino-int8": ("st", "openvino", "openvino/openvino_model_qint8_quantized.xml", "int8"),
    "predict-torch": ("predict", "torch", None, "fp32"),
    "predict-onnx": ("predict", "onnx", None, "fp32"),
    "predict-onnx-int8": ("predict", "onnx", None, "int8"),
    "predict-openvino": ("predict", "openvino", None, "fp32"),
}


def onnx_int8_file() -> str:
    from poolhead.use.export.onnx_files import onnx_isa

    return f"onnx/model_qint8_{onnx_isa()}.onnx"


def file_of(name: str) -> str | None:
    file_name = CONTENDERS[name][2]
    return onnx_int8_file() if file_name == INT8 else file_name


def model_bytes(folder: Path, name: str) -> int:
    """Bytes of the weights the contender loads (torch: model.safetensors; OpenVINO: .xml + .bin; ONNX:
    .onnx)."""
    f = file_of(name)
    if f is None:
        return sum(p.stat().st_size for p in folder.glob("*.safetensors"))
    path = folder / f
    return path.stat().st_size + (path.with_suffix(".bin").stat().st_size if path.suffix == ".xml" else 0)


def own_peak_rss_mb() -> float:
    """This process's peak RSS since exec (VmHWM); ru_maxrss would carry over the parent's peak through exec.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return peak_rss_mb()


# --- one contender, in its own process ---------------------------------------------------------------------
def st_scorer(name: str, folder: Path):
    """cos(u, v) of the folder's SentenceTransformer on the contender's backend (bf16: under CPU autocast); for
    the `ort` contenders, ONNX Runtime running the file in place of module 0's Hugging Face model (poolhead's
    EngineEncoder, where its backend="onnx" puts optimum's, with the session options poolhead's model card
    gives): the same tokenization, length sorting and pooling as the other contenders."""
    import contextlib

    import torch
    from sentence_transformers import SentenceTransformer

    runner, backend, _, precision = CONTENDERS[name]
    kwargs = {} if runner == "ort" or backend == "torch" else {
        "backend": backend, "model_kwargs": {"file_name": file_of(name)}}
    model = SentenceTransformer(
        str(folder), device="cpu", trust_remote_code=(folder / "poolhead_pooling.py").exists(), **kwargs
    )
    if runner == "ort":
        st_on_onnx(model, folder / file_of(name))
    autocast = (
        torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
    )

    def score(s1: list[str], s2: list[str]):
        with autocast:
            u = model.encode(s1, batch_size=BATCH_SIZE, convert_to_tensor=True)
            v = model.encode(s2, batch_size=BATCH_SIZE, convert_to_tensor=True)
            return torch.nn.functional.cosine_similarity(u.float(), v.float()).cpu()

    return score


def predict_scorer(name: str, run: Path):
    """poolhead predict's scoring of the run (pred on the data's scale) with its encoder on the contender's
    backend."""
    import poolhead
    from poolhead.use.predict import predict_texts

    _, backend, _, precision = CONTENDERS[name]
    model = poolhead.load(run, backend=backend, quantize="int8" if precision == "int8" else None)
    return lambda s1, s2: model.head.predict(predict_texts(model, s1, s2, "32-true", BATCH_SIZE)).cpu()


def one(name: str, folder: Path, dev: Path, pairs: int, out: Path, run: Path | None = None) -> None:
    runner = CONTENDERS[name][0]
    s1, s2, gold = read_sts(dev, pairs)
    start = time.perf_counter()
    score = predict_scorer(name, run) if runner == "predict" else st_scorer(name, folder)
    load = time.perf_counter() - start
    score(s1[:BATCH_SIZE], s2[:BATCH_SIZE])  # warm-up, untimed
    start = time.perf_counter()
    scores = score(s1, s2)
    seconds = time.perf_counter() - start
    out.write_text(
        json.dumps(
            {
                "name": name,
                "load_seconds": load,
                "encode_seconds": seconds,
                "pairs": len(gold),
                "pairs_per_second": len(gold) / seconds,
                "dev_spearman": spearman(scores, gold),
                "peak_rss_mb": own_peak_rss_mb(),
                "model_mb": model_mb(folder, name, run),
            }
        )
    )


def model_mb(folder: Path, name: str, run: Path | None) -> float:
    if CONTENDERS[name][0] != "predict":
        return model_bytes(folder, name) / 2**20
    from poolhead.use.export.onnx_files import onnx_isa

    _, backend, _, precision = CONTENDERS[name]
    pattern = (
        "*.ckpt"
        if backend == "torch"
        else f"model{'_qint8_' + onnx_isa() if precision == 'int8' else ''}.onnx"
    )
    files = sorted((run / ("checkpoints" if backend == "torch" else "backends")).rglob(pattern))
    return files[-1].stat().st_size / 2**20 if files else float("nan")


# --- preparation: the backend files ------------------------------------------------------------------------
def prepare(
    source: Path, work: Path, train: Path, wanted: list[str], run: Path | None, calibration: int = 300
) -> dict[str, str]:
    """Copy `source` to `work` and write the backend files the wanted contenders load, unless `source` has
    them (a `poolhead export --backend` folder: its own checked files are measured), and the run's predict
    files; {contender: why not} for those that cannot run here."""
    shutil.copytree(source, work, dirs_exist_ok=True)
    missing: dict[str, str] = {}
    for backend, write in (("onnx", write_onnx_files), ("openvino", write_openvino_files)):
        names = [
            n
            for n in wanted
            if CONTENDERS[n][0] != "predict"
            and CONTENDERS[n][1] == backend
            and not (work / file_of(n)).exists()
        ]
        if names:
            try:
                write(work, names, train, calibration)
            except (
                Exception
            ) as err:  # ImportError, or an optimum release that does not fit the installed transformers
                missing.update({n: f"{type(err).__name__}: {str(err).splitlines()[0][:300]}" for n in names})
    if "st-onnx-fp32" in wanted or "st-onnx-int8" in wanted:
        from poolhead.use.export import st_loads_onnx

        why = st_loads_onnx()
        missing.update({n: why for n in ("st-onnx-fp32", "st-onnx-int8") if why and n in wanted})
    for name in [n for n in wanted if CONTENDERS[n][0] == "predict"]:
        missing.update({name: why} if (why := prepare_predict(name, run)) else {})
    return missing


def write_onnx_files(work: Path, names: list[str], train: Path, calibration: int) -> None:
    """onnx/model.onnx by poolhead's exporter (torch.onnx.export), the int8 file by ONNX Runtime's quantizer.
    """
    from sentence_transformers import SentenceTransformer

    from poolhead.use.export.onnx_files import onnx_isa, quantize_int8, write_graph

    transformer = SentenceTransformer(str(work), device="cpu")[0]
    accepts = set(inspect.signature(transformer.model.forward).parameters)
    inputs = ["input_ids", "attention_mask"] + (["token_type_ids"] if "token_type_ids" in accepts else [])
    write_graph(transformer.model, inputs, work / "onnx" / "model.onnx")
    quantize_int8(work / "onnx" / "model.onnx", work / onnx_int8_file(), onnx_isa())


def write_openvino_files(work: Path, names: list[str], train: Path, calibration: int) -> None:
    """OpenVINO fp32 and static int8 by sentence-transformers' exporters (optimum-intel)."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(work), device="cpu", backend="openvino")
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        shutil.copytree(Path(tmp) / "openvino", work / "openvino", dirs_exist_ok=True)
    if "openvino-int8" in names:
        from optimum.intel import OVQuantizationConfig
        from sentence_transformers.backend import export_static_quantized_openvino_model

        s1, s2, _ = read_sts(train, calibration)
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "train.csv").write_text(
                "sentence\n"
                + "\n".join('"' + s.replace('"', '""') + '"' for s in (s1 + s2)[:calibration])
                + "\n"
            )
            export_static_quantized_openvino_model(
                model,
                OVQuantizationConfig(num_samples=calibration),
                str(work),
                dataset_name=tmp,
                dataset_config_name="default",
                dataset_split="train",
                column_name="sentence",
            )


def prepare_predict(name: str, run: Path | None) -> str | None:
    """The run's checked engine files, written before any timing (poolhead.load writes them on first use); why
    not, when the contender cannot run here."""
    if run is None:
        return "no --run given (a poolhead run folder of a mode=bi model)"
    _, backend, _, precision = CONTENDERS[name]
    if backend == "torch":
        return None
    try:
        import poolhead

        poolhead.load(run, backend=backend, quantize="int8" if precision == "int8" else None)
    except Exception as err:
        return f"{type(err).__name__}: {str(err).splitlines()[0][:300]}"
    return None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--model", type=Path, help="a sentence-transformers folder (default: the bundled all-MiniLM-L6-v2)"
    )
    p.add_argument(
        "--run", type=Path, help="a poolhead run folder (mode=bi): adds poolhead predict per backend"
    )
    p.add_argument(
        "--data-dir", type=Path, default=default_data_dir(), help="holds sts-dev.csv and sts-train.csv"
    )
    p.add_argument("--dev-pairs", type=int, default=None, help="the first N dev pairs (default: all 1,500)")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument(
        "--calibration",
        type=int,
        default=300,
        help="STS-B train sentences that calibrate OpenVINO int8 (default 300, sentence-transformers' own)",
    )
    p.add_argument("--only", default=",".join(CONTENDERS), help="comma-separated contenders")
    p.add_argument("--one", help=argparse.SUPPRESS)
    p.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    dev = args.data_dir / "sts-dev.csv"
    if args.one:
        one(args.one, args.folder, dev, args.dev_pairs, args.out, args.run)
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
        missing = prepare(source, work, args.data_dir / "sts-train.csv", wanted, args.run, args.calibration)
        prepare_seconds = time.perf_counter() - start
        runs: dict[str, list[dict]] = {n: [] for n in wanted if n not in missing}
        for r in range(args.repeats):
            order = list(runs) if r % 2 == 0 else list(runs)[::-1]
            for name in order:
                out = Path(tmp) / f"{name}-{r}.json"
                cmd = [
                    sys.executable,
                    __file__,
                    "--one",
                    name,
                    "--folder",
                    str(work),
                    "--data-dir",
                    str(args.data_dir),
                    "--out",
                    str(out),
                ]
                cmd += ["--dev-pairs", str(args.dev_pairs)] if args.dev_pairs else []
                cmd += ["--run", str(args.run)] if args.run else []
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode != 0:
                    missing[name] = (
                        proc.stderr.strip().splitlines()[-1][:300] if proc.stderr.strip() else "failed"
                    )
                    runs.pop(name, None)
                    break
                runs[name].append(json.loads(out.read_text()))
                print(f"  {name} round {r + 1}: {runs[name][-1]['pairs_per_second']:.1f} pairs/s", flush=True)
    busy_after = os.getloadavg()
    med = {
        n: {k: statistics.median(x[k] for x in rs) for k in rs[0] if k != "name"}
        for n, rs in runs.items()
        if rs
    }
    base = med.get("torch-fp32", {}).get("pairs_per_second")
    rerun = (
        f"{Path(sys.executable)} benchmarks/serving.py"
        + (f" --model {args.model}" if args.model else "")
        + (f" --run {args.run}" if args.run else "")
        + (f" --dev-pairs {args.dev_pairs}" if args.dev_pairs else "")
        + f" --repeats {args.repeats}"
        + (f" --calibration {args.calibration}" if args.calibration != 300 else "")
        + (f" --only {args.only}" if args.only != ",".join(CONTENDERS) else "")
    )
    label = str(args.model) if args.model else "all-MiniLM-L6-v2 (the bundled copy, zero-shot)"
    lines = [
        f"# Serving comparison: {label}, {next(iter(med.values()))['pairs'] if med else 0:.0f} STS-B dev "
        "pairs",
        "",
        f"Machine: {describe_machine(m)}",
        "",
        "Load average (1, 5, 15 min) before "
        + " ".join(f"{x:.2f}" for x in busy_before)
        + ", after "
        + " ".join(f"{x:.2f}" for x in busy_after)
        + f" on {os.cpu_count()} cores (above it: the CPU was shared)",
        "",
        (
            f"Backend files of the model folder itself (its own, as exported): {', '.join(provided)}. "
            if provided
            else ""
        )
        + (
            ""
            if set(provided) >= set(wanted) - {"torch-fp32", "torch-bf16"}
            else f"Other backend files written in {prepare_seconds:.0f} s (untimed; ONNX by poolhead's "
            "exporter, "
            f"OpenVINO int8 calibrated on "
            f"{args.calibration} STS-B train sentences). "
        )
        + f"Medians of {args.repeats} round(s); "
        "encode = both dev sides at batch 32, tokenization included, after one warm-up batch.",
        "",
        "| contender | pairs/s | x torch fp32 | dev Spearman | loss vs fp32 (points) | load s | "
        "peak RSS MB | "
        "model MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    ref = med.get("torch-fp32", {}).get("dev_spearman")
    for n, x in med.items():
        speed = f"{x['pairs_per_second'] / base:.2f}" if base else "-"
        loss = f"{(ref - x['dev_spearman']) * 100:.2f}" if ref is not None else "-"
        lines.append(
            f"| {n} | {x['pairs_per_second']:.1f} | {speed} | {x['dev_spearman']:.4f} | {loss} | "
            f"{x['load_seconds']:.1f} | {x['peak_rss_mb']:.0f} | {x['model_mb']:.1f} |"
        )
    for n, why in missing.items():
        lines.append(f"| {n} | unavailable: {why.replace('|', '/')} | | | | | | |")
    lines += ["", f"Rerun: `{rerun}`"]
    save_report(
        "serving",
        {
            "machine": m,
            "model": str(source),
            "dev_pairs": args.dev_pairs,
            "repeats": args.repeats,
            "calibration": args.calibration,
            "provided": provided,
            "prepare_seconds": prepare_seconds,
            "load_average_before": busy_before,
            "load_average_after": busy_after,
            "medians": med,
            "runs": runs,
            "unavailable": missing,
            "versions": versions(
                "sentence-transformers",
                "onnxruntime",
                "openvino",
                "optimum",
                "optimum-intel",
                "optimum-onnx",
                "nncf",
                "onnx",
                "onnxscript",
                "torch",
            ),
            "rerun": rerun,
        },
        lines,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
