"""The LightningModule: every pooling x head x mode learns on the tiny encoder; heads, metrics and errors."""

import logging
from pathlib import Path

import pytest
import torch
from conftest import TINY_CONFIG, compose_cfg
from transformers import BertConfig, BertModel

import poolhead
from poolhead.core.encoder import Encoder
from poolhead.core.heads import ClassificationHead, MultiLabelHead, RegressionHead
from poolhead.core.task import TaskSpec
from poolhead.run.build import build_model

POOLINGS = ["pooler", "cls", "mean", "max", "mean_sqrt_len", "weighted_mean", "attention"]
STS = TaskSpec(kind="score", score_range=(0.0, 5.0), label_names=None, binary_threshold=3.0)


def features(input_ids):
    ids = torch.as_tensor(input_ids)
    mask = (ids != 0).long()
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}


def toy_batch(mode):
    """8 items; the score depends on which words appear, so a model can fit it."""
    torch.manual_seed(0)
    a = torch.randint(1000, 1100, (8, 6))
    a[::2, 4:] = 0  # padding
    b = torch.randint(1000, 1100, (8, 5))
    labels = torch.tensor([0.0, 5.0, 1.0, 4.0, 2.0, 3.0, 0.5, 4.5])
    if mode == "single":
        inputs = [features(a)]
    elif mode == "cross":
        inputs = [features(torch.cat([a, b], 1))]
    else:
        inputs = [features(a), features(b)]
    return {"features": inputs, "labels": labels, "index": torch.arange(8)}


