"""poolhead.speed.dropout: CPU dropout masks from 16-bit draws must be dropout (rate, scale, gradient, replayable),
and the attention that uses them must be sdpa's attention (mask, scale, dropout after the softmax)."""

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from poolhead import speed
from poolhead.core.pooling import CLS
from poolhead.speed.dropout import ATTENTION, Dropout, dropout, scaled_dot_product_attention, use_fast_dropout
from poolhead.speed.first_token import skip_unread_tokens


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_masks_drop_p_of_the_values_and_scale_the_rest(p):
    """A threshold on the wrong side keeps p instead of 1-p; a missing 1/(1-p) changes the expected activation."""
    torch.manual_seed(0)
    x = torch.ones(400_000, requires_grad=True)
    y = dropout(x, p)
    dropped = (y == 0).float().mean().item()
    assert abs(dropped - p) < 5 * (p * (1 - p) / x.numel()) ** 0.5, dropped
    assert torch.equal(y[y != 0], torch.full_like(y[y != 0], 1 / (1 - p)))
    y.sum().backward()
    assert torch.equal(x.grad, y.detach()), "the gradient is the same mask and scale"
    torch.manual_seed(0)
    assert torch.equal(dropout(x, p), y), "torch's seed replays the masks (resumed runs rely on it)"
    assert not torch.equal(dropout(x, p), y)


def test_no_dropout_where_there_is_none_to_do():
    x = torch.randn(3, 5)
    assert dropout(x, 0.1, training=False) is x or torch.equal(dropout(x, 0.1, training=False), x)
    assert torch.equal(dropout(x, 0.0), x)
    assert torch.equal(dropout(x, 1.0), torch.zeros_like(x))
    module = Dropout(0.3).eval()
    assert torch.equal(module(x), x)
    assert module.p == 0.3, "Hugging Face reads the attention dropout's `p` from the module"


@pytest.mark.parametrize("mask_kind", ["bool", "additive", "none"])
def test_attention_with_dropout_is_softmax_then_dropout_then_values(mask_kind):
    """Against softmax(q k^T * scale + mask) * keep / (1-p) @ v, with the very masks drawn from the same seed: an
    inverted padding mask, a lost scale or dropout before the softmax would show."""
    torch.manual_seed(1)
    q, k, v = (torch.randn(3, 2, 6, 8) for _ in range(3))
    attend = torch.ones(3, 1, 6, 6, dtype=torch.bool)
    attend[1, ..., 4:] = False  # right padding
    attend[2, ..., :2] = False  # left padding
    mask = {"bool": attend, "additive": torch.zeros(attend.shape).masked_fill(~attend, -1e9), "none": None}[mask_kind]
    torch.manual_seed(2)
    ours = scaled_dot_product_attention(q, k, v, mask, dropout_p=0.25, scale=0.3)
    torch.manual_seed(2)
    keep = dropout(torch.ones(3, 2, 6, 6), 0.25)  # the same draws, in the same order
    scores = q @ k.transpose(-1, -2) * 0.3
    if mask is not None:
        scores = scores.masked_fill(~attend, float("-inf"))
    torch.testing.assert_close(ours, (scores.softmax(-1) * keep) @ v)
    without = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=0.3)
    torch.testing.assert_close(scaled_dot_product_attention(q, k, v, mask, 0.0, 0.3), without)


def test_the_encoder_uses_them_and_is_unchanged_in_eval(tiny_encoder):
    torch.manual_seed(0)
    fast, plain = tiny_encoder(), tiny_encoder()
    assert use_fast_dropout(fast.model)
    plain.model.load_state_dict(fast.model.state_dict())
    assert fast.model.config._attn_implementation == ATTENTION
    assert not any(type(m) is torch.nn.Dropout for m in fast.model.modules())
    assert any(type(m) is torch.nn.Dropout for m in plain.model.modules())
    ids = torch.randint(1000, 2000, (3, 9))
    mask = torch.ones(3, 9, dtype=torch.long)
    mask[1, 6:] = 0
    mask[2, :3] = 0
    features = {"input_ids": ids, "attention_mask": mask}
    with torch.no_grad():
        torch.testing.assert_close(fast.eval()(features).last_hidden_state, plain.eval()(features).last_hidden_state)
    fast.train()
    assert skip_unread_tokens(fast, fast_dropout=True)  # its last layer has its own attention call: dropout there too
    out = fast(features).last_hidden_state
    out.sum().backward()
    assert torch.isfinite(out).all() and all(torch.isfinite(p.grad).all() for p in fast.parameters()
                                             if p.grad is not None)
    frozen = SimpleNamespace(encoder=tiny_encoder(freeze=True), pooling=CLS())
    speed.apply(frozen, OmegaConf.create({"encoder": {"fast_dropout": True}, "keep_freed_memory": False}))
    assert frozen.encoder.model.config._attn_implementation != ATTENTION, "a frozen encoder has no dropout"
    on = SimpleNamespace(encoder=tiny_encoder(), pooling=CLS())
    speed.apply(on, OmegaConf.create({"encoder": {"fast_dropout": True}, "keep_freed_memory": False}))
    assert on.encoder.model.config._attn_implementation == ATTENTION, "encoder.fast_dropout=true: applied by config"
