"""Tests of steer.resources.toxicity on small synthetic files in the Davidson layout.

Never the real data: the file layout (columns ``count, hate_speech, offensive_language, neither,
class, tweet`` and an unnamed index) is that of ``data/labeled_data.csv`` of
t-davidson/hate-speech-and-offensive-language; the texts here are invented.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from steer.errors import ChecksumError, FetchError, SteerInputError
from steer.resources.toxicity import (
    DAVIDSON_SHA256,
    challenging_prompts,
    clean_tweet,
    fetch_davidson,
    read_davidson,
    toxicity_split,
)

TOXIC = [f"you stupid idiot number {i} go away now" for i in range(30)]
CLEAN = [f"what a lovely sunny day number {i} in town" for i in range(12)]


def _write(path: Path, texts: list[str], classes: list[int]) -> Path:
    df = pd.DataFrame(
        {
            "count": 3,
            "hate_speech": [3 if c == 0 else 0 for c in classes],
            "offensive_language": [3 if c == 1 else 0 for c in classes],
            "neither": [3 if c == 2 else 0 for c in classes],
            "class": classes,
            "tweet": texts,
        }
    )
    df.to_csv(path)  # the real file has an unnamed index column too
    return path


@pytest.fixture
def davidson_csv(tmp_path: Path) -> Path:
    classes = [0] * 5 + [1] * 25 + [2] * 12
    return _write(tmp_path / "labeled_data.csv", TOXIC + CLEAN, classes)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_clean_tweet_examples() -> None:
    assert clean_tweet("!!! RT @mayasolovely: As a woman &amp; a man http://t.co/x") == (
        "As a woman & a man"
    )
    assert clean_tweet('"@user: RT @other: hi there') == "hi there"
    assert clean_tweet("plain text stays") == "plain text stays"
    assert clean_tweet("&amp;#8220;quoted&amp;#8221;") == "\u201cquoted\u201d"


def test_read_davidson_local_with_and_without_checksum(davidson_csv: Path) -> None:
    with pytest.raises(ChecksumError, match="sha256=None"):
        read_davidson(davidson_csv)  # the default pin is the real file's
    df = read_davidson(davidson_csv, sha256=_sha(davidson_csv))
    assert len(df) == 42
    assert df["toxic"].sum() == 30
    assert df["klass"].tolist()[:6] == [0, 0, 0, 0, 0, 1]
    same = read_davidson(davidson_csv, sha256=None)
    pd.testing.assert_frame_equal(df, same)
    assert DAVIDSON_SHA256 != _sha(davidson_csv)


def test_read_davidson_errors(tmp_path: Path) -> None:
    with pytest.raises(SteerInputError, match="does not exist"):
        read_davidson(tmp_path / "nope.csv", sha256=None)
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"tweet": ["a"], "class": [1]}).to_csv(bad)
    with pytest.raises(SteerInputError, match="lacks column"):
        read_davidson(bad, sha256=None)
    wrong = _write(tmp_path / "wrong.csv", ["a b c", "d e f"], [1, 5])
    with pytest.raises(SteerInputError, match="class"):
        read_davidson(wrong, sha256=None)


def test_fetch_by_url_is_pinned_cached_and_recorded(davidson_csv: Path, tmp_path: Path) -> None:
    url = davidson_csv.as_uri()  # file:// goes through the same urllib path as https://
    sha = _sha(davidson_csv)
    cache = tmp_path / "cache"
    got = fetch_davidson(url, sha256=sha, cache_dir=cache)
    assert got.read_bytes() == davidson_csv.read_bytes()
    prov = json.loads((got.parent / "provenance.json").read_text())
    assert prov["sha256"] == sha and prov["source"] == url
    davidson_csv.unlink()  # the cached copy is reused without the source
    assert fetch_davidson(url, sha256=sha, cache_dir=cache) == got
    df = read_davidson(url, sha256=sha, cache_dir=cache)
    assert len(df) == 42
    with pytest.raises(FetchError, match="could not download"):
        fetch_davidson(url, sha256="0" * 64, cache_dir=tmp_path / "other")


def test_fetch_refuses_a_wrong_checksum(davidson_csv: Path, tmp_path: Path) -> None:
    with pytest.raises(ChecksumError, match="refusing"):
        fetch_davidson(davidson_csv.as_uri(), sha256="0" * 64, cache_dir=tmp_path / "c")
    assert not (tmp_path / "c" / "corpora" / "davidson-labeled_data" / "labeled_data.csv").exists()


def test_split_is_balanced_disjoint_and_seeded(davidson_csv: Path) -> None:
    df = read_davidson(davidson_csv, sha256=None)
    sp = toxicity_split(df, test_fraction=0.25, seed=3)
    # 12 clean texts bound the class size: 3 per class held out, 9 per class for training
    assert sp.counts == {"toxic_available": 30, "clean_available": 12, "train_per_class": 9,
                         "test_per_class": 3}  # fmt: skip
    assert (sp.train["label"] == 1).sum() == (sp.train["label"] == -1).sum() == 9
    assert set(sp.train["text"]).isdisjoint(sp.test["text"])
    assert np.array_equal(sp.labels, np.where(sp.train["toxic"], 1.0, -1.0))
    again = toxicity_split(df, test_fraction=0.25, seed=3)
    pd.testing.assert_frame_equal(sp.train, again.train)
    other = toxicity_split(df, test_fraction=0.25, seed=4)
    assert set(other.train["text"]) != set(sp.train["text"])
    capped = toxicity_split(df, test_fraction=0.25, seed=3, n_per_class=4)
    assert len(capped.train) == 8
    pd.testing.assert_frame_equal(capped.test, sp.test)  # the cap does not move the test set
    assert len(sp.texts_of("test", toxic=True)) == 3


def test_split_drops_conflicting_duplicates_and_errors(tmp_path: Path) -> None:
    texts = ["same text here ok", "same text here ok", "x y z w", "p q r s", "k l m n", "e f g h"]
    path = _write(tmp_path / "d.csv", texts, [1, 2, 1, 2, 1, 2])
    df = read_davidson(path, sha256=None)
    sp = toxicity_split(df, test_fraction=0.5)
    assert "same text here ok" not in set(sp.train["text"]) | set(sp.test["text"])
    with pytest.raises(SteerInputError, match="both classes"):
        toxicity_split(df[df["toxic"]], test_fraction=0.5)
    with pytest.raises(SteerInputError, match="test_fraction"):
        toxicity_split(df, test_fraction=1.0)


def test_challenging_prompts_are_first_halves() -> None:
    texts = ["one two three four five six seven eight", "a b c", "u v w x y z"]
    assert challenging_prompts(texts, min_words=6) == ["one two three four", "u v w"]
    two = challenging_prompts(texts * 2, min_words=6)
    assert two == ["one two three four", "u v w"]  # distinct prompts only
    assert len(challenging_prompts(texts, 1, min_words=6, seed=0)) == 1
    with pytest.raises(SteerInputError, match="min_words"):
        challenging_prompts(["a b"], min_words=6)
