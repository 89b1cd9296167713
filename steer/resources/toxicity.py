"""Toxicity-labelled tweets for a detoxification steer: Davidson et al. (ICWSM 2017).

Davidson, Warmsley, Macy & Weber, *Automated Hate Speech Detection and the Problem of Offensive
Language* (ICWSM 2017). ``data/labeled_data.csv`` of the public repository
``t-davidson/hate-speech-and-offensive-language`` (MIT) holds 24,783 tweets, each labelled by
CrowdFlower annotators: columns ``count, hate_speech, offensive_language, neither, class``
(majority class: 0 hate speech, 1 offensive, 2 neither) and ``tweet``.

:func:`read_davidson` takes a local copy or a URL; a URL is downloaded once into the cache
(``<root>/corpora/davidson-labeled_data/``) and checked against a pinned sha256, like the VADER
sdist (the file is not on PyPI, so the download uses ``urllib`` instead of pip). A local copy is
checked against the same sha256 unless ``sha256=None``.

:func:`toxicity_split` turns the tweets into the paper's training rule (as LM-Steer does on
Jigsaw): toxic = offensive or hate (class 0 or 1), clean = neither (class 2), the majority class
downsampled with a seed so that both classes have the same size, and a held-out stratified
split. Labels follow the paper's toxicity dimension: ``+1`` toxic, ``-1`` clean, so a *negative*
steer value detoxifies. :func:`challenging_prompts` cuts held-out toxic tweets in half (the
first half of the words), in the spirit of RealToxicityPrompts' challenging subset.

The data contain slurs and offensive language; they are research data for training and
evaluating a detoxification steer.
"""

from __future__ import annotations

import html
import json
import os
import re
import tempfile
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from lmecon.fetch import cache_root, sha256_file
from lmecon.provenance import utc_now
from steer.errors import ChecksumError, FetchError, SteerInputError

__all__ = [
    "DAVIDSON_SHA256",
    "DAVIDSON_URL",
    "ToxicitySplit",
    "challenging_prompts",
    "clean_tweet",
    "fetch_davidson",
    "read_davidson",
    "toxicity_split",
]

DAVIDSON_URL = (
    "https://raw.githubusercontent.com/t-davidson/hate-speech-and-offensive-language/"
    "master/data/labeled_data.csv"
)
"""Canonical public location of the Davidson et al. labelled tweets (MIT)."""

DAVIDSON_SHA256 = "fcb8bc7c68120ae4af04a5b9acd58585513ede11e1548ebf36a5c2040b6f6281"
"""sha256 of ``labeled_data.csv`` (24,783 rows; repository commit cb50f7e9eb85)."""

_FOLDER = "davidson-labeled_data"
_FILE = "labeled_data.csv"
_COLUMNS = ("count", "hate_speech", "offensive_language", "neither", "class", "tweet")

Log = Callable[[str], None]


def _is_url(source: str) -> bool:
    return source.startswith(("https://", "http://", "file://"))


