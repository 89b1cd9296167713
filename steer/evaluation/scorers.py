"""Offline text scorers for steered generations: sentiment and offensive language.

Every scorer maps a list of texts to one float per text and says what counts as a "hit"
(positive sentiment, offensive text). All of them run offline from their PyPI packages:

- ``"vader"``: VADER compound in [-1, 1] (``vaderSentiment``; positive when >= 0.05, the
  authors' threshold).
- ``"textblob"``: TextBlob's pattern-lexicon polarity in [-1, 1] (``textblob``, MIT; positive
  when > 0).
- ``"afinn"``: sum of AFINN-111 word valences (``afinn==0.1``; its PyPI metadata says GPL;
  positive when > 0).
- :func:`naive_bayes_scorer`: a style classifier (multinomial naive Bayes on words) fitted on
  two labelled text collections, e.g. NYT editorials vs tweets as a formality scorer; scores
  are P(first collection) in [0, 1], a hit when > 0.5.
- ``"offensive"``: probability of offensive language from ``alt-profanity-check`` (a calibrated
  linear SVM; it pins scikit-learn and joblib exactly, so it is optional) when installed, else
  0/1 from the ``better-profanity`` word list (a text is offensive when it contains a listed
  word, including leetspeak variants). Offensive when > 0.5.
- ``"toxicity"`` (:func:`toxicity_scorer`): the detoxification experiment's **primary**
  scorer, ``alt-profanity-check``'s probability (optional extra ``detox``; no fallback: a clear
  error with the install command when it is missing). Toxic when > 0.5.
- ``"wordlist"`` (:func:`wordlist_scorer`): the **independent** scorer beside it, 0/1 from the
  ``better-profanity`` word list (no training data at all). Toxic when > 0.5.

Circularity: ``alt-profanity-check`` (and ``hatesonar``) were trained partly on the Davidson
et al. tweets that :mod:`steer.resources.toxicity` uses to train the detoxification steer, so a
steer trained on Davidson and scored by them is not judged independently; report the word-list
scorer beside it (:data:`CIRCULARITY_NOTE`). :mod:`steer.evaluation.scorer_card` measures both
on held-out human labels (a Jigsaw sample and ETHOS).

Deviation from the paper: it scores sentiment with HF's DistilBERT-SST2 pipeline and toxicity
with Google's Perspective API (non-stationary, online). Neither is available offline, so the
numbers here are **not** comparable with the paper's tables; they are comparable across steer
values, models and runs of this package.
"""

from __future__ import annotations

import functools
import importlib.metadata
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from steer._types import OffensiveBackend, ScorerKind, check_literal
from steer.errors import SteerInputError

__all__ = [
    "CIRCULARITY_NOTE",
    "DETOX_INSTALL",
    "SCORER_NAMES",
    "OffensiveBackend",
    "Scorer",
    "afinn_scorer",
    "get_scorer",
    "naive_bayes_scorer",
    "offensive_scorer",
    "resolve_scorers",
    "textblob_scorer",
    "toxicity_scorer",
    "vader_scorer",
    "wordlist_scorer",
]

SCORER_NAMES = ("vader", "textblob", "afinn", "offensive", "toxicity", "wordlist")

DETOX_INSTALL = "pip install 'causalmem[detox]'  (or: pip install alt-profanity-check)"
"""How to install the primary toxicity scorer."""

CIRCULARITY_NOTE = (
    "Circularity: the primary scorer (alt-profanity-check) was trained partly on the Davidson "
    "et al. tweets the detoxification steer is trained on, so it is not an independent judge "
    "of that steer; the better-profanity word list (no training data) is reported beside it, "
    "and both are checked on held-out human labels (Jigsaw sample, ETHOS) in the scorer card."
)
"""The sentence every detoxification report states."""