def fit_toy_batch(model, mode, steps):
    """AdamW steps on the toy batch; the losses."""
    batch = toy_batch(mode)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(steps):
        loss = model.head.loss(model(batch["features"]), batch["labels"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def build(pooling, head, mode, task=STS, encoder=None, overrides=()):
    """The model as poolhead.build assembles it (builder.build_model), without data: a tiny encoder, no dropout."""
    cfg = compose_cfg([f"pooling={pooling}", f"head={head}", f"mode={mode}", "encoder=tiny", "head.dropout=0.0",
                       *overrides], Path("/nonexistent"))
    return build_model(cfg, task, encoder)


@pytest.mark.parametrize("mode", ["single", "cross", "bi"])
@pytest.mark.parametrize("head", ["regression", "classification"])
@pytest.mark.parametrize("pooling", POOLINGS)
def test_every_combination_learns(conf_dir, tiny_encoder, pooling, head, mode):
    torch.manual_seed(0)
    model = build(pooling, head, mode)
    losses = fit_toy_batch(model, mode, steps=25)
    assert losses[-1] < 0.7 * losses[0], f"{pooling}/{head}/{mode}: loss {losses[0]:.3f} -> {losses[-1]:.3f}"


def test_classification_head_bins_sts_scores_and_predicts_expected_score():
    head = ClassificationHead(4, 1, STS)
    assert head.num_classes == 2
    assert head.target(torch.tensor([0.0, 2.99, 3.0, 5.0])).tolist() == [0, 0, 1, 1]
    logits = torch.tensor([[0.0, 0.0], [10.0, -10.0]])
    # bin centres are 1.5 (0-3) and 4.0 (3-5): even odds -> 2.75, sure of class 0 -> 1.5
    torch.testing.assert_close(head.predict(logits), torch.tensor([2.75, 1.5]), atol=1e-4, rtol=0)
    three = ClassificationHead(4, 1, STS, bin_edges=[2.0, 4.0])
    assert three.num_classes == 3 and three.target(torch.tensor([1.0, 2.0, 4.5])).tolist() == [0, 1, 2]


def test_regression_head_scales_targets_and_predictions():
    head = RegressionHead(4, 1, STS)
    torch.testing.assert_close(head.target(torch.tensor([0.0, 2.5, 5.0])), torch.tensor([0.0, 0.5, 1.0]))
    torch.testing.assert_close(head.predict(torch.tensor([0.2])), torch.tensor([1.0]))
    bi = RegressionHead(4, 2, STS).eval()
    u = torch.randn(3, 4)
    torch.testing.assert_close(bi(u, u), torch.ones(3))  # cos(u, u) = 1 -> score 5
    assert not list(bi.parameters()), "bi regression without an MLP is the bare cosine"


def test_bi_classification_reads_u_v_and_difference():
    """mode=bi: the head's Linear reads exactly (u, v, |u - v|), SBERT's softmax features, in that order (the size
    alone passes with (u, v, u - v), and (u, v) fails only at run time)."""
    torch.manual_seed(0)
    head = ClassificationHead(4, 2, STS, dropout=0.0).eval()
    assert head.out.in_features == 12
    u, v = torch.randn(3, 4), torch.randn(3, 4)
    expected = torch.cat([u, v, (u - v).abs()], -1) @ head.out.weight.T + head.out.bias
    torch.testing.assert_close(head(u, v), expected)


@pytest.mark.parametrize("make", [
    lambda: RegressionHead(4, 1, STS, hidden_dims=[3], dropout=0.0), lambda: RegressionHead(4, 1, STS, loss="bce"),
    lambda: ClassificationHead(4, 1, STS, dropout=0.0),
    lambda: ClassificationHead(4, 1, TaskSpec(kind="class", score_range=None, label_names=("a", "b", "c"),
                                              binary_threshold=None)),
    lambda: MultiLabelHead(4, 1, TaskSpec(kind="multilabel", score_range=None, label_names=("a", "b"),
                                          binary_threshold=None))])
def test_the_export_protocol_rebuilds_the_heads_score(make):
    """hidden_layers() then affine_out() reproduce the score (predict) of a score head, the logits of a class head."""
    torch.manual_seed(0)
    head, x = make().eval(), torch.randn(5, 4)
    h = x
    for layer, activation in head.hidden_layers():
        h = activation(layer(h))
    weight, bias, sigmoid, low, span = head.affine_out()
    o = h @ weight.T + bias
    got = low + span * (o.sigmoid() if sigmoid else o)
    want = head.predict(head(x)) if head.task.kind == "score" else head(x)
    torch.testing.assert_close(got.squeeze(-1) if head.task.kind == "score" else got, want)
    assert RegressionHead(4, 2, STS).affine_out() is None  # bi: a cosine, no output layer
    assert ClassificationHead(4, 1, STS, bin_edges=[2.0, 4.0]).affine_out() is None  # 3 bins: a softmax-weighted sum


def test_regression_on_class_labels_is_a_clear_error():
    task = TaskSpec(kind="class", score_range=None, label_names=("neg", "pos"), binary_threshold=None)
    with pytest.raises(ValueError, match="head=classification"):
        RegressionHead(4, 1, task)


def test_pooler_on_a_model_without_pooler_fails_before_training(conf_dir, tiny_encoder):
    encoder = tiny_encoder()
    encoder.model.pooler = None
    with pytest.raises(ValueError, match="pooling=pooler needs a model with a pooler"):
        build("pooler", "regression", "cross", encoder=encoder)
    build("mean", "regression", "cross", encoder=encoder)  # other poolings still work


def test_metrics_on_sts_judge_the_expected_score_and_the_bins():
    """The classification head on STS: the task's metrics see the expected score, the head's see the bins; a
    renamed or missing metric fails here, as does a wrong value."""
    model = build("mean", "classification", "cross")
    output = torch.tensor([[2.0, -2.0], [-2.0, 2.0], [0.0, 0.0], [-3.0, 3.0]])
    labels = torch.tensor([0.5, 4.0, 2.0, 5.0])  # bins 0, 1, 0, 1; expected scores rank as the labels do
    model.metrics["val"].update(model.head, output, labels)
    values = model.metrics["val"].compute()
    assert set(values) == {f"val/{k}" for k in ("pearson", "spearman", "mse", "mae", "f1", "accuracy", "f1_macro")}
    assert values["val/accuracy"] == pytest.approx(1.0) and values["val/f1_macro"] == pytest.approx(1.0)
    assert values["val/spearman"] == pytest.approx(1.0) and values["val/f1"] == pytest.approx(1.0)
    expected = output.softmax(-1) @ torch.tensor([1.5, 4.0])
    assert values["val/mae"] == pytest.approx(float((expected - labels).abs().mean()), rel=1e-5)


def test_optimizer_groups_skip_weight_decay_on_bias_and_layernorm(conf_dir, tiny_encoder):
    model = build("attention", "regression", "cross",
                  overrides=["optim.lr=1e-5", "optim.head_lr=1e-3", "optim.weight_decay=0.1"])
    model.trainer = type("T", (), {"estimated_stepping_batches": 100, "precision_plugin": None})()  # what it reads
    optimizer = model.configure_optimizers()["optimizer"]
    names = {id(p): n for n, p in model.named_parameters()}
    for group in optimizer.param_groups:
        for p in group["params"]:
            name = names[id(p)]
            no_decay = name.endswith("bias") or "LayerNorm" in name
            assert group["weight_decay"] == (0.0 if no_decay else 0.1), name
            assert group["initial_lr"] == (1e-5 if name.startswith("encoder.") else 1e-3), name
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(model.parameters()))


@pytest.mark.parametrize("config", [
    # DistilBERT: no token_type_ids argument and no pooler
    dict(model_type="distilbert", dim=32, n_layers=2, n_heads=2, hidden_dim=64),
    # RoBERTa-style: one token type only (roberta-base's type_vocab_size), padding id 0 for this test's vocab
    dict(model_type="roberta", hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
         type_vocab_size=1, pad_token_id=0),
], ids=["distilbert", "roberta"])
@pytest.mark.parametrize("pooling", [p for p in POOLINGS if p != "pooler"])
def test_models_without_token_types_or_pooler_train_every_other_pooling(conf_dir, config, pooling):
    torch.manual_seed(0)
    encoder = Encoder(None, tokenizer=poolhead.minilm_path(), config=dict(config, vocab_size=30522))
    model = build(pooling, "regression", "cross", encoder=encoder)
    losses = fit_toy_batch(model, "cross", steps=15)  # the batch carries token_type_ids; DistilBERT takes none
    assert losses[-1] < 0.7 * losses[0], f"{config['model_type']}/{pooling}: {losses[0]:.3f} -> {losses[-1]:.3f}"


def test_pooler_missing_from_the_checkpoint_warns_loudly(conf_dir, tmp_path, caplog):
    """A checkpoint saved without pooler weights (as RoBERTa/ELECTRA often are) gets a random pooler: say so."""
    config = BertConfig(**{k: v for k, v in TINY_CONFIG.items() if k != "model_type"})
    BertModel(config, add_pooling_layer=False).save_pretrained(tmp_path / "no_pooler")
    encoder = Encoder(str(tmp_path / "no_pooler"), tokenizer=poolhead.minilm_path())
    assert encoder.has_pooler and encoder.pooler_is_random
    with caplog.at_level(logging.WARNING, logger="poolhead.core.model"):
        build("pooler", "regression", "cross", encoder=encoder)
    assert "RANDOMLY INITIALISED" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="poolhead.core.model"):
        build("mean", "regression", "cross", encoder=encoder)
    assert "RANDOMLY" not in caplog.text  # only pooling=pooler reads the random pooler


