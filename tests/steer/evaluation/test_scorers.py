"""Offline scorers on known sentences, the naive Bayes style scorer, the style corpus."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from steer import SteerInputError
from steer.evaluation.scorers import (
    Scorer,
    get_scorer,
    naive_bayes_scorer,
    offensive_scorer,
    resolve_scorers,
    textblob_scorer,
    vader_scorer,
)
from steer.resources.data import source_corpus


def test_vader_on_known_sentences() -> None:
    sc = vader_scorer()
    s = sc(["What a wonderful, lovely day!", "This is terrible and awful.", "", "The bus."])
    assert s[0] > 0.5 and s[1] < -0.5 and s[2] == 0.0 and s[3] == 0.0
    assert sc.hits(np.array([0.05, 0.0499, -0.3])).tolist() == [True, False, False]
    assert sc.kind == "sentiment" and sc.source.startswith("vaderSentiment")


def test_textblob_on_known_sentences() -> None:
    pytest.importorskip("textblob")
    sc = textblob_scorer()
    # pattern lexicon: excellent +1.0; hate -0.8 and awful -1.0 average to -0.9
    s = sc(["This is utterly excellent!", "I hate this awful film", "", "The bus."])
    np.testing.assert_allclose(s, [1.0, -0.9, 0.0, 0.0])
    assert sc.hits(s).tolist() == [True, False, False, False]


def test_afinn_on_known_sentences() -> None:
    pytest.importorskip("afinn")
    sc = get_scorer("afinn")
    # AFINN-111: excellent +3; hate -3, awful -3
    np.testing.assert_allclose(sc(["This is excellent", "I hate this awful film"]), [3, -6])


def test_offensive_word_list() -> None:
    pytest.importorskip("better_profanity")
    sc = offensive_scorer("word-list")
    s = sc(["what the fuck is this", "a lovely day at the beach", "this sh!t again", ""])
    assert s.tolist() == [1.0, 0.0, 1.0, 0.0]
    assert sc.hits(s).tolist() == [True, False, True, False]
    assert "DEVIATION" in sc.note and "Perspective" in sc.note
    with pytest.raises(ValueError, match="word-list"):
        offensive_scorer("perspective")  # type: ignore[arg-type]


def test_offensive_profanity_check_when_installed() -> None:
    pytest.importorskip("profanity_check")
    sc = offensive_scorer("profanity-check")
    s = sc(["you are a fucking idiot", "a lovely day at the beach"])
    assert s[0] > 0.5 > s[1] and sc.source.startswith("alt-profanity-check")


def test_naive_bayes_hand_computed() -> None:
    # vocab {a, b, c}; class counts pos [2, 1, 0] / 3, neg [0, 1, 1] / 2; alpha = 1
    sc = naive_bayes_scorer(["a a b"], ["b c"], name="style")
    p_pos = np.array([3, 2, 1]) / 6
    p_neg = np.array([1, 2, 2]) / 5
    llr_a = math.log(p_pos[0] / p_neg[0])
    llr_c = math.log(p_pos[2] / p_neg[2])
    want = [1 / (1 + math.exp(-llr_a)), 1 / (1 + math.exp(-llr_c)), 0.5,
            1 / (1 + math.exp(-(2 * llr_a + llr_c)))]  # fmt: skip
    np.testing.assert_allclose(sc(["a", "C", "zzz", "a c a"]), want)
    assert want[0] == pytest.approx(2.5 / 3.5) and want[1] == pytest.approx(5 / 17)
    # informal markers are tokens of their own
    tw = naive_bayes_scorer(["The committee said on Tuesday."], ["lol @bob !!"], name="formal")
    assert tw(["@amy lol!"])[0] < 0.5 < tw(["The committee said"])[0]
    with pytest.raises(SteerInputError, match="both classes"):
        naive_bayes_scorer([], ["x"])
    with pytest.raises(SteerInputError, match="not single strings"):
        naive_bayes_scorer("abc", ["x"])  # type: ignore[arg-type]


def test_resolve_scorers_errors() -> None:
    assert [s.name for s in resolve_scorers(["vader"])] == ["vader"]
    assert [s.name for s in resolve_scorers("vader")] == ["vader"]
    with pytest.raises(SteerInputError, match="unknown scorer 'perspective'"):
        resolve_scorers(["perspective"])
    with pytest.raises(SteerInputError, match="distinct"):
        resolve_scorers(["vader", "vader"])
    bad = Scorer("perplexity", "sentiment", lambda t: np.zeros(len(t)), 0.0, False, "x", "x")
    with pytest.raises(SteerInputError, match="clash"):
        resolve_scorers([bad])
    with pytest.raises(SteerInputError, match="not a single string"):
        vader_scorer()("one text")
    broken = Scorer("b", "sentiment", lambda t: np.zeros(3), 0.0, False, "x", "x")
    with pytest.raises(RuntimeError, match="shape"):
        broken(["a"])


def test_source_corpus_labels_by_collection() -> None:
    snippets = pd.DataFrame(
        {
            "source": ["nyt"] * 6 + ["tweets"] * 4 + ["movie"] * 2,
            "id": [str(i) for i in range(12)],
            "rating": [0.1, -3.0, 0.2, 0.0, 0.4, 0.3, 0.0, 2.5, -0.1, 0.2, 1.0, 1.0],
            "text": [f"text {i}" for i in range(12)],
        }
    )
    c = source_corpus(snippets, n_per_class=3, max_abs_rating=1.0, seed=0)
    assert len(c.texts) == 6 and sorted(c.labels.tolist()) == [-1, -1, -1, 1, 1, 1]
    assert set(c.frame.loc[c.frame["label"] > 0, "source"]) == {"nyt"}
    assert c.frame["rating"].abs().max() <= 1.0
    again = source_corpus(snippets, n_per_class=3, max_abs_rating=1.0, seed=0)
    assert again.texts == c.texts
    with pytest.raises(SteerInputError, match="two collections"):
        source_corpus(snippets, "nyt", "nyt")
    with pytest.raises(SteerInputError, match="amazon"):
        source_corpus(snippets, "amazon", "tweets")


def test_toxicity_and_wordlist_scorers() -> None:
    pytest.importorskip("profanity_check")
    pytest.importorskip("better_profanity")
    tox, wl = resolve_scorers(["toxicity", "wordlist"])
    texts = ["you are a fucking idiot", "a lovely day at the beach", "this sh!t again"]
    s = tox(texts)
    assert s[0] > 0.5 > s[1] and tox.kind == "offensive" and tox.name == "toxicity"
    assert "Davidson" in tox.note  # the circularity is recorded with the scores
    assert wl(texts).tolist() == [1.0, 0.0, 1.0] and wl.kind == "offensive"


def test_toxicity_scorer_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    from steer.evaluation import scorers

    real = importlib.import_module

    def fake(name: str, *a: object) -> object:
        if name == "profanity_check":
            raise ImportError("No module named 'profanity_check'")
        return real(name, *a)  # type: ignore[arg-type]

    monkeypatch.setattr(scorers.importlib, "import_module", fake)
    with pytest.raises(ImportError, match=r"pip install 'causalmem\[detox\]'"):
        scorers.toxicity_scorer()
