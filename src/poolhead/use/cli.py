"""poolhead commands: train and sweep (train), use a trained model (predict, eval, export) and look after the
caches (cache). `poolhead <command> --help` explains each; README.md shows them. Start-up stays light: torch,
Lightning, transformers and Hydra are imported inside the command that needs them (tests/test_imports.py)."""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import re
import sys
import warnings
from pathlib import Path
from typing import Any

from poolhead import __version__
from poolhead.resources import conf_dir
from poolhead.use.guards import (
    cache_made,
    check_device,
    check_finished,
    check_output,
    clear_caches,
    loss_share,
    predictions_path,
)

FORMAT_CHOICES = ("auto", "sentence-transformers", "cross-encoder", "transformers")


def default_cache_dir() -> Path:
    return Path(os.environ.get("POOLHEAD_CACHE", Path.home() / ".cache" / "poolhead")).expanduser()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["train"]:  # Hydra parses its own command line
        return train_command(argv[1:])
    args = parser().parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return args.run_command(args)
    except (ValueError, FileNotFoundError, FileExistsError, OSError, ImportError) as err:  # DataError, ExportRefused
        print(f"poolhead {args.command}: error: {err}", file=sys.stderr)
        return 1


def _show_warning(message: Any, category: type[Warning], filename: str, lineno: int, file: Any = None,
                  line: str | None = None, _python: Any = warnings.showwarning) -> None:
    """poolhead's own warnings (an unfinished run loaded: poolhead.run.record.UnfinishedRunWarning) as one line,
    as its errors are; any other as Python shows it."""
    if category.__name__ == "UnfinishedRunWarning":
        print(f"poolhead: warning: {message}", file=sys.stderr)
    else:
        _python(message, category, filename, lineno, file, line)


