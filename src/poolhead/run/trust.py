"""What a checkpoint or a run folder may hold before anything is built from it: plain values in poolhead's
own schema, poolhead's own components, and no OmegaConf interpolation it did not write itself. A check of
literal `_target_` keys is not enough: `${oc.create:{_target_: ...}}` builds one at resolve time, so a
checkpoint's description is refused when it holds any interpolation, and a run folder's saved config when it
calls a resolver outside SAFE_RESOLVERS. Every refusal names the file and the key."""

from __future__ import annotations

import base64
import binascii
import inspect
import json
from pathlib import Path
from typing import Any

NUMBER = (int, float)
NONE = type(None)
# Where the `_target_`s of a poolhead checkpoint's config may come from: classes of the modules holding
# conf/'s encoder, pooling, head, mode and data components and torch's optimizers, plus the scheduler
# factory conf/optim names
TRUSTED_CLASS_MODULES = ("poolhead.core.encoder", "poolhead.core.pooling", "poolhead.core.heads",
                         "poolhead.core.modes", "poolhead.data", "torch.optim")
TRUSTED_FUNCTIONS = ("transformers.get_scheduler",)
HYDRA_KEYS = ("_target_", "_partial_", "_convert_", "_recursive_")  # Hydra's keys a component may carry
# The description's schema: key -> allowed types (a dict: its own schema; keys old checkpoints lack are fine)
CONFIG_SCHEMA: dict[str, Any] = {
    "encoder": dict, "pooling": dict, "head": dict, "mode": dict, "data": dict, "seed": int,
    "monitor": (str, NONE), "monitor_mode": (str, NONE), "cache_features": bool,
    "optim": {"lr": NUMBER, "head_lr": (*NUMBER, NONE), "weight_decay": NUMBER, "warmup_ratio": NUMBER,
              "optimizer": (dict, NONE), "scheduler": (dict, NONE)},
    "trainer": {"precision": (str, int)}}
TASK_SCHEMA = {"kind": str, "score_range": (list, tuple, NONE), "label_names": (list, tuple, NONE),
               "binary_threshold": (*NUMBER, NONE)}  # poolhead.core.task.TaskSpec's fields
REQUIRED = ("encoder", "pooling", "head", "mode", "optim")  # what `poolhead.load` builds the model from
COMPONENTS = ("encoder", "pooling", "head", "mode", "data", "optim.optimizer", "optim.scheduler")
CODE_MAPS = ("tokenizer_config.json", "config.json")  # their `auto_map` makes transformers import a .py file
# Resolvers a run folder's saved config may call: the ones conf/ uses, none of which builds an object
# (oc.create, oc.decode and a resolver of anyone else's code are refused)
SAFE_RESOLVERS = ("oc.env", "hydra", "now", "minilm", "basename", "wandb_offline", "resume_subdir",
                  "job_dirname", "optuna_direction")
OPT_IN = ("If you trust it (e.g. your own custom pooling or head), pass trust_remote_code=True to "
          "poolhead.load, or --trust-remote-code to poolhead predict/eval/export")


class UntrustedCheckpoint(ValueError):
    """A checkpoint or run folder that asks to run code (pickled objects, a component outside poolhead, an
    interpolation, custom tokenizer code, a file name outside its folder): refused, as data, not code."""


def refuse(source: Path | str, what: str) -> UntrustedCheckpoint:
    """The refusal `raise`d for `source`: '<file>: refused: <what>'."""
    return UntrustedCheckpoint(f"{source}: refused: {what}")


def trusted_target(target: Any) -> bool:
    """`target` is one of poolhead's own components (a class of TRUSTED_CLASS_MODULES, located without
    calling anything) or a TRUSTED_FUNCTIONS entry: what conf/'s groups instantiate."""
    if not isinstance(target, str):
        return False
    if target in TRUSTED_FUNCTIONS:
        return True
    parts = target.split(".")
    if not _inside(target) or any(not p.isidentifier() or p.startswith("_") for p in parts):
        return False
    obj = _located(target)
    return isinstance(obj, type) and _inside(getattr(obj, "__module__", "") or "")


def _inside(name: str) -> bool:
    """`name` is a TRUSTED_CLASS_MODULES module or inside one (whole dotted parts: not `torch.optim_x`)."""
    return any(name == m or name.startswith(m + ".") for m in TRUSTED_CLASS_MODULES)


def _located(target: str) -> Any:
    """The object `target` names (imports its module, reads attributes, calls nothing), or None."""
    from hydra._internal.utils import _locate

    try:
        return _locate(target)
    except Exception:
        return None


