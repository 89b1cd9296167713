"""Real English text for the mini-Pythia lab, fetched without the model hub.

Default source: the ``vaderSentiment==3.3.2`` **source distribution** on PyPI (MIT licence). Its
``additional_resources/hutto_ICWSM_2014.tar.gz`` holds about 23.7k human-written, human-rated
snippets (Hutto & Gilbert, ICWSM 2014): movie reviews 10,604, tweets 4,199, Amazon reviews
3,707 and New York Times editorials 5,189 (``id<TAB>mean_rating<TAB>text`` per line).

The sdist is fetched once with ``pip download --no-deps --no-binary :all:`` into the cache
directory (``$CAUSALMEM_CACHE``, else ``~/.cache/causalmem``), checked against a pinned
SHA-256 and recorded with its provenance (source, version, licence, checksum, time). The cache
is written atomically; the text is read straight from the archive, nothing else is unpacked.

Also accepted: any local text file (:func:`load_text_file`) and, when online, a Hugging Face
dataset (:func:`load_hf_dataset`, needs the ``datasets`` package).
"""

from __future__ import annotations

import hashlib
import html
import io
import os
import tarfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from lmecon.fetch import cache_root
from lmecon.vader import VADER_SDIST_SHA256, VADER_VERSION, fetch_vader_sdist

__all__ = [
    "VADER_SDIST_SHA256",
    "VADER_SOURCES",
    "VADER_VERSION",
    "Corpus",
    "cache_dir",
    "fetch_vader_sdist",
    "load_corpus",
    "load_hf_dataset",
    "load_text_file",
    "load_vader",
]

VADER_SOURCES: Mapping[str, str] = {
    "movie": "movieReviewSnippets_GroundTruth.txt",
    "tweets": "tweets_GroundTruth.txt",
    "amazon": "amazonReviewSnippets_GroundTruth.txt",
    "nyt": "nytEditorialSnippets_GroundTruth.txt",
}
_VADER_INNER = "additional_resources/hutto_ICWSM_2014.tar.gz"

Log = Callable[[str], None]


@dataclass(frozen=True, eq=False)
class Corpus:
    """An ordered collection of text documents with its provenance; immutable.

    Attributes
    ----------
    documents
        The texts, in source order.
    provenance
        JSON-serialisable record: ``source``, ``licence``, checksums, counts, …
    labels
        Optional per-document metadata (e.g. VADER's ``source`` and ``rating``), same order.
    """

    documents: tuple[str, ...]
    provenance: Mapping[str, Any] = field(default_factory=dict)
    labels: tuple[Mapping[str, Any], ...] = ()

    def __len__(self) -> int:
        return len(self.documents)

    @property
    def n_chars(self) -> int:
        """Total characters."""
        return sum(len(d) for d in self.documents)

    def deduplicated(self) -> Corpus:
        """Drop empty documents and exact duplicates (first occurrence kept)."""
        seen: set[str] = set()
        keep: list[int] = []
        for i, d in enumerate(self.documents):
            if d and d not in seen:
                seen.add(d)
                keep.append(i)
        prov = {**dict(self.provenance), "deduplicated": True, "n_documents": len(keep)}
        labels = tuple(self.labels[i] for i in keep) if self.labels else ()
        return Corpus(tuple(self.documents[i] for i in keep), prov, labels)


def cache_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """Return the cache directory: ``path``, else ``$CAUSALMEM_CACHE``, else ``~/.cache/causalmem``.

    The directory is not created here.
    """
    return cache_root(path)


def _decode(raw: bytes) -> str:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    return text


