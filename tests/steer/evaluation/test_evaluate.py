"""Offline metrics and the DExperts protocol: distinct-n, perplexity, seeds, evaluate()."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from steer import (
    SteerInputError,
    SteerTransform,
    SteerValuesError,
    compose,
    generate,
)
from steer.core.hooks import head_inputs
from steer.evaluation import (
    Evaluation,
    conditional_perplexity,
    distinct_n,
    distinct_n_corpus,
    evaluate,
    sample_seeds,
    save_evaluations,
    sweep_table,
    vader_compound,
    value_grid,
)
from steer.evaluation.scorers import offensive_scorer
from steer.generation import Generation
from steer.resources.data import builtin_prompts, read_prompts
from tests.steer import _tiny
from tests.steer.conftest import random_transform


def test_distinct_n() -> None:
    assert distinct_n("bad bad bad bad", 2) == pytest.approx(1 / 3)
    assert distinct_n("a b c", 1) == 1.0
    assert math.isnan(distinct_n("one", 2))


def test_vader_compound_signs() -> None:
    s = vader_compound(["What a wonderful, lovely day!", "This is terrible and awful.", ""])
    assert s[0] > 0.5 and s[1] < -0.5 and s[2] == 0.0


def test_conditional_perplexity_matches_direct_computation(tok: Any) -> None:
    model = _tiny.model("gpt_neox")
    gens = generate(model, tok, ["the film was", "a"], max_new_tokens=4, min_new_tokens=4)
    got = conditional_perplexity(model, tok, gens, batch_size=1)
    for g, ppl in zip(gens, got, strict=True):
        p = tok(g.prompt)["input_ids"]
        ids = torch.tensor([p + list(g.token_ids)])
        with torch.no_grad():
            z = model(ids).logits[0]
        nll = F.cross_entropy(z[len(p) - 1 : -1], ids[0, len(p) :])
        assert ppl == pytest.approx(math.exp(float(nll)), rel=1e-5)


def test_sweep_table() -> None:
    frame = pd.DataFrame(
        {
            "value": [-1.0, -1.0, 1.0, 1.0],
            "epsilon": [-1e-3, -1e-3, 1e-3, 1e-3],
            "vader": [-0.5, 0.1, 0.4, 0.8],
            "dist_2": [1.0, 0.5, 1.0, 1.0],
        }  # fmt: skip
    )
    t = sweep_table(frame)
    assert t["vader_mean"].tolist() == pytest.approx([-0.2, 0.6])
    assert t["positive_share"].tolist() == [0.5, 1.0] and t["negative_share"].tolist() == [0.5, 0.0]
    assert t["vader_se"].iloc[0] == pytest.approx(np.std([-0.5, 0.1], ddof=1) / np.sqrt(2))


# --- the DExperts protocol: evaluate(), seeds, distinct-n over samples, perplexity ----------

FAST = ("vader", offensive_scorer("word-list"))  # textblob is tested in test_scorers.py
# (the word list explicitly: "offensive" is the SVM of alt-profanity-check where it is installed)


def test_distinct_n_corpus_hand_computed() -> None:
    texts = ["a b a b", "a b c"]  # 7 words; n-grams never cross the two samples
    # unigrams: 7, unique {a, b, c}; bigrams ab ba ab | ab bc: 5, unique 3; trigrams: 3, unique 3
    assert distinct_n_corpus(texts, 1) == pytest.approx(3 / 7)
    assert distinct_n_corpus(texts, 2) == pytest.approx(3 / 5)
    assert distinct_n_corpus(texts, 3) == pytest.approx(1.0)
    # the reference code divides by the number of words for every n (pitfall 4)
    assert distinct_n_corpus(texts, 2, "words") == pytest.approx(3 / 7)
    assert distinct_n_corpus(texts, 3, "words") == pytest.approx(3 / 7)
    assert math.isnan(distinct_n_corpus(["one", "two"], 2))
    with pytest.raises(SteerInputError, match="n must be"):
        distinct_n_corpus(texts, 0)
    with pytest.raises(SteerInputError, match="not a string"):
        distinct_n_corpus("a b c", 1)
    with pytest.raises(SteerInputError, match="denominator"):
        distinct_n_corpus(texts, 1, "tokens")  # type: ignore[arg-type]


def test_perplexity_equals_nll_computed_by_hand_from_logits(tok: Any) -> None:
    model = _tiny.model("llama")
    prompt, cont = "the film was", (33, 40, 7)  # arbitrary continuation token ids
    g = Generation(prompt, None, tok.decode(list(cont)), cont)
    (got,) = conditional_perplexity(model, tok, [g])
    p = tok(prompt)["input_ids"]
    with torch.no_grad():
        out = model(torch.tensor([p + list(cont)]), output_hidden_states=True)
    h = out.hidden_states[-1][0].double().numpy()  # final (normed) hidden states
    emb = model.get_output_embeddings().weight.detach().double().numpy()
    logits = h @ emb.T
    np.testing.assert_allclose(logits, out.logits[0].double().numpy(), atol=1e-4)
    nll = []
    for j, t in enumerate(cont):
        z = logits[len(p) - 1 + j]  # the position before token j predicts it
        nll.append(math.log(np.exp(z - z.max()).sum()) + z.max() - z[t])
    assert got == pytest.approx(math.exp(sum(nll) / len(cont)), rel=1e-5)


def test_sample_seeds_differ_across_prompts_and_are_reproducible() -> None:
    s = sample_seeds(["a", "b", "a"], 25, seed=0)
    assert s.shape == (3, 25) and s.dtype == np.int64 and (s >= 0).all()
    assert len(np.unique(s)) == 75  # the reference reuses 0..24 for every prompt (pitfall 3)
    np.testing.assert_array_equal(s, sample_seeds(["a", "b", "a"], 25, seed=0))
    # a prompt's seeds depend on its text (and copy number), not on its position or neighbours
    np.testing.assert_array_equal(sample_seeds(["b"], 25)[0], s[1])
    np.testing.assert_array_equal(sample_seeds(["a"], 3)[0], s[0, :3])
    assert not np.array_equal(sample_seeds(["a"], 25, seed=1)[0], s[0])
    with pytest.raises(SteerInputError, match="samples"):
        sample_seeds(["a"], 0)


@pytest.fixture(scope="module")
def evaluation() -> Evaluation:
    tok = _tiny.tokenizer()
    t = random_transform(k=2, eps=0.5, slot_names=("sentiment", "dummy"), dummy_slots=(1,))
    return evaluate(_tiny.model("llama"), tok, t, ["the film was", "a movie is"], [-1, 0, 2],
                    samples=3, new_tokens=5, scorers=FAST, progress=False)  # fmt: skip


def test_evaluate_protocol_end_to_end(evaluation: Evaluation, tok: Any) -> None:
    df = evaluation.tidy("sample")
    assert len(df) == 3 * 2 * 3 and (df["n_tokens"] == 5).all()
    assert df["token_ids"].map(len).eq(5).all()  # exactly new_tokens, EOS banned
    # continuations are the decoded new tokens (sliced on tokens, not on text)
    assert all(tok.decode(list(ids), skip_special_tokens=True) == c
               for ids, c in zip(df["token_ids"], df["continuation"], strict=True))  # fmt: skip
    assert df["values"].unique().tolist() == ["-1,1", "0,1", "2,1"]
    np.testing.assert_allclose(df["epsilon"], df["value"] * 0.5)
    # one seed per (prompt, sample), shared by the settings (common random numbers)
    seeds = sample_seeds(["the film was", "a movie is"], 3)
    for r in df.itertuples():
        assert r.seed == seeds[r.prompt_id, r.sample]
    assert df.groupby("setting")["seed"].apply(lambda s: len(set(s))).eq(6).all()
    # perplexity of each sample equals conditional_perplexity of its tokens
    g = Generation(df["prompt"][0], None, df["continuation"][0], tuple(df["token_ids"][0]))
    (ppl,) = conditional_perplexity(_tiny.model("llama"), tok, [g])
    assert df["perplexity"][0] == pytest.approx(ppl, rel=1e-6)
    want = offensive_scorer("word-list")(df["continuation"].tolist())
    np.testing.assert_array_equal(df["offensive"], want)  # 0/1 (the filler "w0 w33" is leet)


def test_evaluate_aggregates_per_prompt_then_over_prompts(evaluation: Evaluation) -> None:
    df, pp, v = (evaluation.tidy(lvl) for lvl in ("sample", "prompt", "value"))  # type: ignore[arg-type]
    one = df[(df["setting"] == 1) & (df["prompt_id"] == 0)]
    row = pp[(pp["setting"] == 1) & (pp["prompt_id"] == 0)].iloc[0]
    assert row["vader_mean"] == pytest.approx(one["vader"].mean())
    assert row["vader_positive"] == pytest.approx((one["vader"] >= 0.05).mean())
    assert row["dist_2"] == pytest.approx(distinct_n_corpus(one["continuation"].tolist(), 2))
    assert row["dist_3_ref"] == pytest.approx(
        distinct_n_corpus(one["continuation"].tolist(), 3, "words"))  # fmt: skip
    assert row["offensive_max"] == one["offensive"].max()
    assert row["ppl_mean"] == pytest.approx(one["perplexity"].mean())
    est = v[(v["setting"] == 1) & (v["metric"] == "ppl_mean")].iloc[0]
    x = pp.loc[pp["setting"] == 1, "ppl_mean"].to_numpy()
    assert est["estimate"] == pytest.approx(x.mean()) and est["n_prompts"] == 2
    assert est["std_error"] == pytest.approx(np.std(x, ddof=1) / np.sqrt(2))
    assert est["conf_high"] == pytest.approx(est["estimate"] + 1.96 * est["std_error"])
    med = v[(v["setting"] == 1) & (v["metric"] == "ppl_median")].iloc[0]
    assert med["estimate"] == pytest.approx(df.loc[df["setting"] == 1, "perplexity"].median())
    assert v.loc[v["metric"] == "ppl_over_1e4", "estimate"].eq(0).all()
    s = evaluation.summary_frame()
    assert len(s) == 3 and s["value"].tolist() == [-1.0, 0.0, 2.0]
    assert "vader_positive_se" in s and "ppl_median_se" not in s
    md = evaluation.to_markdown(["vader_positive", "ppl_median"])
    assert md.count("\n") == 4 and "| prompts | +2 |" in md
    # frames are copies: editing one does not change the result
    df.loc[0, "vader"] = 99.0
    assert evaluation.tidy("sample").loc[0, "vader"] != 99.0


def test_evaluate_is_reproducible_and_batch_invariant(evaluation: Evaluation, tok: Any) -> None:
    t = random_transform(k=2, eps=0.5, slot_names=("sentiment", "dummy"), dummy_slots=(1,))
    model = _tiny.model("llama")
    with torch.no_grad():
        before = model(torch.tensor([[5, 6, 7]])).logits
    again = evaluate(model, tok, t, ["the film was", "a movie is"], [-1, 0, 2], samples=3,
                     new_tokens=5, scorers=FAST, batch_size=3, progress=False)  # fmt: skip
    a, b = evaluation.tidy("sample"), again.tidy("sample")
    assert a["token_ids"].tolist() == b["token_ids"].tolist()  # batch 50 vs 3 rows per pass
    np.testing.assert_allclose(a["perplexity"], b["perplexity"], rtol=1e-5)
    with torch.no_grad():
        assert torch.equal(model(torch.tensor([[5, 6, 7]])).logits, before)  # model untouched
    other = evaluate(model, tok, t, ["the film was"], [0], samples=3, new_tokens=5,
                     scorers=FAST, seed=1, progress=False)  # fmt: skip
    assert other.tidy("sample")["token_ids"].tolist() != a.loc[
        (a["setting"] == 1) & (a["prompt_id"] == 0), "token_ids"].tolist()  # fmt: skip


def test_steer_moves_samples_towards_planted_tokens(tok: Any) -> None:
    # W = e_good u^T with u = the mean final hidden state: steering adds eps*s*(h.u)(e_v.e_good)
    # to the logits, and h.u > 0 for every context here, so a large s makes "good" dominate.
    model = _tiny.model("gpt2")
    ids = torch.arange(4, 44)[None]
    h = head_inputs(model, ids, torch.ones_like(ids))[0]
    u = h.mean(0) / h.mean(0).norm()
    assert bool((h @ u > 0).all())
    e = model.get_output_embeddings().weight.detach()[tok.convert_tokens_to_ids("good")]
    t = SteerTransform(u[None, :, None].clone(), (e / e.norm())[None, :, None].clone(), 1.0,
                       "tiny", slot_names=("good",))  # fmt: skip
    ev = evaluate(model, tok, t, ["the film was", "a movie"], [-50.0, 0.0, 50.0], samples=4,
                  new_tokens=4, scorers=("vader",), progress=False)  # fmt: skip
    df = ev.tidy("sample")
    share = df.groupby("value")["continuation"].apply(
        lambda s: np.mean([w == "good" for x in s for w in x.split()]))  # fmt: skip
    assert share[50.0] == 1.0 and share[0.0] < 0.5 and share[-50.0] < 0.5
    v = ev.tidy()
    pos = v[v["metric"] == "vader_positive"].set_index("value")["estimate"]
    assert pos[50.0] == 1.0 > pos[0.0]


def test_evaluate_unsteered_and_composition_grid(tok: Any) -> None:
    model = _tiny.model("llama")
    ev = evaluate(model, tok, None, ["a movie"], samples=2, new_tokens=3, scorers=("vader",),
                  progress=False)  # fmt: skip
    assert ev.summary_frame()["values"].tolist() == ["unsteered"] and ev.spec.settings is None
    a = random_transform(k=2, seed=1, slot_names=("sentiment", "dummy"), dummy_slots=(1,))
    b = random_transform(k=2, seed=2, slot_names=("formality", "dummy_f"), dummy_slots=(1,))
    both = compose(a, b)
    grid = value_grid(both, {"sentiment": [-1, 1], "formality": [0, 2]})
    assert grid == [(-1, 1, 0, 1), (-1, 1, 2, 1), (1, 1, 0, 1), (1, 1, 2, 1)]
    ev = evaluate(model, tok, both, ["a movie"], grid, samples=2, new_tokens=3,
                  scorers=("vader",), progress=False)  # fmt: skip
    v = ev.tidy()
    assert {"value_sentiment", "value_formality"} <= set(v.columns)
    cells = v.drop_duplicates("setting")[["value_sentiment", "value_formality"]]
    assert cells.to_numpy().tolist() == [[-1, 0], [-1, 2], [1, 0], [1, 2]]
    with pytest.raises(SteerValuesError, match="labelled slot"):
        value_grid(both, {"sentiment": [1]})


def test_evaluate_errors(tok: Any) -> None:
    model = _tiny.model("llama")
    t = random_transform(k=2, slot_names=("sentiment", "dummy"), dummy_slots=(1,))
    kw: dict[str, Any] = {"samples": 1, "new_tokens": 2, "scorers": ("vader",), "progress": False}
    cases: list[tuple[Any, Any, Any, str]] = [
        (t, [], [1.0], "at least one prompt"),
        (t, "the film", [1.0], "not one string"),
        (t, ["ok", " "], [1.0], "empty"),
        (t, ["a"], None, "pass values"),
        (None, ["a"], [1.0], "without a transform"),
        (t, ["a"], [], "empty"),
    ]
    for tr, prompts, values, match in cases:
        with pytest.raises(SteerInputError, match=match):
            evaluate(model, tok, tr, prompts, values, **kw)
    with pytest.raises(SteerValuesError):
        evaluate(model, tok, t, ["a"], [(1.0, 2.0, 3.0)], **kw)
    with pytest.raises(SteerValuesError, match="duplicate"):
        evaluate(model, tok, t, ["a"], [1.0, (1.0, 1.0)], **kw)
    with pytest.raises(SteerInputError, match="samples"):
        evaluate(model, tok, t, ["a"], [1.0], **{**kw, "samples": 0})
    with pytest.raises(SteerInputError, match="top_p"):
        evaluate(model, tok, t, ["a"], [1.0], **{**kw, "top_p": 0.0})
    with pytest.raises(SteerInputError, match="unknown scorer"):
        evaluate(model, tok, t, ["a"], [1.0], **{**kw, "scorers": ("perspective",)})
    small = _tiny.build(_tiny.config("gpt2").__class__(
        n_embd=8, n_layer=1, n_head=1, n_positions=16, vocab_size=50))  # fmt: skip
    with pytest.raises(SteerInputError, match="perplexity_tokenizer"):
        evaluate(model, tok, t, ["a"], [1.0], **{**kw, "perplexity_model": small})
    with pytest.raises(ValueError, match="'value'"):
        evaluate(model, tok, t, ["a"], [1.0], **kw).tidy("values")  # type: ignore[arg-type]


def test_perplexity_model_with_its_own_tokenizer(tok: Any) -> None:
    # a scorer LM with another tokenizer re-tokenises prompt and continuation separately
    model, scorer = _tiny.model("llama"), _tiny.model("gpt2")
    ev = evaluate(model, tok, None, ["the film was"], samples=2, new_tokens=3,
                  scorers=("vader",), perplexity_model=scorer, perplexity_tokenizer=tok,
                  progress=False)  # fmt: skip
    df = ev.tidy("sample")
    for r in df.itertuples():
        ids = tuple(tok(r.continuation, add_special_tokens=False)["input_ids"])
        (want,) = conditional_perplexity(scorer, tok, [Generation(r.prompt, None, "", ids)])
        assert r.perplexity == pytest.approx(want, rel=1e-6)


def test_save_evaluations(evaluation: Evaluation, tmp_path: Path) -> None:
    files = save_evaluations([evaluation, evaluation], tmp_path / "ev")
    names = sorted(p.name for p in files)
    assert names == ["evaluation.json", "prompts.parquet", "samples.parquet", "summary.csv",
                     "summary.md", "values.parquet"]  # fmt: skip
    back = pd.read_parquet(tmp_path / "ev" / "samples.parquet")
    assert len(back) == 2 * len(evaluation.tidy("sample"))
    assert back["token_ids"].map(len).eq(5).all()
    assert "steer_evaluation" in back.attrs
    with pytest.raises(SteerInputError):
        save_evaluations([], tmp_path / "none")


def test_prompt_files_and_builtin_prompts(tmp_path: Path) -> None:
    jl = tmp_path / "p.jsonl"
    jl.write_text('{"prompt": {"text": "God never intended to"}, "num_positive": 3}\n\n'
                  '{"prompt": "Plain prompt"}\n{"text": "Text key"}\n"bare"\n')  # fmt: skip
    assert read_prompts(jl) == ["God never intended to", "Plain prompt", "Text key", "bare"]
    assert read_prompts(jl, 2) == ["God never intended to", "Plain prompt"]
    txt = tmp_path / "p.txt"
    txt.write_text("one\n\ntwo words\n")
    assert read_prompts(txt) == ["one", "two words"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": {"text": "ok"}}\n{"continuation": "x"}\n')
    with pytest.raises(SteerInputError, match="line 2"):
        read_prompts(bad)
    bad.write_text("{not json\n")
    with pytest.raises(SteerInputError, match="not JSON"):
        read_prompts(bad)
    with pytest.raises(SteerInputError, match="does not exist"):
        read_prompts(tmp_path / "missing.jsonl")
    assert len(builtin_prompts("neutral")) == 12 and len(builtin_prompts("positive", 2)) == 2
    with pytest.raises(SteerInputError, match="neutral"):
        builtin_prompts("toxic")


def test_generate_with_per_sample_seeds(tok: Any) -> None:
    model = _tiny.model("gpt2")
    kw: dict[str, Any] = {"max_new_tokens": 4, "do_sample": True, "top_p": 0.9}
    alone = generate(model, tok, ["a movie"], num_samples=2, sample_seeds=[[7, 8]], **kw)
    mixed = generate(model, tok, ["the film was", "a movie"], num_samples=2,
                     sample_seeds=[[1, 2], [7, 8]], batch_size=3, **kw)  # fmt: skip
    assert [g.token_ids for g in alone] == [g.token_ids for g in mixed[2:]]
    same = generate(model, tok, ["a movie"], num_samples=2, sample_seeds=[[7, 7]], **kw)
    assert same[0].token_ids == same[1].token_ids == alone[0].token_ids
    with pytest.raises(SteerInputError, match="sample_seeds"):
        generate(model, tok, ["a movie"], num_samples=2, sample_seeds=[[1]], **kw)
