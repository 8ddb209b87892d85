"""Feature cache: the CachedEncoder gives the encoder's outputs from disk; built once, reused, never read when
partial or corrupt; texts it has not seen run the encoder; same metrics as no cache."""

import pytest
import torch
from conftest import component, compose_cfg

import poolhead
from poolhead.core.modes import Bi, Cross, Single
from poolhead.data import DemoSts, TableData
from poolhead.run.train import run
from poolhead.speed.cache import CachedEncoder, FeatureCache
from poolhead.use.cli import main as cli

POOLINGS = ["pooler", "cls", "mean", "max", "mean_sqrt_len", "weighted_mean", "attention"]


def demo(tmp_path, mode=None):
    dm = DemoSts(tokenizer=poolhead.minilm_path(), mode=mode or Cross(), max_length=64, seed=0,
                 cache_dir=tmp_path / "cache", batch_size=16)
    dm.setup("fit")
    return dm


def cached(encoder, dm, tmp_path, **kwargs):
    return CachedEncoder(encoder, FeatureCache(tmp_path / "cache", **kwargs), dm.token_sides())


def count_forwards(encoder):
    calls = []
    encoder.model.register_forward_hook(lambda *args: calls.append(1))
    return calls


@pytest.mark.parametrize("layers", [[-1], [0, -1]])
@pytest.mark.parametrize("mode", [Cross(), Bi()], ids=["cross", "bi"])
def test_cached_encoder_gives_the_encoders_outputs_for_every_pooling(tmp_path, tiny_encoder, mode, layers):
    torch.manual_seed(0)
    encoder = tiny_encoder(freeze=True, layers=layers)
    dm = demo(tmp_path, mode)
    from_cache = cached(encoder, dm, tmp_path)
    calls = count_forwards(encoder)
    for side in next(iter(dm.predict_dataloader("val")))["features"]:
        with torch.no_grad():
            got = from_cache(side)
            assert not calls, "a batch of cached rows never runs the encoder"
            expected = encoder(side)
            calls.clear()
        real = side["attention_mask"].bool()
        # float16 storage: ~3 significant digits
        torch.testing.assert_close(got.last_hidden_state[real], expected.last_hidden_state[real], atol=2e-3, rtol=2e-3)
        assert (got.last_hidden_state[~real] == 0).all()
        torch.testing.assert_close(got.pooler_output, expected.pooler_output, atol=2e-3, rtol=2e-3)
        for name in POOLINGS:
            pooling = component("pooling", name)(hidden_size=32)
            torch.testing.assert_close(pooling(*got), pooling(*expected), atol=2e-3, rtol=2e-3, msg=name)


def test_texts_the_cache_has_not_seen_run_the_encoder(tmp_path, tiny_encoder):
    encoder = tiny_encoder(freeze=True)
    from_cache = cached(encoder, demo(tmp_path), tmp_path)
    new = encoder.model.config.vocab_size - 1 - torch.arange(12).reshape(2, 6)  # ids no demo row has
    features = {"input_ids": new, "attention_mask": torch.ones_like(new), "token_type_ids": torch.zeros_like(new)}
    calls = count_forwards(encoder)
    with torch.no_grad():
        torch.testing.assert_close(from_cache(features).last_hidden_state, encoder(features).last_hidden_state)
    assert len(calls) == 2


def test_two_data_files_with_the_same_column_names_never_share_features(tmp_path, tiny_encoder):
    """Bug caught: the feature cache keyed by a side's name ("csv train side 0", the same for every file
    with these column names) instead of its token ids: the second file would get the first file's states."""
    torch.manual_seed(0)
    encoder = tiny_encoder(freeze=True)
    sides = {}
    for name, words in (("a", "a man plays a guitar"), ("b", "the cat sleeps on the warm mat today")):
        (tmp_path / name).mkdir()
        rows = ["text,label"] + [f"{words} {i},{i % 5}" for i in range(20)]
        (tmp_path / name / "train.csv").write_text("\n".join(rows) + "\n")
        dm = TableData(train=str(tmp_path / name / "train.csv"), tokenizer=poolhead.minilm_path(),
                       mode=Single(), max_length=32, seed=0, cache_dir=tmp_path / "cache", batch_size=8)
        dm.setup("fit")
        sides[name] = (dm, cached(encoder, dm, tmp_path))
    names = {key: [what for what, _ in dm.token_sides()] for key, (dm, _) in sides.items()}
    assert names["a"] == names["b"]  # the same names: only the token ids tell the two files apart
    dm, from_cache = sides["b"]
    side = next(iter(dm.predict_dataloader("train")))["features"][0]
    calls = count_forwards(encoder)
    with torch.no_grad():
        got = from_cache(side)
        assert not calls, "b's rows are served from the cache"
        expected = encoder(side)
    real = side["attention_mask"].bool()
    torch.testing.assert_close(got.last_hidden_state[real], expected.last_hidden_state[real], atol=2e-3,
                               rtol=2e-3)
    assert len(list(FeatureCache(tmp_path / "cache").entries())) == 2 * len(sides["a"][0].token_sides())


def test_only_a_frozen_encoder_is_cached(tmp_path, tiny_encoder):
    with pytest.raises(ValueError, match="encoder.freeze=true"):
        CachedEncoder(tiny_encoder(freeze=False))


