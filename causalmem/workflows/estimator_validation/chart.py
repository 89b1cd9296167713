"""Chart of a validation: estimate vs truth per estimator over coverage and bias bars."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from causalmem.workflows.estimator_validation.estimates import ESTIMATOR_LABELS
from causalmem.workflows.estimator_validation.metrics import GOAL_BIAS, GOAL_COVERAGE

if TYPE_CHECKING:
    import altair as alt

__all__ = ["validation_chart"]


def _scatter(comparisons: pd.DataFrame) -> alt.FacetChart:
    """Estimate vs truth with intervals and the y = x line, one panel per estimator."""
    import altair as alt

    c = comparisons[comparisons["period"] == "post"].copy()
    has_cells = set(c.loc[c["level"] == "cell", "estimator"])
    c = c[(c["level"] == "cell") | ~c["estimator"].isin(has_cells)]
    c["label"] = c["estimator"].map(ESTIMATOR_LABELS) + np.where(
        c["level"] == "event", " (event path)", ""
    )
    c["replicate"] = c["replicate"].astype(str)
    pts = (
        alt.Chart()
        .mark_circle(size=28, opacity=0.7)
        .encode(
            x=alt.X("truth:Q", title="true τ (counterfactual retraining)"),
            y=alt.Y("estimate:Q", title="estimate"),
            color=alt.Color("replicate:N", title="replicate"),
            tooltip=["label", "group", "time", "event_period", "estimate", "truth"],
        )
    )
    bars = (
        alt.Chart()
        .mark_rule(opacity=0.35)
        .encode(x="truth:Q", y="conf_low:Q", y2="conf_high:Q", color="replicate:N")
    )
    # y = x, drawn through each panel's own truths
    line = (
        alt.Chart()
        .mark_line(color="black", strokeDash=[4, 3])
        .encode(x="truth:Q", y=alt.Y("truth:Q"))
    )
    return (
        alt.layer(bars, pts, line, data=c)
        .properties(width=170, height=170)
        .facet(facet=alt.Facet("label:N", title=None), columns=3)
        .resolve_scale(x="shared", y="shared")
    )


def _goal_bars(metrics: pd.DataFrame) -> alt.HConcatChart:
    """Coverage and relative-bias bars of the post-treatment rows, over the goal's bands."""
    import altair as alt

    m = metrics[metrics["period"] == "post"].copy()
    m["label"] = m["estimator"].map(ESTIMATOR_LABELS) + np.where(
        m["level"] == "event", " (event)", " (cells)"
    )
    m["rel_bias_pct"] = 100 * m["rel_bias"]
    goal_colours = alt.Scale(domain=[True, False], range=["#4c9a2a", "#c44e52"])
    cov = (
        alt.Chart(m)
        .mark_bar()
        .encode(
            y=alt.Y("label:N", title=None, sort=None),
            x=alt.X("coverage:Q", title="coverage of the truth", scale=alt.Scale(domain=[0, 1])),
            color=alt.Color("meets_goal:N", title="meets goal", scale=goal_colours),
        )
    )
    band = (
        alt.Chart(pd.DataFrame({"lo": [GOAL_COVERAGE[0]], "hi": [GOAL_COVERAGE[1]]}))
        .mark_rect(opacity=0.15, color="green")
        .encode(x="lo:Q", x2="hi:Q")
    )
    bias = (
        alt.Chart(m)
        .mark_bar()
        .encode(
            y=alt.Y("label:N", title=None, sort=None),
            x=alt.X("rel_bias_pct:Q", title="relative bias (% of mean truth)"),
            color=alt.Color("meets_goal:N", title="meets goal", scale=goal_colours),
        )
    )
    bband = (
        alt.Chart(pd.DataFrame({"lo": [-100 * GOAL_BIAS], "hi": [100 * GOAL_BIAS]}))
        .mark_rect(opacity=0.15, color="green")
        .encode(x="lo:Q", x2="hi:Q")
    )
    return alt.hconcat(
        alt.layer(band, cov).properties(width=260, height=220),
        alt.layer(bband, bias).properties(width=260, height=220),
    )


def validation_chart(comparisons: pd.DataFrame, metrics: pd.DataFrame) -> alt.VConcatChart:
    """Estimate vs truth per estimator (post-treatment, y = x line) over bias/coverage bars.

    Parameters
    ----------
    comparisons, metrics
        :attr:`EstimatorValidation.comparisons` and :attr:`EstimatorValidation.metrics`.

    Returns
    -------
    altair.VConcatChart
    """
    import altair as alt

    return (
        alt.vconcat(_scatter(comparisons), _goal_bars(metrics))
        .resolve_scale(color="independent")
        .properties(title="Estimators vs the true memorisation profile (counterfactual retraining)")
    )
