"""Per-token and per-sequence metrics against values computed by hand on tiny logits."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from causalmem.scoring.metrics import (  # noqa: E402
    MEMORISATION_SIGN,
    METRICS,
    sequence_scores,
    token_scores,
)

ATOL = 1e-6  # float32 arithmetic on O(1) numbers


def _lse(xs: list[float]) -> float:
    m = max(xs)
    return m + math.log(sum(math.exp(x - m) for x in xs))


def test_token_scores_by_hand() -> None:
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    s = token_scores(logits, torch.tensor([1]))
    lse = _lse([2.0, 1.0, 0.0, -1.0])
    assert s.logprob.item() == pytest.approx(1.0 - lse, abs=ATOL)
    p = [math.exp(x - lse) for x in (2.0, 1.0, 0.0, -1.0)]
    assert s.entropy.item() == pytest.approx(-sum(q * math.log(q) for q in p), abs=ATOL)
    assert s.rank.item() == 1  # only logit 2.0 is strictly greater


def test_rank_tie_rule_counts_strictly_greater_only() -> None:
    # target tied with two others, one strictly larger logit: rank 1 (ties get the best rank).
    logits = torch.tensor([[3.0, 1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0, 1.0]])
    s = token_scores(logits, torch.tensor([2, 4]))
    assert s.rank.tolist() == [1, 0]
    # all-equal logits: uniform, rank 0, entropy log V, log-prob -log V
    assert s.logprob[1].item() == pytest.approx(-math.log(5), abs=ATOL)
    assert s.entropy[1].item() == pytest.approx(math.log(5), abs=ATOL)


def test_minus_inf_logits_give_finite_entropy() -> None:
    logits = torch.tensor([[0.0, 1.0, float("-inf")]])
    s = token_scores(logits, torch.tensor([0]))
    p0, p1 = 1 / (1 + math.e), math.e / (1 + math.e)
    assert s.entropy.item() == pytest.approx(-(p0 * math.log(p0) + p1 * math.log(p1)), abs=ATOL)
    assert s.logprob.item() == pytest.approx(math.log(p0), abs=ATOL)
    assert s.rank.item() == 1


def test_sequence_scores_shift_and_aggregate_by_hand() -> None:
    # vocabulary 3, sequence [0, 2, 1]: position 0 predicts token 2, position 1 predicts 1.
    logits = torch.tensor([[[0.0, 0.0, 1.0], [2.0, 1.0, 1.0], [9.0, 9.0, 9.0]]])
    ids = torch.tensor([[0, 2, 1]])
    s = sequence_scores(logits, ids)
    lp1 = 1.0 - _lse([0.0, 0.0, 1.0])  # target 2 at position 0: rank 0
    lp2 = 1.0 - _lse([2.0, 1.0, 1.0])  # target 1 at position 1: rank 1 (2.0 > 1.0, tie with 1.0)
    assert s.logprob.item() == pytest.approx(lp1 + lp2, abs=ATOL)
    assert s.sup_seq.item() == pytest.approx(-(lp1 + lp2) / 2, abs=ATOL)
    assert s.acc_seq.item() == pytest.approx(0.5)
    assert s.avg_rank.item() == pytest.approx(0.5)
    h = []
    for row in ([0.0, 0.0, 1.0], [2.0, 1.0, 1.0]):
        lse = _lse(row)
        h.append(-sum(math.exp(x - lse) * (x - lse) for x in row))
    assert s.entr_seq.item() == pytest.approx(sum(h) / 2, abs=ATOL)
    assert s.n_tokens.item() == 2
    assert s.logprob.dtype == torch.float64


def test_attention_mask_excludes_padding_targets() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 7, generator=g)
    ids = torch.randint(0, 7, (2, 5), generator=g)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    full = sequence_scores(logits, ids, mask)
    short = sequence_scores(logits[1:, :3], ids[1:, :3])
    assert full.n_tokens.tolist() == [4, 2]
    for name in METRICS:
        a = getattr(full, name)[1].item()
        b = getattr(short, name)[0].item()
        assert a == pytest.approx(b, abs=1e-9), name


def test_chunking_does_not_change_results() -> None:
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(5, 6, 11, generator=g)
    ids = torch.randint(0, 11, (5, 6), generator=g)
    a = sequence_scores(logits, ids)
    b = sequence_scores(logits, ids, max_chunk_elements=1)  # one row at a time
    for name in (*METRICS, "n_tokens"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name


def test_bf16_logits_are_upcast() -> None:
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(2, 4, 9, generator=g).bfloat16()
    ids = torch.randint(0, 9, (2, 4), generator=g)
    a = sequence_scores(logits, ids)
    b = sequence_scores(logits.float(), ids)
    for name in METRICS:
        assert torch.equal(getattr(a, name), getattr(b, name)), name


def test_matches_numpy_reference_on_random_logits() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(3, 8, 13)).astype(np.float32)
    x[0, 2, :] = x[0, 2, 0]  # a fully tied row
    ids = rng.integers(0, 13, size=(3, 8))
    s = sequence_scores(torch.from_numpy(x), torch.from_numpy(ids))
    xx = x[:, :-1].astype(np.float64)
    tgt = ids[:, 1:]
    lse = np.log(np.exp(xx).sum(-1))
    logp = xx - lse[..., None]
    tl = np.take_along_axis(xx, tgt[..., None], -1)
    rank = (xx > tl).sum(-1)
    lp = np.take_along_axis(logp, tgt[..., None], -1)[..., 0]
    ent = -(np.exp(logp) * logp).sum(-1)
    np.testing.assert_allclose(s.logprob.numpy(), lp.sum(1), atol=1e-5)
    np.testing.assert_allclose(s.entr_seq.numpy(), ent.mean(1), atol=1e-5)
    np.testing.assert_array_equal(s.avg_rank.numpy(), rank.mean(1))
    np.testing.assert_array_equal(s.acc_seq.numpy(), (rank == 0).mean(1))


def test_memorisation_signs() -> None:
    assert set(MEMORISATION_SIGN) == set(METRICS)
    assert MEMORISATION_SIGN["logprob"] == 1 and MEMORISATION_SIGN["sup_seq"] == -1


def test_shape_errors() -> None:
    with pytest.raises(ValueError, match="batch, length, vocab"):
        sequence_scores(torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="at least 2"):
        sequence_scores(torch.zeros(1, 1, 4), torch.zeros(1, 1, dtype=torch.long))
