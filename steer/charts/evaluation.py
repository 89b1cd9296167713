"""Altair charts of steer evaluations, built only from tidy frames (returned, never saved).

Both functions read the value-level frame of :meth:`steer.evaluation.result.Evaluation.tidy`
(columns ``metric, estimate, conf_low, conf_high`` plus the setting columns ``value`` or
``value_<slot>`` and ``prompt_set``), possibly several evaluations concatenated:

- :func:`epsilon_curves`: metric against the steer value with +-1.96 SE bands (the paper's
  Fig. 4a), one panel per metric, one colour per prompt set;
- :func:`composition_grid`: a heatmap of one metric over two steers' values (Fig. 4b).

Nothing is saved, themed or mutated here (the caller's frame is copied). Save with
``chart.save("x.png")`` (needs ``vl-convert-python``) or ``chart.save("x.html")``. Altair is
imported lazily.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import pandas as pd

from lmecon.charts import alt as _alt
from lmecon.charts import need_columns

if TYPE_CHECKING:
    import altair as alt

__all__ = ["METRIC_LABELS", "composition_grid", "epsilon_curves"]

METRIC_LABELS: Mapping[str, str] = {
    "vader_mean": "mean VADER compound",
    "vader_positive": "positive share (VADER)",
    "textblob_mean": "mean TextBlob polarity",
    "textblob_positive": "positive share (TextBlob)",
    "afinn_mean": "mean AFINN score",
    "afinn_positive": "positive share (AFINN)",
    "formality_mean": "mean P(formal)",
    "formality_positive": "formal share",
    "offensive_max": "max offensiveness",
    "offensive_any": "share of prompts with an offensive sample",
    "ppl_mean": "mean perplexity",
    "ppl_median": "median perplexity",
    "ppl_median_prompt": "median perplexity per prompt",
    "ppl_over_1e4": "perplexities >= 1e4",
    "ppl_mean_below_1e4": "mean perplexity < 1e4 (reference)",
    "dist_1": "distinct-1",
    "dist_2": "distinct-2",
    "dist_3": "distinct-3",
    "dist_1_ref": "distinct-1 (/ words)",
    "dist_2_ref": "distinct-2 (/ words)",
    "dist_3_ref": "distinct-3 (/ words)",
}
"""Display labels of the metric names (applied only when rendering)."""


def _select(frame: pd.DataFrame, metrics: Sequence[str], what: str) -> pd.DataFrame:
    have = list(dict.fromkeys(frame["metric"]))
    unknown = [m for m in metrics if m not in have]
    if unknown:
        raise KeyError(f"{what}: metrics {unknown} are not in the frame; it has {have}.")
    df = frame[frame["metric"].isin(list(metrics))].copy()
    df["metric_label"] = df["metric"].map(lambda m: METRIC_LABELS.get(m, m))
    return df


def epsilon_curves(
    frame: pd.DataFrame,
    metrics: Sequence[str] = ("vader_positive", "vader_mean", "ppl_median", "dist_2"),
    *,
    x: str = "value",
    x_title: str = "steer value s (eps = s * eps_0)",
    columns: int = 2,
    title: str = "Steer strength vs metrics",
    width: int = 220,
    height: int = 150,
) -> alt.FacetChart:
    """Metric against steer value with 95% bands, one panel per metric (the paper's Fig. 4a).

    Parameters
    ----------
    frame
        ``Evaluation.tidy("value")`` (one or several concatenated).
    metrics
        Metrics to show, in panel order.
    x
        Setting column on the x axis (``value``, ``epsilon`` or ``value_<slot>``).
    x_title, title
        Axis and chart titles.
    columns
        Panels per row.
    width, height
        Size of one panel.

    Returns
    -------
    altair.FacetChart
        Line + points of ``estimate``, band ``conf_low``..``conf_high`` (metrics without a
        standard error have no band), colour = ``prompt_set``; independent y scales.
    """
    alt = _alt()
    _need(frame, ("metric", "estimate", "conf_low", "conf_high", "prompt_set", x),
          "epsilon_curves")  # fmt: skip
    df = _select(frame, metrics, "epsilon_curves")
    order = [METRIC_LABELS.get(m, m) for m in metrics]
    color = alt.Color("prompt_set:N", title="prompts")
    xe = alt.X(f"{x}:Q", title=x_title)
    base = alt.Chart(df)
    band = base.mark_area(opacity=0.2).encode(
        x=xe, y=alt.Y("conf_low:Q", title="estimate"), y2="conf_high:Q", color=color
    )
    line = base.mark_line(point=True).encode(
        x=xe,
        y=alt.Y("estimate:Q", title="estimate", scale=alt.Scale(zero=False)),
        color=color,
        tooltip=[
            "prompt_set",
            x,
            "metric",
            alt.Tooltip("estimate:Q", format=".3f"),
            alt.Tooltip("std_error:Q", format=".3f"),
            "n_prompts",
        ],  # fmt: skip
    )
    return (
        alt.layer(band, line)
        .properties(width=width, height=height)
        .facet(facet=alt.Facet("metric_label:N", title=None, sort=order), columns=columns)
        .resolve_scale(y="independent")
        .properties(title=title)
    )


def composition_grid(
    frame: pd.DataFrame,
    metric: str = "vader_positive",
    *,
    x: str,
    y: str,
    x_title: str | None = None,
    y_title: str | None = None,
    title: str | None = None,
    fmt: str = ".2f",
    domain: tuple[float, float] | None = None,
) -> alt.LayerChart:
    """Heatmap of one metric over a grid of two steers' values (the paper's Fig. 4b).

    Parameters
    ----------
    frame
        ``Evaluation.tidy("value")`` of a grid (see :func:`steer.evaluation.settings.value_grid`).
    metric
        The metric coloured and printed in each cell.
    x, y
        Setting columns of the two axes (e.g. ``value_sentiment``, ``value_formality``).
    x_title, y_title, title
        Titles (default: the column and metric names).
    fmt
        d3 format of the cell labels.
    domain
        Colour scale domain (e.g. ``(0, 1)`` for shares; default: the data's range).

    Returns
    -------
    altair.LayerChart
        ``mark_rect`` coloured by ``estimate`` (ordinal axes, y descending) with text labels.
    """
    alt = _alt()
    _need(frame, ("metric", "estimate", x, y), "composition_grid")
    df = _select(frame, [metric], "composition_grid")
    dup = df.duplicated([x, y])
    if dup.any():
        raise ValueError(
            f"composition_grid: several rows per ({x}, {y}) cell (e.g. several prompt sets); "
            "filter the frame to one prompt set first."
        )
    label = METRIC_LABELS.get(metric, metric)
    xs = sorted(df[x].unique())
    ys = sorted(df[y].unique(), reverse=True)
    base = alt.Chart(df, title=title or f"{label} over two steers").encode(
        x=alt.X(f"{x}:O", title=x_title or x, sort=xs, axis=alt.Axis(labelAngle=0)),
        y=alt.Y(f"{y}:O", title=y_title or y, sort=ys),
    )
    scale = alt.Scale(scheme="redblue", domain=list(domain)) if domain else alt.Scale(
        scheme="redblue")  # fmt: skip
    rect = base.mark_rect().encode(
        color=alt.Color("estimate:Q", title=label, scale=scale),
        tooltip=[
            x,
            y,
            alt.Tooltip("estimate:Q", format=".3f"),
            alt.Tooltip("std_error:Q", format=".3f"),
        ],  # fmt: skip
    )
    text = base.mark_text(baseline="middle").encode(text=alt.Text("estimate:Q", format=fmt))
    return alt.layer(rect, text).properties(width=60 * len(xs), height=40 * len(ys))


def _need(frame: pd.DataFrame, cols: Sequence[str], what: str) -> None:
    need_columns(frame, cols, what, hint="Evaluation.tidy('value')")
