"""Factor analysis of W: exact SVD from thin factors, orientation, planted tokens, varimax."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
import torch

from steer import SteerDimensionError, SteerInputError, SteerTransform, steering
from steer.core.hooks import head_inputs, head_weight
from steer.factors import (
    factor_analysis,
    factor_scores,
    lowrank_svd,
    rotate,
    token_strings,
    varimax,
)
from tests.steer import _tiny
from tests.steer.conftest import random_transform

# float64 throughout: QR + SVD of an r x r core reconstructs W to ~1e-14 relative.
RECON_ATOL = 1e-10
# float64 copies of the tiny models: the logit identity holds to rounding.
LOGIT_ATOL = 1e-10


def _double(arch: str) -> Any:
    return copy.deepcopy(_tiny.model(arch)).double()


@pytest.mark.parametrize(("d", "r"), [(32, 8), (32, 32), (16, 40)])
def test_lowrank_svd_reconstructs_w(d: int, r: int) -> None:
    g = torch.Generator().manual_seed(1)
    p1 = torch.randn(d, r, generator=g, dtype=torch.float64)
    p2 = torch.randn(d, r, generator=g, dtype=torch.float64)
    svd = lowrank_svd(p1, p2)
    w = (p1 @ p2.T).numpy()
    assert np.abs(svd.matrix() - w).max() < RECON_ATOL
    assert np.allclose(svd.u.T @ svd.u, np.eye(svd.u.shape[1]), atol=1e-12)
    assert np.allclose(svd.v.T @ svd.v, np.eye(svd.v.shape[1]), atol=1e-12)
    assert np.all(np.diff(svd.s) <= 1e-12)
    assert np.allclose(svd.s[: min(d, r)], np.linalg.svd(w, compute_uv=False)[: min(d, r)])


def test_every_slot_is_analysed_and_reconstructs() -> None:
    t = random_transform(k=3, r=8).to(dtype=torch.float64)
    fa = factor_analysis(t, _tiny.model("gpt2"), _tiny.tokenizer(), k=8, n_tokens=5)
    assert fa.slots == (0, 1, 2)
    for s in range(3):
        w = (t.p1[s] @ t.p2[s].T).numpy()
        rebuilt = (fa.u[s] * fa.scale[s]) @ fa.v[s].T
        assert np.abs(rebuilt - w).max() < RECON_ATOL
    assert set(fa.tidy()["slot"]) == {0, 1, 2}
    scree = fa.scree()
    assert np.allclose(scree.groupby("slot")["explained"].sum(), 1.0)
    assert np.allclose(scree.groupby("slot")["cumulative"].max(), 1.0)


@pytest.mark.parametrize("arch", ["gpt_neox", "llama", "qwen2", "gemma3"])
def test_orientation_logit_shift_equals_factor_expression(arch: str, tok: Any) -> None:
    """Delta logit_v = eps s sum_k sigma_k (h.u_k)(e_v.v_k): v_k acts on e_v, u_k on h."""
    model = _double(arch)
    t = random_transform(k=2, r=6, eps=0.05, seed=3).to(dtype=torch.float64)
    fa = factor_analysis(t, model, tok, k=6, n_tokens=3)
    enc = tok(["the film was good and the story was dull"], return_tensors="pt")
    ids, mask = enc["input_ids"], enc["attention_mask"]
    h = head_inputs(model, ids, mask)[0].numpy()
    emb = head_weight(model).detach().numpy()
    with torch.no_grad():
        base = model(input_ids=ids, attention_mask=mask).logits[0].numpy()
        with steering(model, t, (2.0, 0.0)):
            steered = model(input_ids=ids, attention_mask=mask).logits[0].numpy()
    predicted = 2.0 * fa.logit_shift(0, h, emb)
    assert np.abs((steered - base) - predicted).max() < LOGIT_ATOL
    # the transposed reading (u on tokens, v on contexts) is wrong
    wrong = 2.0 * t.epsilon * ((h @ fa.v[0]) * fa.scale[0]) @ (emb @ fa.u[0]).T
    assert np.abs((steered - base) - wrong).max() > 1e-3


def test_planted_token_direction_is_top_of_right_pole(tok: Any) -> None:
    """P1 = e_a, P2 = e_b: the token side is e_b, so b heads the top pole (max norm row)."""
    model = _tiny.model("gpt_neox")  # untied: the output embeddings, not the input ones
    emb = head_weight(model).detach().to(torch.float64)
    special = set(tok.all_special_ids)
    norms = emb.norm(dim=1)
    norms[list(special)] = 0
    b = int(norms.argmax())
    a = tok.convert_tokens_to_ids("film")
    t = SteerTransform(emb[a][None, :, None], emb[b][None, :, None], 1e-3, "tiny")
    fa = factor_analysis(t, model, tok, k=1, n_tokens=5)
    top = fa.tidy().query("pole == 'top'").sort_values("rank")
    assert int(top["token_id"].iloc[0]) == b
    assert np.allclose(fa.u[0][:, 0], (emb[a] / emb[a].norm()).numpy())
    assert fa.singular_values[0][0] == pytest.approx(float(emb[a].norm() * emb[b].norm()))
    # the input embeddings of this untied model give a different ranking
    assert not torch.equal(model.get_input_embeddings().weight, head_weight(model))


def test_planted_two_factor_structure_is_recovered(tok: Any) -> None:
    """E loads positive words on v1 and negative words against it; topic words on v2."""
    rng = np.random.default_rng(0)
    d, vocab = _tiny.D, _tiny.VOCAB
    q = np.linalg.qr(rng.normal(size=(d, 4)))[0]
    v1, v2, u1, u2 = q.T
    emb = rng.normal(0, 0.05, size=(vocab, d))
    ids = tok.convert_tokens_to_ids
    pos, neg = ["good", "great", "love"], ["bad", "awful", "hate"]
    topic = ["film", "movie", "actor"]
    for w in pos:
        emb[ids(w)] += 3.0 * v1
    for w in neg:
        emb[ids(w)] -= 2.0 * v1
    for w in topic:
        emb[ids(w)] += 2.5 * v2
    p1 = np.stack([5.0 * u1, 2.0 * u2, np.zeros(d)], axis=1)
    p2 = np.stack([v1, v2, np.zeros(d)], axis=1)
    t = SteerTransform(torch.tensor(p1)[None], torch.tensor(p2)[None], 1e-3, "tiny")
    fa = factor_analysis(t, emb, tok, k=2, n_tokens=3)
    lo = fa.tidy()
    got = {(f, pole): set(g["text"]) for (f, pole), g in lo.groupby(["factor", "pole"])}
    assert got[(0, "top")] == set(pos)
    assert got[(0, "bottom")] == set(neg)
    assert got[(1, "top")] == set(topic)
    assert np.allclose(fa.singular_values[0][:2], [5.0, 2.0])
    assert fa.singular_values[0][2] == pytest.approx(0.0, abs=1e-12)
    table = fa.table(0)
    assert list(table.columns) == ["factor", "scale", "explained", "top", "bottom"]
    assert table["explained"].iloc[0] == pytest.approx(25 / 29)
    assert np.all(np.diff(lo.query("factor == 0 and pole == 'top'")["loading"]) <= 0)


def test_varimax_recovers_a_known_rotation() -> None:
    rng = np.random.default_rng(0)
    simple = np.zeros((60, 3))
    for i in range(60):
        simple[i, i % 3] = rng.uniform(0.5, 2.0)
    q = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    rotated, r = varimax(simple @ q)
    assert np.allclose(r.T @ r, np.eye(3), atol=1e-12)
    perm = q @ r  # a signed permutation
    assert np.allclose(np.abs(perm), np.round(np.abs(perm)), atol=1e-8)
    assert np.allclose(np.abs(rotated), simple @ np.abs(perm), atol=1e-8)
    # the classic two-block case where the plain SVD iteration oscillates
    two = np.kron(np.eye(2), np.ones((3, 1)))
    c, s = np.cos(0.4), np.sin(0.4)
    out, _ = varimax(two @ np.array([[c, -s], [s, c]]))
    assert np.allclose(np.abs(out), two, atol=1e-10)


def test_varimax_factors_reconstruct_the_same_rank_k_part(tok: Any) -> None:
    model = _double("llama")
    t = random_transform(k=1, r=6, seed=5).to(dtype=torch.float64)
    plain = factor_analysis(t, model, tok, k=4, n_tokens=3)
    rot = factor_analysis(t, model, tok, k=4, n_tokens=3, rotation="varimax")
    w_plain = (plain.u[0] * plain.scale[0]) @ plain.v[0].T
    w_rot = rot.u[0] @ rot.v[0].T
    assert np.abs(w_plain - w_rot).max() < RECON_ATOL
    assert np.allclose(np.linalg.norm(rot.u[0], axis=0), rot.scale[0])
    r = rot.rotation_matrix[0]
    assert np.allclose(r.T @ r, np.eye(4), atol=1e-12)
    h = np.random.default_rng(1).normal(size=(3, _tiny.D))
    emb = head_weight(model).detach().numpy()
    assert np.allclose(plain.logit_shift(0, h, emb), rot.logit_shift(0, h, emb), atol=1e-12)


def test_factor_scores_by_hand(tok: Any) -> None:
    model = _tiny.model("qwen2")
    t = random_transform(k=2, r=4, seed=7)
    fa = factor_analysis(t, model, tok, slot="steer_1", k=2, n_tokens=2)
    assert fa.slots == (1,)
    texts = ["the film was good", "awful plot"]
    frame = factor_scores(fa, model, tok, texts)
    assert len(frame) == 2 * 2
    for n, text in enumerate(texts):
        enc = tok([text], return_tensors="pt")
        h = head_inputs(model, enc["input_ids"], enc["attention_mask"])[0].double().numpy()
        u = fa.u[1] / np.linalg.norm(fa.u[1], axis=0)
        want = h.mean(0) @ u
        got = frame[frame["text_index"] == n].sort_values("factor")["score"].to_numpy()
        assert np.allclose(got, want, atol=1e-5)


def test_results_are_immutable_and_inputs_untouched(tok: Any) -> None:
    model = _tiny.model("gpt2")
    t = random_transform()
    before = (t.p1.clone(), head_weight(model).detach().clone())
    fa = factor_analysis(t, model, tok, k=2, n_tokens=2)
    with pytest.raises(ValueError):
        fa.u[0][0, 0] = 1.0
    with pytest.raises(TypeError):
        fa.u[0] = np.zeros(1)  # type: ignore[index]
    assert torch.equal(t.p1, before[0])
    assert torch.equal(head_weight(model), before[1])


def test_token_strings_show_spaces_and_newlines() -> None:
    class Tok:
        def decode(self, ids: list[int], **kw: Any) -> str:
            return {0: " good", 1: "\n", 2: "bad"}[ids[0]]

    assert token_strings(Tok(), [0, 1, 2]) == ["␣good", "\\n", "bad"]
    assert token_strings(None, [5]) == ["<5>"]


def test_specific_errors(tok: Any) -> None:
    model = _tiny.model("gpt2")
    t = random_transform(k=2)
    with pytest.raises(SteerInputError, match="out of range"):
        factor_analysis(t, model, tok, slot=2)
    with pytest.raises(SteerInputError, match="no slot named"):
        factor_analysis(t, model, tok, slot="toxicity")
    with pytest.raises(SteerDimensionError, match="hidden size"):
        factor_analysis(random_transform(d=16), model, tok)
    with pytest.raises(SteerDimensionError, match=r"\[V, d\]"):
        factor_analysis(t, np.zeros(32), tok)
    with pytest.raises(SteerInputError, match="rotation"):
        factor_analysis(t, model, tok, rotation="geomin")  # type: ignore[arg-type]
    with pytest.raises(SteerInputError, match="k and n_tokens"):
        factor_analysis(t, model, tok, k=0)
    fa = factor_analysis(t, model, tok, k=2, n_tokens=2)
    with pytest.raises(SteerInputError, match="at least one text"):
        factor_scores(fa, model, tok, [])
    small = factor_analysis(random_transform(d=16), np.zeros((5, 16)))
    with pytest.raises(SteerDimensionError, match="hidden size 16"):
        factor_scores(small, model, tok, ["a"])


def test_charts_read_the_tidy_frames(tok: Any) -> None:
    pytest.importorskip("altair")
    from steer.charts import (
        delta_chart,
        fidelity_chart,
        generation_chart,
        loadings_chart,
        scree_chart,
    )
    from steer.highlighting import highlight

    t = random_transform(k=2, r=4)
    fa = factor_analysis(t, _tiny.model("gpt2"), tok, k=3, n_tokens=4)
    scree, lo = fa.scree(), fa.tidy()
    for chart in (scree_chart(scree, n=5), loadings_chart(lo, n=3)):
        spec = chart.to_dict()
        assert spec["$schema"].startswith("https://vega.github.io/schema/vega-lite/")
    hl = highlight(_tiny.model("gpt2"), tok, t, "the film was good", values=(1.0, 0.0))
    assert "layer" not in delta_chart(hl.tidy()).to_dict()
    import pandas as pd

    fidelity_chart(pd.DataFrame({"logit_corr": [0.1, 0.5]})).to_dict()
    generation_chart(pd.DataFrame({"model": ["a"] * 4, "value": [0, 0, 1, 1],
                                   "vader": [0.1, 0.2, 0.3, 0.5]})).to_dict()  # fmt: skip
    assert scree.equals(fa.scree()) and lo.equals(fa.tidy())
    with pytest.raises(ValueError, match="needs columns"):
        scree_chart(lo)


def test_rank_by_cosine_ignores_embedding_length(tok: Any) -> None:
    rng = np.random.default_rng(3)
    d = _tiny.D
    v = np.zeros(d)
    v[0] = 1.0
    emb = rng.normal(0, 0.01, size=(_tiny.VOCAB, d))
    ids = tok.convert_tokens_to_ids
    emb[ids("good")] = 0.5 * v  # perfectly aligned, short
    emb[ids("w3")] = 10.0 * (0.3 * v + np.sqrt(1 - 0.09) * np.eye(d)[1])  # long, cos 0.3
    u = np.eye(d)[2]
    t = SteerTransform(torch.tensor(u)[None, :, None], torch.tensor(v)[None, :, None], 1e-3, "x")
    by_load = factor_analysis(t, emb, tok, k=1, n_tokens=2).tidy().query("pole == 'top'")
    by_cos = factor_analysis(t, emb, tok, k=1, n_tokens=2, rank_by="cosine").tidy()
    by_cos = by_cos.query("pole == 'top'")
    assert list(by_load["text"]) == ["w3", "good"]
    assert by_cos["text"].iloc[0] == "good"
    assert by_cos["cosine"].iloc[0] == pytest.approx(1.0)
    assert by_load["loading"].iloc[0] == pytest.approx(3.0)
    with pytest.raises(SteerInputError, match="rank_by"):
        factor_analysis(t, emb, tok, rank_by="norm")  # type: ignore[arg-type]


# ---------------------------------------------------------------- rotations (statsmodels)
# statsmodels' gradient projection stops on a gradient norm (1e-8 * p on unit-RMS loadings
# here, 1e-5 inside its promax): agreement with the closed-form sweeps is to ROT_ATOL.
ROT_ATOL = 1e-6


def _known_rotation_case() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    simple = np.zeros((60, 3))
    for i in range(60):
        simple[i, i % 3] = rng.uniform(0.5, 2.0)
    q = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    return simple, simple @ q


def _two_block_case() -> tuple[np.ndarray, np.ndarray]:
    two = np.kron(np.eye(2), np.ones((3, 1)))
    c, s = np.cos(0.4), np.sin(0.4)
    return two, two @ np.array([[c, -s], [s, c]])


def _align(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``b``'s columns permuted and sign-flipped to match ``a`` (rotations are unique only up to
    a signed permutation of the factors): greedy on |correlation| of the columns."""
    out = np.zeros_like(b)
    free = list(range(b.shape[1]))
    for j in range(a.shape[1]):
        dots = [abs(float(a[:, j] @ b[:, m])) for m in free]
        m = free.pop(int(np.argmax(dots)))
        out[:, j] = b[:, m] * (1.0 if a[:, j] @ b[:, m] >= 0 else -1.0)
    return out


