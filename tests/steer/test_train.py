"""fit_steer on tiny random-init models: the loss falls, padding is masked, the LM is frozen."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from steer import (
    LabelRangeError,
    SteerConfig,
    SteerInputError,
    SteerTrainConfig,
    SteerWarning,
    fit_steer,
    steering,
)
from steer.core.module import LowRankSteer
from steer.train import _FusedHeadNLL, _masked_nll, pad_batch
from tests.steer import _tiny

SC = SteerConfig(rank=16, epsilon=0.1)
TC = SteerTrainConfig(steps=40, batch_size=8, lr=1e-2, progress=False)


def corpus(n: int = 48, seed: int = 0) -> tuple[list[str], list[float]]:
    rng = random.Random(seed)
    texts, labels = [], []
    for i in range(n):
        pos = i % 2 == 0
        words = [rng.choice(_tiny.NEUTRAL) for _ in range(rng.randint(3, 8))]
        for _ in range(3):
            words.insert(
                rng.randrange(len(words) + 1), rng.choice(_tiny.POSITIVE if pos else _tiny.NEGATIVE)
            )
        texts.append(" ".join(words))
        labels.append(1.0 if pos else -1.0)
    return texts, labels


def dataset_nll(model: Any, tok: Any, texts: list[str], rows: Any, transform: Any = None) -> float:
    """Token-mean NLL of each text run on its own (no padding), optionally steered per text."""
    total, count = 0.0, 0
    for i, text in enumerate(texts):
        ids = torch.tensor([tok(text)["input_ids"]])
        with torch.no_grad():
            if transform is None:
                z = model(ids).logits
            else:
                with steering(model, transform, rows[i]):
                    z = model(ids).logits
        total += float(F.cross_entropy(z[0, :-1], ids[0, 1:], reduction="sum"))
        count += ids.shape[1] - 1
    return total / count


@pytest.mark.parametrize("arch", ["llama", "gpt_neox", "gemma2"])
def test_training_lowers_the_loss_on_labelled_data(arch: str, tok: Any) -> None:
    model = _tiny.model(arch)
    texts, labels = corpus()
    fit = fit_steer(model, tok, texts, labels, SC, TC)
    h = fit.history_frame()
    assert list(h.columns) == ["step", "loss", "nll", "penalty", "seconds", "running_loss"]
    assert h["loss"].iloc[-5:].mean() < h["loss"].iloc[:5].mean()
    t = fit.transform
    rows = [t.values(y) for y in labels]
    trained = dataset_nll(model, tok, texts, rows, t)
    assert trained < dataset_nll(model, tok, texts, rows) - 0.1
    # the sign convention: positive values favour the positively labelled texts
    pos = [x for x, y in zip(texts, labels, strict=True) if y > 0]
    neg = [x for x, y in zip(texts, labels, strict=True) if y < 0]
    plus, minus = [t.values(1.0)] * len(pos), [t.values(-1.0)] * len(pos)
    assert dataset_nll(model, tok, pos, plus, t) < dataset_nll(model, tok, pos, minus, t)
    assert dataset_nll(model, tok, neg, minus, t) < dataset_nll(model, tok, neg, plus, t)
    assert fit.hidden_cache_used and fit.n_texts == len(texts)
    assert t.slot_names == ("steer_0", "dummy") and t.dummy_slots == (1,)
    assert t.provenance["train_config"]["steps"] == TC.steps


@pytest.mark.parametrize("arch", ["llama", "gemma2", "gpt2"])
def test_cached_hidden_states_equal_end_to_end(arch: str, tok: Any) -> None:
    model = _tiny.model(arch)
    texts, labels = corpus(24)
    tc = SteerTrainConfig(steps=6, batch_size=8, progress=False)
    cached = fit_steer(model, tok, texts, labels, SC, tc)
    full = fit_steer(
        model,
        tok,
        texts,
        labels,
        SC,
        SteerTrainConfig(steps=6, batch_size=8, progress=False, hidden_cache="never"),
    )
    assert cached.hidden_cache_used and not full.hidden_cache_used
    np.testing.assert_allclose(cached.loss, full.loss, rtol=0, atol=1e-5)
    torch.testing.assert_close(cached.transform.p1, full.transform.p1, atol=1e-5, rtol=0)


def test_first_loss_is_the_pad_masked_token_mean(tok: Any) -> None:
    """Step 1 of the end-to-end path (padded batch) equals the unpadded per-text computation."""
    model = _tiny.model("qwen2")
    texts, labels = corpus(8)
    tc = SteerTrainConfig(steps=1, batch_size=8, progress=False, hidden_cache="never")
    fit = fit_steer(model, tok, texts, labels, SC, tc)
    init = LowRankSteer(
        2, _tiny.D, SC.rank, SC.epsilon, SC.init_var, torch.Generator().manual_seed(0)
    )
    t0 = init.to_transform("tiny", dummy_slots=(1,))
    want = dataset_nll(model, tok, texts, [t0.values(y) for y in labels], t0)
    assert fit.loss[0] == pytest.approx(want, abs=1e-5)


def test_masked_nll_ignores_padding() -> None:
    g = torch.Generator().manual_seed(0)
    z = torch.randn(1, 5, 11, generator=g)
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    base = _masked_nll(z, ids, torch.ones_like(ids))
    zp = torch.cat([z, torch.randn(1, 3, 11, generator=g)], dim=1)
    idsp = torch.tensor([[1, 2, 3, 4, 5, 0, 0, 0]])
    maskp = torch.tensor([[1, 1, 1, 1, 1, 0, 0, 0]])
    assert torch.equal(_masked_nll(zp, idsp, maskp), base)
    ids_pad, mask = pad_batch([[1, 2, 3], [4]], pad=9)
    assert ids_pad.tolist() == [[1, 2, 3], [4, 9, 9]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]


@pytest.mark.parametrize("cap", [None, 5.0])
def test_fused_head_loss_equals_cross_entropy(cap: float | None) -> None:
    g = torch.Generator().manual_seed(0)
    w, b = torch.randn(100, 16, generator=g), torch.randn(100, generator=g)
    h = torch.randn(37, 16, generator=g, dtype=torch.float64).float().requires_grad_()
    y = torch.randint(0, 100, (37,), generator=g)
    z = F.linear(h, w, b)
    z = torch.tanh(z / cap) * cap if cap else z
    ref = F.cross_entropy(z, y)
    (g_ref,) = torch.autograd.grad(ref, h)
    got = _FusedHeadNLL.apply(h, w, b, y, cap, 8)
    (g_got,) = torch.autograd.grad(got, h)
    assert float(got.detach()) == pytest.approx(float(ref.detach()), abs=1e-5)
    torch.testing.assert_close(g_got, g_ref, atol=1e-6, rtol=1e-4)


def test_uncachable_head_falls_back_with_a_warning(tok: Any) -> None:
    cfg = _tiny.config("llama")
    cfg.final_logit_softcapping = 5.0  # Llama ignores it, so the cached head would be wrong
    model = _tiny.build(cfg)
    texts, labels = corpus(8)
    with pytest.warns(SteerWarning, match="could not be reproduced"):
        fit = fit_steer(model, tok, texts, labels, SC, SteerTrainConfig(steps=2, progress=False))
    assert not fit.hidden_cache_used
    with pytest.raises(SteerInputError, match="hidden_cache='never'"):
        fit_steer(
            model,
            tok,
            texts,
            labels,
            SC,
            SteerTrainConfig(steps=2, progress=False, hidden_cache="always"),
        )


def test_model_stays_frozen_and_unmodified(tok: Any) -> None:
    model = _tiny.build(_tiny.config("gpt2"), seed=1)
    model.train()  # dropout on: fit_steer must use eval mode and give the flag back
    before = {k: v.clone() for k, v in model.state_dict().items()}
    texts, labels = corpus(8)
    for mode in ("always", "never"):
        fit_steer(
            model,
            tok,
            texts,
            labels,
            SC,
            SteerTrainConfig(steps=3, progress=False, hidden_cache=mode),
        )  # type: ignore[arg-type]
    assert model.training
    assert all(p.requires_grad and p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_seeds_are_explicit(tok: Any) -> None:
    model = _tiny.model("llama")
    texts, labels = corpus(16)
    tc = SteerTrainConfig(steps=3, batch_size=4, progress=False)
    a = fit_steer(model, tok, texts, labels, SC, tc).transform
    b = fit_steer(model, tok, texts, labels, SC, tc).transform
    c = fit_steer(
        model,
        tok,
        texts,
        labels,
        SC,
        SteerTrainConfig(steps=3, batch_size=4, progress=False, seed=1),
    ).transform
    assert torch.equal(a.p1, b.p1) and torch.equal(a.p2, b.p2) and not torch.equal(a.p1, c.p1)


def test_graded_and_multi_slot_labels(tok: Any) -> None:
    model = _tiny.model("llama")
    texts, labels = corpus(8)
    graded = [0.5 * y for y in labels]
    two = np.column_stack([graded, np.linspace(-1, 1, 8)])
    sc = SteerConfig(num_steers=2, rank=4, slot_names=("sentiment", "topic"))
    fit = fit_steer(model, tok, texts, two, sc, SteerTrainConfig(steps=2, progress=False))
    assert fit.transform.slot_names == ("sentiment", "topic", "dummy")
    assert fit.transform.values([1.0, 2.0]) == (1.0, 2.0, 1.0)


@pytest.mark.parametrize("labels", [[1.5, -1.0], [float("nan"), 1.0], [None, 1.0], [-1.0001, 0.0]])
def test_labels_outside_the_unit_interval(labels: list[Any], tok: Any) -> None:
    with pytest.raises(LabelRangeError, match=r"\[-1, 1\]"):
        fit_steer(_tiny.model("llama"), tok, ["good film", "bad film"], labels, SC, TC)


def test_malformed_inputs(tok: Any) -> None:
    m = _tiny.model("llama")
    with pytest.raises(SteerInputError, match="expected"):
        fit_steer(m, tok, ["good film", "bad film"], [1.0], SC, TC)
    with pytest.raises(SteerInputError, match="at least one"):
        fit_steer(m, tok, [], [], SC, TC)
    with pytest.raises(SteerInputError, match="fewer than 2 tokens"):
        fit_steer(m, tok, ["good", "bad"], [1.0, -1.0], SC, TC)
    with pytest.raises(ValueError, match="'auto', 'always', 'never'"):
        SteerTrainConfig(hidden_cache="sometimes")  # type: ignore[arg-type]
    with pytest.raises(SteerInputError, match="rank"):
        SteerConfig(rank=0)