def check_targets(config: Any, source: Path | str, where: str = "config",
                  also: frozenset[str] = frozenset()) -> None:
    """Every `_target_` under `config` is `trusted_target` or in `also`, else refused naming it."""
    if isinstance(config, dict):
        for key, value in config.items():
            if key == "_target_" and not (trusted_target(value) or value in also):
                raise UntrustedCheckpoint(
                    f"{source}: refused to build {where}._target_={value!r}: not one of poolhead's own "
                    f"components, and building it would run code named by the file's author. {OPT_IN}")
            check_targets(value, source, f"{where}.{key}", also)
    elif isinstance(config, (list, tuple)):
        for i, value in enumerate(config):
            check_targets(value, source, f"{where}[{i}]", also)


def check_plain(value: Any, source: Path | str, where: str, interpolation: Any = None) -> None:
    """`value` is plain data (dicts with string or int keys, lists, str, int, float, bool, None), and each
    string holding `${` passes `interpolation(text, said)`; by default (a checkpoint) none may."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, (str, int)) or isinstance(key, bool):  # ints: transformers' id2label
                raise refuse(source, f"{where} has a key {key!r} that is not a string")
            check_plain(item, source, f"{where}.{key}", interpolation)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            check_plain(item, source, f"{where}[{i}]", interpolation)
    elif isinstance(value, str):
        if "${" in value:
            (interpolation or _no_interpolation)(value, f"{source}: refused: {where}")
    elif not isinstance(value, (int, float, bool, NONE)):
        raise refuse(source, f"{where} is a {type(value).__name__}, not a plain value")


def _no_interpolation(text: str, said: str) -> None:
    raise UntrustedCheckpoint(f"{said} holds an OmegaConf interpolation ({_short(text)}): a checkpoint's "
                              "description is plain values, and resolving one can build any object (e.g. "
                              "through oc.create)")


def safe_interpolation(text: str, said: str) -> None:
    """A run folder's saved config may refer to its own keys (`${paths.root_dir}`) and call SAFE_RESOLVERS."""
    from omegaconf import grammar_parser
    from omegaconf.errors import GrammarParseError

    try:
        called = sorted(_resolvers(grammar_parser.parse(text)))
    except GrammarParseError as err:
        raise UntrustedCheckpoint(f"{said}: {_short(text)} is not a valid interpolation ({err})") from None
    foreign = [name for name in called if name not in SAFE_RESOLVERS]
    if foreign:
        raise UntrustedCheckpoint(f"{said} calls the resolver {foreign[0]!r} ({_short(text)}); a saved "
                                  f"config may call only {', '.join(SAFE_RESOLVERS)} (others can build any "
                                  "object, e.g. oc.create)")


def _resolvers(tree: Any) -> set[str]:
    """The resolver names an OmegaConf grammar parse tree calls, nested and quoted ones included."""
    from omegaconf.grammar.gen.OmegaConfGrammarParser import OmegaConfGrammarParser

    if isinstance(tree, OmegaConfGrammarParser.ResolverNameContext):
        return {tree.getText()}
    children = tree.getChildren() if hasattr(tree, "getChildren") else []
    return set().union(*(_resolvers(child) for child in children))


def _short(text: str) -> str:
    return repr(text if len(text) <= 80 else text[:77] + "...")


def check_schema(values: dict[str, Any], schema: dict[str, Any], source: Path | str, where: str) -> None:
    """Each key of `values` is one `schema` allows, with a value of its type (a nested schema: in turn)."""
    for key, value in values.items():
        if key not in schema:
            raise refuse(source, f"{where}.{key} is not a key of poolhead's checkpoint description "
                                 f"(allowed: {', '.join(schema)})")
        allowed = dict if isinstance(schema[key], dict) else schema[key]
        types = allowed if isinstance(allowed, tuple) else (allowed,)
        if not isinstance(value, types) or (isinstance(value, bool) and not {bool, object} & set(types)):
            raise refuse(source, f"{where}.{key} is {value!r} ({type(value).__name__}), where poolhead "
                                 f"writes {' or '.join(t.__name__ for t in types)}")
        if isinstance(schema[key], dict):
            check_schema(value, schema[key], source, f"{where}.{key}")


def check_component_keys(node: dict[str, Any], source: Path | str, where: str,
                         extra: tuple[str, ...] = ()) -> None:
    """The keys of a component node are arguments its `_target_` takes (or Hydra's own, or `extra`): a
    refusal naming the key instead of a TypeError from deep inside Hydra. Only for trusted targets."""
    target = _located(node.get("_target_", ""))
    try:
        parameters = inspect.signature(target).parameters if target is not None else {}
    except (TypeError, ValueError):
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    for key in node:
        if key not in parameters and key not in HYDRA_KEYS and key not in extra:
            raise refuse(source, f"{where}.{key} is not an argument of {node['_target_']} (it takes "
                                 f"{', '.join(p for p in parameters if p != 'self')})")


