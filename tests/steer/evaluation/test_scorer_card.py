"""Tests of the scorer card: AUROC against scikit-learn and hand counts, file readers, protocol."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lmecon.result import check_result
from steer.errors import SteerInputError
from steer.evaluation.scorer_card import (
    LabelledSet,
    auroc,
    read_ethos,
    read_jigsaw_sample,
    scorer_card,
)
from steer.evaluation.scorers import CIRCULARITY_NOTE, Scorer, wordlist_scorer


def test_auroc_matches_sklearn_with_ties() -> None:
    sklearn_metrics = pytest.importorskip("sklearn.metrics")  # independent oracle
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300).astype(bool)
    s = np.round(rng.normal(size=300) + 0.8 * y, 1)  # many ties
    assert auroc(y, s) == pytest.approx(sklearn_metrics.roc_auc_score(y, s), abs=1e-12)


def test_auroc_by_hand() -> None:
    # positives 0.35, 0.8; negatives 0.1, 0.4: pairs (0.35>0.1), (0.35<0.4), (0.8>both): 3 of 4
    assert auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
    assert auroc([0, 1], [0.5, 0.5]) == 0.5  # a tie counts one half
    assert math.isnan(auroc([1, 1], [0.1, 0.2]))
    with pytest.raises(SteerInputError, match="finite"):
        auroc([0, 1], [0.1, math.nan])
    with pytest.raises(SteerInputError, match="shapes"):
        auroc([0, 1], [0.1])


def test_readers(tmp_path: Path) -> None:
    jig = tmp_path / "jig.csv"
    pd.DataFrame({"comment_text": ["a", "b", "c"], "toxic": [1, 0, 0], "severe_toxic": 0,
                  "obscene": [0, 1, 0], "threat": 0, "insult": 0,
                  "identity_hate": 0}).to_csv(jig, index=False)  # fmt: skip
    assert read_jigsaw_sample(jig).labels.tolist() == [True, False, False]
    assert read_jigsaw_sample(jig, label="any").labels.tolist() == [True, True, False]
    eth = tmp_path / "ethos.csv"
    eth.write_text("comment;isHate\nx;1.0\ny;0.333\nz;0.5\n")
    e = read_ethos(eth)
    assert e.labels.tolist() == [True, False, True] and e.texts == ("x", "y", "z")
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\na,1\n")
    with pytest.raises(SteerInputError, match="lacks column"):
        read_jigsaw_sample(bad)
    with pytest.raises(SteerInputError, match="does not exist"):
        read_ethos(tmp_path / "none.csv")


def _count_scorer(words: Sequence[str], name: str) -> Scorer:
    def fn(texts: Sequence[str]) -> np.ndarray:
        return np.array([sum(w in t.split() for w in words) / 2 for t in texts], dtype=float)

    return Scorer(name, "offensive", fn, 0.5, False, "test", "counts listed words / 2")


def test_scorer_card_values_and_protocol() -> None:
    texts = ("you idiot fool", "idiot", "nice day", "a fool", "lovely", "hello idiot fool")
    labels = np.array([1, 1, 0, 1, 0, 0], dtype=bool)
    sc = _count_scorer(["idiot", "fool"], "words")
    card = scorer_card([LabelledSet("toy", texts, labels, "hand-made")], [sc, wordlist_scorer()])
    row = card.tidy().set_index("scorer").loc["words"]
    # scores 1, .5, 0, .5, 0, 1; positives {1, .5, .5} vs negatives {0, 0, 1}:
    # 1 vs (0,0,1): 2.5; .5 vs (0,0,1): 2 each -> 6.5 / 9
    assert row["auroc"] == pytest.approx(6.5 / 9)
    # hits (> 0.5): T F F F F T vs labels T T F T F F: right on rows 0, 2, 4 -> 3 / 6
    assert row["accuracy"] == pytest.approx(0.5)
    assert row["n"] == 6 and row["n_positive"] == 3
    wl = card.tidy().set_index("scorer").loc["wordlist"]
    assert 0 <= wl["auroc"] <= 1
    check_result(card)
    assert CIRCULARITY_NOTE in card.summary()
    assert list(card.wide().columns) == ["scorer", "auroc_toy", "accuracy_toy"]
    assert card.glance()["best_scorer_toy"].iloc[0] == "words"
    card.plot().to_dict()
    with pytest.raises(SteerInputError, match="distinct"):
        scorer_card([LabelledSet("toy", texts, labels)], [sc, sc])
    with pytest.raises(SteerInputError, match="labels of shape"):
        LabelledSet("bad", ("a",), np.array([True, False]))
