"""poolhead: which pooling and which head answer my task best, and how fast can I know?

`poolhead.load(run)` gives a model to `predict` / `encode` with; `poolhead.build(cfg)` the data module and
model of a config. Both are imported on first use: `import poolhead` loads no torch, Hydra or later layer
(test_startup.py)."""

from poolhead.resources import conf_dir, minilm_path, wandb_offline

__version__ = "0.1.0"
__all__ = ["__version__", "build", "conf_dir", "load", "minilm_path", "wandb_offline"]


def __getattr__(name: str):  # poolhead.build / poolhead.load, imported on first use (they pull in torch)
    if name == "build":
        from poolhead.run.build import build

        return build
    if name == "load":  # a model to predict / encode with, as sentence-transformers users expect;
        # backend="onnx" | "openvino": its encoder on that engine (poolhead.use.backend)
        from poolhead.use.api import load

        return load
    raise AttributeError(f"module 'poolhead' has no attribute {name!r}")