def parser() -> argparse.ArgumentParser:
    main_parser = argparse.ArgumentParser(prog="poolhead", description=__doc__,
                                          formatter_class=argparse.RawDescriptionHelpFormatter)
    main_parser.add_argument("--version", action="version", version=f"poolhead {__version__}")
    sub = main_parser.add_subparsers(dest="command", required=True)
    sub.add_parser("train", help="train one model, or sweep with -m (Hydra overrides: poolhead train --help)",
                   add_help=False)
    run_help = "a run folder (logs/<task>/runs/<time>: its checkpoints/best.ckpt) or a .ckpt file"
    device = dict(default=None, help="cpu, cuda, ... (default: cuda when available, else cpu)")
    precision = dict(default=None, choices=["32-true", "bf16-mixed", "16-mixed"],
                     help="default: the run's own (bf16-mixed where it trained in bf16)")
    trust = dict(action="store_true", help="build components the checkpoint names from outside poolhead (your own "
                                           "custom pooling/head): runs their code, so only for checkpoints you trust")

    p = sub.add_parser("predict", help="score the rows of a .csv/.tsv/.jsonl/.json file",
                       description="Read FILE with the strict readers training uses (a bad row stops the command "
                                   "naming file, line and field; labels are optional) and write every input row, in "
                                   "input order, with `pred` added (class heads: pred_id and prob_<label> too; rows "
                                   "skipped for an empty text get no prediction). Batches are length-bucketed.")
    p.add_argument("run", help=run_help)
    p.add_argument("--input", required=True, type=Path, help="the rows to score (.csv, .tsv, .jsonl or .json)")
    p.add_argument("--output", type=Path, help="where to write (suffix picks the format; default: FILE.pred.<suffix>)")
    p.add_argument("--text", help="column of the (first) text; default: the run's data.text if it trained on "
                                  "data=csv, else sentence1")
    p.add_argument("--text-pair", help="column of the second text (pair models); default: data.text_pair, else "
                                       "sentence2")
    p.add_argument("--label", help="column of the gold label, used when present; default: data.label, else score")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--device", **device)
    p.add_argument("--precision", **precision)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--trust-remote-code", **trust)
    p.add_argument("--backend", default="torch", choices=("torch", "onnx", "openvino"),
                   help="run the encoder on ONNX Runtime or OpenVINO (the run's ONNX graph, written and checked "
                        "against torch on first use under <run>/backends/); pooling and head stay in torch")
    p.add_argument("--quantize", choices=("int8",), help="with --backend onnx: the dynamic int8 graph, kept only "
                   "within --max-loss of torch's dev Spearman")
    p.add_argument("--max-loss", type=loss_share, default=0.005, help="see export --max-loss")
    p.set_defaults(run_command=predict_command)

    e = sub.add_parser("eval", help="evaluate a trained model on another dataset; writes eval.json beside the run",
                       description="Evaluate the model on the splits of another data config with the task's metrics "
                                   "(e.g. a model trained on STS-B scored on KorSTS) and write eval.json (one entry "
                                   "per data name) and eval_<data>.csv (predictions) into the run folder.",
                       epilog="example: poolhead eval logs/train/runs/<run> data=korsts data.dir=../shared/data/korsts")
    e.add_argument("run", help=run_help)
    e.add_argument("overrides", nargs="+", help="data=<group> and data.<key>=<value> (or paths.*) overrides, as for "
                                                "train.py")
    e.add_argument("--split", nargs="+", choices=["train", "val", "test"],
                   help="default: val and, when the data has one, test")
    e.add_argument("--output", type=Path, help="eval.json to write (default: <run folder>/eval.json)")
    e.add_argument("--config-dir", type=Path, default=None,
                   help="a config folder of your own (data/<name>.yaml), searched before the package's")
    e.add_argument("--cache-dir", type=Path, default=default_cache_dir(), help="token cache (default: as cache)")
    e.add_argument("--device", **device)
    e.add_argument("--precision", **precision)
    e.add_argument("--trust-remote-code", **trust)
    e.add_argument("--mteb", action="store_true", help="also score a mode=bi run's sentence-transformers export with "
                   "MTEB's STS evaluation on the same local rows (no hub access, cache=None); needs poolhead[mteb]")
    e.set_defaults(run_command=eval_command)

    x = sub.add_parser("export", help="write a folder that sentence-transformers or transformers load",
                       description="Export a trained model in a format whose outputs equal poolhead's (checked on "
                                   "probe pairs before the folder is kept). auto: mode=bi -> sentence-transformers, "
                                   "mode=cross -> cross-encoder, mode=single -> transformers. A combination with no "
                                   "exact equivalent is refused, naming the formats that hold it. A README.md model "
                                   "card says how to load the folder and what its scores mean.")
    x.add_argument("run", help=run_help + "; with --best, a sweep folder (logs/<task>/multiruns/<time>)")
    x.add_argument("--to", required=True, type=Path, help="the folder to write (new or empty)")
    x.add_argument("--format", default="auto", choices=FORMAT_CHOICES)
    x.add_argument("--best", action="store_true", help="RUN is a sweep folder: export the report's best job")
    x.add_argument("--trust-remote-code", **trust)
    x.add_argument("--force", action="store_true", help="export a run that did not finish (failed, "
                                                         "interrupted, paused at a rung): refused without it")
    x.add_argument("--backend", default="torch", choices=("torch", "onnx", "openvino"),
                   help="also write the ONNX (torch.onnx.export; main venv) or OpenVINO (sentence-transformers' "
                        "exporter; .venv-openvino) file of the sentence-transformers / cross-encoder export, checked "
                        "against torch on probe pairs")
    x.add_argument("--quantize", choices=("int8",), help="also write the backend's int8 file (ONNX: dynamic, "
                   "by ONNX Runtime; OpenVINO: static, calibrated on the run's training texts), kept only within "
                   "--max-loss")
    x.add_argument("--max-loss", type=loss_share, default=0.005,
                   help="the dev Spearman an int8 file may lose against torch fp32 (default 0.005 = 0.5 points)")
    x.set_defaults(run_command=export_command)

    c = sub.add_parser("cache", help="the encoder-feature and token caches (paths.cache_dir)")
    c.add_argument("action", choices=["info", "clear"])
    c.add_argument("--cache-dir", type=Path, default=default_cache_dir(),
                   help="default: $POOLHEAD_CACHE or ~/.cache/poolhead (the config's paths.cache_dir)")
    c.set_defaults(run_command=cache_command)
    return main_parser


# --- train ------------------------------------------------------------------------------------------------------
TRAIN_HELP = """usage: poolhead train [-m] [--config-dir DIR] [group=option ...] [key=value ...]

Train one model (a run folder under logs/train/runs/), or with -m sweep the comma-separated options (a grid,
or hydra/sweeper=halving, hparams_search=<preset>). Composes the configs shipped with poolhead ({conf}); a
folder of your own adds or replaces options: --config-dir DIR or hydra.searchpath=[file://DIR].

config groups: {groups}

examples:
  poolhead train data=csv data.train=train.csv data.text=text data.label=label encoder=tiny
  poolhead train -m pooling=cls,mean,max head=regression,classification
  poolhead train --cfg job pooling=cls     # the composed config, printed; nothing runs
  poolhead train --hydra-help              # Hydra's own flags (--multirun, --cfg, --info, ...)
"""


