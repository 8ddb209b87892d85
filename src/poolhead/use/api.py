"""A trained run in Python, used as sentence-transformers models are used:

    model = poolhead.load("logs/train/runs/<run>")
    model.predict([("A cat sits.", "A cat is sitting.")])  # what the run predicts: scores on the data's
                                                         # scale, class labels or label sets, in input order
    model.encode(["A cat sits."])                          # mode=bi: the pooled vectors (numpy or a tensor)
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from poolhead.core.model import PoolheadModel
from poolhead.core.modes import Single
from poolhead.data.sampling import sorted_order
from poolhead.data.tokens import Collate, Encoded, encode
from poolhead.run.build import load as load_module
from poolhead.run.plan import autocast_dtype
from poolhead.use.predict import predict_texts


def load(path: str | Path, device: str | None = None, trust_remote_code: bool = False, backend: str = "torch",
         quantize: str | None = None) -> Model:
    """The model of a run folder (its checkpoints/best.ckpt) or a .ckpt, offline; device: default cuda when
    there is one, else cpu. Nothing in the file runs unless `trust_remote_code` (a pooling or head of your
    own). backend="onnx" | "openvino" (quantize="int8": ONNX only): the encoder runs on that engine, on the cpu
    (poolhead.use.backend)."""
    if backend != "torch" or quantize:
        from poolhead.use.backend import load_on

        return Model(load_on(path, backend, quantize, trust_remote_code))
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return Model(load_module(path, map_location=device, trust_remote_code=trust_remote_code))


class Model:
    """`predict` and `encode` over a trained PoolheadModel (the LightningModule itself: `.module`; its other
    attributes read through, so code written for the module, `poolhead.run.evaluate` included, takes this
    too)."""

    def __init__(self, module: PoolheadModel) -> None:
        self.module = module

    def __getattr__(self, name: str) -> Any:
        if name == "module":  # not set yet (copy, pickle): no recursion
            raise AttributeError(name)
        return getattr(self.module, name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.module(*args, **kwargs)

    @property
    def task(self) -> Any:
        """What the run answers: kind (score, class, multilabel), score_range, label_names."""
        return self.module.task

    @property
    def mode(self) -> Any:
        return self.module.mode

    @property
    def description(self) -> Any:
        """The run's config, task and tokenizer as its checkpoint holds them (poolhead.run.checkpoint)."""
        return self.module.description

    def predict(self, inputs: Sequence[str] | Sequence[Sequence[str]] | str | tuple[str, str],
                batch_size: int = 128, precision: str | None = None, show_progress_bar: bool = False) -> Any:
        """What the run predicts for texts (mode=single) or (text, text_pair) pairs (bi, cross), in input
        order: a numpy array of scores on the data's scale, or a list of class labels, or a list of label
        lists. One text or one pair gives one prediction."""
        one = isinstance(inputs, str) or (isinstance(inputs, tuple) and self.mode.pair and len(inputs) == 2
                                          and all(isinstance(t, str) for t in inputs))
        rows = [inputs] if one else list(inputs)
        text, text_pair = self._columns(rows)
        output = predict_texts(self.module, text, text_pair, precision, batch_size, show_progress_bar)
        predicted = self._as_predictions(output)
        return predicted[0] if one else predicted

    def encode(self, sentences: Sequence[str] | str, batch_size: int = 128, convert_to_tensor: bool = False,
               precision: str | None = None) -> np.ndarray | torch.Tensor:
        """The pooled vector of each text, as the head of a mode=bi run reads it ([n, dim]; one text: [dim]):
        what sentence-transformers' `encode` gives for this run's export. numpy unless `convert_to_tensor`."""
        if self.mode.name != "bi":
            raise ValueError("encode gives one vector per text, read by the head on its own: a mode=bi "
                             f"run's; this run is mode={self.mode.name} (its texts meet inside the encoder): "
                             "use predict")
        one = isinstance(sentences, str)
        texts = [sentences] if one else list(sentences)
        vectors = self._pooled(texts, batch_size, precision)
        vectors = vectors[0] if one else vectors
        return vectors if convert_to_tensor else vectors.numpy()

    def _columns(self, rows: list[Any]) -> tuple[list[str], list[str] | None]:
        """(texts, second texts or None), checked against the mode: pairs for bi and cross, else texts."""
        if not self.mode.pair:
            bad = next((i for i, r in enumerate(rows) if not isinstance(r, str)), None)
            if bad is not None:
                raise ValueError(f"input {bad}: this mode={self.mode.name} run scores one text per row, got "
                                 f"{type(rows[bad]).__name__}")
            return rows, None
        bad = next((i for i, r in enumerate(rows) if isinstance(r, str) or len(r) != 2), None)
        if bad is not None:
            raise ValueError(f"input {bad}: this mode={self.mode.name} run scores pairs (text, text_pair), "
                             f"got {rows[bad]!r}")
        return [str(a) for a, _ in rows], [str(b) for _, b in rows]

    def _as_predictions(self, output: torch.Tensor) -> Any:
        """The head's outputs as the run's predictions (as predictions.csv has them; label sets as lists)."""
        pred = self.module.head.predict(output)
        names = self.task.label_names
        if self.task.kind == "class":
            return [names[i] for i in pred.tolist()]
        if self.task.kind == "multilabel":
            return [[n for n, on in zip(names, row, strict=True) if on] for row in pred.tolist()]
        return pred.double().numpy()

    @torch.inference_mode()
    def _pooled(self, texts: list[str], batch_size: int, precision: str | None) -> torch.Tensor:
        """Pooled vectors of single texts, in input order, batched from the longest to the shortest."""
        module = self.module.eval()
        tokenizer = module.encoder.tokenizer
        sides = encode(tokenizer, texts, None, Single(), module.description.max_length)
        data = Encoded(sides, [0.0] * len(texts))
        loader = DataLoader(Subset(data, sorted_order(data.lengths).tolist()), batch_size=batch_size,
                            collate_fn=Collate(tokenizer, torch.float32))
        dtype = autocast_dtype(precision or module.description.precision)
        parts, index = [], []
        for batch in loader:
            features = {k: v.to(module.device) for k, v in batch["features"][0].items()}
            with torch.autocast(module.device.type, dtype=dtype) if dtype else contextlib.nullcontext():
                parts.append(module.encode(features).float().cpu())
            index.append(batch["index"])
        if not parts:
            return torch.empty(0, 0)
        return torch.cat(parts)[torch.argsort(torch.cat(index))]
