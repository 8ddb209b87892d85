"""Shared fixtures: config folder, a tiny random encoder, and the real data folder (skipped when absent)."""

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach the hub (set before huggingface_hub is imported)
os.environ.setdefault("WANDB_MODE", "offline")
if os.environ.get("PYTEST_XDIST_WORKER"):  # one thread per worker: 2 workers x 2 threads thrash 2 cores
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

import poolhead  # noqa: E402
from poolhead.encoder import Encoder  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)
TINY_CONFIG = dict(model_type="bert", hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                   intermediate_size=64, vocab_size=30522)


@pytest.fixture(scope="session")
def conf_dir() -> Path:
    return ROOT / "conf"


@pytest.fixture
def tiny_encoder():
    """Factory for a random 2-layer BERT over MiniLM's tokenizer (milliseconds to build)."""

    def make(**kwargs) -> Encoder:
        return Encoder(None, tokenizer=poolhead.minilm_path(), config=TINY_CONFIG, **kwargs)

    return make


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """../shared/data (or $POOLHEAD_DATA_DIR): the real STS-B and KorSTS files, never copied into the repo."""
    path = Path(os.environ.get("POOLHEAD_DATA_DIR", ROOT.parent / "shared" / "data"))
    if not (path / "stsb" / "sts-train.csv").exists():
        pytest.skip(f"real data not found at {path} (set POOLHEAD_DATA_DIR to the folder holding stsb/ and korsts/)")
    return path