def train_command(argv: list[str]) -> int:
    """Hand the command line to Hydra (poolhead.use.train); -h/--help answers here, without Hydra."""
    if "-h" in argv or "--help" in argv:
        groups = sorted(p.name for p in conf_dir().iterdir() if p.is_dir() and not p.name.startswith("_"))
        print(TRAIN_HELP.format(conf=conf_dir(), groups=", ".join(groups)))
        return 0
    from poolhead.use.train import main as train_main

    train_main(argv)
    return 0


# --- predict ----------------------------------------------------------------------------------------------------
def predict_command(args: argparse.Namespace) -> int:
    from poolhead.use.backend import load_on
    from poolhead.use.predict import predict_file

    path: Path = args.input
    default = path.with_name(f"{path.stem}.pred{path.suffix}")
    output = args.output or default
    check_output(output, path, default)  # before the model loads
    model = _load(args.run, args.device, args.trust_remote_code) if args.backend == "torch" else \
        load_on(args.run, args.backend, args.quantize, args.trust_remote_code, args.max_loss)
    columns = column_names(model, args)
    frame, split = predict_file(model, path, columns, args.precision, args.batch_size, not args.quiet)
    write_table(frame, output)
    skipped = f" ({split.skipped} rows with an empty text left without a prediction)" if split.skipped else ""
    print(f"wrote {len(split)} predictions{skipped} to {output}")
    return 0


def column_names(model: Any, args: argparse.Namespace) -> dict[str, str]:
    """text (and text_pair for pair models) and label columns: the flags, else the run's data=csv names, else the
    names of the sentence-transformers STS copies (sentence1, sentence2, score)."""
    data = model.description.config["data"]
    table = "text" in data  # data=csv names its columns; STS-format data has fixed fields
    label = data.get("label") if table and isinstance(data.get("label"), str) else "label" if table else "score"
    columns = {"text": args.text or (data["text"] if table else "sentence1")}
    if model.mode.pair:
        columns["text_pair"] = args.text_pair or (data.get("text_pair") if table else None) or "sentence2"
    return columns | {"label": args.label or label}


