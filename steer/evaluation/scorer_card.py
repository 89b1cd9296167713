"""A scorer card: how well each offline toxicity scorer agrees with held-out human labels.

The paper scores toxicity with the Perspective API. Offline we use other scorers
(:mod:`steer.evaluation.scorers`), so every detoxification report states how good they are: the
area under the ROC curve (AUROC, threshold-free) and the accuracy at the scorer's own threshold
on human-labelled sets that none of the steer's training data come from:

- a Jigsaw sample (:func:`read_jigsaw_sample`: 101 Wikipedia talk-page comments with the six
  Jigsaw labels; positive = ``toxic``, the label family of the paper's detox training data);
- ETHOS binary (:func:`read_ethos`: 998 comments, ``isHate`` in [0, 1] = share of annotators;
  positive = ``isHate >= 0.5``). GPL-3.0: read it from a path, never ship it.

AUROC is the Mann-Whitney statistic (ties count one half), with the Hanley-McNeil (1982)
standard error; accuracy has the binomial standard error.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from lmecon.provenance import utc_now
from lmecon.result import ResultMixin, frozen_mapping
from steer.errors import SteerInputError
from steer.evaluation.scorers import CIRCULARITY_NOTE, Scorer

__all__ = [
    "LabelledSet",
    "ScorerCard",
    "auroc",
    "read_ethos",
    "read_jigsaw_sample",
    "scorer_card",
]

JIGSAW_LABELS = ("toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate")


@dataclass(frozen=True, eq=False)
class LabelledSet:
    """Texts with binary human labels.

    Attributes
    ----------
    name
        Short name (``"jigsaw"``, ``"ethos"``).
    texts
        The texts.
    labels
        ``True`` = toxic / hateful.
    source
        Where the set came from and how labels were binarised.
    """

    name: str
    texts: tuple[str, ...]
    labels: np.ndarray = field(repr=False)
    source: str = ""

    def __post_init__(self) -> None:
        y = np.asarray(self.labels, dtype=bool)
        if y.shape != (len(self.texts),):
            raise SteerInputError(
                f"{self.name}: {len(self.texts)} texts but labels of shape {y.shape}."
            )
        y.setflags(write=False)
        object.__setattr__(self, "labels", y)
        object.__setattr__(self, "texts", tuple(str(t) for t in self.texts))


def read_jigsaw_sample(path: str | os.PathLike[str], *, label: str = "toxic") -> LabelledSet:
    """Read a Jigsaw-format CSV (``comment_text`` + the six label columns).

    Parameters
    ----------
    path
        The CSV (e.g. ``jigsaw-sample/test_examples.csv`` of IBM/MAX-Toxic-Comment-Classifier).
    label
        The positive label column (default ``toxic``), or ``"any"`` for any of the six.

    Returns
    -------
    LabelledSet
        Named ``"jigsaw"``.
    """
    df = _read(path, sep=",")
    cols = list(JIGSAW_LABELS) if label == "any" else [label]
    missing = [c for c in ["comment_text", *cols] if c not in df.columns]
    if missing:
        raise SteerInputError(f"{path} lacks column(s) {missing}; expected comment_text and "
                              f"{list(JIGSAW_LABELS)}.")  # fmt: skip
    y = np.asarray((df[cols].to_numpy(dtype=np.float64) > 0).any(axis=1))
    return LabelledSet("jigsaw", tuple(df["comment_text"].astype(str)), y,
                       f"{Path(path).name}: positive = {label}")  # fmt: skip


def read_ethos(path: str | os.PathLike[str], *, threshold: float = 0.5) -> LabelledSet:
    """Read ETHOS binary (``comment;isHate``, semicolon-separated; isHate in [0, 1]).

    Parameters
    ----------
    path
        ``Ethos_Dataset_Binary.csv``.
    threshold
        A comment is hateful when ``isHate >= threshold`` (share of annotators).

    Returns
    -------
    LabelledSet
        Named ``"ethos"``.
    """
    df = _read(path, sep=";")
    missing = [c for c in ("comment", "isHate") if c not in df.columns]
    if missing:
        raise SteerInputError(f"{path} lacks column(s) {missing}; expected 'comment;isHate'.")
    score = pd.to_numeric(df["isHate"], errors="coerce").to_numpy(dtype=np.float64)
    if not np.isfinite(score).all():
        raise SteerInputError(f"{path}: isHate must be numbers in [0, 1].")
    return LabelledSet("ethos", tuple(df["comment"].astype(str)), score >= threshold,
                       f"{Path(path).name}: positive = isHate >= {threshold:g}")  # fmt: skip


def _read(path: str | os.PathLike[str], sep: str) -> pd.DataFrame:
    p = Path(path)
    if not p.is_file():
        raise SteerInputError(f"{p} does not exist.")
    return pd.read_csv(p, sep=sep)


def auroc(labels: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """Area under the ROC curve: P(score of a positive > score of a negative), ties count 1/2.

    Parameters
    ----------
    labels
        Binary labels (``True`` = positive).
    scores
        Higher = more positive.

    Returns
    -------
    float
        NaN when a class is empty.

    Examples
    --------
    >>> auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.75
    """
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    if y.shape != s.shape or y.ndim != 1:
        raise SteerInputError(f"labels {y.shape} and scores {s.shape} must be equal 1-d shapes.")
    if not np.isfinite(s).all():
        raise SteerInputError("scores must be finite.")
    n1, n0 = int(y.sum()), int((~y).sum())
    if n1 == 0 or n0 == 0:
        return math.nan
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_s = s[order]
    # average ranks of ties (1-based)
    _, start, counts = np.unique(sorted_s, return_index=True, return_counts=True)
    avg = start + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[y].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def _hanley_mcneil(a: float, n1: int, n0: int) -> float:
    if not math.isfinite(a) or n1 == 0 or n0 == 0:
        return math.nan
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    var = (a * (1 - a) + (n1 - 1) * (q1 - a * a) + (n0 - 1) * (q2 - a * a)) / (n1 * n0)
    return math.sqrt(max(var, 0.0))


@dataclass(frozen=True, eq=False)
class ScorerCard(ResultMixin):
    """AUROC and accuracy of toxicity scorers on held-out human labels.

    Attributes
    ----------
    table
        One row per (scorer, dataset): ``scorer, dataset, n, n_positive, auroc, auroc_se,
        accuracy, accuracy_se, threshold, source``.
    spec
        Scorers, datasets and how labels were binarised.
    provenance
        Time, scorer sources and the circularity note.
    """

    table: pd.DataFrame = field(repr=False)
    spec: Mapping[str, Any] = field(default_factory=dict)
    provenance: Mapping[str, Any] = field(default_factory=dict)

    def tidy(self) -> pd.DataFrame:
        """One row per (scorer, dataset) (a copy of :attr:`table`)."""
        return self.table.copy()

    def glance(self) -> pd.DataFrame:
        """One row: number of scorers and datasets, best AUROC per dataset."""
        t = self.table
        row: dict[str, Any] = {"n_scorers": t["scorer"].nunique(),
                               "n_datasets": t["dataset"].nunique()}  # fmt: skip
        for d, g in t.groupby("dataset", sort=False):
            best = g.iloc[int(np.argmax(g["auroc"].to_numpy()))]
            row[f"best_auroc_{d}"] = float(best["auroc"])
            row[f"best_scorer_{d}"] = str(best["scorer"])
        return pd.DataFrame([row])

    def _table(self) -> pd.DataFrame:
        t = self.table
        return t[["scorer", "dataset", "n", "n_positive", "auroc", "auroc_se", "accuracy",
                  "accuracy_se"]]  # fmt: skip

    def _caption(self) -> str | None:
        return "Offline toxicity scorers on held-out human labels. " + CIRCULARITY_NOTE

    def summary(self) -> str:
        """Return the card as a Markdown table with the circularity note."""
        return self.to_markdown() + "\n\n" + CIRCULARITY_NOTE

    def wide(self) -> pd.DataFrame:
        """One row per scorer: ``auroc_<dataset>`` and ``accuracy_<dataset>`` columns."""
        t = self.table
        a = t.pivot(index="scorer", columns="dataset", values="auroc").add_prefix("auroc_")
        b = t.pivot(index="scorer", columns="dataset", values="accuracy").add_prefix("accuracy_")
        out = a.join(b).reset_index()
        out.columns.name = None
        order = list(dict.fromkeys(t["scorer"]))
        return out.set_index("scorer").loc[order].reset_index()

    def plot(self, **options: Any) -> Any:
        """Dot plot of AUROC per scorer and dataset with ±1.96 SE whiskers (Altair).

        One panel per dataset; the dashed line marks chance (0.5).
        """
        from lmecon.charts import alt

        a = alt()
        t = self.table.assign(
            lo=lambda d: (d["auroc"] - 1.96 * d["auroc_se"]).clip(0, 1),
            hi=lambda d: (d["auroc"] + 1.96 * d["auroc_se"]).clip(0, 1),
        )
        sc = a.Scale(domain=[0.3, 1.0], clamp=True, zero=False)
        y = a.Y("auroc:Q", title="AUROC", scale=sc)
        x = a.X("scorer:N", title=None)
        pts = a.Chart().mark_point(filled=True, size=80).encode(x=x, y=y, color="scorer:N")
        bars = (
            a.Chart().mark_rule().encode(x=x, y=a.Y("lo:Q", scale=sc), y2="hi:Q", color="scorer:N")
        )
        chance = a.Chart().mark_rule(strokeDash=[4, 4], color="gray").encode(y=a.datum(0.5))
        layer = a.layer(chance, bars, pts, data=t).properties(
            width=options.get("width", 150), height=options.get("height", 200)
        )
        return layer.facet(column=a.Column("dataset:N", title=None)).properties(
            title=options.get("title", "Scorer card: AUROC on held-out human labels")
        )


def scorer_card(
    sets: Sequence[LabelledSet], scorers: Sequence[Scorer], *, batch_size: int = 0
) -> ScorerCard:
    """Score every labelled set with every scorer; AUROC and accuracy against the labels.

    Parameters
    ----------
    sets
        Held-out labelled sets (:func:`read_jigsaw_sample`, :func:`read_ethos`, or your own).
    scorers
        :class:`~steer.evaluation.scorers.Scorer` objects (``kind="offensive"``: higher = more
        toxic). A detector built with :func:`steer.evaluation.detector.steer_detector` works too.
    batch_size
        Texts per scorer call (0: all at once).

    Returns
    -------
    ScorerCard
        One row per (scorer, dataset).
    """
    if not sets or not scorers:
        raise SteerInputError("scorer_card needs at least one labelled set and one scorer.")
    names = [s.name for s in scorers]
    if len(set(names)) != len(names):
        raise SteerInputError(f"scorer names must be distinct; got {names}.")
    rows = []
    for ls in sets:
        y = ls.labels
        for sc in scorers:
            texts = list(ls.texts)
            step = batch_size or len(texts)
            s = np.concatenate([sc(texts[i : i + step]) for i in range(0, len(texts), step)])
            a = auroc(y, s)
            acc = float(np.mean(sc.hits(s) == y))
            n1, n0 = int(y.sum()), int((~y).sum())
            rows.append({
                "scorer": sc.name, "dataset": ls.name, "n": len(y), "n_positive": n1,
                "auroc": a, "auroc_se": _hanley_mcneil(a, n1, n0), "accuracy": acc,
                "accuracy_se": math.sqrt(acc * (1 - acc) / len(y)),
                "threshold": sc.threshold, "source": sc.source,
            })  # fmt: skip
    spec = {"scorers": tuple(names), "datasets": tuple(ls.name for ls in sets),
            "labels": tuple(ls.source for ls in sets)}  # fmt: skip
    prov = {"created_at": utc_now(), "scorer_sources": {s.name: s.source for s in scorers},
            "scorer_notes": {s.name: s.note for s in scorers},
            "circularity": CIRCULARITY_NOTE}  # fmt: skip
    return ScorerCard(pd.DataFrame(rows), frozen_mapping(spec), frozen_mapping(prov))
