"""A trained poolhead model as a folder that sentence-transformers or transformers load, with the same scores.

    export(poolhead.load("logs/train/runs/<run>"), "exported/", fmt="auto")

One function per format; `refusal(model, fmt)` says why a format cannot hold a model exactly (None: it can). Every
export is loaded back with its library and scored on probe pairs against poolhead's own outputs before it is kept;
ONNX / OpenVINO files are checked the same way (int8: on the run's dev split, within `max_loss`). What each format
holds and why the others are refused: docs/export.md."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml
from torch import nn

from poolhead.core import pooling as P
from poolhead.core.encoder import Encoder
from poolhead.core.heads import ClassificationHead, MultiLabelHead, RegressionHead
from poolhead.core.model import PoolheadModel
from poolhead.speed.cache import CachedEncoder

FORMATS = ("sentence-transformers", "cross-encoder", "transformers")
BACKENDS = ("torch", "onnx", "openvino")
BACKEND_TOLERANCE = 1e-3  # fp32 ONNX / OpenVINO vs torch on the probe pairs (other kernels, other summation order)
MAX_INT8_LOSS = 0.005     # an int8 file may lose at most this much dev Spearman (0.5 points) against torch fp32
AUTO = {"bi": ("sentence-transformers",), "cross": ("cross-encoder", "transformers"), "single": ("transformers",)}
ST_POOLING = {P.PoolerOutput: "cls", P.CLS: "cls", P.Mean: "mean", P.Max: "max",
              P.MeanSqrtLen: "mean_sqrt_len_tokens", P.WeightedMean: "weightedmean"}
ST_MODES = "cls, mean, max, mean_sqrt_len_tokens, weightedmean, lasttoken"
PROBES = ["A man is playing a guitar.", "A woman is slicing an onion in the kitchen.", "The cat sleeps.",
          " ".join(["A very long sentence that goes on"] * 60)]  # longer than any max_length: truncation must agree


class ExportRefused(ValueError):
    """The model has no exact equivalent in the asked format; the message says why and which formats hold it."""


def encoder_of(model: PoolheadModel) -> Encoder:
    return model.encoder.encoder if isinstance(model.encoder, CachedEncoder) else model.encoder


def _hidden_layers(head: nn.Module) -> list[nn.Linear]:
    return [m for m in head.body if isinstance(m, nn.Linear)]


def _is_score_bins(head: nn.Module) -> bool:
    return isinstance(head, ClassificationHead) and head.is_score


def refusal(model: PoolheadModel, fmt: str) -> str | None:
    """Why `fmt` cannot hold `model` with the same outputs, or None when it can."""
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r}: choose one of {', '.join(FORMATS)} (or auto)")
    head, pooling, mode = model.head, type(model.pooling), model.mode.name
    name = pooling.__name__
    layers = encoder_of(model).layers
    if layers != [-1]:
        return f"encoder.layers={layers} averages hidden layers; exported models read the last layer only"
    if not isinstance(head, (RegressionHead, ClassificationHead, MultiLabelHead)):
        return f"head {type(head).__name__} is not one of poolhead's heads; its outputs have no known equivalent"
    if mode == "bi" and not isinstance(head, RegressionHead):
        return ("mode=bi with a classification head reads (u, v, |u - v|): no format holds that (a "
                "SentenceTransformer scores pairs by cosine); train mode=bi head=regression, or mode=cross")
    if fmt == "transformers":
        if mode == "bi":
            return ("mode=bi scores cos(u, v) of two encoder passes, a sequence classifier encodes one input: "
                    "use sentence-transformers")
        if pooling is not P.PoolerOutput:
            return (f"pooling {name}: AutoModelForSequenceClassification classifies the encoder's pooler output "
                    "(pooling=pooler only); use the cross-encoder format")
        if _hidden_layers(head):
            return ("head.hidden_dims is not empty: the transformers classifier is one Linear; use the cross-encoder "
                    "format")
        if isinstance(head, RegressionHead) and head.loss_name == "bce":
            return ("head.loss=bce predicts sigmoid(logit) on the score range, a transformers regression model "
                    "outputs the bare logit: use the cross-encoder format")
        if _is_score_bins(head):
            return ("a classification head on score bins predicts the expected score over the bins, which is not a "
                    "logit: use the cross-encoder format (2 bins) or head=regression")
        if not _pooler_then_linear(model):
            return (f"{encoder_of(model).model.config.model_type}'s ForSequenceClassification head is not the pooler "
                    "followed by one Linear; use the cross-encoder format")
        return None
    if pooling not in ST_POOLING:
        return (f"pooling {name}: sentence-transformers' Pooling has no such mode (it has {ST_MODES}); "
                "no format holds it exactly")
    if fmt == "sentence-transformers" and mode != "bi":
        return (f"mode={mode}: a SentenceTransformer embeds each text on its own (mode=bi); use the cross-encoder "
                "or transformers format")
    if fmt == "cross-encoder":
        if mode != "cross":
            return f"mode={mode}: a CrossEncoder encodes a pair joined as one input (mode=cross)"
        if _is_score_bins(head) and head.num_classes != 2:
            return (f"the expected score over {head.num_classes} score bins is a softmax-weighted sum, which no "
                    "Dense layer computes (2 bins are a sigmoid, and export); use one head.bin_edges edge or "
                    "head=regression")
    return None


def formats_for(model: PoolheadModel) -> list[str]:
    """The formats that hold `model` exactly."""
    return [fmt for fmt in FORMATS if refusal(model, fmt) is None]


def choose(model: PoolheadModel, fmt: str = "auto") -> str:
    """`fmt`, or for auto the first format of the model's mode that holds it; ExportRefused says why not."""
    candidates = AUTO[model.mode.name] if fmt == "auto" else (fmt,)
    reasons = {f: refusal(model, f) for f in candidates}
    for f, reason in reasons.items():
        if reason is None:
            return f
    holders = formats_for(model)
    why = "; ".join(f"{f}: {r}" for f, r in reasons.items())
    raise ExportRefused(f"cannot export this model ({describe(model)}) exactly. {why}. Formats that hold it: "
                        f"{', '.join(holders) if holders else 'none'}")


