"""Each pooling against independent references: sentence-transformers' Pooling on real MiniLM outputs (skipped,
saying why, when sentence-transformers is missing), and a per-row computation on the real tokens alone."""

import copy

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoTokenizer

import poolhead
from poolhead.core.encoder import Encoder
from poolhead.core.pooling import (
    CLS,
    Attention,
    Max,
    Mean,
    MeanSqrtLen,
    PoolerOutput,
    WeightedMean,
)
from poolhead.speed.first_token import skip_unread_tokens

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
    st_modules = pytest.importorskip("sentence_transformers.sentence_transformer.modules",
                                     reason="sentence-transformers (the reference) is not installed")
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


def by_hand(pooling: torch.nn.Module, real: torch.Tensor) -> torch.Tensor:
    """The pooled vector of one text from its real tokens [n, H] alone: no mask, no padding."""
    n = len(real)
    if isinstance(pooling, Attention):
        weights = (pooling.query(real).squeeze(-1) / real.shape[-1] ** 0.5).softmax(0)
        return (weights[:, None] * real).sum(0)
    positions = torch.arange(1, n + 1, dtype=real.dtype)[:, None]
    return {CLS: real[0], Mean: real.mean(0), Max: real.max(0).values, MeanSqrtLen: real.sum(0) / n ** 0.5,
            WeightedMean: (positions * real).sum(0) / positions.sum()}[type(pooling)]


COMPUTING = [CLS, Mean, Max, MeanSqrtLen, WeightedMean, Attention]  # PoolerOutput returns the encoder's own vector


@pytest.mark.parametrize("garbage", [1e4, -1e4, float("inf"), float("nan")])
@pytest.mark.parametrize("pooling", COMPUTING)
def test_padding_values_never_leak(pooling, garbage):
    """Real tokens all negative (a Max that fills padding with 0 returns 0), one row padded on the left (a CLS
    that reads position 0 reads padding), garbage in every padded position: each row must equal the pooling of its
    real tokens alone; the input is not written to."""
    torch.manual_seed(0)
    hidden = -1 - torch.rand(3, 5, 8)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 0, 1, 1, 1]])
    hidden[mask == 0] = garbage
    before = hidden.clone()
    module = pooling(8)
    with torch.no_grad():
        pooled = module(hidden, mask, None)
        for row in range(3):
            torch.testing.assert_close(pooled[row], by_hand(module, hidden[row][mask[row] == 1]), msg=f"row {row}")
    assert torch.equal(hidden, before) or garbage != garbage, "pooling wrote into the encoder output"


@pytest.mark.parametrize("pooling", [Mean, Max, MeanSqrtLen, WeightedMean, Attention])  # CLS/pooler: no arithmetic
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_stays_finite_and_close(minilm, pooling, dtype):
    _, _, _, out = minilm
    torch.manual_seed(0)
    module = pooling(384)
    reference = module(out.last_hidden_state.float(), out.attention_mask, None)
    half = copy.deepcopy(module).to(dtype)
    pooled = half(out.last_hidden_state.to(dtype), out.attention_mask, None)
    assert torch.isfinite(pooled).all()
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


@pytest.mark.parametrize("model_type", ["bert", "roberta", "electra"])
@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("pooling", [CLS(), PoolerOutput()], ids=["cls", "pooler"])
def test_first_token_shortcut_gives_the_full_encoders_output_and_gradients(model_type, attention, pooling):
    """speed.first_token.skip_unread_tokens (the last layer computes only the token cls/pooler read) must change
    nothing: a wrong query row, a mask row of the wrong token or a missed residual would show here. Right and left
    padding."""
    from transformers import AutoConfig

    config = AutoConfig.for_model(model_type, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=64, vocab_size=100)
    if model_type == "electra":
        config.embedding_size = 32
    torch.manual_seed(0)
    full, short = (Encoder(None, tokenizer="unused", config=config.to_dict()) for _ in range(2))
    short.model.load_state_dict(full.model.state_dict())
    for encoder in (full, short):
        encoder.model.set_attn_implementation(attention)  # the layers see a bool (sdpa) or an additive (eager) mask
        assert encoder.model.config._attn_implementation == attention
    assert skip_unread_tokens(short)
    if not short.has_pooler and isinstance(pooling, PoolerOutput):
        pytest.skip(f"{model_type} has no pooler")
    ids = torch.randint(5, 100, (3, 7))
    mask = torch.ones(3, 7, dtype=torch.long)
    mask[1, 5:] = 0  # right padding
    mask[2, :2] = 0  # left padding: the first real token is at 2
    features = {"input_ids": ids, "attention_mask": mask}
    outputs = []
    for encoder in (full, short):
        encoder.eval()  # no dropout: the two must agree exactly up to float rounding
        encoder.zero_grad()
        pooled = pooling(*encoder(features))
        (pooled * torch.linspace(-1, 1, pooled.shape[1])).sum().backward()
        outputs.append((pooled.detach(), {n: p.grad.clone() for n, p in encoder.named_parameters()
                                          if p.grad is not None}))
    (pooled_full, grads_full), (pooled_short, grads_short) = outputs
    if isinstance(pooling, PoolerOutput):  # HF's pooler reads position 0 even under left padding
        pooled_full, pooled_short = pooled_full[:2], pooled_short[:2]
    else:
        assert short(features).last_hidden_state.shape == (3, 1, 32)
    torch.testing.assert_close(pooled_short, pooled_full, atol=1e-5, rtol=1e-5)
    if isinstance(pooling, CLS):
        assert grads_short.keys() == grads_full.keys()
        for name in grads_full:
            torch.testing.assert_close(grads_short[name], grads_full[name], atol=1e-5, rtol=1e-4, msg=name)


def test_first_token_shortcut_stays_off_where_it_would_not_be_exact(tiny_encoder):
    assert not skip_unread_tokens(tiny_encoder(freeze=True)), "a frozen encoder's cache serves every pooling"
    assert not skip_unread_tokens(tiny_encoder(layers=[0, -1])), "other layers are read in full"
    distil = Encoder(None, tokenizer="unused", config=dict(model_type="distilbert", dim=32, n_layers=2, n_heads=2,
                                                           hidden_dim=64, vocab_size=100))
    assert not skip_unread_tokens(distil), "not a BERT-style layer"
