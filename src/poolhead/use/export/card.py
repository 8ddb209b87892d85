"""README.md of an export (the model card): what was trained on what, how well, how to load it, what it
outputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf

from poolhead.core.encoder import Encoder
from poolhead.core.hub import weights_sha256
from poolhead.core.model import PoolheadModel
from poolhead.run.record import config_hash, portable
from poolhead.use.export.onnx_files import ORT_SETTINGS
from poolhead.use.export.st import carries_code

LOAD = {
    "sentence-transformers": """```python
from sentence_transformers import SentenceTransformer

model = SentenceTransformer("{dir}"{trust})
u, v = model.encode(["A man plays a guitar."]), model.encode(["Someone plays music."])
cosine = model.similarity_pairwise(u, v)   # = (poolhead pred - {low:g}) / ({high:g} - {low:g})
```""",
    "cross-encoder": """```python
from sentence_transformers import CrossEncoder

model = CrossEncoder("{dir}"{trust})
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
    """The Hugging Face Hub id of the base encoder: the name itself when it is one, the bundled MiniLM's id
    for its install folder, a local folder's recorded `_name_or_path` when that is a hub id; None when
    unknown."""
    path = Path(str(name_or_path or "")).expanduser()
    if not name_or_path or not path.exists():
        return str(name_or_path) if _hub_like(name_or_path) else None
    from poolhead.resources import minilm_path

    try:
        if path.resolve() == Path(minilm_path()).resolve():
            return KNOWN_HUB_IDS["all-MiniLM-L6-v2"]
    except ImportError:
        pass
    if path.name in KNOWN_HUB_IDS:
        return KNOWN_HUB_IDS[path.name]
    config = path / "config.json"
    recorded = json.loads(config.read_text()).get("_name_or_path") if config.exists() else None
    return recorded if _hub_like(recorded) else None


def _hub_like(name: str | None) -> bool:
    return bool(name) and "/" in str(name) and not str(name).startswith((".", "/", "~"))


def base_encoder(name_or_path: str | None, encoder: Encoder) -> str:
    """The model card's base encoder: its hub id (not a local install path) and its weights' sha256."""
    if not name_or_path:
        return f"random {encoder.model.config.model_type}"
    hub = hub_id(name_or_path)
    local = Path(str(name_or_path)).expanduser().exists()
    said = hub or (f"local folder {Path(str(name_or_path)).name}" if local else str(name_or_path))
    sha = weights_sha256(name_or_path)
    return said + (f" ({sha[0]} sha256 {sha[1]})" if sha else "")


def export_name(model: PoolheadModel, card: dict[str, Any]) -> str:
    """A name unique to the run and its config (model_card_data.model_name): MTEB keys its result cache by it,
    so two models fine-tuned from one base model must not share one."""
    config = model.description.config if model.description else {}
    digest = config_hash(OmegaConf.create(config))[:10] if config else "unconfigured"
    checkpoint = Path(card.get("checkpoint") or "run")
    run = checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent
    parts = [
        (config.get("data") or {}).get("name"),
        model.mode.name,
        type(model.pooling).__name__.lower(),
        type(model.head).__name__.removesuffix("Head").lower(),
        run.name,
        digest,
    ]
    return "poolhead/" + "-".join(str(x) for x in parts if x).replace(" ", "_")


def scale_note(model: PoolheadModel, fmt: str) -> str:
    if model.task.kind == "score":
        low, high = model.task.score_range or (0.0, 1.0)
        if fmt == "sentence-transformers":
            return (
                f"The cosine of two embeddings is poolhead's `pred` rescaled: cosine = (pred - {low:g}) / "
                f"({high:g} - {low:g}); pred = {low:g} + cosine * ({high:g} - {low:g})."
            )
        return f"The output is poolhead's `pred`, on the data's own score scale ({low:g} to {high:g})."
    if model.task.kind == "multilabel":
        return (
            f"Outputs are per-label probabilities (sigmoid); poolhead predicts a label when it reaches "
            f"{model.head.threshold:g}. Labels: {', '.join(model.task.label_names)}."
        )
    return (
        "Outputs are class logits; their softmax equals poolhead's `prob_<label>` columns, the argmax its "
        f"`pred`. Labels (id order): {', '.join(model.task.label_names)}."
    )


ORT_LOAD = """```python
import numpy as np
import onnxruntime as ort
from transformers import AutoTokenizer   # or tokenizers.Tokenizer.from_file("tokenizer.json")

