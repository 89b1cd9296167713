"""Keyword highlighting: the span DP against brute force, Delta_i by hand, HTML rendering."""

from __future__ import annotations

import copy
import itertools
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from steer import SteerDimensionError, SteerInputError, steered_output_embeddings
from steer.core.hooks import head_inputs, head_weight
from steer.highlighting import find_max_subspans, highlight, highlight_grid, highlights_html
from tests.steer import _tiny
from tests.steer.conftest import random_transform

# float64 model copies: the hook and the hand computation agree to rounding.
ATOL = 1e-10


def _brute_force(x: list[float], n_spans: int, max_length: int) -> float:
    n = len(x)
    spans = [(s, e) for s in range(n) for e in range(s + 1, min(n, s + max_length) + 1)]
    best = 0.0
    for m in range(1, n_spans + 1):
        for combo in itertools.combinations(spans, m):
            ordered = sorted(combo)
            if any(a[1] > b[0] for a, b in itertools.pairwise(ordered)):
                continue
            best = max(best, sum(sum(x[s:e]) for s, e in ordered))
    return best


@settings(max_examples=150, deadline=None)
@given(
    x=st.lists(st.integers(-5, 5).map(float), min_size=0, max_size=8),
    n_spans=st.integers(1, 3),
    max_length=st.integers(1, 4),
)
def test_find_max_subspans_matches_brute_force(
    x: list[float], n_spans: int, max_length: int
) -> None:
    spans, total = find_max_subspans(x, n_spans=n_spans, max_length=max_length)
    assert total == pytest.approx(_brute_force(x, n_spans, max_length), abs=1e-9)
    assert len(spans) <= n_spans
    assert all(0 < e - s <= max_length for s, e in spans)
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))
    assert sum(sum(x[s:e]) for s, e in spans) == pytest.approx(total, abs=1e-9)


def test_find_max_subspans_examples_and_errors() -> None:
    assert find_max_subspans([-1.0, -2.0]) == ([], 0.0)
    assert find_max_subspans([1.0] * 25, n_spans=2, max_length=10) == ([(0, 10), (10, 20)], 20.0)
    assert find_max_subspans([3.0, -1.0, 3.0], n_spans=1, max_length=3) == ([(0, 3)], 5.0)
    with pytest.raises(SteerInputError, match="finite"):
        find_max_subspans([1.0, float("nan")])
    with pytest.raises(SteerInputError, match=">= 1"):
        find_max_subspans([1.0], n_spans=0)


def _hand_logprobs(model: Any, ids: torch.Tensor, emb: torch.Tensor) -> np.ndarray:
    """log P(v_i | v_<i) with logits = h E'^T (+ bias), E' the steered output embeddings."""
    h = head_inputs(model, ids[None], torch.ones_like(ids)[None])[0]
    head = model.get_output_embeddings()
    logits = h @ emb.T + (head.bias if head.bias is not None else 0.0)
    lp = torch.log_softmax(logits[:-1], -1).gather(-1, ids[1:, None])[:, 0]
    return lp.detach().numpy()


@pytest.mark.parametrize("arch", ["llama", "gpt_neox"])
@pytest.mark.parametrize("baseline", ["zero", "negated", "dummy"])
def test_delta_equals_hand_computed_logprob_differences(arch: str, baseline: str, tok: Any) -> None:
    model = copy.deepcopy(_tiny.model(arch)).double()
    t = random_transform(k=2, r=6, eps=0.05, seed=2, dummy_slots=(1,)).to(dtype=torch.float64)
    text = "the film was good and the music was awful"
    hl = highlight(model, tok, t, text, values=3.0, baseline=baseline, n_spans=2, max_length=3)
    assert hl.values == (3.0, 1.0)
    want_base = {"zero": (0.0, 0.0), "negated": (-3.0, 1.0), "dummy": (0.0, 1.0)}[baseline]
    assert hl.baseline_values == want_base
    ids = torch.tensor(tok(text)["input_ids"])
    e = head_weight(model).detach()
    lp_s = _hand_logprobs(model, ids, steered_output_embeddings(e, t, hl.values))
    lp_b = _hand_logprobs(model, ids, steered_output_embeddings(e, t, want_base))
    assert np.isnan(hl.delta[0])
    assert np.abs(hl.logp_steered[1:] - lp_s).max() < ATOL
    assert np.abs(hl.logp_base[1:] - lp_b).max() < ATOL
    assert np.abs(hl.delta[1:] - (lp_s - lp_b)).max() < ATOL
    spans, total = find_max_subspans(lp_s - lp_b, n_spans=2, max_length=3)
    assert hl.spans == tuple((s + 1, e + 1) for s, e in spans)
    assert hl.spans_frame()["total_delta"].sum() == pytest.approx(total)
    assert hl.total_delta == pytest.approx(float((lp_s - lp_b).sum()))


