"""Settings checked in one place before any work starts (`check_settings`: before the encoder loads or data is
read), and against the data once it is read (`check_against_data`). Each message names the key, the value, and
what is allowed."""

from __future__ import annotations

import difflib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from poolhead.core.task import TaskSpec
from poolhead.resources import conf_dir

log = logging.getLogger(__name__)


class SettingsError(ValueError):
    """A setting that cannot work; the message names the key, its value and what is allowed."""


def _whole(v: Any) -> bool:
    """A whole number: int, not bool (`true` is not a batch size) nor float (`1.5` epochs is not a count)."""
    return type(v) is int


def _batches(v: Any) -> bool:
    """Lightning's batch limits: null, a count >= 1 (int) or a share of the batches in (0, 1] (float)."""
    return v is None or (_whole(v) and v >= 1) or (type(v) is float and 0 < v <= 1)


RULES: list[tuple[str, Callable[[Any], bool], str]] = [  # key, allowed(value), what is allowed
    ("seed", _whole, "a whole number"),
    ("optim.lr", lambda v: v >= 0, "a learning rate >= 0 (a negative one climbs the loss)"),
    ("optim.head_lr", lambda v: v is None or v >= 0, "null (= optim.lr) or a learning rate >= 0"),
    ("optim.weight_decay", lambda v: v is None or v >= 0, "a number >= 0"),
    ("optim.warmup_ratio", lambda v: v is None or 0 <= v <= 1, "a share of the training steps in [0, 1]"),
    ("data.batch_size", lambda v: _whole(v) and v >= 1, "a whole number >= 1"),
    ("data.eval_batch_size", lambda v: _whole(v) and v >= 1, "a whole number >= 1"),
    ("data.val_fraction", lambda v: 0 < v < 1, "a share of the training rows strictly between 0 and 1"),
    ("encoder.max_length", lambda v: _whole(v) and v >= 2, "a whole number of tokens >= 2"),
    ("encoder.layers", lambda v: len(v) >= 1, "at least one hidden_states index, e.g. [-1]"),
    ("head.bin_edges", lambda v: len(v) >= 1 and list(v) == sorted(set(v)), "at least one edge, ascending, e.g. [3.0]"),
    ("head.dropout", lambda v: 0 <= v < 1, "a probability in [0, 1)"),
    ("trainer.max_epochs", lambda v: v is None or _whole(v) and (v == -1 or v >= 1),
     "a whole number >= 1 (or -1 with max_steps)"),
    ("trainer.max_steps", lambda v: v is None or _whole(v) and (v == -1 or v >= 1), "a whole number >= 1, or -1"),
    ("trainer.gradient_clip_val", lambda v: v is None or v >= 0, "null or a number >= 0"),
    ("trainer.limit_train_batches", _batches, "null, a whole number of batches >= 1 or a share of them in "
     "(0, 1] (0 trains nothing: a run that trains no step is refused, it would report an untrained model)"),
    ("trainer.limit_val_batches", _batches, "null, a whole number of batches >= 1 or a share of them "
     "in (0, 1] (the best checkpoint is chosen on val: without it there is none)"),
    ("trainer.val_check_interval", _batches, "null (once an epoch), a whole number of training "
     "batches >= 1 or a share of an epoch in (0, 1]"),
    ("trainer.accumulate_grad_batches", lambda v: _whole(v) and v >= 1, "a whole number >= 1"),
]