tokenizer = AutoTokenizer.from_pretrained("PATH/TO/THIS/FOLDER")
options = ort.SessionOptions()   # onnxruntime >= 1.23; the settings poolhead measured faster on CPU:
{settings}
session = ort.InferenceSession("PATH/TO/THIS/FOLDER/{file}", options)
batch = tokenizer({inputs}, truncation=True, max_length={max_length}, padding=True, return_tensors="np")
names = [i.name for i in session.get_inputs()]   # input_ids, attention_mask (, token_type_ids)
states = session.run(["last_hidden_state"], {{n: batch[n].astype(np.int64) for n in names}})[0]
# then the modules after module 0 in modules.json (pooling, Dense layers), as sentence-transformers runs them
```"""
SERVE_FILES = (
    "To serve without Python, a runtime needs the graph, the tokenizer (`tokenizer.json`: Hugging Face "
    "tokenizers, with bindings for Rust, Node and others; `tokenizer_config.json` and "
    "`special_tokens_map.json` for its settings: lowercasing, special tokens, max length) and the modules "
    "after the encoder in `modules.json` (the pooling's `config.json`, the Dense layers' weights)."
)


def backend_section(model: PoolheadModel, fmt: str, files: list[dict[str, Any]]) -> str:
    """The model card's list of ONNX / OpenVINO files: which is which, how each was checked and made, how to
    load it (sentence-transformers, and ONNX Runtime directly), what serving it without Python needs."""
    if not files:
        return ""
    cls = "SentenceTransformer" if fmt == "sentence-transformers" else "CrossEncoder"
    trust = ", trust_remote_code=True" if carries_code(model) else ""
    lines = [
        "## Fast backends (ONNX / OpenVINO)",
        "",
        "Beside the torch weights (model.safetensors), each checked before the folder was kept:",
        "",
        "| file | backend | precision | check before it was kept |",
        "|---|---|---|---|",
    ]
    lines += [f"| `{f['file']}` | {f['backend']} | {f['precision']} | {f['check']} |" for f in files]
    lines += ["", "```python", f"from sentence_transformers import {cls}", ""]
    lines += [
        f'model = {cls}("PATH/TO/THIS/FOLDER", backend="{f["backend"]}", '
        f'model_kwargs={{"file_name": "{f["file"]}"}}{trust})   # {f["precision"]}'
        for f in files
    ]
    lines += ["```", ""]
    onnx = [f for f in files if f["backend"] == "onnx"]
    if onnx:
        inputs = (
            '["A man plays a guitar."], ["Someone plays music."]'
            if fmt == "cross-encoder"
            else '["A man plays a guitar."]'
        )
        settings = "\n".join(f'options.add_session_config_entry("{k}", "{v}")' for k, v in ORT_SETTINGS.items())
        lines += [
            'sentence-transformers\' `backend="onnx"` needs optimum-onnx, which does not import with '
            "transformers 5 yet; ONNX Runtime runs the files directly:",
            "",
            ORT_LOAD.format(
                file=onnx[-1]["file"], inputs=inputs, max_length=model.encoder.max_length, settings=settings
            ),
            "",
            "(Through sentence-transformers, the same `options` go in `model_kwargs` as optimum's "
            '`"session_options"`.) `session.set_denormal_as_zero` flushes subnormal numbers to zero (ONNX '
            "Runtime's softmax gives a masked padding score a subnormal weight, slow on x86); ONNX Runtime also "
            "sets it on the thread that creates a process's first session.",
            "",
            SERVE_FILES,
            "",
        ]
    lines += [f"{f['file']}: {f['how']}." for f in files if f.get("how")]
    return "\n".join(lines) + "\n\n"


def code_note(model: PoolheadModel, fmt: str) -> str:
    """The card's warning that the folder carries code, and which."""
    if fmt == "transformers" or not carries_code(model):
        return ""
    return (
        "**This folder carries code.** sentence-transformers' Pooling has no "
        f"`{type(model.pooling).__name__}` "
        "pooling, so the folder holds it as a custom module: `poolhead_pooling.py` (the module) and the "
        "pooling's own source file in its module folder, with its weights. Loading it runs that code: pass "
        "`trust_remote_code=True`, after reading the two files.\n\n"
    )


def model_card(model: PoolheadModel, fmt: str, card: dict[str, Any]) -> str:
    """README.md of an export: what was trained on what, how well, how to load it, what its scores mean."""
    config = portable(model.description.config) if model.description else {}  # no local install path in it
    encoder, kind = model.encoder, model.task.kind
    low, high = model.task.score_range or (0.0, 1.0)
    load = LOAD[fmt].format(
        dir="PATH/TO/THIS/FOLDER",
        trust=", trust_remote_code=True" if carries_code(model) else "",
        low=low,
        high=high,
        softmax=", apply_softmax=True" if kind == "class" else "",
        inputs='["A man plays a guitar."], ["Someone plays music."]'
        if model.mode.pair
        else '["A text to classify."]',
        meaning="class logits; id2label in config.json" if kind != "score" else "the score, num_labels=1",
    )
    main = ("spearman", "pearson", "accuracy", "f1_macro", "f1_micro")
    metrics = {k: v for k, v in (card.get("metrics") or {}).items() if k.split("/")[-1] in main}
    data = config.get("data") or {}
    rows = {
        "base encoder": base_encoder(config.get("encoder", {}).get("name_or_path"), encoder),
        "pooling": config.get("pooling", {}).get("_target_", type(model.pooling).__name__),
        "head": ", ".join(f"{k}={v}" for k, v in config.get("head", {}).items() if k != "_partial_"),
        "mode": model.mode.name,
        "max_length": encoder.max_length,
        "data": ", ".join(
            f"{k}={v}" for k, v in data.items() if k in ("name", "dir", "train", "val", "test") and v
        ),
        "metrics (the run's results.json)": ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
        or "not recorded",
        "checkpoint": card.get("checkpoint", "(not given)"),
    }
    table = "\n".join(f"| {k} | {v} |" for k, v in rows.items())
    backends = backend_section(model, fmt, card.get("backends") or [])
    library = "transformers" if fmt == "transformers" else "sentence-transformers (>= 6)"
    front = {
        "model_name": card.get("model_name") or export_name(model, card),
        "library_name": "transformers" if fmt == "transformers" else "sentence-transformers",
        "tags": ["poolhead", fmt, model.mode.name],
    }
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

{code_note(model, fmt)}| | |
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
