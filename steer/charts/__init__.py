"""Altair charts of steer results, built only from tidy frames (returned, never saved)."""

from __future__ import annotations

from lmecon.lazy import lazy_exports

__all__ = [
    "METRIC_LABELS",
    "composition_grid",
    "delta_chart",
    "epsilon_curves",
    "fidelity_chart",
    "generation_chart",
    "loadings_chart",
    "scree_chart",
]

_WHERE = {
    "epsilon_curves": "evaluation",
    "composition_grid": "evaluation",
    "METRIC_LABELS": "evaluation",
    "scree_chart": "factors",
    "loadings_chart": "factors",
    "delta_chart": "highlight",
    "fidelity_chart": "transfer",
    "generation_chart": "generation",
}

__getattr__, __dir__ = lazy_exports(__name__, _WHERE, __all__)