@pytest.mark.parametrize("case", [_known_rotation_case, _two_block_case])
def test_kept_varimax_equals_statsmodels_varimax(case: Any) -> None:
    """The Kaiser sweeps kept for scale (statsmodels' varimax forms p x p matrices) agree
    with statsmodels' gradient-projection varimax on the cases above, up to signed order."""
    from statsmodels.multivariate.factor_rotation import rotate_factors

    _, a = case()
    ours, r = varimax(a)
    scale = float(np.sqrt(np.mean(a**2)))
    _, t = rotate_factors(a / scale, "varimax", tol=1e-8 * a.shape[0], max_tries=5000)
    theirs = a @ t
    assert np.allclose(_align(ours, theirs), ours, atol=ROT_ATOL)
    assert np.allclose(r.T @ r, np.eye(a.shape[1]), atol=1e-12)


@pytest.mark.parametrize("method", ["quartimax", "oblimin", "promax"])
@pytest.mark.parametrize("case", [_known_rotation_case, _two_block_case])
def test_every_rotation_recovers_simple_structure(method: str, case: Any) -> None:
    simple, a = case()
    rotated, m = rotate(a, method)  # type: ignore[arg-type]
    assert np.allclose(rotated, a @ m, atol=1e-12)
    assert np.allclose(_align(simple, rotated), simple, atol=ROT_ATOL)