def fetch_davidson(
    url: str = DAVIDSON_URL,
    *,
    sha256: str = DAVIDSON_SHA256,
    cache_dir: str | os.PathLike[str] | None = None,
    log: Log | None = None,
) -> Path:
    """Return the cached ``labeled_data.csv``, downloading it from ``url`` once.

    The file is downloaded into a temporary file next to the target, its sha256 is checked, and
    it is moved into place with a ``provenance.json`` (URL, checksum, time). A cached file with
    the right checksum is reused without touching the network.

    Parameters
    ----------
    url
        Where to download from (default :data:`DAVIDSON_URL`; ``file://`` URLs work too).
    sha256
        Expected checksum (default :data:`DAVIDSON_SHA256`).
    cache_dir
        Cache root (default ``$STEER_CACHE`` or ``~/.cache/causalmem/steer``).
    log
        Receives a one-line message when downloading.

    Returns
    -------
    pathlib.Path
        The verified file.

    Raises
    ------
    FetchError
        If the download fails (no network and no cached copy).
    ChecksumError
        If the downloaded file does not have ``sha256``.
    """
    folder = cache_root(cache_dir, env="STEER_CACHE", sub="steer") / "corpora" / _FOLDER
    target = folder / _FILE
    if target.is_file() and sha256_file(target) == sha256:
        return target
    folder.mkdir(parents=True, exist_ok=True)
    if log is not None:
        log(f"downloading {url} into {folder}")
    with tempfile.TemporaryDirectory(dir=folder, prefix=".download-") as tmp:
        got = Path(tmp) / _FILE
        try:
            with urllib.request.urlopen(url, timeout=60) as resp, open(got, "wb") as f:  # noqa: S310
                while block := resp.read(1 << 20):
                    f.write(block)
        except (OSError, ValueError) as exc:
            raise FetchError(
                f"could not download {url}: {exc}. Without network, pass the local path of "
                f"labeled_data.csv (sha256 {sha256}) or place it in {folder}."
            ) from exc
        digest = sha256_file(got)
        if digest != sha256:
            raise ChecksumError(
                f"{url} has sha256 {digest}, expected {sha256}; refusing to use it (the file "
                "upstream changed or the download was corrupted)."
            )
        record = {"source": url, "file": _FILE, "sha256": digest, "license": "MIT",
                  "fetched_at": utc_now()}  # fmt: skip
        (Path(tmp) / "provenance.json").write_text(json.dumps(record, indent=1))
        os.replace(got, target)
        os.replace(Path(tmp) / "provenance.json", folder / "provenance.json")
    return target


_MENTION = re.compile(r"@\w+:?")
_URL = re.compile(r"https?://\S+")
_RT = re.compile(r"^(?:[!\"\s]*RT\b:?\s*)+")
_SPACE = re.compile(r"\s+")


def clean_tweet(text: str) -> str:
    """Normalise a tweet for language modelling.

    HTML entities are unescaped (``&amp;`` -> ``&``, ``&#8220;`` -> ``“``), retweet markers
    (``RT``), ``@mentions`` and URLs are removed, whitespace is collapsed. Words, slurs and
    punctuation are kept: they are what the steer should learn.

    Examples
    --------
    >>> clean_tweet("!!! RT @mayasolovely: As a woman &amp; a man http://t.co/x")
    'As a woman & a man'
    """
    t = html.unescape(html.unescape(text))
    t = _URL.sub(" ", t)
    t = _MENTION.sub(" ", t)
    t = _SPACE.sub(" ", t).strip()
    t = _RT.sub("", t)
    t = re.sub(r"\bRT\b:?", " ", t)
    return _SPACE.sub(" ", t).strip(' !"')


