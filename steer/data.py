"""Sentiment-labelled English text without the hub: VADER's human-rated snippets.

The ``vaderSentiment==3.3.2`` sdist on PyPI (MIT) ships
``additional_resources/hutto_ICWSM_2014.tar.gz`` (Hutto & Gilbert, ICWSM 2014) with ~23.7k
sentence-level snippets, each rated by ~20 people on -4..+4: movie reviews (10,605), tweets
(4,200), Amazon reviews (3,708) and NYT editorials (5,190). Each ``*_GroundTruth.txt`` line is
``id<TAB>mean_rating<TAB>text``. The sdist is downloaded once with
``pip download --no-deps --no-binary :all:`` into the cache, checked against a pinned sha256,
and recorded in ``provenance.json`` beside it. Ratings map to labels in [-1, 1] (rating / 4).
"""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from steer._cache import cache_root, pip_download, verify_sha256
from steer._provenance import utc_now
from steer._types import VADER_SOURCES, LabelMode, VaderSource, check_literal
from steer.errors import FetchError, SteerInputError

__all__ = [
    "SentimentCorpus",
    "fetch_vader_sdist",
    "neutral_prompts",
    "parse_snippets",
    "rating_to_label",
    "read_vader_archive",
    "sentiment_corpus",
    "vader_snippets",
]

VADER_REQUIREMENT = "vaderSentiment==3.3.2"
VADER_SDIST = "vaderSentiment-3.3.2.tar.gz"
VADER_SDIST_SHA256 = "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9"
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

    Parameters
    ----------
    cache_dir
        Cache root (default ``$STEER_CACHE`` or ``~/.cache/causalmem/steer``).

    Returns
    -------
    pathlib.Path
        The sdist, verified against its pinned sha256.
    """
    folder = cache_root(cache_dir) / "data" / "vader"
    path = folder / VADER_SDIST
    if not path.is_file():
        tmp = folder / ".download"
        shutil.rmtree(tmp, ignore_errors=True)
        got = pip_download(VADER_REQUIREMENT, tmp, binary=False)
        verify_sha256(got, VADER_SDIST_SHA256)
        got.replace(path)
        shutil.rmtree(tmp, ignore_errors=True)
        provenance = {
            "source": f"PyPI sdist {VADER_REQUIREMENT}",
            "file": VADER_SDIST,
            "sha256": VADER_SDIST_SHA256,
            "license": "MIT",
            "citation": "Hutto & Gilbert (2014), VADER, ICWSM; human-rated snippets in "
            "additional_resources/hutto_ICWSM_2014.tar.gz",
            "fetched_at": utc_now(),
        }
        (folder / "provenance.json").write_text(json.dumps(provenance, indent=2) + "\n")
    verify_sha256(path, VADER_SDIST_SHA256)
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
    sdist: str | Path, sources: Sequence[VaderSource] = VADER_SOURCES  # type: ignore[assignment]
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
        df = df[df["text"].str.split().str.len() <= max_words]
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
    df = df[words.str.len() >= 2 * n_words]
    idx = rng.choice(len(df), size=min(n, len(df)), replace=False)
    return [" ".join(t.split()[:n_words]) for t in df["text"].iloc[np.sort(idx)]]