@dataclass(frozen=True, eq=False)
class Scorer:
    """A text scorer.

    Attributes
    ----------
    name
        Column name of its scores (``vader``, ``textblob``, ``afinn``, ``offensive``).
    kind
        ``"sentiment"`` (higher = more positive) or ``"offensive"`` (higher = more offensive).
    fn
        Maps a list of texts to a float array of the same length.
    threshold
        A text is a hit (positive / offensive) when its score is ``>= threshold``
        (``inclusive``) or ``> threshold``.
    inclusive
        See ``threshold``.
    source
        The package and version that scored, for provenance (e.g. ``"vaderSentiment 3.3.2"``).
    note
        What the score is, and how it deviates from the paper's scorer.
    """

    name: str
    kind: ScorerKind
    fn: Callable[[Sequence[str]], np.ndarray]
    threshold: float
    inclusive: bool
    source: str
    note: str

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        """Score texts; returns a float64 array of ``len(texts)``."""
        if isinstance(texts, str):
            raise SteerInputError("pass a list of texts, not a single string.")
        texts = list(texts)
        out = np.asarray(self.fn(texts), dtype=np.float64)
        if out.shape != (len(texts),):
            raise RuntimeError(f"scorer {self.name} returned shape {out.shape} for {len(texts)}.")
        return out

    def hits(self, scores: np.ndarray) -> np.ndarray:
        """Boolean array: which scores count as positive (sentiment) or offensive."""
        s = np.asarray(scores, dtype=np.float64)
        return s >= self.threshold if self.inclusive else s > self.threshold


def _version(dist: str) -> str:
    try:
        return f"{dist} {importlib.metadata.version(dist)}"
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - imported but no metadata
        return dist


def _need(module: str, pip: str, what: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"the {what} scorer needs `pip install {pip}`.") from exc


def _each(score: Callable[[str], float]) -> Callable[[Sequence[str]], np.ndarray]:
    """Make a scorer function that applies ``score`` to every text."""

    def fn(texts: Sequence[str]) -> np.ndarray:
        return np.array([score(t) for t in texts])

    return fn


@functools.lru_cache(maxsize=1)
def _vader() -> Any:
    mod = _need("vaderSentiment.vaderSentiment", "vaderSentiment==3.3.2", "vader")
    return mod.SentimentIntensityAnalyzer()


def vader_scorer() -> Scorer:
    """VADER compound sentiment in [-1, 1]; positive when >= 0.05 (Hutto & Gilbert, 2014)."""
    analyzer = _vader()
    fn = _each(lambda t: analyzer.polarity_scores(t)["compound"])
    return Scorer(
        "vader", "sentiment", fn, 0.05, True, _version("vaderSentiment"),
        "VADER lexicon compound score in [-1, 1] (positive: >= 0.05); the paper uses the "
        "DistilBERT-SST2 classifier.",
    )  # fmt: skip


def textblob_scorer() -> Scorer:
    """TextBlob (pattern lexicon) polarity in [-1, 1]; positive when > 0."""
    mod = _need("textblob", "textblob==0.19.0", "textblob")
    fn = _each(lambda t: mod.TextBlob(t).sentiment.polarity)
    return Scorer(
        "textblob", "sentiment", fn, 0.0, False, _version("textblob"),
        "TextBlob PatternAnalyzer polarity in [-1, 1] (positive: > 0); a second lexicon "
        "scorer, not the paper's classifier.",
    )  # fmt: skip


@functools.lru_cache(maxsize=1)
def _afinn() -> Any:
    return _need("afinn", "afinn==0.1", "afinn").Afinn()


def afinn_scorer() -> Scorer:
    """Sum of AFINN-111 valences (integers -5..5 per word); positive when > 0."""
    a = _afinn()
    fn = _each(lambda t: float(a.score(t)))
    return Scorer(
        "afinn", "sentiment", fn, 0.0, False, _version("afinn"),
        "AFINN-111 summed word valence (positive: > 0); unbounded, so compare only shares and "
        "signs across settings.",
    )  # fmt: skip


@functools.lru_cache(maxsize=1)
def _word_list() -> Any:
    mod = _need("better_profanity", "better-profanity==0.7.0", "offensive (word-list)")
    p = mod.Profanity()
    p.load_censor_words()
    return p


