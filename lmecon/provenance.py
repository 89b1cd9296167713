"""Provenance records: library versions, UTC time stamps and JSON-safe values."""

from __future__ import annotations

import datetime as _dt
import functools
import math
from collections.abc import Iterable, Mapping
from importlib import metadata
from typing import Any

__all__ = ["jsonable", "library_versions", "utc_now", "version_of", "versions"]

MISSING = "not installed"


@functools.cache
def version_of(dist: str) -> str | None:
    """Installed version of distribution ``dist``, or ``None`` when it is not installed.

    Cached for the process (reading package metadata costs ~0.15 s on the first call).
    """
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def versions(dists: Iterable[str], *, missing: str | None = MISSING) -> dict[str, str]:
    """Versions of ``dists`` in order; a missing one reads ``missing`` (or is left out if None)."""
    out: dict[str, str] = {}
    for d in dists:
        v = version_of(d)
        if v is not None:
            out[d] = v
        elif missing is not None:
            out[d] = missing
    return out


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape a steer's numbers."""
    return versions(("causalmem", "torch", "transformers", "tokenizers"))


def utc_now() -> str:
    """ISO-8601 UTC timestamp (seconds)."""
    return _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat()


def jsonable(x: Any, *, stringify: bool = False) -> Any:
    """Return ``x`` with mappings/sequences made plain and non-finite floats made ``None``.

    Mapping keys become strings. With ``stringify``, values that are not ``str``, ``int``,
    ``float``, ``bool`` or ``None`` become their ``str()``; otherwise they are kept as they are.
    """
    if isinstance(x, Mapping):
        return {str(k): jsonable(v, stringify=stringify) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [jsonable(v, stringify=stringify) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if stringify and not (isinstance(x, str | int | float | bool) or x is None):
        return str(x)
    return x