def test_promax_equals_statsmodels_promax() -> None:
    """Our promax = statsmodels' ``promax(A, k=4)`` (its varimax stops at tol 1e-5)."""
    from statsmodels.multivariate.factor_rotation import promax

    rng = np.random.default_rng(4)
    a = np.kron(np.eye(3), np.ones((8, 1))) + rng.normal(0, 0.1, size=(24, 3))
    a = a @ np.linalg.qr(rng.normal(size=(3, 3)))[0]
    ours, _ = rotate(a, "promax")
    theirs, _ = promax(a, 4)
    assert np.allclose(_align(ours, theirs), ours, atol=1e-4)


def test_quartimax_and_oblimin_equal_statsmodels() -> None:
    from statsmodels.multivariate.factor_rotation import rotate_factors

    _, a = _known_rotation_case()
    for method, args in (("quartimax", ()), ("oblimin", (0.0, "oblique"))):
        ours, _ = rotate(a, method)  # type: ignore[arg-type]
        theirs, _ = rotate_factors(a, method, *args, tol=1e-10, max_tries=5000)
        assert np.allclose(_align(ours, theirs), ours, atol=ROT_ATOL)


@pytest.mark.parametrize("rotation", ["varimax", "quartimax", "promax", "oblimin"])
def test_every_rotation_reconstructs_the_rank_k_part(rotation: str, tok: Any) -> None:
    model = _double("llama")
    t = random_transform(k=1, r=6, seed=5).to(dtype=torch.float64)
    plain = factor_analysis(t, model, tok, k=4, n_tokens=3)
    rot = factor_analysis(t, model, tok, k=4, n_tokens=3, rotation=rotation)  # type: ignore[arg-type]
    w_plain = (plain.u[0] * plain.scale[0]) @ plain.v[0].T
    assert np.abs(w_plain - rot.u[0] @ rot.v[0].T).max() < RECON_ATOL
    assert np.allclose(np.linalg.norm(rot.v[0], axis=0), 1.0, atol=1e-12)
    assert np.allclose(np.linalg.norm(rot.u[0], axis=0), rot.scale[0])
    assert np.all(np.diff(rot.scale[0]) <= 1e-12)
    assert rot.spec["rotation"] == rotation
    h = np.random.default_rng(1).normal(size=(3, _tiny.D))
    emb = head_weight(model).detach().numpy()
    assert np.allclose(plain.logit_shift(0, h, emb), rot.logit_shift(0, h, emb), atol=1e-12)


def test_rotate_rejects_unknown_methods() -> None:
    with pytest.raises(SteerInputError, match="method must be one of"):
        rotate(np.eye(3), "geomin")  # type: ignore[arg-type]
    with pytest.raises(SteerInputError, match=r"\[p, k\]"):
        rotate(np.zeros(3))
