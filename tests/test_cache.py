"""Feature cache: built once, reused, never read when partial or corrupt; same outputs and metrics as no cache."""

from functools import partial

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

import poolhead
from poolhead.cache import FeatureCache
from poolhead.cli import main as cli
from poolhead.data import DemoSts
from poolhead.heads import ClassificationHead, RegressionHead
from poolhead.model import PoolheadModel
from poolhead.train import run

from test_app import CONF

POOLINGS = ["pooler", "cls", "mean", "max", "mean_sqrt_len", "weighted_mean", "attention"]


def demo(tmp_path, mode):
    dm = DemoSts(tokenizer=poolhead.minilm_path(), mode=mode, max_length=64, seed=0, cache_dir=tmp_path / "cache",
                 batch_size=16)
    dm.setup("fit")
    return dm


@pytest.mark.parametrize("layers", [[-1], [0, -1]])
@pytest.mark.parametrize("mode", ["cross", "bi"])
def test_cached_batches_give_the_same_outputs_for_every_pooling(tmp_path, tiny_encoder, mode, layers):
    torch.manual_seed(0)
    encoder = tiny_encoder(freeze=True, layers=layers)
    plain, cached = demo(tmp_path, mode), demo(tmp_path, mode)
    cached.use_encoder_features(FeatureCache(tmp_path / "cache"), encoder)
    batch = next(iter(plain.predict_dataloader("val")))
    cached_batch = next(iter(cached.predict_dataloader("val")))
    assert torch.equal(batch["index"], cached_batch["index"])
    assert "hidden_states" in cached_batch["features"][0] and "input_ids" not in cached_batch["features"][0]
    for name in POOLINGS:
        pooling = instantiate(OmegaConf.load(CONF / "pooling" / f"{name}.yaml"))
        head = ClassificationHead if mode == "bi" else RegressionHead
        model = PoolheadModel(encoder, pooling, partial(head), plain.task, mode).eval()
        with torch.no_grad():
            expected, got = model(batch["features"]), model(cached_batch["features"])
        torch.testing.assert_close(got, expected, atol=2e-3, rtol=2e-3, msg=f"{name} {mode} {layers}")


def test_single_mode_and_class_labels(tmp_path, tiny_encoder):
    rows = ["text,label"] + [f"text number {i} {'x' * (i % 7)},{'a' if i % 3 else 'b'}" for i in range(30)]
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    from poolhead.data import TableData

    dm = TableData(tokenizer=poolhead.minilm_path(), mode="single", seed=0, cache_dir=tmp_path / "cache",
                   train=str(tmp_path / "train.csv"), task="class")
    dm.setup("fit")
    dm.use_encoder_features(FeatureCache(tmp_path / "cache"), tiny_encoder(freeze=True))
    batch = next(iter(dm.train_dataloader()))
    assert batch["labels"].dtype == torch.long and batch["features"][0]["hidden_states"].shape[-1] == 32


def count_forwards(encoder):
    calls = []
    encoder.register_forward_hook(lambda *args: calls.append(1))
    return calls


def test_built_once_then_reused(tmp_path, tiny_encoder):
    encoder = tiny_encoder(freeze=True)
    calls = count_forwards(encoder)
    demo(tmp_path, "cross").use_encoder_features(FeatureCache(tmp_path / "cache"), encoder)
    built = len(calls)
    assert built > 0
    demo(tmp_path, "cross").use_encoder_features(FeatureCache(tmp_path / "cache"), encoder)
    assert len(calls) == built, "the second use read the cache"
    other = tiny_encoder(freeze=True)  # other weights: another entry
    other_calls = count_forwards(other)
    demo(tmp_path, "cross").use_encoder_features(FeatureCache(tmp_path / "cache"), other)
    assert other_calls


@pytest.mark.parametrize("damage", ["partial", "corrupt", "truncated"])
def test_partial_or_corrupt_entries_are_rebuilt(tmp_path, tiny_encoder, damage):
    encoder = tiny_encoder(freeze=True)
    cache = FeatureCache(tmp_path / "cache")
    demo(tmp_path, "cross").use_encoder_features(cache, encoder)
    entries = [folder for folder, _ in cache.entries()]
    target = entries[0]
    if damage == "partial":
        (target / "meta.json").unlink()
    elif damage == "corrupt":
        data = bytearray((target / "hidden.npy").read_bytes())
        data[-3] ^= 0xFF
        (target / "hidden.npy").write_bytes(bytes(data))
    else:
        (target / "hidden.npy").write_bytes((target / "hidden.npy").read_bytes()[:-100])
    assert not FeatureCache.valid(target)
    calls = count_forwards(encoder)
    demo(tmp_path, "cross").use_encoder_features(cache, encoder)
    assert calls, "the damaged entry was rebuilt"
    assert FeatureCache.valid(target)


def test_cli_info_and_clear(tmp_path, tiny_encoder, capsys):
    demo(tmp_path, "bi").use_encoder_features(FeatureCache(tmp_path / "cache"), tiny_encoder(freeze=True))
    assert cli(["cache", "info", "--cache-dir", str(tmp_path / "cache")]) == 0
    out = capsys.readouterr().out
    assert "features: 6 entries" in out  # 3 splits x 2 sides
    assert cli(["cache", "clear", "--cache-dir", str(tmp_path / "cache")]) == 0
    assert not list((tmp_path / "cache" / "features").glob("*"))


@pytest.mark.real
def test_metrics_with_and_without_cache_agree(tmp_path):
    """Frozen MiniLM on the demo set: the cache changes Spearman by less than 0.1 points (0.001)."""
    results = {}
    for use_cache in (False, True):
        with initialize_config_dir(str(CONF), version_base="1.3"):
            cfg = compose("train", overrides=[
                "encoder=minilm", "encoder.freeze=true", f"cache_features={use_cache}", "pooling=mean",
                "trainer.max_epochs=2", "optim.head_lr=1e-2", "+trainer.enable_progress_bar=false",
                f"paths.output_dir={tmp_path}/{use_cache}", f"paths.cache_dir={tmp_path}/cache"])
        results[use_cache] = run(cfg)
        assert results[use_cache]["status"] == "ok", results[use_cache]["error"]
    without, with_cache = (results[k]["metrics"]["val/spearman"] for k in (False, True))
    assert abs(without - with_cache) < 0.001, (without, with_cache)
    assert list((tmp_path / "cache" / "features").glob("*/meta.json"))


def test_size_limit_removes_least_recently_used_entries_never_the_ones_in_use(tmp_path, tiny_encoder):
    old = demo(tmp_path, "cross")
    old.use_encoder_features(FeatureCache(tmp_path / "cache"), tiny_encoder(freeze=True))  # 3 entries, no limit
    first = {folder for folder, _ in FeatureCache(tmp_path / "cache").entries()}
    assert len(first) == 3
    limited = FeatureCache(tmp_path / "cache", max_gb=1e-9)  # smaller than any entry
    demo(tmp_path, "cross").use_encoder_features(limited, tiny_encoder(freeze=True))  # another random encoder
    left = {folder for folder, _ in limited.entries()}
    assert left == limited.in_use and len(left) == 3, "the older entries went, this run's stayed"
    assert not first & left
