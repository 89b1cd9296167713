"""Option aliases (``Literal``) and their validation at the API boundary."""

from __future__ import annotations

from typing import Literal, get_args

# One validator for the whole distribution (re-exported for steer's modules).
from lmecon.options import check_literal as check_literal

LabelMode = Literal["graded", "binary"]
VaderSource = Literal["movie", "tweets", "amazon", "nyt"]
HiddenCache = Literal["auto", "always", "never"]

VADER_SOURCES: tuple[str, ...] = get_args(VaderSource)

__all__ = ["VADER_SOURCES", "HiddenCache", "LabelMode", "VaderSource", "check_literal"]