def load_vader(
    cache: str | os.PathLike[str] | None = None,
    *,
    sources: Iterable[str] = ("movie", "tweets", "amazon", "nyt"),
    log: Log | None = None,
) -> Corpus:
    """Load the VADER snippets (fetching the sdist on first use).

    Parameters
    ----------
    cache
        Cache root (see :func:`cache_dir`).
    sources
        Subsets to include, in this order: ``"movie"``, ``"tweets"``, ``"amazon"``, ``"nyt"``.
    log
        Progress callback.

    Returns
    -------
    Corpus
        One document per snippet (HTML entities unescaped, whitespace stripped); ``labels``
        holds ``source``, ``id`` and the mean human ``rating`` (-4 … +4).
    """
    chosen = list(sources)
    unknown = sorted(set(chosen) - set(VADER_SOURCES))
    if unknown:
        raise ValueError(f"unknown VADER sources {unknown}; use {sorted(VADER_SOURCES)}.")
    sdist = fetch_vader_sdist(cache, log=log)
    inner_name = f"vaderSentiment-{VADER_VERSION}/{_VADER_INNER}"
    with tarfile.open(sdist, "r:gz") as outer:
        member = outer.extractfile(inner_name)
        if member is None:
            raise RuntimeError(f"{sdist} lacks {inner_name}.")
        inner_bytes = member.read()
    docs: list[str] = []
    labels: list[dict[str, Any]] = []
    with tarfile.open(fileobj=io.BytesIO(inner_bytes), mode="r:gz") as inner:
        names = {Path(m.name).name: m for m in inner.getmembers() if m.isfile()}
        for src in chosen:
            fh = inner.extractfile(names[VADER_SOURCES[src]])
            if fh is None:  # pragma: no cover - a regular member always has a file object
                raise RuntimeError(f"cannot read {VADER_SOURCES[src]} from {sdist}.")
            for line in _decode(fh.read()).splitlines():
                parts = line.split("\t", 2)
                if len(parts) < 3:
                    continue
                raw = parts[2]
                for _ in range(2):  # some NYT snippets are escaped twice (&amp;amp;)
                    raw = html.unescape(raw)
                text = " ".join(raw.split())
                if not text:
                    continue
                try:
                    rating = float(parts[1])
                except ValueError:
                    rating = float("nan")
                docs.append(text)
                labels.append({"source": src, "id": parts[0], "rating": rating})
    prov = {
        "source": f"PyPI sdist vaderSentiment=={VADER_VERSION} ({_VADER_INNER})",
        "sha256": VADER_SDIST_SHA256,
        "inner_sha256": hashlib.sha256(inner_bytes).hexdigest(),
        "licence": "MIT",
        "subsets": chosen,
        "n_documents": len(docs),
        "citation": "Hutto & Gilbert (2014), VADER, ICWSM",
    }
    return Corpus(tuple(docs), prov, tuple(labels))


def load_text_file(
    path: str | os.PathLike[str],
    *,
    split: Literal["paragraph", "line", "none"] = "paragraph",
    encoding: str = "utf-8",
) -> Corpus:
    """Read a local text file as a corpus.

    Parameters
    ----------
    path
        The file.
    split
        ``"paragraph"`` (blank-line separated, default), ``"line"`` or ``"none"`` (one
        document). Whitespace inside a document is normalised to single spaces.
    encoding
        File encoding.

    Returns
    -------
    Corpus
    """
    p = Path(path)
    raw = p.read_bytes()
    text = raw.decode(encoding)
    if split == "paragraph":
        blocks = text.replace("\r\n", "\n").split("\n\n")
    elif split == "line":
        blocks = text.splitlines()
    elif split == "none":
        blocks = [text]
    else:
        raise ValueError(f"split={split!r}; use 'paragraph', 'line' or 'none'.")
    docs = tuple(d for d in (" ".join(b.split()) for b in blocks) if d)
    prov = {
        "source": f"local file {p.name}",
        "sha256": hashlib.sha256(raw).hexdigest(),
        "split": split,
        "n_documents": len(docs),
    }
    return Corpus(docs, prov)


def load_hf_dataset(
    name: str,
    *,
    config: str | None = None,
    split: str = "train",
    text_column: str = "text",
    max_documents: int | None = None,
) -> Corpus:
    """Load a Hugging Face dataset's text column (needs ``datasets`` and, usually, network).

    Honours ``HF_HUB_OFFLINE`` / ``HF_DATASETS_OFFLINE`` through ``datasets`` itself (cached
    datasets load offline).

    Parameters
    ----------
    name, config, split
        Passed to ``datasets.load_dataset``.
    text_column
        Column holding the text.
    max_documents
        Keep only the first documents.

    Returns
    -------
    Corpus
    """
    try:
        import datasets  # type: ignore[import-not-found]
    except ImportError as exc:  # pragma: no cover - optional dependency
        raise ImportError(
            "load_hf_dataset needs the 'datasets' package: pip install datasets"
        ) from exc
    ds = datasets.load_dataset(name, config, split=split)
    texts = ds[text_column]
    if max_documents is not None:
        texts = texts[:max_documents]
    docs = tuple(d for d in (" ".join(str(t).split()) for t in texts) if d)
    fp = getattr(ds, "_fingerprint", None)
    prov = {
        "source": f"huggingface dataset {name}" + (f"/{config}" if config else ""),
        "split": split,
        "fingerprint": fp,
        "n_documents": len(docs),
    }
    return Corpus(docs, prov)


def load_corpus(
    source: str | os.PathLike[str],
    *,
    cache: str | os.PathLike[str] | None = None,
    log: Log | None = None,
) -> Corpus:
    """Load a corpus by name: ``"vader"``, ``"hf:<name>[:<config>]"`` or a text-file path.

    Parameters
    ----------
    source
        What to load.
    cache
        Cache root for fetched resources.
    log
        Progress callback.

    Returns
    -------
    Corpus
    """
    s = str(source)
    if s == "vader":
        return load_vader(cache, log=log)
    if s.startswith("hf:"):
        parts = s[3:].split(":", 1)
        return load_hf_dataset(parts[0], config=parts[1] if len(parts) > 1 else None)
    p = Path(s)
    if not p.exists():
        raise FileNotFoundError(
            f"corpus {s!r} is neither 'vader', 'hf:<dataset>' nor an existing text file."
        )
    return load_text_file(p)
