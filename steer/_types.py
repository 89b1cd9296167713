"""Option aliases (``Literal``) and their validation at the API boundary."""

from __future__ import annotations

from typing import Literal, get_args

# One validator for the whole distribution (re-exported for steer's modules).
from lmecon.options import check_literal as check_literal

LabelMode = Literal["graded", "binary"]
VaderSource = Literal["movie", "tweets", "amazon", "nyt"]
HiddenCache = Literal["auto", "always", "never"]

# evaluation
Level = Literal["value", "prompt", "sample"]
ScorerKind = Literal["sentiment", "offensive"]
OffensiveBackend = Literal["auto", "profanity-check", "word-list"]

# highlighting, factors, crossmodel
Baseline = Literal["zero", "negated", "dummy"]
Rotation = Literal["varimax", "quartimax", "promax", "oblimin"]
RankBy = Literal["loading", "cosine"]
MarkerStyle = Literal["byte_level", "metaspace", "raw"]

VADER_SOURCES: tuple[str, ...] = get_args(VaderSource)

__all__ = [
    "VADER_SOURCES",
    "Baseline",
    "HiddenCache",
    "LabelMode",
    "Level",
    "MarkerStyle",
    "OffensiveBackend",
    "RankBy",
    "Rotation",
    "ScorerKind",
    "VaderSource",
    "check_literal",
]
