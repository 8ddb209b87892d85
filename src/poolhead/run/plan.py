"""One run's plan, resolved once before anything is built: nothing after it changes the config in place.

    plan = plan_run(cfg)          # the config it trains (the saved one on resume), identity hash, resume checkpoint
    cfg = resolve(plan.cfg, task) # + precision, monitor and its direction (poolhead.build calls this)
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf, open_dict

from poolhead.core.direction import monitor_mode
from poolhead.core.task import TaskSpec
from poolhead.run.checkpoint import read_checkpoint
from poolhead.run.checks import CONF_DIR, SettingsError
from poolhead.run.record import NOT_IDENTITY, config_hash, current_targets
from poolhead.run.trust import check_saved_config


@dataclass(frozen=True)
class RunPlan:
    """What one run trains and from where: `cfg` (read-only), the checkpoint it resumes from and that checkpoint's
    global step (None: from scratch)."""

    cfg: DictConfig
    resume_from: str | None = None
    resume_step: int | None = None

    @functools.cached_property
    def config_hash(self) -> str:
        """The job identity (`poolhead.run.record.config_hash`) of the config as composed, before `resolve`."""
        return config_hash(self.cfg)


def plan_run(cfg: DictConfig, ckpt_path: str | None = None) -> RunPlan:
    """The plan of a run of `cfg`; `ckpt_path` (a sweep resuming its own job) or `cfg.ckpt_path` names the
    checkpoint to continue from, whose run's saved config it trains under. Raises when the resume cannot start."""
    out_dir = Path(cfg.paths.output_dir)
    cfg = OmegaConf.merge(cfg, {"ckpt_path": ckpt_path} if ckpt_path else {})  # a copy: the caller's stays as it is
    cfg = resume_config(cfg, out_dir)
    resume = resume_path(cfg, out_dir)
    OmegaConf.set_readonly(cfg, True)
    return RunPlan(cfg, *(resume or (None, None)))


def resolve(cfg: DictConfig, task: TaskSpec) -> DictConfig:
    """A new read-only config: `trainer.precision` as the machine computes it (`resolve_precision`), `monitor`
    (default: the task's main validation metric) and `monitor_mode`, its direction."""
    monitor = cfg.get("monitor") or f"val/{task.monitor}"
    resolved = OmegaConf.merge(cfg, {"trainer": {"precision": resolve_precision(
        cfg.trainer.precision, cfg.trainer.get("accelerator", "auto"))}, "monitor": monitor,
        "monitor_mode": monitor_mode(monitor)})
    OmegaConf.set_readonly(resolved, True)
    return resolved


def resume_path(cfg: DictConfig, out_dir: Path) -> tuple[str, int] | None:
    """`ckpt_path=last` -> this run folder's last.ckpt; any other value is a checkpoint path. The file must exist
    and be readable; returns it with its global step."""
    if cfg.ckpt_path in (None, ""):
        return None
    path = out_dir / "checkpoints" / "last.ckpt" if cfg.ckpt_path == "last" else Path(cfg.ckpt_path)
    if not path.exists():
        raise FileNotFoundError(f"ckpt_path={cfg.ckpt_path}: no checkpoint at {path}. To resume a run, pass its "
                                "folder too: hydra.run.dir=<that run's folder> ckpt_path=last")
    step = int(read_checkpoint(path).get("global_step", 0))
    own = out_dir / "checkpoints"
    if path.resolve().parent != own.resolve():  # a new folder would get no checkpoint, nor the run's config
        raise ValueError(f"ckpt_path={cfg.ckpt_path}: a checkpoint outside this run's folder ({out_dir}). "
                         "To continue that run, resume it in its own folder: "
                         f"hydra.run.dir={path.parent.parent} ckpt_path=last (a copy of a run's folder "
                         "resumes the same way)")
    return str(path), step


def resume_config(cfg: DictConfig, out_dir: Path) -> DictConfig:
    """A resume continues under the run's own saved config (.hydra/config.yaml); what the resume command sets must
    agree with it (ckpt_path and hydra.* aside)."""
    saved_file = out_dir / ".hydra" / "config.yaml"
    if cfg.ckpt_path in (None, "") or not saved_file.is_file():
        return cfg
    saved = OmegaConf.create(saved_config(saved_file, cfg))
    overrides = HydraConfig.get().overrides.task if HydraConfig.initialized() else []
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        key = override.key_or_group
        if key in NOT_IDENTITY or key.startswith("hydra"):  # how the run is started, not what it trains
            continue
        now, before = (OmegaConf.select(c, key, default=None) for c in (cfg, saved))
        as_plain = lambda v: OmegaConf.to_container(v) if OmegaConf.is_config(v) else v  # noqa: E731
        if as_plain(now) != as_plain(before):
            raise SettingsError(f"{override.input_line}: this run was trained with {key}={as_plain(before)}; a "
                                "resume continues the run's own settings. Drop the override, or start a new run")
    with open_dict(saved):
        for key in NOT_IDENTITY:
            OmegaConf.update(saved, key, OmegaConf.select(cfg, key, default=None), force_add=True)
    return saved


def saved_config(saved_file: Path, cfg: DictConfig) -> dict[str, Any]:
    """A run folder's .hydra/config.yaml as plain values (read, nothing resolved), checked as a checkpoint's
    description is (`trust.check_saved_config`) before a resume builds anything from it."""
    try:
        saved = OmegaConf.to_container(OmegaConf.load(saved_file), resolve=False)
    except (OSError, ValueError, yaml.YAMLError) as err:
        raise SettingsError(f"{saved_file}: unreadable saved config ({type(err).__name__}: {err}); start a "
                            "new run instead of resuming this one") from None
    if not isinstance(saved, dict):
        raise SettingsError(f"{saved_file}: not a saved config (a mapping of settings); start a new run")
    saved = current_targets(saved)
    check_saved_config(saved, OmegaConf.to_container(cfg, resolve=False), saved_file, conf_targets())
    return saved


@functools.cache
def conf_targets() -> frozenset[str]:
    """Every `_target_` the yaml files of poolhead's conf/ name (e.g. logger=wandb's, which a resume does not
    compose unless told): what a run folder's saved config may build besides poolhead's components."""
    found: set[str] = set()
    for path in CONF_DIR.rglob("*.yaml"):
        found.update(re.findall(r"^\s*_target_:\s*([\w.]+)", path.read_text(), flags=re.MULTILINE))
    return frozenset(found)


def cpu_computes_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """bf16 matrix units (AVX512-BF16 or AMX). Without them, autocast to bf16 is slower than fp32, not faster."""
    try:
        flags = cpuinfo.read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: Any, accelerator: str = "auto") -> str:
    """`auto`: bf16-mixed on CPUs with bf16 units, 32-true elsewhere, GPUs included (at batch 32 a GPU step is bound
    by kernel launches, which autocast's casts add to: docs/speed.md). Name bf16-mixed for batches
    large enough that the matrix products dominate (16-mixed on a CPU is refused before: `checks.check_settings`)."""
    if str(precision) != "auto":
        return str(precision)
    if torch.cuda.is_available() and accelerator in ("auto", "gpu", "cuda"):
        return "32-true"
    return "bf16-mixed" if cpu_computes_bf16() else "32-true"


def autocast_dtype(precision: str) -> torch.dtype | None:
    return {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(str(precision))