def test_tidy_pieces_and_html(tok: Any) -> None:
    model = _tiny.model("gpt2")
    t = random_transform(k=1, r=4, eps=0.5, seed=4)
    text = "the film was <b>good</b> & the end"
    hl = highlight(model, tok, t, text, values=(2.0,), baseline="negated")
    assert "".join(hl.pieces) == text
    frame = hl.tidy()
    assert list(frame.columns) == [
        "position", "token_id", "piece", "logp_base", "logp_steered", "delta", "span",
    ]  # fmt: skip
    assert len(frame) == len(hl.token_ids)
    in_span = frame["span"] >= 0
    assert in_span.sum() == sum(e - s for s, e in hl.spans)
    page = hl.to_html(title="a <title>")
    assert page.startswith("<!DOCTYPE html>")
    assert "&lt;" in page and "&gt;" in page
    assert "<b>" not in page and "<title>" not in page and "&amp;" in page
    assert "rgb(" in page and 'class="tok span"' in page
    both = highlights_html([hl, hl], titles=["one", "two"])
    assert both.count("<h3>") == 2
    with pytest.raises(ValueError):
        hl.delta[1] = 0.0


def test_highlight_does_not_change_the_model(tok: Any) -> None:
    model = _tiny.model("qwen2")
    t = random_transform(k=1, r=4, seed=6)
    ids = torch.tensor([tok("the film was good")["input_ids"]])
    with torch.no_grad():
        before = model(input_ids=ids).logits.clone()
    highlight(model, tok, t, "the film was good", values=1.0)
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, before)


def test_highlight_errors(tok: Any) -> None:
    model = _tiny.model("gpt2")
    t = random_transform(k=2, r=4, dummy_slots=(1,))
    with pytest.raises(SteerInputError, match="at least 2"):
        highlight(model, tok, t, "film", values=1.0)
    with pytest.raises(SteerInputError, match="baseline"):
        highlight(model, tok, t, "the film", values=1.0, baseline="minus")  # type: ignore[arg-type]
    with pytest.raises(SteerInputError, match="nothing to compare"):
        highlight(model, tok, t, "the film", values=(0.0, 1.0), baseline="dummy")
    with pytest.raises(SteerDimensionError):
        highlight(model, tok, random_transform(d=16), "the film", values=(1.0, 0.0))
    with pytest.raises(SteerInputError, match="string"):
        highlight(model, tok, t, ["the film"], values=1.0)  # type: ignore[arg-type]


def test_highlight_grid_equals_single_highlights(tok: Any) -> None:
    model = copy.deepcopy(_tiny.model("gemma2")).double()  # soft-capped logits
    t = random_transform(k=2, r=6, eps=0.05, seed=2, dummy_slots=(1,)).to(dtype=torch.float64)
    text = "a very sad story of the end"
    grid = highlight_grid(
        model, tok, t, text, values=[2.0, -2.0], baselines=["zero", "negated", "dummy"]
    )
    assert len(grid) == 6
    settings = [(v, b) for v in (2.0, -2.0) for b in ("zero", "negated", "dummy")]
    for hl, (v, b) in zip(grid, settings, strict=True):
        one = highlight(model, tok, t, text, values=v, baseline=b)  # type: ignore[arg-type]
        assert hl.baseline == b and hl.values == one.values
        assert np.allclose(hl.delta, one.delta, atol=ATOL, equal_nan=True)
        assert hl.spans == one.spans
    # +s vs -s (negated) is minus -s vs +s
    assert np.allclose(grid[1].delta[1:], -grid[4].delta[1:], atol=ATOL)
    with pytest.raises(SteerInputError, match="at least one setting"):
        highlight_grid(model, tok, t, text, values=[])
