"""The fused scorer equals today's metrics (1e-5 relative in float32, ranks exactly).

References: :func:`causalmem.scoring.metrics.sequence_scores` on the model's full logits (itself
tested against values computed by hand in ``test_metrics.py``), on tiny random GPT-NeoX (untied
head), GPT-2 (tied) and Llama (tied and untied) configs; ties are forced with integer-valued
heads, masked vocabulary with ``-inf`` biases.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from causalmem.errors import NonFiniteScoresError  # noqa: E402
from causalmem.instances import Instances  # noqa: E402
from causalmem.scoring.fused import (  # noqa: E402
    fused_head,
    fused_sequence_scores,
    fused_token_scores,
    length_buckets,
    supports_fused,
)
from causalmem.scoring.metrics import METRICS, sequence_scores, token_scores  # noqa: E402
from causalmem.scoring.runner import resolve_method, score_instances  # noqa: E402

RTOL = 1e-5
V, D, L = 300, 32, 24


def _model(kind: str, *, tied: bool = False) -> Any:
    common = {"vocab_size": V, "num_hidden_layers": 2, "num_attention_heads": 4}
    if kind == "gpt_neox":
        cfg = transformers.GPTNeoXConfig(
            hidden_size=D, intermediate_size=64, max_position_embeddings=64,
            tie_word_embeddings=tied, **common,
        )  # fmt: skip
        cls = transformers.GPTNeoXForCausalLM
    elif kind == "gpt2":
        cfg = transformers.GPT2Config(
            vocab_size=V, n_embd=D, n_layer=2, n_head=4, n_positions=64, bos_token_id=0,
            eos_token_id=0,
        )  # fmt: skip
        cls = transformers.GPT2LMHeadModel
    else:
        cfg = transformers.LlamaConfig(
            hidden_size=D, intermediate_size=64, max_position_embeddings=64,
            tie_word_embeddings=tied, **common,
        )  # fmt: skip
        cls = transformers.LlamaForCausalLM
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(3)
        return cls(cfg).eval()


def _batch(seed: int = 0) -> tuple[Any, Any]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, V, (5, L), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 17:] = 0
    mask[3, 4:] = 0
    return ids, mask


def _assert_equal_scores(got: dict[str, Any], ref: dict[str, Any]) -> None:
    for k in (*METRICS, "n_tokens"):
        np.testing.assert_allclose(got[k].numpy(), ref[k].numpy(), rtol=RTOL, atol=0, err_msg=k)


@pytest.mark.parametrize(
    ("kind", "tied"),
    [("gpt_neox", False), ("gpt2", True), ("llama", True), ("llama", False)],
)
@pytest.mark.parametrize("vocab_chunk", [64, V])
def test_fused_equals_full_logits_float32(kind: str, tied: bool, vocab_chunk: int) -> None:
    model = _model(kind, tied=tied)
    ids, mask = _batch()
    with torch.inference_mode():
        logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
        ref = sequence_scores(logits, ids, mask).as_dict()
        got, bad = fused_sequence_scores(model, ids, mask, vocab_chunk=vocab_chunk, row_chunk=7)
    assert not bool(bad.any())
    _assert_equal_scores(got.as_dict(), ref)
    # the ranks themselves, token by token: identical
    with torch.inference_mode():
        fh = fused_head(model)
        h = fh.backbone(input_ids=ids).last_hidden_state.reshape(-1, D)
        tgt = torch.randint(0, V, (h.shape[0],), generator=torch.Generator().manual_seed(1))
        want = token_scores(torch.nn.functional.linear(h, fh.weight, fh.bias), tgt)
        ts, _ = fused_token_scores(h, fh.weight, fh.bias, tgt, vocab_chunk=vocab_chunk)
    assert torch.equal(ts.rank, want.rank)
    assert float(ts.rank.float().mean()) > 10  # ranks are not trivially zero


@pytest.mark.parametrize("band", [1.0, 0.0])
def test_ties_and_the_recount_pass_give_todays_ranks(band: float) -> None:
    # integer hidden states and head: logits are small integers, most of them tied
    g = torch.Generator().manual_seed(5)
    h = torch.randint(-2, 3, (40, 8), generator=g).float()
    w = torch.randint(-1, 2, (V, 8), generator=g).float()
    tgt = torch.randint(0, V, (40,), generator=g)
    want = token_scores(h @ w.T, tgt)
    got, bad = fused_token_scores(h, w, None, tgt, vocab_chunk=64, row_chunk=16, _band_scale=band)
    assert not bool(bad.any())
    assert torch.equal(got.rank, want.rank)
    np.testing.assert_allclose(got.logprob, want.logprob, rtol=RTOL)
    np.testing.assert_allclose(got.entropy, want.entropy, rtol=RTOL)
    # all-equal logits: rank 0, uniform (by hand: log V)
    zero = fused_token_scores(h, torch.zeros_like(w), None, tgt, vocab_chunk=64)[0]
    assert zero.rank.eq(0).all()
    np.testing.assert_allclose(zero.entropy, math.log(V), rtol=RTOL)


def test_masked_vocabulary_and_non_finite_logits() -> None:
    g = torch.Generator().manual_seed(2)
    h = torch.randn(12, 8, generator=g)
    w = torch.randn(V, 8, generator=g)
    bias = torch.zeros(V)
    bias[::3] = float("-inf")  # masked entries: p = 0, finite entropy
    tgt = torch.arange(1, 13)
    tgt[tgt % 3 == 0] += 1
    want = token_scores(torch.nn.functional.linear(h, w, bias), tgt)
    got, bad = fused_token_scores(h, w, bias, tgt, vocab_chunk=64)
    assert not bool(bad.any()) and torch.isfinite(got.entropy).all()
    assert torch.equal(got.rank, want.rank)
    np.testing.assert_allclose(got.entropy, want.entropy, rtol=RTOL)
    np.testing.assert_allclose(got.logprob, want.logprob, rtol=RTOL)
    bias[7] = float("nan")
    bias[100] = float("inf")
    _, bad = fused_token_scores(h, w, bias, tgt, vocab_chunk=64)
    assert bool(bad.all())


@pytest.mark.parametrize("band", [1.0, 0.0])
def test_bfloat16_matches_the_bf16_logits_path(band: float) -> None:
    model = _model("gpt_neox").to(torch.bfloat16)
    ids, mask = _batch(4)
    with torch.inference_mode():
        logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
        ref = sequence_scores(logits, ids, mask).as_dict()
        got = fused_sequence_scores(model, ids, mask, vocab_chunk=64)[0].as_dict()
        fh = fused_head(model)
        h = fh.backbone(input_ids=ids).last_hidden_state.reshape(-1, D)
        tgt = ids.roll(-1, dims=1).reshape(-1)
        full = torch.nn.functional.linear(h, fh.weight)  # bf16, many exact ties
        want = token_scores(full, tgt)
        ts, _ = fused_token_scores(h, fh.weight, None, tgt, vocab_chunk=64, _band_scale=band)
    for k in METRICS:  # same bf16-rounded logits, float32 metric arithmetic
        np.testing.assert_allclose(got[k].numpy(), ref[k].numpy(), rtol=1e-5, err_msg=k)
    assert torch.equal(ts.rank, want.rank)
    np.testing.assert_allclose(ts.logprob, want.logprob, rtol=1e-5)
    tie = (full.float() == full.float().gather(1, tgt[:, None])).sum(1) > 1
    assert bool(tie.any())  # the tie rule is exercised


def test_runner_default_is_fused_and_equals_the_logits_path() -> None:
    model = _model("gpt_neox")
    rng = np.random.default_rng(0)
    seqs = [rng.integers(0, V, n) for n in (L, 5, L, 9, 3, L, 7, 2)]
    ins = Instances.from_arrays(seqs, list(range(8)), [5, None, 10, None, 5, 10, None, 5])
    assert resolve_method(model, "auto") == "fused"
    fused, _ = score_instances(model, ins, batch_size=3)
    old, _ = score_instances(model, ins, batch_size=3, method="logits")
    for k in METRICS:
        np.testing.assert_allclose(fused[k], old[k], rtol=RTOL, err_msg=k)
    np.testing.assert_array_equal(fused["n_tokens"], ins.lengths - 1)


def test_padding_is_not_computed_longest_bucket_first() -> None:
    lengths = np.array([5, 12, 3, 12, 7])
    assert [b.tolist() for b in length_buckets(lengths, 2)] == [[1, 3], [4, 0], [2]]
    assert [b.tolist() for b in length_buckets(np.full(5, 4), 2)] == [[0, 1], [2, 3], [4]]
    model = _model("llama")
    widths: list[int] = []
    fh = fused_head(model)
    fh.backbone.register_forward_pre_hook(
        lambda _m, _a, kw: widths.append(int(kw["input_ids"].shape[1])), with_kwargs=True
    )
    rng = np.random.default_rng(1)
    ins = Instances.from_arrays(
        [rng.integers(0, V, int(n)) for n in lengths], list(range(5)), [None] * 5
    )
    score_instances(model, ins, batch_size=2)
    assert widths == [12, 7, 3]


def test_unsupported_heads_fall_back_or_refuse() -> None:
    model = _model("gpt_neox")
    model.config.logit_scale = 0.5  # a head transform the fused path does not know
    assert "logit_scale" in str(supports_fused(model))
    assert resolve_method(model, "auto") == "logits"
    with pytest.raises(ValueError, match="method='logits'"):
        resolve_method(model, "fused")
    with pytest.raises(ValueError, match="'auto', 'fused' or 'logits'"):
        resolve_method(model, "fast")


def test_nan_weights_are_refused_by_the_fused_runner() -> None:
    model = _model("gpt2")
    with torch.no_grad():
        model.lm_head.weight[3, 0] = float("nan")
    ins = Instances.from_arrays(np.ones((2, 6), dtype=np.int64), [1, 2], [None, None])
    with pytest.raises(NonFiniteScoresError, match="'m' produced non-finite logits"):
        score_instances(model, ins, batch_size=2, label="m", method="fused")