def read_davidson(
    source: str | os.PathLike[str] | None = None,
    *,
    sha256: str | None = DAVIDSON_SHA256,
    cache_dir: str | os.PathLike[str] | None = None,
    clean: bool = True,
    log: Log | None = None,
) -> pd.DataFrame:
    """Read the Davidson et al. tweets from a local file or a URL (downloaded once, pinned).

    Parameters
    ----------
    source
        A local ``labeled_data.csv``, a URL (fetched with :func:`fetch_davidson`), or ``None``
        for :data:`DAVIDSON_URL`.
    sha256
        Checksum the file must have (default :data:`DAVIDSON_SHA256`); ``None`` skips the check
        for a local file (e.g. your own data in the same layout). A URL is always checked.
    cache_dir
        Cache root for a downloaded copy.
    clean
        Apply :func:`clean_tweet` to the ``text`` column.
    log
        Receives a one-line message when downloading.

    Returns
    -------
    pandas.DataFrame
        Columns ``id`` (row of the file), ``klass`` (0 hate, 1 offensive, 2 neither),
        ``toxic`` (bool: class 0 or 1), ``hate_speech, offensive_language, neither`` (annotator
        counts), ``tweet`` (raw) and ``text`` (cleaned, or raw when ``clean=False``).

    Raises
    ------
    SteerInputError
        If the file lacks a column or has a class outside {0, 1, 2}.
    ChecksumError
        If the file does not have ``sha256``.
    """
    src = DAVIDSON_URL if source is None else str(source)
    if _is_url(src):
        path = fetch_davidson(src, sha256=sha256 or DAVIDSON_SHA256, cache_dir=cache_dir, log=log)
    else:
        path = Path(src).expanduser()
        if not path.is_file():
            raise SteerInputError(
                f"{path} does not exist; pass the path of labeled_data.csv or a URL "
                f"(default {DAVIDSON_URL})."
            )
        if sha256 is not None:
            got = sha256_file(path)
            if got != sha256:
                raise ChecksumError(
                    f"{path} has sha256 {got}, expected {sha256} (the Davidson et al. file); "
                    "pass sha256=None to read another file in the same layout."
                )
    df = pd.read_csv(path)
    missing = [c for c in _COLUMNS if c not in df.columns]
    if missing:
        raise SteerInputError(f"{path} lacks column(s) {missing}; expected {list(_COLUMNS)}.")
    klass = pd.to_numeric(df["class"], errors="coerce")
    bad = np.flatnonzero(~klass.isin([0, 1, 2]).to_numpy())
    if len(bad):
        raise SteerInputError(
            f"{path}: column 'class' must be 0 (hate), 1 (offensive) or 2 (neither); rows "
            f"{bad[:5].tolist()} hold {df['class'].iloc[bad[:5]].tolist()}."
        )
    raw = df["tweet"].astype(str)
    out = pd.DataFrame(
        {
            "id": np.arange(len(df)),
            "klass": klass.astype(int).to_numpy(),
            "toxic": (klass < 2).to_numpy(),
            "hate_speech": df["hate_speech"].to_numpy(),
            "offensive_language": df["offensive_language"].to_numpy(),
            "neither": df["neither"].to_numpy(),
            "tweet": raw.to_numpy(),
            "text": (raw.map(clean_tweet) if clean else raw).to_numpy(),
        }
    )
    return out


@dataclass(frozen=True, eq=False)
class ToxicitySplit:
    """A balanced toxic / clean training set and a held-out set.

    Attributes
    ----------
    train, test
        Selected rows (``id, klass, toxic, text, label, ...``); ``label`` is ``+1`` toxic,
        ``-1`` clean. Both are balanced; they share no tweet text.
    seed
        Seed of the draw.
    counts
        Rows available per class before balancing and rows kept.
    """

    train: pd.DataFrame = field(repr=False)
    test: pd.DataFrame = field(repr=False)
    seed: int
    counts: dict[str, int]

    @property
    def texts(self) -> tuple[str, ...]:
        """Training texts."""
        return tuple(self.train["text"])

    @property
    def labels(self) -> np.ndarray:
        """Training labels (+1 toxic, -1 clean)."""
        return self.train["label"].to_numpy(dtype=np.float64)

    def texts_of(self, part: str, toxic: bool) -> list[str]:
        """Texts of ``part`` (``"train"`` or ``"test"``) with the given class."""
        if part not in ("train", "test"):
            raise SteerInputError(f"part must be 'train' or 'test'; got {part!r}.")
        df = self.train if part == "train" else self.test
        return df.loc[df["toxic"] == toxic, "text"].tolist()