def check_settings(cfg: DictConfig) -> None:
    """Everything that can be checked from the config alone, plus the encoder's own limits read from its
    config.json (cheap: no weights are loaded)."""
    check_appended_keys(cfg)
    for key, allowed, what in RULES:
        value = OmegaConf.select(cfg, key, default=_ABSENT)
        if value is _ABSENT:
            continue
        try:
            ok = allowed(value)
        except TypeError:
            ok = False
        if not ok:
            raise SettingsError(f"{key}={_show(value)}: expected {what}")
    _warn_zero_learning_rates(cfg)
    _check_precision(str(OmegaConf.select(cfg, "trainer.precision", default="auto")),
                     str(OmegaConf.select(cfg, "trainer.accelerator", default="auto")))
    config = _encoder_config(cfg.encoder)
    limit = None if config is None else _position_limit(config)
    if limit is not None and cfg.encoder.max_length > limit:
        raise SettingsError(f"encoder.max_length={cfg.encoder.max_length}: the encoder reads at most {limit} tokens "
                            f"(its max_position_embeddings); set encoder.max_length<={limit}")
    layers = config and config.get("num_hidden_layers")
    if isinstance(layers, int) and OmegaConf.select(cfg, "encoder.layers") is not None:
        wrong = [i for i in cfg.encoder.layers if type(i) is not int or not -(layers + 1) <= i <= layers]
        if wrong:
            raise SettingsError(f"encoder.layers={_show(cfg.encoder.layers)}: {_show(wrong)} not among the encoder's "
                                f"hidden_states: it has {layers} layers, so indices {-(layers + 1)} to {layers} (0 "
                                f"= embeddings, {layers} or -1 = the last layer)")


def _warn_zero_learning_rates(cfg: DictConfig) -> None:
    """A learning rate of 0 is allowed (an ablation), but said: the weights it covers never change."""
    lr, head_lr = OmegaConf.select(cfg, "optim.lr"), OmegaConf.select(cfg, "optim.head_lr")
    head_lr = lr if head_lr is None else head_lr
    if lr == 0 and head_lr == 0:
        shown = "null" if OmegaConf.select(cfg, "optim.head_lr") is None else "0"
        log.warning("optim.lr=0 and optim.head_lr=%s: no weight changes, so the run scores the model as it "
                    "was built (set a learning rate > 0 to train)", shown)
    elif lr == 0 and not OmegaConf.select(cfg, "encoder.freeze", default=False):
        log.warning("optim.lr=0: the encoder's weights never change, yet their gradients are computed every "
                    "step; encoder.freeze=true keeps them fixed without that cost")


def _check_precision(precision: str, accelerator: str) -> None:
    """16-mixed on a CPU is refused: Lightning would run bf16 instead, and the run would record 16-mixed."""
    if precision not in ("16-mixed", "16") or accelerator not in ("cpu", "auto"):
        return
    import torch

    if accelerator == "cpu" or not (torch.cuda.is_available() or torch.backends.mps.is_available()):
        raise SettingsError(f"trainer.precision={precision}: float16 autocast needs a GPU (on a CPU Lightning "
                            "runs bf16-mixed instead, and the run would record 16-mixed); use trainer.precision="
                            "bf16-mixed, 32-true or auto")


def check_against_data(cfg: DictConfig, task: TaskSpec, source: str) -> None:
    """Settings that only the data can contradict (`source`: the training file, for messages)."""
    if task.kind == "class" and task.num_classes < 2:
        raise SettingsError(f"{source}: the training split has a single class label {list(task.label_names)}; "
                            "a class task needs at least 2")
    edges = OmegaConf.select(cfg, "head.bin_edges")
    if edges is not None and task.kind == "score" and task.score_range is not None:
        low, high = task.score_range
        outside = [e for e in edges if not low < e < high]
        if outside:
            raise SettingsError(f"head.bin_edges={_show(list(edges))}: {_show(outside)} not strictly inside the "
                                f"data's score range [{low:g}, {high:g}] ({source}), so every row lands in one bin; "
                                f"choose edges between {low:g} and {high:g}")


_ABSENT = object()
CONF_DIR = conf_dir()  # the configs shipped in the package (src/poolhead/conf), editable install or wheel


