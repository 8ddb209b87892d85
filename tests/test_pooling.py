"""Each pooling against an independent reference (sentence-transformers' Pooling) on real MiniLM outputs."""

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoTokenizer

import poolhead
from poolhead.encoder import Encoder
from poolhead.pooling import CLS, Attention, Max, Mean, MeanSqrtLen, PoolerOutput, WeightedMean

st_modules = pytest.importorskip("sentence_transformers.sentence_transformer.modules")

TEXTS = ["A dog runs.", "Two children are playing football in a sunny park near the old river bank.",
         "Hello", "The quick brown fox jumps over the lazy dog, again and again and again."]
ALL = [PoolerOutput, CLS, Mean, Max, MeanSqrtLen, WeightedMean, Attention]


@pytest.fixture(scope="module")
def minilm():
    encoder = Encoder(poolhead.minilm_path()).eval()
    tokenizer = AutoTokenizer.from_pretrained(encoder.tokenizer)
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    assert (batch["attention_mask"] == 0).any(), "the batch must contain padding"
    with torch.no_grad():
        out = encoder(dict(batch))
    return encoder, tokenizer, batch, out


@pytest.mark.parametrize("ours, mode", [(CLS, "cls"), (Mean, "mean"), (Max, "max"),
                                        (MeanSqrtLen, "mean_sqrt_len_tokens"), (WeightedMean, "weightedmean")])
def test_pooling_matches_sentence_transformers(minilm, ours, mode):
    _, _, _, out = minilm
    reference = st_modules.Pooling(384, pooling_mode=mode)(
        {"token_embeddings": out.last_hidden_state, "attention_mask": out.attention_mask})["sentence_embedding"]
    torch.testing.assert_close(ours(384)(*out), reference, atol=1e-6, rtol=1e-6)


def test_pooler_is_the_encoders_pooler_output_and_differs_from_cls(minilm):
    encoder, _, batch, out = minilm
    with torch.no_grad():
        hf = encoder.model(**batch).pooler_output
    pooled = PoolerOutput()(*out)
    torch.testing.assert_close(pooled, hf)
    assert pooled.abs().max() < 1, "pooler_output is tanh(W h_CLS): inside (-1, 1)"
    cls = CLS()(*out)
    assert not torch.allclose(pooled, cls, atol=1e-2), "pooler and cls are different vectors"
    torch.testing.assert_close(torch.tanh(encoder.model.pooler.dense(cls)), pooled)


@pytest.mark.parametrize("pooling", ALL)
def test_extra_padding_changes_nothing(minilm, pooling):
    encoder, tokenizer, batch, _ = minilm
    longer = tokenizer(TEXTS, padding="max_length", max_length=batch["input_ids"].shape[1] + 7, return_tensors="pt")
    torch.manual_seed(0)
    module = pooling(384).eval()
    with torch.no_grad():
        short, long = module(*encoder(dict(batch))), module(*encoder(dict(longer)))
    torch.testing.assert_close(short, long, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pooling", ALL)
def test_padding_values_never_leak(pooling):
    """Garbage (even inf) in padded positions must not reach the result, and the input is not written to."""
    torch.manual_seed(0)
    hidden = torch.randn(2, 5, 8)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    noisy = hidden.clone()
    noisy[0, 3:] = 1e4
    module = pooling(8)
    clean = module(hidden, mask, torch.tanh(hidden[:, 0]))
    before = noisy.clone()
    torch.testing.assert_close(module(noisy, mask, torch.tanh(hidden[:, 0])), clean)
    assert torch.equal(noisy, before), "pooling wrote into the encoder output"


@pytest.mark.parametrize("pooling", ALL)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_is_finite(minilm, pooling, dtype):
    _, _, _, out = minilm
    hidden = out.last_hidden_state.to(dtype)
    pooled = pooling(384).to(dtype)(hidden, out.attention_mask, out.pooler_output.to(dtype))
    assert torch.isfinite(pooled).all()
    reference = pooling(384)(out.last_hidden_state.float(), out.attention_mask, out.pooler_output) if pooling is not Attention else None
    if reference is not None:
        assert F.cosine_similarity(pooled.float(), reference, dim=-1).min() > 0.99


def test_bf16_autocast_encoder_is_finite(minilm):
    encoder, _, batch, _ = minilm
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = encoder(dict(batch))
        for pooling in ALL:
            assert torch.isfinite(pooling(384)(*out)).all(), pooling.__name__


def test_layer_average(minilm):
    encoder, _, batch, _ = minilm
    first_last = Encoder(poolhead.minilm_path(), layers=[0, -1]).eval()
    with torch.no_grad():
        hidden = first_last(dict(batch)).last_hidden_state
        states = encoder.model(**batch, output_hidden_states=True).hidden_states
    torch.testing.assert_close(hidden, (states[0] + states[-1]) / 2)