def check_components(config: dict[str, Any], source: Path | str, trust_remote_code: bool,
                     where: str = "config", also: frozenset[str] = frozenset()) -> None:
    """Every `_target_` trusted (unless `trust_remote_code`), and each COMPONENTS node's keys its target
    takes (the encoder's: also poolhead.speed's keys, which `run.build.encoder_config` takes out)."""
    if not trust_remote_code:
        check_targets(config, source, where, also)
    for path in COMPONENTS:
        node = _select(config, path)
        if isinstance(node, dict) and trusted_target(node.get("_target_")):
            check_component_keys(node, source, f"{where}.{path}", _speed_keys() if path == "encoder" else ())


def _select(config: dict[str, Any], path: str) -> Any:
    for part in path.split("."):
        config = config.get(part) if isinstance(config, dict) else None
    return config


def check_encoder_config(encoder_config: dict[str, Any], source: Path | str, trust_remote_code: bool) -> None:
    """The encoder's transformers config names no custom code (`auto_map`) unless `trust_remote_code`."""
    if "auto_map" in encoder_config and not trust_remote_code:
        named = _short(json.dumps(encoder_config["auto_map"]))
        raise refuse(source, f"encoder_config.auto_map names custom model code ({named}) that transformers "
                             f"would run. {OPT_IN}")


def check_tokenizer_files(files: dict[str, Any], source: Path | str, trust_remote_code: bool) -> None:
    """Plain file names, base64 contents, and no custom tokenizer code: neither a .py file nor an `auto_map`
    in tokenizer_config.json / config.json (transformers asks "run the custom code? [y/N]" on a terminal)."""
    check_file_names(files, source)
    contents = {name: _base64(name, content, source) for name, content in files.items()}
    if trust_remote_code:
        return
    for name in CODE_MAPS:
        if name in contents and "auto_map" in _json_object(contents[name], name, source):
            raise refuse(source, f"embedded tokenizer file {name} has an auto_map (custom tokenizer code "
                                 f"that transformers would run). {OPT_IN}")
    code = [name for name in contents if name.endswith(".py")]
    if code:
        raise refuse(source, f"embedded tokenizer file {code[0]!r} is Python code. {OPT_IN}")


def _base64(name: str, content: Any, source: Path | str) -> bytes:
    try:
        return base64.b64decode(content, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise refuse(source, f"embedded tokenizer file {name!r} is not base64 text, as poolhead writes "
                             "it") from None


def _json_object(data: bytes, name: str, source: Path | str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError as err:
        raise refuse(source, f"embedded tokenizer file {name} is not JSON ({err})") from None
    return value if isinstance(value, dict) else {}


def check_file_names(files: dict[str, Any], source: Path | str) -> list[str]:
    """The embedded tokenizer files' names, each a plain file name (no folder, no '..', not absolute), else
    refused: they are written into one temporary folder."""
    for name in files:
        if (not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name
                or "\0" in name or Path(name).is_absolute() or Path(name).name != name):
            raise refuse(source, f"embedded tokenizer file name {name!r} is not a plain file name (it would "
                                 "be written outside the tokenizer's folder)")
    return list(files)


def check_saved_config(saved: dict[str, Any], composed: dict[str, Any], source: Path | str,
                       conf_targets: frozenset[str] = frozenset()) -> None:
    """A run folder's `.hydra/config.yaml` (plain, unresolved values) before a resume builds from it: plain
    values, interpolations of its own keys and SAFE_RESOLVERS only, and every `_target_` one of poolhead's
    components, one that conf/ names (`conf_targets`), or one the resume command composes itself."""
    check_plain(saved, source, "config", safe_interpolation)
    own = frozenset(conf_targets | set(_targets(composed)))
    try:
        check_components(saved, source, False, also=own)
    except UntrustedCheckpoint as err:
        yours = "If it is yours, resume with the config options that started the run (e.g. pooling=<yours>)"
        raise UntrustedCheckpoint(str(err).replace(OPT_IN, yours)) from None


def _targets(config: Any) -> list[str]:
    """Every `_target_` string under `config`."""
    if isinstance(config, dict):
        own = [config["_target_"]] if isinstance(config.get("_target_"), str) else []
        return own + [t for value in config.values() for t in _targets(value)]
    if isinstance(config, (list, tuple)):
        return [t for value in config for t in _targets(value)]
    return []


def _speed_keys() -> tuple[str, ...]:
    from poolhead.speed import SPEED_KEYS

    return SPEED_KEYS