def test_single_mode_class_labels_through_build(tmp_path):
    rows = ["text,label"] + [f"text number {i} {'x' * (i % 7)},{'a' if i % 3 else 'b'}" for i in range(30)]
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    cfg = compose_cfg(["encoder=tiny", "encoder.freeze=true", "data=csv", f"data.train={tmp_path}/train.csv",
                       "data.task=class", "mode=single", "head=classification"], tmp_path)
    dm, model = poolhead.build(cfg)
    assert isinstance(model.encoder, CachedEncoder) and isinstance(model.mode, Single)
    calls = count_forwards(model.encoder.encoder)
    batch = next(iter(dm.train_dataloader()))
    assert batch["labels"].dtype == torch.long and model(batch["features"]).shape == (len(batch["labels"]), 2)
    assert not calls


def test_built_once_then_reused(tmp_path, tiny_encoder):
    encoder = tiny_encoder(freeze=True)
    calls = count_forwards(encoder)
    cached(encoder, demo(tmp_path), tmp_path)
    built = len(calls)
    assert built > 0
    cached(encoder, demo(tmp_path), tmp_path)
    assert len(calls) == built, "the second use read the cache"
    other = tiny_encoder(freeze=True)  # other weights: another entry
    other_calls = count_forwards(other)
    cached(other, demo(tmp_path), tmp_path)
    assert other_calls


@pytest.mark.parametrize("damage", ["partial", "corrupt", "truncated"])
def test_partial_or_corrupt_entries_are_rebuilt(tmp_path, tiny_encoder, damage):
    encoder = tiny_encoder(freeze=True)
    cached(encoder, demo(tmp_path), tmp_path)
    target = next(FeatureCache(tmp_path / "cache").entries())[0]
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
    cached(encoder, demo(tmp_path), tmp_path)
    assert calls, "the damaged entry was rebuilt"
    assert FeatureCache.valid(target)


def test_cli_info_and_clear(tmp_path, tiny_encoder, capsys):
    cached(tiny_encoder(freeze=True), demo(tmp_path, Bi()), tmp_path)
    assert cli(["cache", "info", "--cache-dir", str(tmp_path / "cache")]) == 0
    out = capsys.readouterr().out
    assert "features: 6 entries" in out  # 3 splits x 2 sides
    assert cli(["cache", "clear", "--cache-dir", str(tmp_path / "cache")]) == 0
    assert not list((tmp_path / "cache" / "features").glob("*"))


def test_size_limit_removes_least_recently_used_entries_never_the_ones_in_use(tmp_path, tiny_encoder):
    cached(tiny_encoder(freeze=True), demo(tmp_path), tmp_path)  # 3 entries, no limit
    first = {folder for folder, _ in FeatureCache(tmp_path / "cache").entries()}
    assert len(first) == 3
    limited = FeatureCache(tmp_path / "cache", max_gb=1e-9)  # smaller than any entry
    CachedEncoder(tiny_encoder(freeze=True), limited, demo(tmp_path).token_sides())  # another random encoder
    left = {folder for folder, _ in limited.entries()}
    assert left == limited.in_use and len(left) == 3, "the older entries went, this run's stayed"
    assert not first & left


@pytest.mark.slow
@pytest.mark.real
def test_metrics_with_and_without_cache_agree(tmp_path):
    """Frozen MiniLM on the demo set: the cache changes val Spearman by less than 0.1 points (0.001)."""
    results = {}
    for use_cache in (False, True):
        cfg = compose_cfg(["encoder=minilm", "encoder.freeze=true", f"cache_features={use_cache}", "pooling=mean",
                           "trainer.max_epochs=2", "optim.head_lr=1e-2", "trainer.enable_progress_bar=false",
                           "trainer.precision=32-true", f"paths.cache_dir={tmp_path}/cache", "mode=cross"],
                          tmp_path / str(use_cache))  # cross: a head to train on the cached states
        results[use_cache] = run(cfg)
        assert results[use_cache]["status"] == "ok", results[use_cache]["error"]
    without, with_cache = (results[k]["metrics"]["val/spearman"] for k in (False, True))
    assert abs(without - with_cache) < 0.001, (without, with_cache)
    assert list((tmp_path / "cache" / "features").glob("*/meta.json"))


def test_a_configuration_with_nothing_to_train_is_its_zero_shot_baseline(tmp_path):
    """Frozen encoder + weightless pooling + bi cosine head (the probe's zero-shot row): no optimizer may be built
    (it used to fail with "optimizer got an empty parameter list"); the run is the cosine of the frozen pooled
    vectors, says so in results.json and in the sweep report, and its checkpoint holds the untouched weights."""
    import json

    import pandas as pd
    from conftest import FAST, assert_predictions_match_results

    from poolhead.sweep.report import write_report

    job = tmp_path / "sweep" / "job0"
    cfg = compose_cfg([*FAST, "mode=bi", "pooling=mean", "head=regression", "encoder.freeze=true",
                       "cache_features=false"], job)
    results = run(cfg)
    assert results["status"] == "ok", results["error"]
    assert results["zero_shot"] is True and "val/spearman" in results["metrics"]
    assert_predictions_match_results(job)
    import lightning as L

    L.seed_everything(cfg.seed)  # as run() does before building: the same random tiny encoder
    _, model = poolhead.build(cfg)
    saved = torch.load(job / "checkpoints" / "best.ckpt", weights_only=False)["state_dict"]
    for name, value in model.state_dict().items():  # built with the same seed: nothing moved
        torch.testing.assert_close(saved[name], value, msg=name)
    report = write_report(tmp_path / "sweep")
    assert pd.read_csv(report["summary_csv"])["zero_shot"].tolist() == [True]
    assert "Zero-shot (1 jobs" in report["summary_md"].read_text()
    assert json.loads((job / "results.json").read_text())["zero_shot"] is True
