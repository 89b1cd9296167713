"""VADER snippets: parsing, the nested archive, labels, balanced draws (no download)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from steer import ChecksumError, FetchError, SteerInputError
from steer.resources import data as sd

MOVIE = (
    "1\t2.5\tA wonderful film.\r\n"
    "2\t-3.25\tDull, dull, dull.\r\n"
    "3\t0.1\tIt runs two hours and ten minutes long.\r\n"
    "\r\n"
    "4\t-1.0\tJir\xc3\xad Hubac's script is a mess.\r\n"
).encode("latin-1")
TWEETS = b"1\t1.8\tYay. Another good day.\n2\t0.0\tThe bus is late again and it is raining today.\n"


def _tar(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tf.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


@pytest.fixture
def sdist(tmp_path: Path) -> Path:
    inner = _tar(
        {
            "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt": MOVIE,
            "hutto_ICWSM_2014/tweets_GroundTruth.txt": TWEETS,
            "hutto_ICWSM_2014/amazonReviewSnippets_GroundTruth.txt": b"1_1\t-0.9\tno picture.\n",
            "hutto_ICWSM_2014/nytEditorialSnippets_GroundTruth.txt": b"1_1\t0.4\tOn Dec. 19.\n",
        }
    )
    path = tmp_path / "vaderSentiment-3.3.2.tar.gz"
    path.write_bytes(
        _tar({"vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz": inner})
    )
    return path


def test_parse_snippets_utf8_crlf_and_blank_lines() -> None:
    df = sd.parse_snippets(MOVIE, "movie")
    assert list(df.columns) == ["source", "id", "rating", "text"]
    assert df["id"].tolist() == ["1", "2", "3", "4"]
    assert df["rating"].tolist() == [2.5, -3.25, 0.1, -1.0]
    assert df["text"].iloc[3] == "Jirí Hubac's script is a mess."
    assert sd.parse_snippets(b"1\t1.0\tcaf\xe9\n", "x")["text"].iloc[0] == "café"  # latin-1
    with pytest.raises(SteerInputError, match="line 1"):
        sd.parse_snippets(b"1\tnot-a-number\ttext\n", "x")
    with pytest.raises(SteerInputError, match="id<TAB>rating<TAB>text"):
        sd.parse_snippets(b"just text\n", "x")


def test_read_archive(sdist: Path) -> None:
    df = sd.read_vader_archive(sdist, ("movie", "tweets"))
    assert df.groupby("source").size().to_dict() == {"movie": 4, "tweets": 2}
    assert len(sd.read_vader_archive(sdist)) == 8
    with pytest.raises(ValueError, match="'movie'"):
        sd.read_vader_archive(sdist, ("imdb",))  # type: ignore[arg-type]


def test_labels_from_ratings() -> None:
    r = np.array([-4.0, -2.0, 0.0, 1.0, 4.0, 5.0])
    np.testing.assert_allclose(sd.rating_to_label(r), [-1.0, -0.5, 0.0, 0.25, 1.0, 1.0])
    np.testing.assert_array_equal(sd.rating_to_label(r, "binary"), [-1, -1, 0, 1, 1, 1])
    with pytest.raises(ValueError, match="graded"):
        sd.rating_to_label(r, "ordinal")  # type: ignore[arg-type]


def test_balanced_corpus_and_prompts() -> None:
    rng = np.random.default_rng(0)
    n = 200
    snippets = pd.DataFrame(
        {
            "source": "movie",
            "id": [str(i) for i in range(n)],
            "rating": rng.uniform(-4, 4, n),
            "text": [" ".join(f"w{i}_{j}" for j in range(5 + i % 20)) for i in range(n)],
        }
    )
    c = sd.sentiment_corpus(snippets, n_per_class=20, min_abs_rating=2.0, max_words=15, seed=1)
    assert len(c.texts) == 40 and (c.labels > 0).sum() == 20
    assert np.all(np.abs(c.labels) >= 0.5) and np.all(np.abs(c.labels) <= 1.0)
    assert all(len(t.split()) <= 15 for t in c.texts)
    again = sd.sentiment_corpus(snippets, n_per_class=20, min_abs_rating=2.0, max_words=15, seed=1)
    assert again.texts == c.texts
    prompts = sd.neutral_prompts(snippets, 5, max_abs_rating=1.0, n_words=4, exclude_texts=c.texts)
    assert len(prompts) == 5 and all(len(p.split()) == 4 for p in prompts)
    with pytest.raises(SteerInputError):
        sd.sentiment_corpus(snippets, min_abs_rating=4.5)


def test_fetch_checks_the_sha256(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # steer.resources.data.fetch_vader_sdist delegates to lmecon (one implementation)
    import subprocess

    from lmecon import fetch as cf
    from lmecon import vader as cc

    calls: list[list[str]] = []

    def fake_run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
        calls.append(cmd)
        dest = Path(cmd[cmd.index("-d") + 1])
        (dest / "vaderSentiment-3.3.2.tar.gz").write_bytes(b"tampered")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(cf.subprocess, "run", fake_run)
    with pytest.raises(ChecksumError, match="checksum mismatch"):
        sd.fetch_vader_sdist(tmp_path)
    assert "vaderSentiment==3.3.2" in calls[0] and "--no-binary" in calls[0]
    assert not list((tmp_path / "corpora").rglob("*.tar.gz"))  # nothing bad was kept

    def failing_run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(cmd, 1, "", "no network")

    monkeypatch.setattr(cf.subprocess, "run", failing_run)
    with pytest.raises(FetchError, match="no network"):
        sd.fetch_vader_sdist(tmp_path)
    # the cache root: the argument, else $STEER_CACHE, else causalmem's default
    seen: list[object] = []
    monkeypatch.setattr(cc, "fetch_vader_sdist", lambda root: seen.append(root) or Path("x"))
    monkeypatch.delenv("STEER_CACHE", raising=False)
    sd.fetch_vader_sdist()
    monkeypatch.setenv("STEER_CACHE", str(tmp_path / "env"))
    sd.fetch_vader_sdist()
    sd.fetch_vader_sdist(tmp_path / "arg")
    assert seen == [None, tmp_path / "env", tmp_path / "arg"]
    from lmecon.fetch import cache_root

    assert cache_root(env="STEER_CACHE", sub="steer") == tmp_path / "env"
