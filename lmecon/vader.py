"""The pinned ``vaderSentiment`` sdist: human-written, human-rated English snippets from PyPI.

Used by the mini-Pythia lab (causalmem) as its corpus and by steer as sentiment-labelled text,
so both share one verified copy at ``<cache>/corpora/vaderSentiment-3.3.2/``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from lmecon.fetch import cache_root, fetch_pinned_file

__all__ = ["VADER_INNER", "VADER_SDIST_SHA256", "VADER_VERSION", "fetch_vader_sdist"]

VADER_VERSION = "3.3.2"
VADER_SDIST_SHA256 = "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9"
"""SHA-256 of ``vaderSentiment-3.3.2.tar.gz`` as served by PyPI."""
VADER_INNER = "additional_resources/hutto_ICWSM_2014.tar.gz"
"""The archive inside the sdist that holds the rated snippets."""
_VADER_INNER = VADER_INNER

Log = Callable[[str], None]


def fetch_vader_sdist(
    cache: str | os.PathLike[str] | None = None,
    *,
    log: Log | None = None,
    pip_args: Iterable[str] = (),
) -> Path:
    """Fetch the ``vaderSentiment`` sdist from PyPI once, check it, and record its provenance.

    Runs ``python -m pip download --no-deps --no-binary :all: vaderSentiment==3.3.2`` into a
    temporary directory inside the cache, verifies :data:`VADER_SDIST_SHA256`, then moves the
    archive and a ``provenance.json`` into ``<cache>/corpora/vaderSentiment-3.3.2/``
    (:func:`lmecon.fetch.fetch_pinned_file`). A cached archive with the right checksum is
    reused without touching the network.

    Parameters
    ----------
    cache
        Cache root (``$CAUSALMEM_CACHE`` or ``~/.cache/causalmem`` by default).
    log
        Progress callback.
    pip_args
        Extra arguments for ``pip download`` (e.g. an ``--index-url``).

    Returns
    -------
    pathlib.Path
        The verified ``vaderSentiment-3.3.2.tar.gz``.

    Raises
    ------
    lmecon.fetch.ResourceFetchError
        If pip fails (no network and no cached copy); a ``RuntimeError``.
    lmecon.fetch.ResourceChecksumError
        If the checksum does not match.
    """
    return fetch_pinned_file(
        f"vaderSentiment=={VADER_VERSION}",
        f"vaderSentiment-{VADER_VERSION}.tar.gz",
        VADER_SDIST_SHA256,
        cache_root(cache) / "corpora" / f"vaderSentiment-{VADER_VERSION}",
        provenance={
            "source": f"PyPI sdist vaderSentiment=={VADER_VERSION}",
            "licence": "MIT",
            "content": f"{_VADER_INNER}: Hutto & Gilbert (ICWSM 2014) rated snippets",
        },
        log=log,
        pip_args=pip_args,
        offline_hint=", or use a local text file (load_text_file)",
    )
