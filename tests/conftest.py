"""Shared fixtures: config folder, a tiny random encoder, and the real data folder (skipped when absent)."""

import atexit
import os
import shutil
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach the hub (set before huggingface_hub is imported)
if "POOLHEAD_TEST_CACHE" not in os.environ:  # this session's own cache folder (xdist workers inherit it; other
    os.environ["POOLHEAD_TEST_CACHE"] = tempfile.mkdtemp(prefix="poolhead-test-cache-")  # clones' sessions do not)
    atexit.register(shutil.rmtree, os.environ["POOLHEAD_TEST_CACHE"], ignore_errors=True)
TEST_CACHE = os.environ["POOLHEAD_TEST_CACHE"]
os.environ["POOLHEAD_CACHE"] = TEST_CACHE  # every subprocess run and default cache_dir of this session
os.environ.setdefault("WANDB_MODE", "offline")
if os.environ.get("PYTEST_XDIST_WORKER"):  # one thread per worker: 2 workers x 2 threads thrash 2 cores
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.utils import instantiate  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

import poolhead  # noqa: E402
from poolhead.core.encoder import Encoder  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONF = poolhead.conf_dir()  # the configs shipped in the package (src/poolhead/conf)
# the fast settings of a real run: the tiny random encoder, one epoch, fp32, no progress bar
FAST = ["encoder=tiny", "trainer.max_epochs=1", "trainer.precision=32-true", "trainer.enable_progress_bar=false"]
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)
TINY_CONFIG = dict(model_type="bert", hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                   intermediate_size=64, vocab_size=30522)


@pytest.fixture(scope="session")
def conf_dir() -> Path:
    return CONF


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


def compose_cfg(overrides: list[str], tmp_path: Path, hydra: bool = False):
    """conf/train.yaml composed as `python train.py OVERRIDES` would, writing into tmp_path (hydra: keep the
    `hydra` node, e.g. to read a preset's sweep)."""
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("train", overrides=[f"paths.output_dir={tmp_path}", f"paths.cache_dir={tmp_path}/cache",
                                           *overrides], return_hydra_config=hydra)


def component(group: str, name: str, **changes):
    """conf/<group>/<name>.yaml instantiated (a partial for poolings and heads), with `changes` merged in."""
    return instantiate(OmegaConf.merge(OmegaConf.load(CONF / group / f"{name}.yaml"), changes))


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def assert_predictions_match_results(run_dir: Path, splits: tuple[str, ...] = ("val", "test")) -> None:
    """results.json's metrics recomputed from predictions.csv with scipy/sklearn-free numpy (not poolhead's code):
    Spearman, Pearson, MSE, MAE for scores, accuracy for classes, micro F1 for label sets; rows in input order."""
    import json

    import numpy as np
    import pandas as pd
    from scipy import stats

    results = json.loads((run_dir / "results.json").read_text())
    frame = pd.read_csv(run_dir / "predictions.csv", keep_default_na=False)
    checked = 0
    for split in splits:
        if not results["data"].get(split):
            continue  # e.g. no test file
        part = frame[frame["split"] == split]
        assert part["index"].tolist() == list(range(results["data"][split])), f"{split}: rows in input order"
        metrics = {k.split("/", 1)[1]: v for k, v in results["metrics"].items() if k.startswith(f"{split}/")}
        if "spearman" in metrics:
            gold, pred = part["gold"].astype(float).to_numpy(), part["pred"].astype(float).to_numpy()
            expected = {"spearman": stats.spearmanr(gold, pred).statistic,
                        "pearson": stats.pearsonr(gold, pred).statistic,
                        "mse": np.mean((gold - pred) ** 2), "mae": np.mean(np.abs(gold - pred))}
        elif "accuracy" in metrics:
            expected = {"accuracy": np.mean(part["gold"].astype(str) == part["pred"].astype(str))}
        else:
            names = [c.removeprefix("prob_") for c in part.columns if c.startswith("prob_")]
            gold = np.array([[n in str(g).split("|") for n in names] for g in part["gold"]])
            pred = np.array([[n in str(p).split("|") for n in names] for p in part["pred"]])
            tp = (gold & pred).sum()
            expected = {"f1_micro": 2 * tp / (gold.sum() + pred.sum())}
        for name, value in expected.items():
            assert metrics[name] == pytest.approx(value, abs=1e-6, rel=1e-6), f"{split}/{name}"
            checked += 1
    assert checked, "no metric was checked"


def predict_cli(run_dir: Path, source: Path, output: Path, *flags: str) -> int:
    """`poolhead predict RUN --input SOURCE --output OUTPUT --quiet [FLAGS]`, in this process: its exit status."""
    from poolhead.use.cli import main

    return main(["predict", str(run_dir), "--input", str(source), "--output", str(output), "--quiet", *flags])