def backend_refusal(model: PoolheadModel, fmt: str, backend: str, quantize: str | None) -> str | None:
    """Why `fmt` cannot carry `backend` (and `quantize`) files for `model`, or None when it can."""
    if backend not in BACKENDS:
        raise ValueError(f"backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    if quantize not in (None, "int8"):
        raise ValueError(f"quantize {quantize!r}: only int8 is supported")
    if backend == "torch":
        return "--quantize int8 needs --backend onnx or openvino (torch weights stay fp32)" if quantize else None
    if fmt == "transformers":
        return (f"the transformers format is an AutoModelForSequenceClassification folder; sentence-transformers' "
                f"{backend} exporters write into sentence-transformers / cross-encoder folders: use --format "
                "cross-encoder (mode=cross) or sentence-transformers (mode=bi)")
    if quantize and not (isinstance(model.head, RegressionHead) or _is_score_bins(model.head)):
        return ("an int8 file is kept only when it loses at most max_loss dev Spearman; this model predicts labels, "
                "for which that check is not implemented: export fp32 (no --quantize)")
    return None


def export(model: PoolheadModel, to: str | Path, fmt: str = "auto", card: dict[str, Any] | None = None,
           backend: str = "torch", quantize: str | None = None, max_loss: float = MAX_INT8_LOSS) -> Path:
    """Write `model` into the folder `to` (created; it must be empty or absent) in `fmt`, check it, write README.md.
    `card`: extra facts for the model card (checkpoint, metrics); `backend`/`quantize`: also write
    sentence-transformers' ONNX / OpenVINO (int8) files, each checked. Returns the folder."""
    fmt = choose(model, fmt)
    why = backend_refusal(model, fmt, backend, quantize)
    if why:
        raise ExportRefused(f"cannot add a {backend}{' int8' if quantize else ''} file to a {fmt} export: {why}")
    if backend != "torch":
        _backend_importable(backend)  # before anything is written
    if fmt != "transformers":
        try:
            import sentence_transformers  # noqa: F401
        except ImportError as err:
            raise ImportError(f"the {fmt} format needs sentence-transformers>=6: pip install "
                              "'sentence-transformers>=6'") from err
    to = Path(to)
    if to.exists() and any(to.iterdir()):
        raise FileExistsError(f"{to}: not empty; export into a new folder (or remove it first)")
    model = model.float().cpu().eval()
    writers = {"sentence-transformers": to_sentence_transformers, "cross-encoder": to_cross_encoder,
               "transformers": to_transformers}
    card = dict(card or {})
    try:
        writers[fmt](model, to)
        check(model, to, fmt)
        if backend != "torch":
            card["backends"] = add_backend(model, to, fmt, backend, quantize, max_loss)
    except Exception:
        shutil.rmtree(to, ignore_errors=True)
        raise
    card.setdefault("model_name", export_name(model, card))
    (to / "README.md").write_text(model_card(model, fmt, card))
    shareable(to)
    return to


def export_name(model: PoolheadModel, card: dict[str, Any]) -> str:
    """A name unique to the run and its config (model_card_data.model_name): MTEB keys its result cache by it, so two
    models fine-tuned from one base model must not share one."""
    from omegaconf import OmegaConf

    from poolhead.run.record import config_hash

    config = model.description.config if model.description else {}
    digest = config_hash(OmegaConf.create(config))[:10] if config else "unconfigured"
    checkpoint = Path(card.get("checkpoint") or "run")
    run = checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent
    parts = [(config.get("data") or {}).get("name"), model.mode.name, type(model.pooling).__name__.lower(),
             type(model.head).__name__.removesuffix("Head").lower(), run.name, digest]
    return "poolhead/" + "-".join(str(x) for x in parts if x).replace(" ", "_")


def shareable(folder: Path) -> None:
    """Files and folders of an export get the user's umask (model.safetensors was written 0600 by a temporary
    file): an export is meant to be shared."""
    import os

    mask = os.umask(0)
    os.umask(mask)
    for path in [folder, *folder.rglob("*")]:
        if not path.is_symlink():
            path.chmod((0o777 if path.is_dir() else 0o666) & ~mask)


# --- the formats ------------------------------------------------------------------------------------------------
def _transformer(model: PoolheadModel, folder: Path) -> Any:
    """sentence-transformers' Transformer module over the model's encoder and tokenizer, truncating as poolhead."""
    from sentence_transformers.sentence_transformer.modules import Transformer

    encoder = encoder_of(model)
    encoder.model.save_pretrained(folder)
    encoder.tokenizer.save_pretrained(folder)
    return Transformer(str(folder), max_seq_length=encoder.max_length)


def _st_modules(model: PoolheadModel, folder: Path) -> list[nn.Module]:
    """Transformer + Pooling (+ the pooler as Dense/Tanh) + the head's hidden layers as Dense layers."""
    from sentence_transformers.sentence_transformer.modules import Pooling

    encoder = encoder_of(model)
    modules = [_transformer(model, folder), Pooling(encoder.hidden_size, ST_POOLING[type(model.pooling)])]
    if isinstance(model.pooling, P.PoolerOutput):
        modules.append(_dense(encoder.model.pooler.dense, nn.Tanh()))
    body = list(model.head.body)
    for i, layer in enumerate(body):
        if isinstance(layer, nn.Linear):
            modules.append(_dense(layer, type(body[i + 1])()))  # mlp(): Linear, activation, Dropout
    return modules


def _dense(linear: nn.Linear, activation: nn.Module, weight: torch.Tensor | None = None,
           bias: torch.Tensor | None = None, output: str | None = None) -> nn.Module:
    from sentence_transformers.sentence_transformer.modules import Dense

    weight = linear.weight if weight is None else weight
    bias = linear.bias if bias is None else bias
    return Dense(weight.shape[1], weight.shape[0], activation_function=activation,
                 init_weight=weight.detach().clone(), init_bias=bias.detach().clone(), module_output_name=output)


def to_sentence_transformers(model: PoolheadModel, to: Path) -> None:
    """mode=bi: embeddings whose cosine is the head's output, (pred - low) / (high - low)."""
    from sentence_transformers import SentenceTransformer

    with tempfile.TemporaryDirectory() as tmp:
        st = SentenceTransformer(modules=_st_modules(model, Path(tmp)), similarity_fn_name="cosine", device="cpu")
        st.save(str(to), create_model_card=False)


def to_cross_encoder(model: PoolheadModel, to: Path) -> None:
    """mode=cross: Transformer + Pooling + Dense layers ending in "scores": the score on the data's own scale
    (range folded into the last Dense), class logits, or label logits (activation Sigmoid: probabilities)."""
    from sentence_transformers import CrossEncoder

    head = model.head
    activation: nn.Module = nn.Sigmoid() if isinstance(head, MultiLabelHead) else nn.Identity()
    with tempfile.TemporaryDirectory() as tmp:
        modules = _st_modules(model, Path(tmp))
        w, b = head.out.weight, head.out.bias
        if isinstance(head, RegressionHead):
            low, high = head.low, head.high
            if head.loss_name == "bce":  # low + sigmoid(o) * (high - low)
                scale = torch.tensor([[high - low]]), torch.tensor([low])
                modules += [_dense(head.out, nn.Sigmoid()), _dense(head.out, nn.Identity(), *scale, "scores")]
            else:  # low + o * (high - low), folded
                modules.append(_dense(head.out, nn.Identity(), w * (high - low), b * (high - low) + low, "scores"))
        elif _is_score_bins(head):  # 2 bins: c0 + (c1 - c0) * softmax(o)[1] = c0 + (c1 - c0) * sigmoid(o1 - o0)
            c0, c1 = head.centres.tolist()
            scale = torch.tensor([[c1 - c0]]), torch.tensor([c0])
            modules += [_dense(head.out, nn.Sigmoid(), (w[1] - w[0])[None], (b[1] - b[0])[None]),
                        _dense(head.out, nn.Identity(), *scale, "scores")]
        else:
            modules.append(_dense(head.out, nn.Identity(), output="scores"))
            _label_names(modules[0].model.config, model)
        CrossEncoder(modules=modules, activation_fn=activation, device="cpu").save(str(to), create_model_card=False)


def to_transformers(model: PoolheadModel, to: Path) -> None:
    """pooling=pooler and a linear head: AutoModelForSequenceClassification (regression: num_labels=1 on the data's
    scale; classes: num_labels=K with id2label; multilabel: problem_type multi_label_classification)."""
    classifier = _classifier(model)
    # CrossEncoder(DIR) reads this; without it, a 1-label model gets Sigmoid (STS scores squashed into 0-1)
    activation = "torch.nn.modules.activation.Sigmoid" if isinstance(model.head, MultiLabelHead) else \
        "torch.nn.modules.linear.Identity"
    classifier.config.sentence_transformers = {"activation_fn": activation}
    classifier.save_pretrained(to)
    tokenizer = encoder_of(model).tokenizer
    tokenizer.model_max_length = encoder_of(model).max_length
    tokenizer.save_pretrained(to)


def _classifier(model: PoolheadModel) -> nn.Module:
    from transformers import AutoModelForSequenceClassification

    encoder, head = encoder_of(model), model.head
    config = encoder.model.config.__class__.from_dict(encoder.model.config.to_dict())
    config.num_labels = head.out.out_features
    if isinstance(head, RegressionHead):
        config.problem_type = "regression"
    else:
        multilabel = isinstance(head, MultiLabelHead)
        config.problem_type = "multi_label_classification" if multilabel else "single_label_classification"
        _label_names(config, model)
    classifier = AutoModelForSequenceClassification.from_config(config)
    classifier.base_model.load_state_dict(encoder.model.state_dict())
    w, b = head.out.weight.detach(), head.out.bias.detach()
    if isinstance(head, RegressionHead):
        w, b = w * (head.high - head.low), b * (head.high - head.low) + head.low
    with torch.no_grad():
        classifier.classifier.weight.copy_(w)
        classifier.classifier.bias.copy_(b)
    return classifier.eval()


def _pooler_then_linear(model: PoolheadModel) -> bool:
    from transformers import AutoModelForSequenceClassification

    config = encoder_of(model).model.config
    try:
        probe = AutoModelForSequenceClassification.from_config(config.__class__.from_dict(config.to_dict()))
    except ValueError:  # no sequence classification class for this model type
        return False
    linear = isinstance(getattr(probe, "classifier", None), nn.Linear)
    return linear and getattr(probe.base_model, "pooler", None) is not None


def _label_names(config: Any, model: PoolheadModel) -> None:
    names = model.task.label_names
    config.id2label = {i: name for i, name in enumerate(names)}
    config.label2id = {name: i for i, name in enumerate(names)}


# --- what the exported model outputs, and the check ------------------------------------------------------------
def expected(model: PoolheadModel, output: torch.Tensor, fmt: str) -> np.ndarray:
    """What the exported model gives for poolhead's head outputs `output`: the cosine (sentence-transformers,
    (pred - low) / (high - low)), the score on the data's scale, class probabilities (softmax of the logits),
    label probabilities (sigmoid)."""
    head = model.head
    if fmt == "sentence-transformers":
        return output.double().numpy()
    probabilities = head.probabilities(output)
    return (head.predict(output) if probabilities is None else probabilities).double().numpy()


def load_exported(folder: str | Path, fmt: str, backend: str = "torch", file_name: str | None = None) -> Any:
    """The exported folder as its library loads it: SentenceTransformer / CrossEncoder (on `backend`, from
    `file_name` such as onnx/model.onnx), or None for the transformers format."""
    if fmt == "transformers":
        return None
    import sentence_transformers as st

    kwargs: dict[str, Any] = {} if backend == "torch" else {
        "backend": backend, "model_kwargs": {"file_name": file_name} if file_name else {}}
    cls = st.SentenceTransformer if fmt == "sentence-transformers" else st.CrossEncoder
    loaded = cls(str(folder), device="cpu", **kwargs)
    name = card_name(folder)
    if name:
        loaded.model_card_data.model_name = name  # sentence-transformers does not read it back from a folder
    return loaded


def card_name(folder: str | Path) -> str | None:
    """The model_name in the front matter of an export's README.md (None: not a poolhead export card)."""
    readme = Path(folder) / "README.md"
    text = readme.read_text(encoding="utf-8") if readme.exists() else ""
    if not text.startswith("---\n"):
        return None
    front = yaml.safe_load(text.split("---\n", 2)[1]) or {}
    return front.get("model_name")


def exported_scores(folder: str | Path, fmt: str, text: list[str], text_pair: list[str] | None,
                    backend: str = "torch", file_name: str | None = None) -> np.ndarray:
    """Score texts with the exported folder through its own library, on the scale `expected` describes."""
    folder = str(folder)
    if fmt == "sentence-transformers":
        st = load_exported(folder, fmt, backend, file_name)
        u, v = (st.encode(t, convert_to_tensor=True, batch_size=64) for t in (text, text_pair))
        return st.similarity_pairwise(u, v).double().numpy()
    if fmt == "cross-encoder":
        ce = load_exported(folder, fmt, backend, file_name)
        scores = ce.predict(list(zip(text, text_pair)), apply_softmax=ce.num_labels > 1 and isinstance(
            ce.activation_fn, nn.Identity), convert_to_tensor=True, batch_size=64)
        return scores.double().cpu().numpy()
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    classifier = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    with torch.inference_mode():
        inputs = tokenizer(text, text_pair, truncation=True, padding=True, return_tensors="pt")
        logits = classifier(**inputs).logits.double()
    kind = classifier.config.problem_type
    if kind == "regression":
        return logits[:, 0].numpy()
    return (logits.sigmoid() if kind == "multi_label_classification" else logits.softmax(-1)).numpy()


def check(model: PoolheadModel, folder: Path, fmt: str, tolerance: float = 1e-4) -> None:
    """Load the export back and compare it with poolhead on probe pairs; raise when they differ."""
    from poolhead.use.predict import predict_texts

    pair = PROBES[1:] + PROBES[:1] if model.mode.pair else None
    want = expected(model, predict_texts(model, PROBES, pair, precision="32-true"), fmt)
    got = exported_scores(folder, fmt, PROBES, pair)
    if got.shape != want.shape or not np.allclose(got, want, atol=tolerance, rtol=0):
        raise RuntimeError(f"the {fmt} export gives other scores than poolhead ({got.ravel()[:4]} vs "
                           f"{want.ravel()[:4]}); nothing was exported. Please report this as a poolhead bug.")


# --- ONNX / OpenVINO files, by sentence-transformers' own exporters -----------------------------------------------
BACKEND_FILES = {("onnx", None): "onnx/model.onnx", ("openvino", None): "openvino/openvino_model.xml",
                 ("openvino", "int8"): "openvino/openvino_model_qint8_quantized.xml"}  # onnx int8: by the CPU's ISA
BACKEND_PACKAGES = {"onnx": "sentence-transformers[onnx] (optimum-onnx, onnxruntime)",
                    "openvino": "sentence-transformers[openvino] (optimum-intel, openvino, nncf)"}


def onnx_isa() -> str:
    """The ONNX Runtime int8 config sentence-transformers names for this CPU: avx512_vnni, avx512, avx2 or arm64."""
    import platform

    if platform.machine().lower() in ("arm64", "aarch64"):
        return "arm64"
    flags = set(Path("/proc/cpuinfo").read_text().split()) if Path("/proc/cpuinfo").exists() else set()
    return next((isa for isa in ("avx512_vnni", "avx512f", "avx2") if isa in flags), "avx2").replace("f", "")


def backend_file(backend: str, quantize: str | None) -> str:
    """The file sentence-transformers' exporter writes, relative to the folder (its naming convention)."""
    return BACKEND_FILES.get((backend, quantize)) or f"onnx/model_qint8_{onnx_isa()}.onnx"


def _backend_importable(backend: str) -> None:
    """Raise ImportError naming the extra when sentence-transformers cannot run `backend` here."""
    try:
        if backend == "onnx":
            import onnxruntime  # noqa: F401
            from optimum.exporters.onnx import main_export  # noqa: F401
            from optimum.onnxruntime import ORTModelForFeatureExtraction  # noqa: F401
        else:
            from optimum.intel.openvino import OVModelForFeatureExtraction  # noqa: F401
    except Exception as err:  # ImportError, or an optimum release that does not fit the installed transformers
        raise ImportError(f"--backend {backend} needs {BACKEND_PACKAGES[backend]} working with the installed "
                          f"transformers: pip install 'poolhead[{backend}]' ({type(err).__name__}: {err})") from err


def add_backend(model: PoolheadModel, folder: Path, fmt: str, backend: str, quantize: str | None,
                max_loss: float = MAX_INT8_LOSS) -> list[dict[str, Any]]:
    """Add `backend`'s fp32 file (and the int8 one) to the checked torch export in `folder`; check each; return what
    the model card says about them (file, check). Raises when a check fails (the caller removes the folder)."""
    pair = PROBES[1:] + PROBES[:1] if model.mode.pair else None
    from poolhead.use.predict import predict_texts

    want = expected(model, predict_texts(model, PROBES, pair, precision="32-true"), fmt)
    loaded = load_exported(folder, fmt, backend)  # exports the torch weights to the backend (fp32)
    with tempfile.TemporaryDirectory() as tmp:
        loaded.save_pretrained(tmp)  # writes <tmp>/<backend>/...: only that folder is taken
        shutil.copytree(Path(tmp) / backend, folder / backend, dirs_exist_ok=True)
    fp32 = backend_file(backend, None)
    got = exported_scores(folder, fmt, PROBES, pair, backend, fp32)
    diff = float(np.abs(got - want).max())
    if got.shape != want.shape or not diff <= BACKEND_TOLERANCE:
        raise RuntimeError(f"the {backend} file {fp32} gives other scores than poolhead (max |diff| {diff:.2e} > "
                           f"{BACKEND_TOLERANCE:g}); nothing was exported. Please report this as a poolhead bug.")
    files = [{"file": fp32, "backend": backend, "precision": "fp32",
              "check": f"probe pairs: max abs diff vs torch {diff:.1e} (tolerance {BACKEND_TOLERANCE:g})"}]
    if quantize:
        files.append(_quantized(model, folder, fmt, backend, loaded, max_loss))
    return files


def _quantized(model: PoolheadModel, folder: Path, fmt: str, backend: str, loaded: Any,
               max_loss: float) -> dict[str, Any]:
    """Write the int8 file with sentence-transformers' exporter, score it on the run's dev split, refuse a loss."""
    from sentence_transformers.backend import (
        export_dynamic_quantized_onnx_model,
        export_static_quantized_openvino_model,
    )

    from poolhead.use.predict import data_for

    datamodule = data_for(model)
    if backend == "onnx":  # dynamic: no calibration data
        export_dynamic_quantized_onnx_model(loaded, onnx_isa(), str(folder))
        how = f"ONNX Runtime dynamic int8 ({onnx_isa()}), by export_dynamic_quantized_onnx_model"
    else:  # static: calibrated on the run's training texts (the dev split is kept for the check)
        from optimum.intel import OVQuantizationConfig

        train = datamodule.rows("train")
        texts = train["text"].tolist() if "text_pair" not in train else [
            f"{a} {b}" for a, b in zip(train["text"], train["text_pair"])]
        with tempfile.TemporaryDirectory() as tmp:
            pd.DataFrame({"sentence": texts}).to_csv(Path(tmp) / "train.csv", index=False)
            export_static_quantized_openvino_model(loaded, OVQuantizationConfig(num_samples=min(300, len(texts))),
                                                   str(folder), dataset_name=tmp, dataset_config_name="default",
                                                   dataset_split="train", column_name="sentence")
        how = "OpenVINO static int8 (NNCF), calibrated on the run's training texts, by " \
              "export_static_quantized_openvino_model"
    name = backend_file(backend, "int8")
    if not (folder / name).exists():
        raise RuntimeError(f"sentence-transformers' exporter did not write {name}; nothing was exported")
    dev = datamodule.rows("val")
    text, pair = dev["text"].tolist(), dev["text_pair"].tolist() if model.mode.pair else None
    gold = dev["label"].to_numpy(dtype=float)
    torch_score = spearman(gold, exported_scores(folder, fmt, text, pair))
    int8_score = spearman(gold, exported_scores(folder, fmt, text, pair, backend, name))
    loss = torch_score - int8_score
    said = (f"dev Spearman (val split, {len(dev)} rows): torch fp32 {torch_score:.4f}, int8 {int8_score:.4f}, "
            f"loss {loss * 100:.2f} points (allowed {max_loss * 100:.2f})")
    if not loss <= max_loss:
        raise ExportRefused(f"the {backend} int8 file loses too much: {said}; nothing was exported (export fp32, or "
                            "allow more with --max-loss)")
    return {"file": name, "backend": backend, "precision": "int8", "check": said, "how": how}


def spearman(gold: np.ndarray, pred: np.ndarray) -> float:
    """Spearman's rho of predictions against gold scores (poolhead's main metric for score tasks)."""
    from scipy import stats

    return float(stats.spearmanr(gold, pred).statistic)


# --- model card -------------------------------------------------------------------------------------------------
LOAD = {
    "sentence-transformers": """```python
from sentence_transformers import SentenceTransformer

model = SentenceTransformer("{dir}")
u, v = model.encode(["A man plays a guitar."]), model.encode(["Someone plays music."])
cosine = model.similarity_pairwise(u, v)   # = (poolhead pred - {low:g}) / ({high:g} - {low:g})
```""",
    "cross-encoder": """```python
from sentence_transformers import CrossEncoder

model = CrossEncoder("{dir}")
scores = model.predict([("A man plays a guitar.", "Someone plays music.")]{softmax})
```""",
    "transformers": """```python
from transformers import AutoModelForSequenceClassification, AutoTokenizer

tokenizer = AutoTokenizer.from_pretrained("{dir}")
model = AutoModelForSequenceClassification.from_pretrained("{dir}")
inputs = tokenizer({inputs}, truncation=True, padding=True, return_tensors="pt")
logits = model(**inputs).logits   # {meaning}
```""",
}


KNOWN_HUB_IDS = {"all-MiniLM-L6-v2": "sentence-transformers/all-MiniLM-L6-v2"}  # folder name of a known copy


def hub_id(name_or_path: str | None) -> str | None:
    """The Hugging Face Hub id of the base encoder: the name itself when it is one, the bundled MiniLM's id for its
    install folder, a local folder's recorded `_name_or_path` when that is a hub id; None when unknown."""
    if not name_or_path:
        return None
    path = Path(str(name_or_path)).expanduser()
    if not path.exists():
        return str(name_or_path) if "/" in str(name_or_path) and not str(name_or_path).startswith((".", "/", "~")) \
            else None
    from poolhead import minilm_path

    try:
        if path.resolve() == Path(minilm_path()).resolve():
            return "sentence-transformers/all-MiniLM-L6-v2"
    except ImportError:
        pass
    if path.name in KNOWN_HUB_IDS:
        return KNOWN_HUB_IDS[path.name]
    import json

    recorded = json.loads((path / "config.json").read_text()).get("_name_or_path") if (
        path / "config.json").exists() else None
    return recorded if recorded and "/" in recorded and not recorded.startswith((".", "/", "~")) else None


def weights_sha256(name_or_path: str | None) -> str | None:
    """sha256 of a local base encoder's weights file (model.safetensors, else pytorch_model.bin)."""
    import hashlib

    path = Path(str(name_or_path or "")).expanduser()
    weights = next((path / n for n in ("model.safetensors", "pytorch_model.bin") if (path / n).is_file()), None)
    if not name_or_path or weights is None:
        return None
    digest = hashlib.sha256()
    with open(weights, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return f"{weights.name} sha256 {digest.hexdigest()}"


def base_encoder(name_or_path: str | None, encoder: Encoder) -> str:
    """The model card's base encoder: its hub id (not a local install path) and its weights' sha256."""
    if not name_or_path:
        return f"random {encoder.model.config.model_type}"
    hub = hub_id(name_or_path)
    local = Path(str(name_or_path)).expanduser().exists()
    said = hub or (f"local folder {Path(str(name_or_path)).name}" if local else str(name_or_path))
    sha = weights_sha256(name_or_path)
    return said + (f" ({sha})" if sha else "")


def describe(model: PoolheadModel) -> str:
    config = model.description.config if model.description else {}
    return (f"mode={model.mode.name}, pooling={type(model.pooling).__name__}, head={type(model.head).__name__}, "
            f"encoder.layers={encoder_of(model).layers}" + (f", data={config['data'].get('name')}" if config else ""))


def scale_note(model: PoolheadModel, fmt: str) -> str:
    head = model.head
    if isinstance(head, RegressionHead) or _is_score_bins(head):
        low, high = model.task.score_range or (0.0, 1.0)
        if fmt == "sentence-transformers":
            return (f"The cosine of two embeddings is poolhead's `pred` rescaled: cosine = (pred - {low:g}) / "
                    f"({high:g} - {low:g}); pred = {low:g} + cosine * ({high:g} - {low:g}).")
        return f"The output is poolhead's `pred`, on the data's own score scale ({low:g} to {high:g})."
    if isinstance(head, MultiLabelHead):
        return (f"Outputs are per-label probabilities (sigmoid); poolhead predicts a label when it reaches "
                f"{head.threshold:g}. Labels: {', '.join(model.task.label_names)}.")
    return ("Outputs are class logits; their softmax equals poolhead's `prob_<label>` columns, the argmax its "
            f"`pred`. Labels (id order): {', '.join(model.task.label_names)}.")


def backend_section(fmt: str, files: list[dict[str, Any]]) -> str:
    """The model card's list of ONNX / OpenVINO files: which is which, how each was checked, how to load it."""
    if not files:
        return ""
    cls = "SentenceTransformer" if fmt == "sentence-transformers" else "CrossEncoder"
    lines = ["## Fast backends (ONNX / OpenVINO)", "",
             "Beside the torch weights (model.safetensors), written by sentence-transformers' own exporters:", "",
             "| file | backend | precision | check before it was kept |", "|---|---|---|---|"]
    lines += [f"| `{f['file']}` | {f['backend']} | {f['precision']} | {f['check']} |" for f in files]
    lines += ["", "```python", f"from sentence_transformers import {cls}", ""]
    lines += [f'model = {cls}("PATH/TO/THIS/FOLDER", backend="{f["backend"]}", '
              f'model_kwargs={{"file_name": "{f["file"]}"}})   # {f["precision"]}' for f in files]
    lines += ["```", ""] + [f"{f['file']}: {f['how']}." for f in files if f.get("how")]
    return "\n".join(lines) + "\n\n"


def model_card(model: PoolheadModel, fmt: str, card: dict[str, Any]) -> str:
    """README.md of an export: what was trained on what, how well, how to load it, what its scores mean."""
    config = model.description.config if model.description else {}
    head, encoder = model.head, encoder_of(model)
    low, high = model.task.score_range or (0.0, 1.0)
    classes = not (isinstance(head, RegressionHead) or _is_score_bins(head))
    load = LOAD[fmt].format(
        dir="PATH/TO/THIS/FOLDER", low=low, high=high,
        softmax=", apply_softmax=True" if classes and not isinstance(head, MultiLabelHead) else "",
        inputs='["A man plays a guitar."], ["Someone plays music."]' if model.mode.pair else '["A text to classify."]',
        meaning="class logits; id2label in config.json" if classes else "the score, num_labels=1")
    main = ("spearman", "pearson", "accuracy", "f1_macro", "f1_micro")
    metrics = {k: v for k, v in (card.get("metrics") or {}).items() if k.split("/")[-1] in main}
    data = config.get("data") or {}
    rows = {
        "base encoder": base_encoder(config.get("encoder", {}).get("name_or_path"), encoder),
        "pooling": config.get("pooling", {}).get("_target_", type(model.pooling).__name__),
        "head": ", ".join(f"{k}={v}" for k, v in config.get("head", {}).items() if k != "_partial_"),
        "mode": model.mode.name,
        "max_length": encoder.max_length,
        "data": ", ".join(f"{k}={v}" for k, v in data.items() if k in ("name", "dir", "train", "val", "test") and v),
        "metrics (the run's results.json)": ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()) or "not recorded",
        "checkpoint": card.get("checkpoint", "(not given)"),
    }
    table = "\n".join(f"| {k} | {v} |" for k, v in rows.items())
    backends = backend_section(fmt, card.get("backends") or [])
    library = "transformers" if fmt == "transformers" else "sentence-transformers (>= 6)"
    front = {"model_name": card.get("model_name") or export_name(model, card),
             "library_name": "transformers" if fmt == "transformers" else "sentence-transformers",
             "tags": ["poolhead", fmt, model.mode.name]}
    hub = hub_id(config.get("encoder", {}).get("name_or_path"))
    if hub:
        front["base_model"] = hub
    return f"""---
{yaml.safe_dump(front, sort_keys=False, allow_unicode=True).rstrip()}
---
# poolhead export ({fmt})

`{front["model_name"]}`: this export's name (`model.model_card_data.model_name`; poolhead's `load_exported` sets it,
set it yourself when you load the folder otherwise: MTEB keys its result cache by it).

Written by `poolhead export`; loading it needs only {library}. Before it was kept, the folder was loaded back with
that library and gave poolhead's own outputs (fp32) on probe pairs.

| | |
|---|---|
{table}

## Load it

{load}

{backends}## Score scale

{scale_note(model, fmt)}

## poolhead config

```yaml
{yaml.safe_dump(config, sort_keys=False, allow_unicode=True).rstrip()}
```
"""