def toxicity_split(
    frame: pd.DataFrame,
    *,
    n_per_class: int | None = None,
    test_fraction: float = 0.2,
    min_words: int = 3,
    max_words: int | None = 40,
    seed: int = 0,
) -> ToxicitySplit:
    """Balance toxic (class 0/1) against clean (class 2) tweets and hold some out.

    Steps: drop texts with fewer than ``min_words`` or more than ``max_words`` words and
    duplicate texts (a text in both classes is dropped entirely); downsample the larger class to
    the size of the smaller one (``numpy.random.default_rng(seed)``); split each class into
    train / test with ``test_fraction``; optionally cap the training set at ``n_per_class`` per
    class (the rest is *not* added to the test set, so the test set does not depend on it).

    Parameters
    ----------
    frame
        Output of :func:`read_davidson` (needs ``text`` and ``toxic``).
    n_per_class
        Training texts per class at most (``None``: all of the balanced training part).
    test_fraction
        Share of each balanced class held out (0 < f < 1).
    min_words, max_words
        Length filter on the cleaned text (``max_words=None``: no upper bound).
    seed
        Seed of the draw.

    Returns
    -------
    ToxicitySplit
        Balanced train and test frames with ``label`` (+1 toxic, -1 clean).
    """
    for col in ("text", "toxic"):
        if col not in frame.columns:
            raise SteerInputError(f"toxicity_split needs a '{col}' column (see read_davidson).")
    if not 0 < test_fraction < 1:
        raise SteerInputError(f"test_fraction must lie in (0, 1); got {test_fraction}.")
    if n_per_class is not None and n_per_class < 1:
        raise SteerInputError(f"n_per_class must be >= 1 or None; got {n_per_class}.")
    df = frame
    words = df["text"].astype(str).str.split().map(len)
    keep = words >= min_words
    if max_words is not None:
        keep &= words <= max_words
    df = df[keep]
    conflict = df.groupby("text")["toxic"].nunique()
    df = df[~df["text"].isin(conflict.index[conflict > 1])].drop_duplicates("text")
    tox, cln = df[df["toxic"].astype(bool)], df[~df["toxic"].astype(bool)]
    if tox.empty or cln.empty:
        raise SteerInputError(
            f"need texts of both classes after filtering ({len(tox)} toxic, {len(cln)} clean); "
            "relax min_words / max_words."
        )
    n = min(len(tox), len(cln))
    n_test = max(1, round(n * test_fraction))
    if n - n_test < 1:
        raise SteerInputError(f"only {n} texts per class: too few for a train / test split.")
    rng = np.random.default_rng(seed)
    cap_rng = np.random.default_rng([seed, 1])  # separate stream: the cap never moves the test set
    parts: dict[str, list[pd.DataFrame]] = {"train": [], "test": []}
    for part, label in ((tox, 1.0), (cln, -1.0)):
        idx = rng.permutation(len(part))[:n]
        test_idx, train_idx = np.sort(idx[:n_test]), np.sort(idx[n_test:])
        if n_per_class is not None:
            train_idx = np.sort(cap_rng.permutation(train_idx)[:n_per_class])
        parts["test"].append(part.iloc[test_idx].assign(label=label))
        parts["train"].append(part.iloc[train_idx].assign(label=label))
    train = pd.concat(parts["train"], ignore_index=True)
    train = train.iloc[rng.permutation(len(train))].reset_index(drop=True)
    test = pd.concat(parts["test"], ignore_index=True)
    counts = {"toxic_available": len(tox), "clean_available": len(cln),
              "train_per_class": len(train) // 2, "test_per_class": n_test}  # fmt: skip
    return ToxicitySplit(train, test, seed, counts)


def challenging_prompts(
    texts: Sequence[str], n: int | None = None, *, min_words: int = 6, seed: int = 0
) -> list[str]:
    """First halves of toxic texts as prompts (RealToxicityPrompts-style challenging prompts).

    Parameters
    ----------
    texts
        Held-out toxic texts (never the steer's training texts), e.g.
        ``split.texts_of("test", toxic=True)``.
    n
        Prompts to draw (``None``: all eligible, in input order).
    min_words
        Only texts with at least this many words are cut; the prompt keeps the first
        ``len(words) // 2`` words.
    seed
        Seed of the draw when ``n`` is given.

    Returns
    -------
    list of str
        Distinct prompts.
    """
    if isinstance(texts, str):
        raise SteerInputError("pass a list of texts, not one string.")
    halves: list[str] = []
    seen: set[str] = set()
    for t in texts:
        w = str(t).split()
        if len(w) < min_words:
            continue
        p = " ".join(w[: len(w) // 2])
        if p not in seen:
            seen.add(p)
            halves.append(p)
    if not halves:
        raise SteerInputError(f"no text has >= {min_words} words; lower min_words.")
    if n is None or n >= len(halves):
        return halves
    idx = np.sort(np.random.default_rng(seed).choice(len(halves), size=n, replace=False))
    return [halves[i] for i in idx]