def write_table(frame: Any, path: Path) -> None:
    suffix = path.suffix.lower()
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix in (".tsv", ".tab"):
        frame.to_csv(path, index=False, sep="\t", quoting=csv.QUOTE_NONE)  # as the .tsv reader reads: no quoting
    elif suffix in (".jsonl", ".json"):  # Python's json: every float exactly (pandas' to_json rounds to 10 digits)
        records = [{k: _plain(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]
        lines = [json.dumps(r, ensure_ascii=False) for r in records]
        path.write_text("\n".join(lines) + "\n" if suffix == ".jsonl" else
                        "[\n" + ",\n".join(lines) + "\n]\n", encoding="utf-8")
    else:
        raise ValueError(f"{path}: unknown output type {suffix!r}; use .csv, .tsv, .jsonl or .json")


def _plain(value: Any) -> Any:
    """A cell as JSON holds it: missing (None, NaN) -> null, numpy scalars -> Python numbers."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    return value.item() if hasattr(value, "item") else value


# --- eval -------------------------------------------------------------------------------------------------------
def eval_command(args: argparse.Namespace) -> int:
    from poolhead.run.checkpoint import checkpoint_file
    from poolhead.run.evaluate import evaluate_splits
    from poolhead.run.record import atomic_write, json_text, run_folder, shown, unfinished
    from poolhead.use.predict import data_for

    data = compose_data(args.overrides, args.config_dir)
    model = _load(args.run, args.device, args.trust_remote_code)
    data, held_out = table_settings(data, model.description.config["data"], args.overrides)
    if args.mteb and model.mode.name != "bi":
        raise ValueError(f"--mteb scores embeddings (MTEB STS): a mode=bi run only, this one is "
                         f"mode={model.mode.name}")
    datamodule = data_for(model, data=data, cache_dir=str(args.cache_dir))
    same_task(model.task, datamodule.task, datamodule.name)
    splits = args.split or held_out or ["val"] + (["test"] if datamodule.has_test else [])
    path = args.output or run_folder(Path(args.run)) / "eval.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    name = entry_name(datamodule.name, data, results)
    precision = args.precision or model.description.precision
    entry: dict[str, Any] = {"data": data, "checkpoint": str(checkpoint_file(args.run)), "metrics": {}, "rows": {},
                             "seconds": {}, "precision": precision,
                             "predictions": str(predictions_path(path, name, results))}
    frame, entry["metrics"], undefined, seconds = evaluate_splits(model, datamodule, splits, args.precision)
    for split in splits:
        entry["rows"][split], entry["seconds"][split] = int((frame["split"] == split).sum()), round(seconds[split], 3)
    if undefined:
        entry["undefined"] = undefined
    said = unfinished(args.run)
    if said:
        entry["unfinished"] = said
    if args.mteb:
        from poolhead.use.mteb_eval import mteb_scores

        entry["mteb"] = mteb_scores(model, datamodule, splits, checkpoint_file(args.run))
    frame.to_csv(entry["predictions"], index=False)
    atomic_write(path, json_text(results | {name: entry}) + "\n")
    main_metric = model.task.monitor
    for split in splits:
        key = f"{split}/{main_metric}"
        value = entry["metrics"][key]
        mteb = entry.get("mteb", {}).get(split)
        also = f"; MTEB cosine_spearman {mteb['cosine_spearman']:.4f}" if mteb else ""
        why = f": {undefined[key]}" if key in undefined else ""
        print(f"{name} {split}: {main_metric} {shown(value)}{why} ({entry['rows'][split]} rows){also}")
    print(f"wrote {path} (entry {name!r}) and {entry['predictions']}")
    return 0


TABLE_KEYS = ("text", "text_pair", "label", "task", "score_range")  # data=csv settings a run's files share


def table_settings(data: dict[str, Any], run_data: dict[str, Any], overrides: list[str]
                   ) -> tuple[dict[str, Any], list[str]]:
    """Files of your own (data=csv) scored as `predict` reads them: column names and task from the run's own
    data config unless set on the command line; without data.train, the given val/test file stands in for it
    (eval scores only the splits named). Returns the data config and the splits a held-out file asks for."""
    if "text" not in data:
        return data, []
    named = {o.split("=", 1)[0].lstrip("+~") for o in overrides}
    data = data | {k: run_data[k] for k in TABLE_KEYS if k in run_data and f"data.{k}" not in named}
    if data.get("train"):
        return data, []
    given = [split for split in ("val", "test") if data.get(split)]
    if not given:
        raise ValueError("data=csv: name the file to score, data.test=PATH (or data.val=PATH)")
    return data | {"train": data[given[-1]], "val": data.get("val") or data[given[-1]]}, given


def entry_name(name: str, data: dict[str, Any], results: dict[str, Any]) -> str:
    """eval.json's key for `data`: its data name, or, when that key holds another data config (two csv files, two
    folders of one format), the name with a hash of this config, so an earlier entry is never replaced."""
    held = results.get(name)
    if held is None or held.get("data") == json.loads(json.dumps(data, default=str)):
        return name
    return f"{name}-{hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:8]}"


def compose_data(overrides: list[str], config_dir: Path | None = None) -> dict[str, Any]:
    """The package's data/<group>.yaml (or one in `config_dir`, searched first) with the overrides applied,
    composed by Hydra as `poolhead train` composes it."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from poolhead.resolvers import register

    register()
    other = [o for o in overrides if not re.match(r"^[+~]*(data|paths)([.=])", o)]
    if other:
        raise ValueError(f"{other}: eval takes data=<group>, data.<key>=... (and paths.*) overrides only; the model "
                         "and its settings come from the checkpoint")
    search = []
    if config_dir is not None:
        if not config_dir.is_dir():
            raise FileNotFoundError(f"--config-dir {config_dir}: no such folder")
        search = [f"hydra.searchpath=[file://{config_dir.resolve()}]"]
    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        cfg = compose("train", overrides=[*search, *overrides])
    return OmegaConf.to_container(cfg.data, resolve=True)


def same_task(model_task: Any, data_task: Any, name: str) -> None:
    keys = ("kind", "score_range", "label_names")
    if any(getattr(model_task, k) != getattr(data_task, k) for k in keys):
        said = lambda t: ", ".join(f"{k}={getattr(t, k)}" for k in keys)  # noqa: E731
        raise ValueError(f"data {name!r} poses another task than the model answers (model: {said(model_task)}; "
                         f"data: {said(data_task)}); evaluate on data of the same kind, scale and labels")


# --- export -----------------------------------------------------------------------------------------------------
def export_command(args: argparse.Namespace) -> int:
    from poolhead.run.checkpoint import checkpoint_file
    from poolhead.run.record import UnfinishedRunWarning, run_folder
    from poolhead.use.export import ExportRefused, backend_refusal, choose, describe, export

    checkpoint = best_checkpoint(args.run) if args.best else checkpoint_file(args.run)
    warning = check_finished(run_folder(checkpoint), args.force)
    if warning:
        print(warning, file=sys.stderr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnfinishedRunWarning)  # check_finished said it
        model = _load(checkpoint, "cpu", args.trust_remote_code)
    fmt = choose(model, args.format)  # refuses before anything is written
    why = backend_refusal(model, fmt, args.backend, args.quantize)
    if why:
        raise ExportRefused(f"cannot add a {args.backend}{' int8' if args.quantize else ''} file to a {fmt} export: "
                            f"{why}")
    results = run_folder(checkpoint) / "results.json"
    metrics = json.loads(results.read_text()).get("metrics", {}) if results.exists() else {}
    folder = export(model, args.to, fmt, {"checkpoint": str(checkpoint), "metrics": metrics}, backend=args.backend,
                    quantize=args.quantize, max_loss=args.max_loss)
    backend = "" if args.backend == "torch" else f" with {args.backend}{' int8' if args.quantize else ''} files"
    print(f"exported {checkpoint} ({describe(model)}) as {fmt}{backend} to {folder}; how to load it: "
          f"{folder / 'README.md'}")
    return 0


def best_checkpoint(sweep_dir: str | Path) -> Path:
    """The best checkpoint of the sweep report's best configuration (its best seed when there are several)."""
    from poolhead.run.checkpoint import checkpoint_file
    from poolhead.sweep.report import write_report
    from poolhead.sweep.report.collect import load_jobs

    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"{sweep_dir}: no such sweep folder")
    if not any(job.get("status") == "ok" for job in load_jobs(sweep_dir)):  # before the report is rewritten
        raise ValueError(f"{sweep_dir}: no job finished ok; nothing to export (the sweep's files are left as "
                         "they are)")
    report = write_report(sweep_dir)
    if report["best_job"] is None:
        raise ValueError(f"{sweep_dir}: no finished job with {report['monitor']}; nothing to export")
    return checkpoint_file(report["best_job"])


