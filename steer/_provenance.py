"""Provenance records: library versions and a UTC timestamp (JSON-compatible)."""

from __future__ import annotations

import datetime as _dt
from importlib import metadata

__all__ = ["library_versions", "utc_now"]


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape a steer's numbers."""
    return {d: _version(d) for d in ("causalmem", "torch", "transformers", "tokenizers")}


def utc_now() -> str:
    """ISO-8601 UTC timestamp (seconds)."""
    return _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat()
