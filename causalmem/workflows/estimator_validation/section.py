"""HTML section of a validation for the report: findings, metrics table, chart."""

from __future__ import annotations

import html

import pandas as pd

from causalmem.workflows.estimator_validation.estimates import ESTIMATOR_LABELS
from causalmem.workflows.estimator_validation.metrics import GOAL_BIAS, GOAL_COVERAGE, metrics_table
from causalmem.workflows.estimator_validation.result import EstimatorValidation

__all__ = ["validation_section"]

_TRUTH_HTML = {
    "raw": "mean(Y<sup>A</sup> − Y<sup>B</sup>)",
    "adjusted": "mean(Y<sup>A</sup> − Y<sup>B</sup>) minus the never-trained shift",
}


def _fmt_table(frame: pd.DataFrame) -> str:
    return metrics_table(frame).to_html(
        index=False, float_format=lambda v: f"{v:.3f}", na_rep="–", border=0
    )


def _intro(result: EstimatorValidation) -> str:
    """Write the paragraph stating the outcome, the truth, the goal and the recommendation."""
    p = result.provenance
    return (
        f"<p>Outcome <code>{html.escape(result.outcome)}</code>; truth = "
        f"{_TRUTH_HTML[result.truth]}"
        f" over each cohort's instances; {len(p.get('replicates', []))} replicates (paired "
        f"runs); pointwise {result.level:.0%} intervals. Goal: |relative bias| ≤ "
        f"{GOAL_BIAS:.0%} and coverage in [{GOAL_COVERAGE[0]:.2f}, {GOAL_COVERAGE[1]:.2f}]. "
        f"Recommended estimator: <b>{html.escape(ESTIMATOR_LABELS[result.recommended])}</b>.</p>"
    )


def validation_section(
    result: EstimatorValidation, *, title: str = "Validation against counterfactual retraining"
) -> tuple[str, str]:
    """HTML section for the report: findings, the metrics table and the chart (inline SVG).

    Parameters
    ----------
    result
        Output of :func:`~causalmem.workflows.estimator_validation.validate_estimators`.
    title
        Section title.

    Returns
    -------
    (str, str)
        The title and an HTML fragment (no ``<html>`` wrapper).
    """
    import vl_convert as vlc

    svg = vlc.vegalite_to_svg(result.chart().to_json())
    items = "".join(f"<li>{html.escape(s)}</li>" for s in result.findings())
    body = (
        f"{_intro(result)}<ul>{items}</ul>"
        f"<div class='table'>{_fmt_table(result.metrics)}</div>"
        f"<div class='figure'>{svg}</div>"
    )
    return title, body