def _has_profanity_check() -> bool:
    try:
        importlib.import_module("profanity_check")
    except ImportError:
        return False
    return True


def offensive_scorer(backend: OffensiveBackend = "auto") -> Scorer:
    """Offensive-language score: ``alt-profanity-check`` probability, else a 0/1 word list.

    Parameters
    ----------
    backend
        ``"profanity-check"`` (needs ``alt-profanity-check``), ``"word-list"`` (needs
        ``better-profanity``) or ``"auto"`` (the first one installed, in that order).

    Returns
    -------
    Scorer
        Named ``"offensive"``; a text is offensive when its score is > 0.5. Both backends are
        a deviation from the paper's Perspective API TOXICITY score.
    """
    check_literal("backend", backend, OffensiveBackend)
    if backend == "profanity-check" or (backend == "auto" and _has_profanity_check()):
        mod = _need("profanity_check", "alt-profanity-check", "offensive (profanity-check)")

        def fn_svm(texts: Sequence[str]) -> np.ndarray:
            return np.asarray(mod.predict_prob(list(texts)), dtype=np.float64)

        return Scorer(
            "offensive", "offensive", fn_svm, 0.5, False, _version("alt-profanity-check"),
            "alt-profanity-check probability of offensive language (linear SVM on word "
            "n-grams); DEVIATION: the paper uses the Perspective API TOXICITY score.",
        )  # fmt: skip
    wl = _word_list()
    fn_words = _each(lambda t: 1.0 if wl.contains_profanity(t) else 0.0)
    return Scorer(
        "offensive", "offensive", fn_words, 0.5, False, _version("better-profanity"),
        "better-profanity word list (1 if a listed word or a leetspeak variant occurs, else 0); "
        "DEVIATION: the paper uses the Perspective API TOXICITY probability, so max "
        "offensiveness here is a 0/1 indicator, not a probability.",
    )  # fmt: skip


def toxicity_scorer() -> Scorer:
    """Primary toxicity scorer: ``alt-profanity-check``'s probability of offensive language.

    A calibrated linear SVM on word n-grams whose weights ship in the wheel (trained on data
    that include the Davidson et al. tweets: see :data:`CIRCULARITY_NOTE`). No fallback.

    Returns
    -------
    Scorer
        Named ``"toxicity"``, ``kind="offensive"``; toxic when > 0.5.

    Raises
    ------
    ImportError
        When ``alt-profanity-check`` is not installed (the message gives the install command).
    """
    try:
        mod = importlib.import_module("profanity_check")
    except ImportError as exc:
        raise ImportError(
            f"the primary toxicity scorer needs alt-profanity-check: {DETOX_INSTALL}."
        ) from exc

    def fn(texts: Sequence[str]) -> np.ndarray:
        return np.asarray(mod.predict_prob(list(texts)), dtype=np.float64)

    return Scorer(
        "toxicity", "offensive", fn, 0.5, False, _version("alt-profanity-check"),
        "alt-profanity-check probability of offensive language (linear SVM on word n-grams, "
        "trained partly on the Davidson tweets: circular for a Davidson steer); DEVIATION: the "
        "paper uses the Perspective API TOXICITY score.",
    )  # fmt: skip


def wordlist_scorer() -> Scorer:
    """Independent toxicity scorer: 1 if the ``better-profanity`` word list matches, else 0.

    Returns
    -------
    Scorer
        Named ``"wordlist"``, ``kind="offensive"``; toxic when > 0.5 (i.e. a listed word or a
        leetspeak variant occurs).
    """
    wl = _word_list()
    fn = _each(lambda t: 1.0 if wl.contains_profanity(t) else 0.0)
    return Scorer(
        "wordlist", "offensive", fn, 0.5, False, _version("better-profanity"),
        "better-profanity word list (1 if a listed word or leetspeak variant occurs, else 0); "
        "independent of any training data; DEVIATION: the paper uses the Perspective API.",
    )  # fmt: skip


