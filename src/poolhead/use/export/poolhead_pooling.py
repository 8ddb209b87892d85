"""A poolhead pooling as a sentence-transformers module (copied into an export by `poolhead export`).

sentence-transformers' Pooling has no attention (or custom) pooling, so an export carries this file at its
root and the pooling's own source file in the module's folder; `SentenceTransformer(DIR,
trust_remote_code=True)` runs both. Standalone: it imports torch and sentence-transformers only (never
poolhead)."""

from __future__ import annotations

import importlib.util
import inspect
import shutil
import sys
from pathlib import Path
from typing import Any

import torch
from sentence_transformers.base.modules.module import Module


def pooling_class(code_path: str, class_name: str) -> type:
    """The class `class_name` from the source file `code_path`, imported under a private module name."""
    name = f"poolhead_pooling_code_{abs(hash(str(Path(code_path).resolve())))}"
    spec = importlib.util.spec_from_file_location(name, code_path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look a class's module up here
    spec.loader.exec_module(module)
    return getattr(module, class_name)


class PoolheadPooling(Module):
    """token_embeddings [B,T,H] and attention_mask [B,T] -> sentence_embedding, by the trained poolhead
    pooling."""

    config_keys: list[str] = ["code_file", "class_name", "init_kwargs", "embedding_dimension"]

    def __init__(
        self,
        code_file: str,
        class_name: str,
        init_kwargs: dict[str, Any] | None = None,
        embedding_dimension: int | None = None,
        code_path: str | None = None,
        pooling: torch.nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.code_file, self.class_name = code_file, class_name
        self.init_kwargs, self.embedding_dimension = dict(init_kwargs or {}), embedding_dimension
        self.code_path = code_path or inspect.getsourcefile(type(pooling))
        self.pooling = (
            pooling if pooling is not None else pooling_class(self.code_path, class_name)(**self.init_kwargs)
        )

    def forward(self, features: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """The pooled vector of the real tokens, as poolhead computes it."""
        features["sentence_embedding"] = self.pooling(
            features["token_embeddings"], features["attention_mask"]
        )
        return features

    def get_embedding_dimension(self) -> int | None:
        return self.embedding_dimension

    def save(self, output_path: str, *args: Any, safe_serialization: bool = True, **kwargs: Any) -> None:
        """Config, weights and the pooling's source file, in the module's own folder."""
        self.save_config(output_path)
        self.save_torch_weights(output_path, safe_serialization=safe_serialization)
        shutil.copyfile(self.code_path, Path(output_path) / self.code_file)

    @classmethod
    def load(
        cls,
        model_name_or_path: str,
        subfolder: str = "",
        token: bool | str | None = None,
        cache_folder: str | None = None,
        revision: str | None = None,
        local_files_only: bool = False,
        **kwargs: Any,
    ) -> PoolheadPooling:
        """Rebuild the pooling from its source file and config, then load its weights (none for a weightless
        one)."""
        hub = dict(
            subfolder=subfolder,
            token=token,
            cache_folder=cache_folder,
            revision=revision,
            local_files_only=local_files_only,
        )
        config = cls.load_config(model_name_or_path=model_name_or_path, **hub)
        code_path = cls.load_file_path(model_name_or_path, config["code_file"], **hub)
        module = cls(**config, code_path=code_path)
        return cls.load_torch_weights(model_name_or_path=model_name_or_path, model=module, **hub)