def check_appended_keys(cfg: DictConfig, overrides: list[str] | None = None, groups: set[str] | None = None) -> None:
    """`+key=value` overrides (default: the run's own, from HydraConfig) that poolhead never reads stop the run,
    naming the closest known key: Hydra appends any key, so `+optim.lrr=1` would train at the default lr silently.
    Known: a key some conf/ option of its group sets, or a parameter of the component (`_target_`) it configures."""
    if overrides is None:
        from hydra.core.hydra_config import HydraConfig

        if not HydraConfig.initialized():
            return
        overrides = list(HydraConfig.get().overrides.task)
        groups = set(HydraConfig.get().runtime.choices)
    groups = groups if groups is not None else _conf_groups()
    from hydra.core.override_parser.overrides_parser import OverridesParser

    known = None
    for override in OverridesParser.create().parse_overrides(overrides):
        key = override.key_or_group
        appended = override.is_add() or override.is_force_add()  # `++` adds a key as `+` does when it is new
        if not appended or override.package is not None or key in groups or key.split(".")[0] == "hydra":
            continue  # `+group=option` and `+hydra.*` are Hydra's
        sign = "++" if override.is_force_add() else "+"
        if key.startswith("encoder.config."):
            _check_encoder_config_key(cfg, key, f"{sign}{key}={override.get_value_element_as_str()}")
            continue
        known = _conf_keys() if known is None else known
        if key in known or _is_parameter(cfg, key):
            continue
        candidates = {k for k in known | _leaf_keys(cfg) | _parameter_keys(cfg) if not k.endswith("_")} - {key}
        close = difflib.get_close_matches(key, sorted(candidates), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else ""
        value = override.get_value_element_as_str()
        raise SettingsError(f"{sign}{key}={value}: poolhead reads no such key, so it would be ignored{hint} "
                            f"(a `{sign}` key must be one a conf/ option sets or a parameter of the "
                            "component it configures)")


def _check_encoder_config_key(cfg: DictConfig, key: str, override: str) -> None:
    """`+encoder.config.<name>`: read only for a random encoder (name_or_path null), and only when <name> is a
    setting of that model type's config (transformers' configs take any key and ignore the unknown ones)."""
    if OmegaConf.select(cfg, "encoder.name_or_path") is not None:
        raise SettingsError(f"{override}: encoder.config builds a random model and is read only with "
                            "encoder.name_or_path=null; a pretrained encoder's settings come from its own "
                            "config.json")
    from transformers import AutoConfig

    name = key.split(".")[2]
    model_type = OmegaConf.select(cfg, "encoder.config.model_type")
    try:
        config = AutoConfig.for_model(str(model_type))
    except ValueError:
        return  # an unknown model type: building the encoder says so
    settings = set(config.to_dict()) | set(getattr(config, "attribute_map", {})) | {"model_type"}
    if name not in settings:
        close = difflib.get_close_matches(name, sorted(settings), n=1, cutoff=0.6)
        hint = f"; did you mean encoder.config.{close[0]}?" if close else ""
        raise SettingsError(f"{override}: {model_type} models have no setting {name!r}, so it would be "
                            f"ignored{hint}")


def _conf_groups() -> set[str]:
    return {str(p.relative_to(CONF_DIR)) for p in CONF_DIR.rglob("*") if p.is_dir()}


def _conf_keys() -> set[str]:
    """Every dotted key that conf/train.yaml or an option of a group sets (options for _global_, such as
    experiments, at the root)."""
    keys = set()
    for path in CONF_DIR.rglob("*.yaml"):
        group = str(path.parent.relative_to(CONF_DIR))
        package = path.read_text().split("\n", 1)[0]
        if group.split("/")[0] == "hydra" or "@package" in package and "_global_" not in package:
            continue
        node = OmegaConf.load(path)
        prefix = "" if group == "." or "_global_" in package else group.replace("/", ".") + "."
        keys |= {prefix + k for k in _leaf_keys(node) if k.split(".")[0] != "defaults"}
    return keys


def _leaf_keys(node: Any, prefix: str = "") -> set[str]:
    """Dotted paths of every key of a config node (inner nodes too), values not resolved."""
    keys = set()
    if OmegaConf.is_dict(node) and not node._is_none():
        for k in node.keys():
            if not prefix and k == "hydra":
                continue
            path = f"{prefix}{k}"
            keys.add(path)
            value = node._get_node(k)
            if OmegaConf.is_dict(value):
                keys |= _leaf_keys(value, path + ".")
    return keys


def _is_parameter(cfg: DictConfig, key: str) -> bool:
    """`key`'s nearest `_target_` node takes the first part of `key` below it as a parameter (or the key is one of
    Hydra's `_target_`-like keys): e.g. +head.activation=ReLU, +trainer.enable_checkpointing=false."""
    parts = key.split(".")
    if parts[-1].startswith("_") and parts[-1].endswith("_"):
        return True
    for depth in range(len(parts) - 1, 0, -1):
        node = OmegaConf.select(cfg, ".".join(parts[:depth]), default=None, throw_on_missing=False)
        if OmegaConf.is_dict(node) and "_target_" in node:
            return _accepts(node._get_node("_target_")._value(), parts[depth])
    return False


def _accepts(target: Any, name: str) -> bool:
    """The callable `target` names has a parameter `name` (classes: through **kwargs into their bases); True when
    it cannot be told (not importable: instantiating says so; **kwargs to the end)."""
    params = _parameters(target)
    return params is None or name in params


def _parameters(target: Any) -> set[str] | None:
    """The keyword parameters of the callable `target` names (classes: through **kwargs into their bases); None
    when unknown or open-ended."""
    import inspect

    from hydra._internal.utils import _locate

    try:
        obj = _locate(str(target))
    except Exception:
        return None
    names: set[str] = set()
    for call in (obj.__mro__ if isinstance(obj, type) else (obj,)):
        try:
            params = inspect.signature(call.__init__ if isinstance(obj, type) else call).parameters
        except (TypeError, ValueError):
            return None
        kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        names |= {n for n, p in params.items() if p.kind in kinds and n != "self"}
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            return names
    return None


def _parameter_keys(node: Any, prefix: str = "") -> set[str]:
    """`path.param` for every parameter of every `_target_` node in `node` (candidates for a typo's hint)."""
    keys = set()
    if OmegaConf.is_dict(node) and not node._is_none():
        if "_target_" in node:
            keys |= {prefix + name for name in _parameters(node._get_node("_target_")._value()) or ()}
        for k in node.keys():
            if OmegaConf.is_dict(node._get_node(k)) and (prefix or k != "hydra"):
                keys |= _parameter_keys(node._get_node(k), f"{prefix}{k}.")
    return keys


def _show(value: Any) -> str:
    return str(OmegaConf.to_container(value) if OmegaConf.is_config(value) else value)


def _encoder_config(encoder: DictConfig) -> dict | None:
    """The encoder's config as a dict, from its config node (completed with the model type's defaults) or its
    config.json, with `num_hidden_layers` under that name; None when unknown (e.g. a hub name offline: loading the
    encoder then says how to go offline)."""
    if encoder.get("config") is not None:
        config = OmegaConf.to_container(encoder.config)
    else:
        path = Path(str(encoder.get("name_or_path"))).expanduser() / "config.json"
        if not path.is_file():
            return None
        import json

        config = json.loads(path.read_text())
    if "max_position_embeddings" in config and "num_hidden_layers" in config:
        return config
    from transformers import AutoConfig

    try:
        full = AutoConfig.for_model(**config)  # defaults of the model type; names such as DistilBERT's n_layers
    except (ValueError, KeyError, TypeError):
        return config
    return full.to_dict() | config | {"num_hidden_layers": getattr(full, "num_hidden_layers", None)}


def _position_limit(config: dict) -> int | None:
    """max_position_embeddings of the encoder, less the positions it cannot use; None when unknown."""
    limit = config.get("max_position_embeddings")
    return None if limit is None else int(limit) - _offset(config)


def _offset(config: dict) -> int:
    """RoBERTa-style models start positions after the padding index, so 2 of their positions are never usable."""
    roberta_like = config.get("model_type") in ("roberta", "xlm-roberta", "camembert")
    return config.get("pad_token_id", 0) + 1 if roberta_like else 0