# --- cache ------------------------------------------------------------------------------------------------------
def cache_command(args: argparse.Namespace) -> int:
    from poolhead.speed.cache import FeatureCache, folder_size

    root: Path = args.cache_dir.expanduser()
    if args.action == "clear":
        freed, left = clear_caches(root)
        print(f"cleared {root} ({freed / 2**20:.1f} MiB)")
        if left:
            print(f"left {len(left)} entries the caches did not make (not deleted):\n" +
                  "\n".join(f"  {path}" for path in left), file=sys.stderr)
        return 0
    features = FeatureCache(root)
    print(f"cache: {root}")
    tokens = root / "tokens"
    print(f"tokens:   {len(list(tokens.glob('*.npz')))} files, {folder_size(tokens) / 2**20:.1f} MiB")
    entries = list(features.entries())
    print(f"features: {len(entries)} entries, {folder_size(features.root) / 2**20:.1f} MiB")
    for folder, meta in entries:
        state = f"{meta['rows']} rows x {meta['hidden_size']} ({meta['dtype']})" if meta else \
            "PARTIAL (rebuilt on use)" if cache_made(folder) else "not the cache's (clear leaves it)"
        print(f"  {folder.name[:16]}  {folder_size(folder) / 2**20:8.1f} MiB  {state}")
    return 0


# --- shared -----------------------------------------------------------------------------------------------------
def _load(run: str | Path, device: str | None, trust_remote_code: bool = False) -> Any:
    import torch
    from transformers.utils import logging as hf_logging

    from poolhead.run.build import load

    check_device(device)
    hf_logging.disable_progress_bar()  # "Loading weights" bars: the commands print their own progress
    return load(run, map_location=device or ("cuda" if torch.cuda.is_available() else "cpu"),
                trust_remote_code=trust_remote_code)


if __name__ == "__main__":
    raise SystemExit(main())
