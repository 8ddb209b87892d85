"""Direct tests for bugs that only indirect or data-dependent tests caught (issue 32's audit of hand-made bugs)."""

from types import SimpleNamespace
from unittest.mock import patch

import numpy as np
import pytest
import torch
from conftest import compose_cfg
from test_model import STS, build
from transformers import AutoTokenizer

from poolhead.core.task import TaskSpec, ThresholdF1
from poolhead.run.build import build_model
from poolhead.run.callbacks import StopOnNonFinite
from poolhead.run.checkpoint import Description
from poolhead.use.export import export, exported_scores
from poolhead.use.predict import predict_texts


def test_sts_f1_counts_a_score_of_exactly_3_as_similar():
    """STS-B dev holds 86 scores of exactly 3.0: `>` for `>=` turns them all into negatives."""
    f1 = ThresholdF1(3.0)
    f1.update(torch.tensor([3.0, 2.9, 4.0]), torch.tensor([3.0, 2.0, 3.0]))
    assert float(f1.compute()) == pytest.approx(1.0)


def test_a_non_finite_gradient_with_a_finite_loss_stops_training():
    layer = torch.nn.Linear(2, 1)
    layer.weight.grad = torch.tensor([[float("inf"), 0.0]])
    layer.bias.grad = torch.zeros(1)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    trainer = SimpleNamespace(optimizers=[optimizer], current_epoch=0, global_step=5, precision="32-true")
    StopOnNonFinite().on_before_backward(trainer, layer, torch.tensor(0.5))  # the loss itself is finite
    with pytest.raises(FloatingPointError, match="a gradient is not finite at epoch 0, step 5"):
        StopOnNonFinite().on_before_optimizer_step(trainer, layer, optimizer)


def test_the_best_checkpoint_of_the_default_monitor_is_its_highest_spearman():
    assert build("mean", "regression", "cross", task=STS).monitor_mode("val/spearman") == "max"
    assert build("mean", "regression", "cross", task=STS).monitor_mode("val/loss") == "min"


SHIFTED = TaskSpec(kind="score", score_range=(1.0, 5.0), label_names=None, binary_threshold=3.0)
PAIRS = (["A man plays a guitar.", "The cat sleeps.", "A woman slices an onion."],
         ["Someone plays music.", "A dog barks loudly.", "A woman cuts an onion."])


@pytest.mark.parametrize("mode, head, fmt", [("cross", [], "cross-encoder"),
                                             ("cross", ["head.loss=bce"], "cross-encoder"),
                                             ("cross", [], "transformers"), ("bi", [], "sentence-transformers")])
def test_an_export_of_a_score_range_from_1_to_5_gives_poolheads_predictions(tmp_path, mode, head, fmt):
    """score_range=[1, 5]: the exported scores are poolhead's predictions (1 + unit * 4), not 0 + unit * 4 (the
    round trips all train on 0-5 data, where dropping the `+ low` of the export's score mapping changes nothing)."""
    torch.manual_seed(0)
    cfg = compose_cfg(["encoder=tiny", "pooling=pooler", "head=regression", f"mode={mode}", "head.dropout=0.0", *head],
                      tmp_path)
    model = build_model(cfg, SHIFTED).eval()
    model.encoder.tokenizer = AutoTokenizer.from_pretrained(model.encoder.tokenizer)  # a name until data reads it
    model.description = Description.of(cfg, SHIFTED, model)
    pred = model.head.predict(predict_texts(model, *PAIRS, precision="32-true")).double().numpy()
    assert pred.min() > 1.0  # on the data's scale, which starts at 1
    with patch("poolhead.use.export.check"):  # the export's own check compares with the same mapping: judge it here
        export(model, tmp_path / "out", fmt)
    got = exported_scores(tmp_path / "out", fmt, *PAIRS)
    want = (pred - 1.0) / 4.0 if fmt == "sentence-transformers" else pred  # a bi-encoder's cosine: (pred - low) / 4
    assert np.abs(got - want).max() < 1e-5, (got, want)
