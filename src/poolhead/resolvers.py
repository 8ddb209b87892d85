"""The OmegaConf resolvers poolhead's configs use (`${minilm:}`, `${job_dirname:...}`, ...), registered where
a config is composed: the train command, `poolhead eval`, and Hydra's plugin scan (src/hydra_plugins), so that
`import poolhead` loads neither Hydra nor OmegaConf."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any


def resume_subdir(ckpt_path: object) -> str:
    """hydra.output_subdir: a resume must not overwrite the run's own .hydra files."""
    return f".hydra/resume-{time.strftime('%Y%m%d-%H%M%S')}" if ckpt_path else ".hydra"


def study_direction(monitor: str | None, data: Any = None) -> str:
    """`${optuna_direction:${monitor}[,${data}]}`, as older sweep configs name it: the Optuna sweeper's own rule
    (`optuna_sweep.study_direction`; `monitor: null` is the task's main metric, maximized for every task)."""
    from poolhead.sweep.optuna_sweep import study_direction as sweeper_rule

    return sweeper_rule(None, monitor)


def register() -> None:
    """Register every resolver (idempotent: replace=True)."""
    from omegaconf import OmegaConf

    from poolhead.resources import minilm_path, wandb_offline
    from poolhead.sweep.jobs import job_dirname  # no torch: Hydra and OmegaConf only

    OmegaConf.register_new_resolver("minilm", minilm_path, replace=True)  # ${minilm:}: the bundled MiniLM
    OmegaConf.register_new_resolver("wandb_offline", wandb_offline, replace=True)
    OmegaConf.register_new_resolver("basename", lambda path: Path(str(path)).name, replace=True)
    OmegaConf.register_new_resolver("resume_subdir", resume_subdir, replace=True)
    OmegaConf.register_new_resolver("job_dirname", job_dirname, replace=True)  # hydra.sweep.subdir
    OmegaConf.register_new_resolver("optuna_direction", study_direction, replace=True)  # the Optuna sweeper
