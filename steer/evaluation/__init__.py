"""The evaluation harness (DExperts protocol), its metrics and the offline scorers."""

from __future__ import annotations

from lmecon.lazy import lazy_exports

__all__ = [
    "Evaluation",
    "Scorer",
    "evaluate",
    "get_scorer",
    "resolve_scorers",
    "save_evaluations",
    "value_grid",
]

_WHERE = {
    "evaluate": "harness",
    "Evaluation": "harness",
    "save_evaluations": "harness",
    "value_grid": "harness",
    "Scorer": "scorers",
    "get_scorer": "scorers",
    "resolve_scorers": "scorers",
}

__getattr__, __dir__ = lazy_exports(__name__, _WHERE, __all__)
