"""Direct tests for bugs that only indirect or data-dependent tests caught (issue 32's audit of hand-made bugs)."""

from types import SimpleNamespace

import pytest
import torch
from test_model import STS, build

from poolhead.callbacks import StopOnNonFinite
from poolhead.task import ThresholdF1


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
