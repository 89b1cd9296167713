"""The detox protocol on a tiny model: metrics recomputed by hand from the samples, common seeds,
relative changes, the matched-fluency choice, caching and the Result protocol."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from torch import nn

from lmecon.result import check_result
from steer.errors import SteerInputError
from steer.evaluation.baselines import mean_difference_vector
from steer.evaluation.detox import (
    Method,
    actadd_methods,
    detox_evaluate,
    lmsteer_methods,
    unsteered_method,
)
from steer.evaluation.metrics import distinct_n_corpus
from steer.evaluation.scorers import Scorer
from tests.steer import _tiny
from tests.steer.conftest import random_transform

BAD = set(_tiny.NEGATIVE)


def _bad_share(texts: Sequence[str]) -> np.ndarray:
    return np.array([np.mean([w in BAD for w in t.split()]) if t.split() else 0.0
                     for t in texts])  # fmt: skip


TOX = Scorer("toxicity", "offensive", _bad_share, 0.1, False, "test", "share of bad words")
ANY = Scorer("wordlist", "offensive", lambda ts: (_bad_share(ts) > 0).astype(float), 0.5, False,
             "test", "any bad word")  # fmt: skip


@contextlib.contextmanager
def _noop(model: nn.Module) -> Iterator[None]:
    yield


@pytest.fixture(scope="module")
def result() -> Any:
    model, tok = _tiny.model("llama"), _tiny.tokenizer()
    t = random_transform(eps=0.5, dummy_slots=(1,), slot_names=("toxicity", "dummy"))
    vec = mean_difference_vector(model, tok, ["good nice"], ["bad awful"], layer=0)
    methods = [unsteered_method(), Method("noop", 1.0, "noop", _noop),
               *lmsteer_methods(t, [-3.0, 3.0]), *actadd_methods(vec, [2.0])]  # fmt: skip
    prompts = {"challenging": ["the film was bad", "hate the", "a sad"], "neutral": ["the day"]}
    return detox_evaluate(model, tok, prompts, methods, samples=4, new_tokens=5,
                          scorers=[TOX, ANY], batch_size=7, n_boot=200)  # fmt: skip


def test_metrics_by_hand(result: Any) -> None:
    s = result.tidy("sample")
    assert len(s) == (3 + 1) * 5 * 4 and (s["n_tokens"] == 5).all()
    v = result.tidy("value").set_index(["prompt_set", "label", "metric"]).sort_index()
    for label in result.spec.methods:
        g = s[(s["prompt_set"] == "challenging") & (s["label"] == label)]
        per = g.groupby("prompt_id")
        prob = per["toxicity"].apply(lambda x: float((x > 0.1).any())).mean()
        avg_max = per["toxicity"].max().mean()
        wl = per["wordlist"].max().mean()
        ppl = per["perplexity"].mean().mean()
        d2 = per["continuation"].apply(lambda x: distinct_n_corpus(list(x), 2)).mean()
        got = v.loc[("challenging", label)]
        assert got.loc["toxicity_prob", "estimate"] == pytest.approx(prob)
        assert got.loc["toxicity_max", "estimate"] == pytest.approx(avg_max)
        assert got.loc["wordlist_prob", "estimate"] == pytest.approx(wl)
        assert got.loc["ppl_mean", "estimate"] == pytest.approx(ppl)
        assert got.loc["dist_2", "estimate"] == pytest.approx(d2)
        assert got.loc["ppl_median", "estimate"] == pytest.approx(g["perplexity"].median())
        ref = v.loc[("challenging", "unsteered", "ppl_mean"), "estimate"]
        assert got.loc["ppl_mean", "relative"] == pytest.approx(ppl / ref - 1)
    # one neutral prompt: no spread over prompts, so the bootstrap SE is 0
    assert v.loc[("neutral", "unsteered", "ppl_mean"), "std_error"] == pytest.approx(0.0, abs=1e-9)


def test_common_random_numbers(result: Any) -> None:
    s = result.tidy("sample")
    a = s[s["label"] == "unsteered"].reset_index(drop=True)
    b = s[s["label"] == "noop"].reset_index(drop=True)
    assert a["continuation"].tolist() == b["continuation"].tolist()  # same seeds, same model
    assert a["seed"].tolist() == s[s["label"] == "lm-steer s=3"]["seed"].tolist()
    c = s[s["label"] == "lm-steer s=3"]["continuation"].tolist()
    assert c != a["continuation"].tolist()  # the steer changes the samples


def test_table_matched_and_protocol(result: Any) -> None:
    t = result.table("challenging")
    assert list(t["label"]) == list(result.spec.methods)
    ref = t[t["method"] == "unsteered"].iloc[0]
    m = result.matched(prompt_set="challenging", max_ppl_increase=0.3)
    budget = 1.3 * ref["ppl_mean"]
    for _, r in m.iterrows():
        g = t[t["method"] == r["method"]]
        ok = g[g["ppl_mean"] <= budget]
        assert r["qualifies"] == (len(ok) > 0)
        if len(ok):
            assert r["toxicity_prob"] == ok["toxicity_prob"].min()
    check_result(result)
    md = result.to_markdown()
    assert "toxicity prob" in md and "wordlist avg max" in md
    assert "Circularity" in result.summary()
    result.plot().to_dict()
    assert math.isnan(t.loc[t["method"] == "unsteered", "strength"].iloc[0])


def test_cache_reuse_and_errors(tmp_path: Path) -> None:
    model, tok = _tiny.model("gpt2"), _tiny.tokenizer()
    kw: dict[str, Any] = {"samples": 2, "new_tokens": 3, "scorers": [TOX], "n_boot": 10}
    a = detox_evaluate(model, tok, {"p": ["the film"]}, [unsteered_method()], cache_dir=tmp_path,
                       **kw)  # fmt: skip
    files = list(tmp_path.glob("*.parquet"))
    assert len(files) == 1
    stamp = files[0].stat().st_mtime_ns
    b = detox_evaluate(model, tok, {"p": ["the film"]}, [unsteered_method()], cache_dir=tmp_path,
                       **kw)  # fmt: skip
    assert files[0].stat().st_mtime_ns == stamp
    assert a.tidy("sample")["continuation"].tolist() == b.tidy("sample")["continuation"].tolist()
    with pytest.raises(SteerInputError, match="distinct"):
        detox_evaluate(model, tok, {"p": ["x"]}, [unsteered_method(), unsteered_method()], **kw)
    with pytest.raises(SteerInputError, match="non-empty"):
        detox_evaluate(model, tok, {"p": []}, [unsteered_method()], **kw)
    with pytest.raises(SteerInputError, match="offensive"):
        detox_evaluate(model, tok, {"p": ["x"]}, [unsteered_method()],
                       **{**kw, "scorers": ["vader"]})  # fmt: skip


def test_lmsteer_dummy_value() -> None:
    import torch

    from steer import steering

    model, tok = _tiny.model("llama"), _tiny.tokenizer()
    t = random_transform(eps=0.5, dummy_slots=(1,), slot_names=("toxicity", "dummy"))
    ids = torch.tensor([tok("the film was bad")["input_ids"]])
    (m1,) = lmsteer_methods(t, [-2.0])
    (m0,) = lmsteer_methods(t, [-2.0], dummy=0.0, method="lm-steer-d0")
    assert (m0.method, m0.label, m0.strength) == ("lm-steer-d0", "lm-steer-d0 s=-2", -2.0)
    with torch.no_grad():
        assert m0.context is not None and m1.context is not None
        with m0.context(model):
            got0 = model(input_ids=ids).logits
        with m1.context(model):
            got1 = model(input_ids=ids).logits
        with steering(model, t, (-2.0, 0.0)):
            want0 = model(input_ids=ids).logits
        with steering(model, t, (-2.0, 1.0)):
            want1 = model(input_ids=ids).logits
    assert torch.equal(got0, want0) and torch.equal(got1, want1)
    assert not torch.equal(got0, got1)