_WORD = re.compile(r"[a-z0-9']+|[@#!?:;()]")


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def naive_bayes_scorer(
    positive: Sequence[str],
    negative: Sequence[str],
    *,
    name: str = "style",
    alpha: float = 1.0,
    note: str = "",
) -> Scorer:
    """Fit a multinomial naive Bayes text classifier and return it as a scorer.

    Tokens: lower-cased words, digits and apostrophes, plus ``@ # ! ? : ; ( )`` as their own
    tokens (style markers of informal text). Equal class priors; Laplace smoothing ``alpha``.
    ``score(text) = P(positive | text)``; a text with no known token scores 0.5.

    Parameters
    ----------
    positive, negative
        Training texts of the two classes (keep them disjoint from anything you evaluate).
    name
        Column name of the scores (e.g. ``"formality"``).
    alpha
        Additive smoothing (> 0).
    note
        Description recorded in the evaluation's provenance.

    Returns
    -------
    Scorer
        ``kind="sentiment"`` (reported as the mean probability and the share > 0.5).
    """
    if isinstance(positive, str) or isinstance(negative, str):
        raise SteerInputError("pass lists of training texts, not single strings.")
    if not positive or not negative:
        raise SteerInputError("naive_bayes_scorer needs training texts of both classes.")
    if not alpha > 0:
        raise SteerInputError(f"alpha must be > 0; got {alpha}.")
    counts: list[dict[str, int]] = [{}, {}]
    for c, texts in enumerate((positive, negative)):
        for t in texts:
            for w in _words(t):
                counts[c][w] = counts[c].get(w, 0) + 1
    vocab = sorted(set(counts[0]) | set(counts[1]))
    index = {w: i for i, w in enumerate(vocab)}
    mat = np.array([[cnt.get(w, 0) for w in vocab] for cnt in counts], dtype=np.float64)
    logp = np.log(mat + alpha) - np.log(mat.sum(1, keepdims=True) + alpha * len(vocab))
    diff = logp[0] - logp[1]  # log-likelihood ratio of one occurrence of each word

    def fn(texts: Sequence[str]) -> np.ndarray:
        llr = np.array([sum(diff[index[w]] for w in _words(t) if w in index) for t in texts])
        return 1.0 / (1.0 + np.exp(-np.clip(llr, -700, 700)))

    return Scorer(
        name, "sentiment", fn, 0.5, False, f"naive Bayes ({len(positive)}+{len(negative)} texts, "
        f"{len(vocab)} tokens)", note or f"multinomial naive Bayes P({name}) in [0, 1] "
        "(hit: > 0.5).",
    )  # fmt: skip


_FACTORIES: dict[str, Callable[[], Scorer]] = {
    "vader": vader_scorer,
    "textblob": textblob_scorer,
    "afinn": afinn_scorer,
    "offensive": offensive_scorer,
    "toxicity": toxicity_scorer,
    "wordlist": wordlist_scorer,
}


def get_scorer(name: str) -> Scorer:
    """Return the scorer called ``name`` (one of :data:`SCORER_NAMES`)."""
    if name not in _FACTORIES:
        raise SteerInputError(f"unknown scorer {name!r}; use one of {list(SCORER_NAMES)}.")
    return _FACTORIES[name]()


def resolve_scorers(scorers: Sequence[str | Scorer]) -> tuple[Scorer, ...]:
    """Turn names and :class:`Scorer` objects into scorers with distinct names."""
    if isinstance(scorers, str):
        scorers = (scorers,)
    out = tuple(s if isinstance(s, Scorer) else get_scorer(s) for s in scorers)
    names = [s.name for s in out]
    if len(set(names)) != len(names):
        raise SteerInputError(f"scorer names must be distinct; got {names}.")
    reserved = {"perplexity", "sample", "seed", "prompt", "value", "epsilon", "continuation"}
    bad = sorted(set(names) & reserved)
    if bad:
        raise SteerInputError(f"scorer names {bad} clash with result columns; rename them.")
    return out
