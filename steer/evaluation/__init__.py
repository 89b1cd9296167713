"""The evaluation harness (DExperts protocol), its metrics and the offline scorers.

Modules: ``harness`` (:func:`evaluate`), ``settings`` (steer settings, sample seeds),
``metrics`` (distinct-n, perplexity, aggregation), ``result`` (:class:`Evaluation`,
:func:`save_evaluations`) and ``scorers``.
"""

from __future__ import annotations

from lmecon.lazy import lazy_exports

__all__ = [
    "DEFAULT_SCORERS",
    "PPL_LIMIT",
    "EvaluateSpec",
    "Evaluation",
    "Scorer",
    "conditional_perplexity",
    "distinct_n",
    "distinct_n_corpus",
    "evaluate",
    "get_scorer",
    "resolve_scorers",
    "sample_seeds",
    "save_evaluations",
    "sweep_table",
    "vader_compound",
    "value_grid",
]

_WHERE = {
    "evaluate": "harness",
    "DEFAULT_SCORERS": "harness",
    "Evaluation": "result",
    "EvaluateSpec": "result",
    "save_evaluations": "result",
    "value_grid": "settings",
    "sample_seeds": "settings",
    "PPL_LIMIT": "metrics",
    "conditional_perplexity": "metrics",
    "distinct_n": "metrics",
    "distinct_n_corpus": "metrics",
    "sweep_table": "metrics",
    "vader_compound": "metrics",
    "Scorer": "scorers",
    "get_scorer": "scorers",
    "resolve_scorers": "scorers",
}

__getattr__, __dir__ = lazy_exports(__name__, _WHERE, __all__)
