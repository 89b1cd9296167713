"""Altair charts of steer results, built only from tidy frames (returned, never saved).

The chart builders that steer's results reach through their ``plot()`` method live here, in a
layer below the results (:mod:`steer.factors`, :mod:`steer.highlighting`,
:mod:`steer.crossmodel`, :mod:`steer.evaluation`), so that a result can draw itself without
importing :mod:`steer.charts` (a higher layer); the modules of :mod:`steer.charts` re-export
them. There is one implementation of each chart.

- :func:`epsilon_curves`, :func:`composition_grid` read
  :meth:`steer.evaluation.result.Evaluation.tidy` (``"value"`` level): metric against the steer
  value with 95% bands (the paper's Fig. 4a), and one metric over two steers' values (Fig. 4b);
- :func:`scree_chart`, :func:`loadings_chart` read :meth:`steer.factors.FactorAnalysis.scree`
  and :meth:`steer.factors.FactorAnalysis.tidy`;
- :func:`fidelity_chart` reads :meth:`steer.crossmodel.fidelity.TransferFidelity.tidy`;
- :func:`delta_chart` reads :meth:`steer.highlighting.Highlight.tidy`.

Nothing is saved, themed or mutated here (the caller's frame is copied). Save with
``chart.save("x.png")`` (needs ``vl-convert-python``) or :func:`lmecon.charts.save_chart`.
Altair is imported lazily.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from lmecon.charts import alt as _alt
from lmecon.charts import need_columns

if TYPE_CHECKING:
    import altair as alt

__all__ = [
    "METRIC_LABELS",
    "composition_grid",
    "delta_chart",
    "epsilon_curves",
    "fidelity_chart",
    "loadings_chart",
    "scree_chart",
]


def _need_copy(frame: pd.DataFrame, cols: Sequence[str], what: str) -> pd.DataFrame:
    """Check that ``frame`` has ``cols`` (naming the chart ``what``) and return a copy."""
    need_columns(frame, cols, what)
    return frame.copy()


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
    _need_tidy(frame, ("metric", "estimate", "conf_low", "conf_high", "prompt_set", x),
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
    _need_tidy(frame, ("metric", "estimate", x, y), "composition_grid")
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


def _need_tidy(frame: pd.DataFrame, cols: Sequence[str], what: str) -> None:
    need_columns(frame, cols, what, hint="Evaluation.tidy('value')")


def scree_chart(scree: pd.DataFrame, n: int = 30, *, log_scale: bool = False) -> Any:
    """Explained share of ``||W||_F^2`` per singular direction, one line per slot.

    Parameters
    ----------
    scree
        :meth:`FactorAnalysis.scree` frame (``slot_name, factor, explained, cumulative``).
    n
        Directions shown.
    log_scale
        Logarithmic y axis (singular values of a full-rank steer decay slowly).

    Returns
    -------
    altair.LayerChart
        Bars of the share and a line of the cumulative share.
    """
    alt = _alt()
    df = _need_copy(scree, ["slot_name", "factor", "explained", "cumulative"], "scree_chart")
    df = df[df["factor"] < n].assign(factor=lambda d: d["factor"] + 1)
    y_scale = alt.Scale(type="log") if log_scale else alt.Scale()
    base = alt.Chart(df).encode(
        x=alt.X("factor:O", title="singular direction k"),
        color=alt.Color("slot_name:N", title="slot"),
    )
    bars = base.mark_line(point=True).encode(
        y=alt.Y("explained:Q", title="share of ||W||²", scale=y_scale),
        tooltip=[
            "slot_name",
            "factor",
            alt.Tooltip("explained:Q", format=".3f"),
            alt.Tooltip("cumulative:Q", format=".3f"),
        ],  # fmt: skip
    )
    cum = base.mark_line(strokeDash=[4, 3]).encode(y=alt.Y("cumulative:Q"))
    return (bars + cum).properties(
        title="Scree of the steer: share of ||W||² per singular direction (dashed: cumulative)",
        width=420,
        height=220,
    )


def loadings_chart(loadings: pd.DataFrame, *, slot_name: str | None = None, n: int = 10) -> Any:
    """Top / bottom token loadings ``E v_k`` per factor (the paper's Table 6 as bars).

    Parameters
    ----------
    loadings
        :meth:`FactorAnalysis.tidy` frame.
    slot_name
        Slot shown (default: the first in the frame).
    n
        Tokens per pole.

    Returns
    -------
    altair.FacetChart
        One panel per factor, bars coloured by pole.
    """
    alt = _alt()
    cols = ["slot_name", "factor", "pole", "rank", "text", "loading"]
    df = _need_copy(loadings, cols, "loadings_chart")
    slot_name = slot_name or str(df["slot_name"].iloc[0])
    df = df[(df["slot_name"] == slot_name) & (df["rank"] < n)]
    df = df.assign(label=df["text"] + " (" + df["pole"].str[0] + df["rank"].astype(str) + ")")
    return (
        alt.Chart(df)
        .mark_bar()
        .encode(
            x=alt.X("loading:Q", title="loading E·v_k"),
            y=alt.Y("label:N", sort="-x", title=None),
            color=alt.Color(
                "pole:N", scale=alt.Scale(domain=["top", "bottom"], range=["#2166ac", "#b2182b"])
            ),  # fmt: skip
            tooltip=["factor", "pole", "rank", "text", alt.Tooltip("loading:Q", format=".3f")],
        )
        .properties(width=180, height=alt.Step(11))
        .facet(facet=alt.Facet("factor:O", title=f"factor ({slot_name})"), columns=3)
        .resolve_scale(y="independent")
    )


def fidelity_chart(positions: pd.DataFrame) -> Any:
    """Histogram of the per-context correlation of source and target logit shifts.

    Parameters
    ----------
    positions
        :meth:`TransferFidelity.tidy` frame (``logit_corr``).

    Returns
    -------
    altair.Chart
    """
    alt = _alt()
    df = _need_copy(positions, ["logit_corr"], "fidelity_chart")
    return (
        alt.Chart(df)
        .mark_bar()
        .encode(
            x=alt.X(
                "logit_corr:Q",
                bin=alt.Bin(maxbins=30, extent=[-1, 1]),
                title="corr(source Δ logits, target Δ logits) per context",
            ),  # fmt: skip
            y=alt.Y("count():Q", title="contexts"),
        )
        .properties(width=360, height=180, title="Transfer fidelity over shared tokens")
    )


def delta_chart(tokens: pd.DataFrame, *, title: str = "") -> Any:
    """Per-token ``Delta_i`` of one highlighted text, bars coloured by sign, spans outlined.

    Parameters
    ----------
    tokens
        :meth:`Highlight.tidy` frame (``position, piece, delta, span``).
    title
        Chart title.

    Returns
    -------
    altair.Chart
    """
    alt = _alt()
    df = _need_copy(tokens, ["position", "piece", "delta", "span"], "delta_chart")
    df = df.dropna(subset=["delta"])
    df = df.assign(
        label=df["position"].astype(str) + ":" + df["piece"].str.strip(),
        in_span=df["span"] >= 0,
        sign=df["delta"].ge(0).map({True: "raised", False: "lowered"}),
    )
    return (
        alt.Chart(df)
        .mark_bar()
        .encode(
            x=alt.X("label:N", sort=None, title=None),
            y=alt.Y("delta:Q", title="Δ log P"),
            color=alt.Color(
                "sign:N",
                scale=alt.Scale(domain=["raised", "lowered"], range=["#2166ac", "#b2182b"]),
            ),  # fmt: skip
            stroke=alt.condition("datum.in_span", alt.value("black"), alt.value(None)),
            strokeWidth=alt.value(1.5),
            tooltip=["position", "piece", alt.Tooltip("delta:Q", format="+.3f"), "span"],
        )
        .properties(title=title, width=alt.Step(16), height=160)
    )