def _ragged_sides(left_padding: bool):
    """Two sides of 6 rows whose lengths differ within and across sides (2..9 tokens), padded right or left."""
    torch.manual_seed(1)
    sides = []
    for lengths in ([9, 2, 5, 7, 3, 4], [3, 8, 2, 6, 9, 5]):
        ids = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
        for row, n in enumerate(lengths):
            cols = slice(ids.shape[1] - n, None) if left_padding else slice(0, n)
            ids[row, cols] = torch.randint(1000, 1100, (n,))
        sides.append(features(ids))
    return sides


@pytest.mark.parametrize("left_padding", [False, True])
@pytest.mark.parametrize("pooling", ["mean", "cls", "max", "attention"])
def test_bi_pooling_of_both_sides_equals_each_side_alone(conf_dir, tiny_encoder, pooling, left_padding):
    """Training encodes both sides in one pass; evaluation sorts the rows by length and encodes them in chunks cut
    to their longest row. Both must equal encoding each side on its own, row for row: a wrong un-sorting, a cut
    through real tokens or a changed position would not."""
    model = build(pooling, "classification", "bi").eval()
    sides = _ragged_sides(left_padding)
    with torch.no_grad():
        apart = model.head(*(model.encode(side) for side in sides))
        evaluated = model(sides)
    with torch.enable_grad():
        trained = model(sides).detach()
    torch.testing.assert_close(evaluated, apart, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(trained, apart, atol=1e-5, rtol=1e-4)


def test_bi_evaluation_encodes_fewer_padded_tokens(conf_dir, tiny_encoder):
    model = build("mean", "regression", "bi").eval()
    widths, encode = [], model.encode
    model.encode = lambda f: widths.append(f["input_ids"].numel()) or encode(f)
    with torch.no_grad():
        model(_ragged_sides(left_padding=False))
    assert sum(widths) == 6 * 9 + 6 * 5  # 12 rows by length: the longest 6 padded to 9, the rest to 5 (not 12 x 9)


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_default_fused_adamw_still_clips_gradients(conf_dir, tiny_encoder, precision, monkeypatch, tmp_path):
    """Lightning refuses to clip for fused optimizers under mixed precision; poolhead clips itself when no loss
    scaler is involved. Each step must see the clipped norm."""
    import lightning as L

    seen = []
    step = torch.optim.AdamW.step

    def recording_step(self, closure=None):
        loss = closure()  # forward, backward and clipping
        grads = [p.grad for group in self.param_groups for p in group["params"] if p.grad is not None]
        seen.append((self.defaults["fused"], torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item()))
        step(self)
        return loss

    monkeypatch.setattr(torch.optim.AdamW, "step", recording_step)
    model = build("mean", "regression", "cross")  # conf/optim/adamw.yaml, as a run composes it
    batch = toy_batch("cross")
    trainer = L.Trainer(max_steps=3, precision=precision, gradient_clip_val=1e-3, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=tmp_path)
    trainer.fit(model, train_dataloaders=torch.utils.data.DataLoader([batch], batch_size=None))
    assert len(seen) == 3
    assert all(fused for fused, _ in seen), "optim/adamw.yaml asks for the fused AdamW"
    assert all(norm <= 1e-3 * 1.01 for _, norm in seen), seen


@pytest.mark.parametrize("head", ["regression", "classification"])
def test_every_logged_metric_has_a_direction(head):
    """monitor= may name any logged metric; each must say which way is better (PearsonCorrCoef has none in
    torchmetrics, so monitor=val/pearson used to be refused)."""
    model = build("mean", head, "cross")
    modes = {name: model.monitor_mode(f"val/{name}") for name in model.metric_names() + ["loss"]}
    own = {name: "min" if name == "loss" or not model.metrics["val"].higher_is_better(name) else "max"
           for name in modes}  # each metric's own higher_is_better: poolhead.core.direction must agree with it
    assert modes == own, modes
