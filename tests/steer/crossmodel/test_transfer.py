"""Transfer between LMs: exact on an orthogonally rotated copy, marker mapping, errors."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from steer import SteerDimensionError, SteerInputError, steering, transfer
from steer.core.hooks import head_weight
from steer.crossmodel import (
    canonical_vocabulary,
    fit_context_map,
    fit_embedding_map,
    marker_style,
    shared_vocabulary,
    transfer_fidelities,
    transfer_fidelity,
)
from tests.steer import _tiny
from tests.steer.conftest import random_transform

# Matrix identities hold to float64 rounding; full forward passes of the float64 tiny models
# agree to ~3e-7 because Qwen2's RMSNorm and attention softmax run in float32.
EXACT = 1e-9
FORWARD = 1e-6


def _rotated_qwen2(seed: int = 0) -> tuple[Any, Any, np.ndarray]:
    """A float64 Qwen2 and a copy whose residual stream is rotated by an orthogonal Q.

    RMSNorm commutes with rotations once its gain is folded into the next linear layer
    (SliceGPT / QuaRot), so every space the residual stream lives in (input and output
    embeddings, the head input) is rotated and the logits are unchanged: e'_v = Q e_v,
    h' = Q h. The map from target to source embeddings is therefore H = Q^T.
    """
    src = copy.deepcopy(_tiny.model("qwen2", seed=seed)).double()
    tgt = copy.deepcopy(src)
    g = torch.Generator().manual_seed(seed + 10)
    q = torch.linalg.qr(torch.randn(_tiny.D, _tiny.D, generator=g, dtype=torch.float64))[0]
    with torch.no_grad():
        tm = tgt.model
        tm.embed_tokens.weight.copy_(tm.embed_tokens.weight @ q.T)
        for layer in tm.layers:
            g1 = layer.input_layernorm.weight.clone()
            for lin in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                lin.weight.copy_(lin.weight * g1 @ q.T)
            layer.input_layernorm.weight.fill_(1.0)
            layer.self_attn.o_proj.weight.copy_(q @ layer.self_attn.o_proj.weight)
            g2 = layer.post_attention_layernorm.weight.clone()
            for lin in (layer.mlp.gate_proj, layer.mlp.up_proj):
                lin.weight.copy_(lin.weight * g2 @ q.T)
            layer.post_attention_layernorm.weight.fill_(1.0)
            layer.mlp.down_proj.weight.copy_(q @ layer.mlp.down_proj.weight)
        gf = tm.norm.weight.clone()
        tgt.lm_head.weight.copy_(tgt.lm_head.weight * gf @ q.T)
        tm.norm.weight.fill_(1.0)
    return src, tgt, q.numpy()


TEXTS = ["the film was good and the plot was dull", "a very sad story of the end"]


def test_rotated_copy_has_the_same_logits(tok: Any) -> None:
    src, tgt, _ = _rotated_qwen2()
    ids = torch.tensor([tok(TEXTS[0])["input_ids"]])
    with torch.no_grad():
        assert torch.allclose(src(input_ids=ids).logits, tgt(input_ids=ids).logits, atol=FORWARD)


def test_transfer_to_a_rotated_copy_is_exact(tok: Any) -> None:
    src, tgt, q = _rotated_qwen2()
    t = random_transform(k=2, r=6, eps=0.05, seed=1, dummy_slots=(1,)).to(dtype=torch.float64)
    emap = fit_embedding_map(src, tok, tgt, tok, heldout=0.2, seed=0)
    assert emap.overlap == _tiny.VOCAB - len(_tiny.SPECIALS)
    assert np.abs(emap.h - q.T).max() < 1e-9  # H = Q^T: e_v = Q^T e'_v
    assert emap.r2_fit == pytest.approx(1.0, abs=1e-12)
    assert emap.r2_heldout == pytest.approx(1.0, abs=1e-12)
    t2 = transfer(t, src, tok, tgt, tok, mapping=emap, target_name="rotated")
    assert (t2.num_steers, t2.hidden_size, t2.rank) == (2, _tiny.D, 6)
    assert t2.slot_names == t.slot_names and t2.dummy_slots == (1,)
    assert t2.epsilon == t.epsilon and t2.base_model == "rotated"
    assert t2.provenance["transfer"]["overlap"] == emap.overlap
    assert t2.provenance["transferred_from"] == "tiny"
    # W' = H^T W H
    w, w2 = t.matrix((1.0, 0.5)).numpy(), t2.matrix((1.0, 0.5)).numpy()
    assert np.abs(w2 - q @ w @ q.T).max() < EXACT
    ids = torch.tensor([tok(TEXTS[0])["input_ids"]])
    with torch.no_grad():
        with steering(src, t, (3.0, 1.0)):
            a = src(input_ids=ids).logits
        with steering(tgt, t2, (3.0, 1.0)):
            b = tgt(input_ids=ids).logits
    assert (a - b).abs().max() < FORWARD
    fid = transfer_fidelity(t, src, tok, t2, tgt, tok, TEXTS, values=3.0, top_k=10)
    s = fid.summary_dict()
    assert s["logit_corr_mean"] == pytest.approx(1.0, abs=FORWARD)
    assert s["topk_overlap_mean"] == 1.0 and s["bottomk_overlap_mean"] == 1.0
    assert s["token_delta_logp_corr"] == pytest.approx(1.0, abs=FORWARD)
    assert np.allclose(fid.texts["source_delta_logp"], fid.texts["target_delta_logp"], atol=FORWARD)
    assert s["n_positions"] == sum(len(tok(x)["input_ids"]) for x in TEXTS)
    assert fid.chance == pytest.approx(10 / emap.overlap)


def test_transfer_between_hidden_sizes_is_h_transpose_w_h(tok: Any) -> None:
    src = _tiny.model("gpt2")
    cfg = _tiny.config("gpt_neox")
    cfg.hidden_size = 24
    tgt = _tiny.build(cfg, seed=3)
    t = random_transform(k=1, r=40, seed=8).to(dtype=torch.float64)  # r > d_t is kept
    t2 = transfer(t, src, tok, tgt, tok, heldout=0.0)
    assert (t2.hidden_size, t2.rank) == (24, 40)
    h = fit_embedding_map(src, tok, tgt, tok, heldout=0.0).h
    assert h.shape == (_tiny.D, 24)
    w, w2 = t.matrix((1.0,)).numpy(), t2.matrix((1.0,)).numpy()
    assert np.abs(w2 - h.T @ w @ h).max() < 1e-10
    # closed form = least squares: the residual is orthogonal to the target embeddings
    es, et = head_weight(src).detach().double().numpy(), head_weight(tgt).detach().double().numpy()
    keep = [i for i in range(_tiny.VOCAB) if i >= len(_tiny.SPECIALS)]
    resid = es[keep] - et[keep] @ h.T
    assert np.abs(et[keep].T @ resid).max() < 1e-10
    fid = transfer_fidelity(t, src, tok, t2, tgt, tok, TEXTS, values=(2.0,))
    assert -1.0 <= fid.summary_dict()["logit_corr_mean"] <= 1.0


class _VocabTok:
    def __init__(self, vocab: list[str], special: tuple[str, ...] = ()) -> None:
        self.vocab = {t: i for i, t in enumerate(vocab)}
        self.all_special_tokens = list(special)

    def get_vocab(self) -> dict[str, int]:
        return dict(self.vocab)


def test_marker_conventions_are_mapped_to_bytes() -> None:
    bl = _VocabTok(["<|endoftext|>", "Ġgood", "good", "Ċ", "Ġbad", "Ã©", "x"], ("<|endoftext|>",))
    sp = _VocabTok(["<pad>", "▁good", "good", "<0x0A>", "▁bad", "é", "y"], ("<pad>",))
    raw = _VocabTok(["good", "bad", "[PAD]"], ("[PAD]",))
    assert marker_style(bl) == "byte_level" and marker_style(sp) == "metaspace"
    assert marker_style(raw) == "raw"
    assert canonical_vocabulary(bl)[b" good"] == 1
    assert canonical_vocabulary(bl)["é".encode()] == 5
    assert canonical_vocabulary(sp)[b"\n"] == 3
    shared = shared_vocabulary(bl, sp)
    pairs = {(r.text, r.source_id, r.target_id) for r in shared.itertuples()}
    assert pairs == {(" good", 1, 1), ("good", 2, 2), ("\n", 3, 3), (" bad", 4, 4), ("é", 5, 5)}
    assert list(shared_vocabulary(bl, raw)["text"]) == ["good"]
    only = shared_vocabulary(bl, sp, restrict_to={b" bad"})
    assert list(only["source_id"]) == [4]


def test_transfer_errors(tok: Any) -> None:
    src = _tiny.model("gpt2")
    t = random_transform(k=1, r=4)
    other = _VocabTok(["zzz", "qqq"])
    with pytest.raises(SteerInputError, match="share no token"):
        fit_embedding_map(src, tok, np.zeros((2, 8)), other)
    with pytest.raises(SteerDimensionError, match="hidden size"):
        transfer(random_transform(d=16), src, tok, src, tok)
    with pytest.raises(SteerInputError, match="heldout"):
        fit_embedding_map(src, tok, src, tok, heldout=1.0)
    with pytest.raises(SteerInputError, match="shared tokens are left"):
        fit_embedding_map(src, tok, src, tok, restrict_to={b"good", b"bad"})
    emap = fit_embedding_map(src, tok, src, tok)
    cfg = _tiny.config("gpt2")
    cfg.n_embd = 16
    small = _tiny.build(cfg)
    with pytest.raises(SteerDimensionError, match="map H"):
        transfer(t, src, tok, small, tok, mapping=emap)
    with pytest.raises(SteerInputError, match="at least one text"):
        transfer_fidelity(t, src, tok, t, src, tok, [])
    with pytest.raises(SteerDimensionError):
        transfer_fidelity(t, src, tok, t, small, tok, TEXTS)
    with pytest.raises(SteerDimensionError, match=r"\[V, d\]"):
        fit_embedding_map(np.zeros(5), tok, src, tok)


def _permuted_tokenizer_and_model(seed: int = 0) -> tuple[Any, Any, np.ndarray]:
    """The tiny vocabulary with its non-special ids shuffled, and a GPT-2 whose rows follow."""
    import transformers as tf
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = _tiny.WORDS + _tiny.FILLER
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(words))
    n_sp = len(_tiny.SPECIALS)
    vocab = {w: i for i, w in enumerate(_tiny.SPECIALS)}
    vocab.update({words[j]: n_sp + k for k, j in enumerate(order)})
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tok2 = tf.PreTrainedTokenizerFast(
        tokenizer_object=tk, pad_token="[PAD]", unk_token="[UNK]", bos_token="[BOS]",
        eos_token="[EOS]",
    )  # fmt: skip
    # new id n_sp + k holds old id n_sp + order[k]
    rows = np.concatenate([np.arange(n_sp), n_sp + order])
    model = copy.deepcopy(_tiny.model("gpt2")).double()
    with torch.no_grad():
        model.transformer.wte.weight.copy_(model.transformer.wte.weight[torch.tensor(rows)])
    return tok2, model, rows


def test_transfer_through_a_reordered_vocabulary_matches_tokens_by_string(tok: Any) -> None:
    tok2, tgt, rows = _permuted_tokenizer_and_model()
    src = copy.deepcopy(_tiny.model("gpt2")).double()
    shared = shared_vocabulary(tok, tok2)
    assert len(shared) == _tiny.VOCAB - len(_tiny.SPECIALS)
    assert np.array_equal(rows[shared["target_id"].to_numpy()], shared["source_id"].to_numpy())
    t = random_transform(k=1, r=5, eps=0.05, seed=9).to(dtype=torch.float64)
    emap = fit_embedding_map(src, tok, tgt, tok2, heldout=0.0)
    assert np.abs(emap.h - np.eye(_tiny.D)).max() < 1e-9
    t2 = transfer(t, src, tok, tgt, tok2, mapping=emap)
    fid = transfer_fidelity(t, src, tok, t2, tgt, tok2, TEXTS, values=(4.0,), top_k=5)
    s = fid.summary_dict()
    assert s["logit_corr_mean"] == pytest.approx(1.0, abs=FORWARD)
    assert s["topk_overlap_mean"] == 1.0
    assert s["scale_ratio_median"] == pytest.approx(1.0, abs=FORWARD)


def test_transfer_fidelities_score_several_steers_like_single_calls(tok: Any) -> None:
    src, tgt, _ = _rotated_qwen2()
    t = random_transform(k=1, r=4, eps=0.05, seed=1).to(dtype=torch.float64)
    exact = transfer(t, src, tok, tgt, tok, heldout=0.0)
    other = random_transform(k=1, r=4, eps=0.05, seed=2).to(dtype=torch.float64)
    both = transfer_fidelities(t, src, tok, {"exact": exact, "other": other}, tgt, tok, TEXTS)
    assert list(both) == ["exact", "other"]
    single = transfer_fidelity(t, src, tok, other, tgt, tok, TEXTS)
    pd.testing.assert_frame_equal(both["other"].tidy(), single.tidy())
    assert both["exact"].summary_dict()["logit_corr_mean"] > 0.999999
    assert both["other"].summary_dict()["logit_corr_mean"] < 0.9
    with pytest.raises(SteerInputError, match="at least one target"):
        transfer_fidelities(t, src, tok, {}, tgt, tok, TEXTS)


def test_context_map_of_a_rotated_copy_is_the_rotation(tok: Any) -> None:
    src, tgt, q = _rotated_qwen2()
    words = _tiny.WORDS
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(words, size=12)) for _ in range(12)]
    cmap = fit_context_map(src, tok, tgt, tok, texts, heldout=0.25, seed=1)
    assert cmap.n_fit + cmap.n_heldout == 12 * 12
    assert np.abs(cmap.g - q.T).max() < 1e-5  # h_s = Q^T h_t
    assert cmap.r2_heldout == pytest.approx(1.0, abs=1e-9)
    t = random_transform(k=1, r=4, eps=0.05, seed=3).to(dtype=torch.float64)
    emap = fit_embedding_map(src, tok, tgt, tok, heldout=0.0)
    t2 = transfer(t, src, tok, tgt, tok, mapping=emap, context_map=cmap)
    assert t2.provenance["context_map"]["n_fit"] == cmap.n_fit
    ids = torch.tensor([tok(TEXTS[1])["input_ids"]])
    with torch.no_grad():
        with steering(src, t, (3.0,)):
            a = src(input_ids=ids).logits
        with steering(tgt, t2, (3.0,)):
            b = tgt(input_ids=ids).logits
    assert (a - b).abs().max() < 1e-5
    with pytest.raises(SteerInputError, match="aligned contexts"):
        fit_context_map(src, tok, tgt, tok, ["the film"], heldout=0.0)
    small = fit_context_map(src, tok, tgt, tok, ["the film"], heldout=0.0, ridge=1.0)
    with pytest.raises(SteerDimensionError, match="context map"):
        bad = dataclasses.replace(small, g=np.zeros((5, 5)))
        transfer(t, src, tok, tgt, tok, mapping=emap, context_map=bad)
