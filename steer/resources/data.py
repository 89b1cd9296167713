"""Sentiment-labelled English text without the hub: VADER's human-rated snippets.

The ``vaderSentiment==3.3.2`` sdist on PyPI (MIT) ships
``additional_resources/hutto_ICWSM_2014.tar.gz`` (Hutto & Gilbert, ICWSM 2014) with ~23.7k
sentence-level snippets, each rated by ~20 people on -4..+4: movie reviews (10,605), tweets
(4,200), Amazon reviews (3,708) and NYT editorials (5,190). Each ``*_GroundTruth.txt`` line is
``id<TAB>mean_rating<TAB>text``. The sdist is downloaded once by
:func:`lmecon.vader.fetch_vader_sdist` (``pip download --no-deps --no-binary :all:``,
pinned sha256, ``provenance.json``), shared with causalmem's lab. Ratings map to labels in
[-1, 1] (rating / 4); :func:`source_corpus` labels by collection instead (e.g. NYT editorials
vs tweets: a formal / informal style steer).

Evaluation prompts: :func:`read_prompts` reads the paper's prompt files (LM-Steer / DExperts
JSONL with ``{"prompt": {"text": ...}}``) and :data:`BUILTIN_PROMPTS` is a small built-in set
of neutral, positive and negative sentence openings for runs without them.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lmecon import vader as _corpus
from steer._types import VADER_SOURCES, LabelMode, VaderSource, check_literal
from steer.errors import ChecksumError, FetchError, SteerInputError

__all__ = [
    "BUILTIN_PROMPTS",
    "SentimentCorpus",
    "builtin_prompts",
    "fetch_vader_sdist",
    "neutral_prompts",
    "parse_snippets",
    "rating_to_label",
    "read_prompts",
    "read_vader_archive",
    "sentiment_corpus",
    "source_corpus",
    "vader_snippets",
]

VADER_REQUIREMENT = "vaderSentiment==3.3.2"
VADER_SDIST = "vaderSentiment-3.3.2.tar.gz"
VADER_SDIST_SHA256 = _corpus.VADER_SDIST_SHA256
_MEMBER = "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz"
_FILES = {
    "movie": "movieReviewSnippets_GroundTruth.txt",
    "tweets": "tweets_GroundTruth.txt",
    "amazon": "amazonReviewSnippets_GroundTruth.txt",
    "nyt": "nytEditorialSnippets_GroundTruth.txt",
}
MAX_RATING = 4.0


def fetch_vader_sdist(cache_dir: str | Path | None = None) -> Path:
    """Return the cached ``vaderSentiment-3.3.2.tar.gz``, downloading it from PyPI once.

    One implementation for the whole distribution: this calls
    :func:`lmecon.vader.fetch_vader_sdist` (``pip download --no-deps --no-binary
    :all:``, pinned sha256, ``provenance.json``, atomic move into the cache), so causalmem's
    mini-Pythia lab and steer share one copy at ``<root>/corpora/vaderSentiment-3.3.2/``.

    Parameters
    ----------
    cache_dir
        Cache root. Default: ``$STEER_CACHE`` when set, else causalmem's cache root
        (``$CAUSALMEM_CACHE`` or ``~/.cache/causalmem``).

    Returns
    -------
    pathlib.Path
        The sdist, verified against its pinned sha256.

    Raises
    ------
    ChecksumError
        If the downloaded file does not have the pinned sha256.
    FetchError
        If pip cannot download it (no network and no cached copy).
    """
    root = cache_dir if cache_dir is not None else os.environ.get("STEER_CACHE") or None
    try:
        path = _corpus.fetch_vader_sdist(None if root is None else Path(root).expanduser())
    except RuntimeError as exc:
        cls = ChecksumError if "checksum mismatch" in str(exc) else FetchError
        raise cls(str(exc)) from exc
    return path


def _decode(raw: bytes) -> str:
    # The files are UTF-8 (a few accented names); latin-1 is the fallback for any byte soup.
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def parse_snippets(raw: bytes, source: str) -> pd.DataFrame:
    """Parse one ``*_GroundTruth.txt`` file (``id<TAB>mean_rating<TAB>text`` per line).

    Parameters
    ----------
    raw
        The file's bytes.
    source
        Name recorded in the ``source`` column.

    Returns
    -------
    pandas.DataFrame
        Columns ``source, id, rating, text`` (blank lines skipped).

    Raises
    ------
    SteerInputError
        On a line that does not have three tab-separated fields or a numeric rating.
    """
    rows = []
    for n, line in enumerate(_decode(raw).splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split("\t", 2)
        if len(parts) != 3:
            raise SteerInputError(f"{source} line {n}: expected id<TAB>rating<TAB>text: {line!r}")
        try:
            rating = float(parts[1])
        except ValueError as exc:
            raise SteerInputError(
                f"{source} line {n}: rating {parts[1]!r} is not a number"
            ) from exc
        rows.append((source, parts[0].strip(), rating, parts[2].strip()))
    return pd.DataFrame(rows, columns=["source", "id", "rating", "text"])


def read_vader_archive(
    sdist: str | Path,
    sources: Sequence[VaderSource] = VADER_SOURCES,  # type: ignore[assignment]
) -> pd.DataFrame:
    """Read the human-rated snippets from the vaderSentiment sdist.

    Parameters
    ----------
    sdist
        Path of ``vaderSentiment-3.3.2.tar.gz``.
    sources
        Any of ``"movie"``, ``"tweets"``, ``"amazon"``, ``"nyt"``.

    Returns
    -------
    pandas.DataFrame
        Columns ``source, id, rating, text``.
    """
    for s in sources:
        check_literal("source", s, VaderSource)
    try:
        with tarfile.open(sdist, "r:gz") as outer:
            member = outer.extractfile(_MEMBER)
            if member is None:
                raise FetchError(f"{sdist} has no {_MEMBER}.")
            inner_bytes = member.read()
    except (tarfile.TarError, KeyError) as exc:
        raise FetchError(f"{sdist} is not the vaderSentiment 3.3.2 sdist: {exc}") from exc
    frames = []
    with tarfile.open(fileobj=io.BytesIO(inner_bytes), mode="r:gz") as inner:
        for s in sources:
            f = inner.extractfile(f"hutto_ICWSM_2014/{_FILES[s]}")
            if f is None:
                raise FetchError(f"{_MEMBER} has no {_FILES[s]}.")
            frames.append(parse_snippets(f.read(), s))
    return pd.concat(frames, ignore_index=True)


def vader_snippets(
    sources: Sequence[VaderSource] = ("movie",), cache_dir: str | Path | None = None
) -> pd.DataFrame:
    """Return the human-rated snippets (fetching the sdist once): ``source, id, rating, text``.

    Parameters
    ----------
    sources
        Which collections to read (default: movie reviews).
    cache_dir
        Cache root.

    Returns
    -------
    pandas.DataFrame
        One row per snippet.
    """
    return read_vader_archive(fetch_vader_sdist(cache_dir), sources)


def rating_to_label(
    ratings: Sequence[float] | np.ndarray, mode: LabelMode = "graded"
) -> np.ndarray:
    """Map mean ratings in [-4, 4] to steer labels in [-1, 1].

    Parameters
    ----------
    ratings
        Mean human ratings.
    mode
        ``"graded"``: ``rating / 4`` (like the paper's SST-5 ``label / 2 - 1``); ``"binary"``:
        the sign (+1 / -1; a rating of exactly 0 maps to 0).

    Returns
    -------
    numpy.ndarray
        Labels in [-1, 1].
    """
    check_literal("mode", mode, LabelMode)
    r = np.asarray(ratings, dtype=np.float64)
    if mode == "binary":
        return np.sign(r)
    return np.clip(r / MAX_RATING, -1.0, 1.0)


@dataclass(frozen=True, eq=False)
class SentimentCorpus:
    """A balanced training set of rated snippets.

    Attributes
    ----------
    texts
        Snippet texts (positive and negative interleaved in random order).
    labels
        Labels in [-1, 1].
    frame
        The selected rows (``source, id, rating, text, label``).
    """

    texts: tuple[str, ...]
    labels: np.ndarray
    frame: pd.DataFrame


def sentiment_corpus(
    snippets: pd.DataFrame,
    *,
    n_per_class: int = 300,
    min_abs_rating: float = 1.5,
    max_words: int | None = 40,
    label_mode: LabelMode = "graded",
    seed: int = 0,
) -> SentimentCorpus:
    """Draw a balanced positive/negative training set from rated snippets.

    Parameters
    ----------
    snippets
        Output of :func:`vader_snippets`.
    n_per_class
        Snippets per sign (fewer if not available).
    min_abs_rating
        Keep snippets with ``|rating| >= min_abs_rating`` (clear sentiment).
    max_words
        Drop longer snippets (``None``: keep all).
    label_mode
        See :func:`rating_to_label`.
    seed
        Seed of the draw (``numpy.random.default_rng``).

    Returns
    -------
    SentimentCorpus
        Texts, labels and the selected rows.
    """
    check_literal("label_mode", label_mode, LabelMode)
    rng = np.random.default_rng(seed)
    df = snippets
    if max_words is not None:
        df = df[df["text"].str.split().map(len, na_action="ignore") <= max_words]
    pos = df[df["rating"] >= min_abs_rating]
    neg = df[df["rating"] <= -min_abs_rating]
    if pos.empty or neg.empty:
        raise SteerInputError(f"no snippets with |rating| >= {min_abs_rating} of both signs.")
    take = []
    for part in (pos, neg):
        idx = rng.choice(len(part), size=min(n_per_class, len(part)), replace=False)
        take.append(part.iloc[np.sort(idx)])
    sel = pd.concat(take, ignore_index=True)
    sel = sel.iloc[rng.permutation(len(sel))].reset_index(drop=True)
    sel = sel.assign(label=rating_to_label(sel["rating"].to_numpy(), label_mode))
    return SentimentCorpus(tuple(sel["text"]), sel["label"].to_numpy(), sel)


def neutral_prompts(
    snippets: pd.DataFrame,
    n: int,
    *,
    max_abs_rating: float = 0.5,
    n_words: int = 6,
    exclude_texts: Sequence[str] = (),
    seed: int = 0,
) -> list[str]:
    """Draw prompts: the first words of near-neutral snippets (like the paper's half-sentences).

    Parameters
    ----------
    snippets
        Output of :func:`vader_snippets`.
    n
        Number of prompts.
    max_abs_rating
        Keep snippets with ``|rating| <= max_abs_rating``.
    n_words
        Words kept from the start of each snippet (longer snippets only).
    exclude_texts
        Snippets not to use (for example the training texts).
    seed
        Seed of the draw.

    Returns
    -------
    list of str
        ``n`` prompts (fewer if not available).
    """
    rng = np.random.default_rng(seed)
    keep = (snippets["rating"].abs() <= max_abs_rating) & ~snippets["text"].isin(exclude_texts)
    df = snippets[keep]
    words = df["text"].str.split()
    df = df[words.map(len, na_action="ignore") >= 2 * n_words]
    idx = rng.choice(len(df), size=min(n, len(df)), replace=False)
    return [" ".join(t.split()[:n_words]) for t in df["text"].iloc[np.sort(idx)]]


def source_corpus(
    snippets: pd.DataFrame,
    positive: VaderSource = "nyt",
    negative: VaderSource = "tweets",
    *,
    n_per_class: int = 300,
    max_words: int | None = 30,
    max_abs_rating: float | None = None,
    seed: int = 0,
) -> SentimentCorpus:
    """Draw a balanced two-style training set labelled by collection (+1 / -1), not rating.

    With the defaults it is a formality steer: NYT editorial snippets (+1, formal) against
    tweets (-1, informal), both human-written and rated by the same VADER study.

    Parameters
    ----------
    snippets
        Output of :func:`vader_snippets` with both sources.
    positive, negative
        The collections labelled +1 and -1.
    n_per_class
        Snippets per collection (fewer if not available).
    max_words
        Drop longer snippets (``None``: keep all).
    max_abs_rating
        Keep only snippets with ``|rating| <= max_abs_rating`` (``None``: all), so that the
        style is not confounded with sentiment.
    seed
        Seed of the draw.

    Returns
    -------
    SentimentCorpus
        Texts, labels (+1 / -1) and the selected rows (``label`` column added).
    """
    check_literal("positive", positive, VaderSource)
    check_literal("negative", negative, VaderSource)
    if positive == negative:
        raise SteerInputError(f"positive and negative must be two collections; got {positive!r}.")
    rng = np.random.default_rng(seed)
    df = snippets
    if max_words is not None:
        df = df[df["text"].str.split().map(len, na_action="ignore") <= max_words]
    if max_abs_rating is not None:
        df = df[df["rating"].abs() <= max_abs_rating]
    take = []
    for src, label in ((positive, 1.0), (negative, -1.0)):
        part = df[df["source"] == src]
        if part.empty:
            raise SteerInputError(
                f"no {src!r} snippets left; load them with vader_snippets(({positive!r}, "
                f"{negative!r})) and relax max_words / max_abs_rating."
            )
        idx = rng.choice(len(part), size=min(n_per_class, len(part)), replace=False)
        take.append(part.iloc[np.sort(idx)].assign(label=label))
    sel = pd.concat(take, ignore_index=True)
    sel = sel.iloc[rng.permutation(len(sel))].reset_index(drop=True)
    return SentimentCorpus(tuple(sel["text"]), sel["label"].to_numpy(), sel)


BUILTIN_PROMPTS: dict[str, tuple[str, ...]] = {
    "neutral": (
        "The meeting was moved to",
        "According to the report, the company",
        "She opened the door and",
        "The new policy will affect",
        "In the second half of the game,",
        "The train to the city",
        "My brother called me to say",
        "The results of the survey",
        "After the election, the mayor",
        "The package arrived on",
        "Scientists at the university have",
        "The weather this weekend",
    ),
    "positive": (
        "The volunteers were thrilled to",
        "It was the best holiday",
        "Fans cheered as the team",
        "The award was a wonderful",
        "She was delighted that her",
        "The community came together to celebrate",
    ),
    "negative": (
        "The flight was delayed again and",
        "He was furious that the",
        "The factory closed, leaving",
        "It was the worst meal",
        "The scandal ruined the",
        "Residents complained that the noise",
    ),
}
"""Small built-in prompt sets (sentence openings written for this package, public domain):
neutral, positive and negative, like the paper's OpenWebText half-sentence sets in kind but
not in size (12 / 6 / 6 instead of 5,000 / 2,500 / 2,500)."""


def builtin_prompts(kind: str = "neutral", n: int | None = None) -> list[str]:
    """Return ``n`` (default: all) built-in prompts of a set (neutral, positive, negative)."""
    if kind not in BUILTIN_PROMPTS:
        raise SteerInputError(f"unknown prompt set {kind!r}; use one of {sorted(BUILTIN_PROMPTS)}.")
    out = list(BUILTIN_PROMPTS[kind])
    return out if n is None else out[:n]


def _prompt_text(obj: object, where: str) -> str:
    if isinstance(obj, str):
        return obj
    if isinstance(obj, dict):
        for key in ("prompt", "text"):
            if key in obj:
                return _prompt_text(obj[key], where)
    raise SteerInputError(
        f'{where}: expected a string, {{"prompt": ...}} or {{"text": ...}}; got {obj!r:.80}.'
    )


def read_prompts(path: str | Path, n: int | None = None) -> list[str]:
    """Read prompts from a file.

    Parameters
    ----------
    path
        ``.jsonl``: one JSON object per line, the prompt in ``prompt.text`` (LM-Steer / DExperts
        / RealToxicityPrompts format), ``prompt`` or ``text`` (or a bare JSON string);
        any other suffix: one prompt per non-blank line.
    n
        Keep the first ``n`` prompts (``None``: all).

    Returns
    -------
    list of str
        The prompts, in file order.

    Raises
    ------
    SteerInputError
        On a malformed line, an empty prompt, or a file without prompts.
    """
    path = Path(path)
    if not path.is_file():
        raise SteerInputError(f"prompt file {path} does not exist.")
    out: list[str] = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        if path.suffix == ".jsonl":
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SteerInputError(f"{path} line {i} is not JSON: {exc}.") from exc
            text = _prompt_text(obj, f"{path} line {i}")
        else:
            text = line
        if not text.strip():
            raise SteerInputError(f"{path} line {i}: the prompt is empty.")
        out.append(text)
        if n is not None and len(out) >= n:
            break
    if not out:
        raise SteerInputError(f"{path} holds no prompts.")
    return out
