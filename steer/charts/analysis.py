"""Altair charts of factor analyses, highlights and transfers, built only from tidy frames.

- :func:`scree_chart` reads :meth:`steer.factors.FactorAnalysis.scree`;
- :func:`loadings_chart` reads :meth:`steer.factors.FactorAnalysis.tidy`;
- :func:`delta_chart` reads :meth:`steer.highlighting.Highlight.tidy`;
- :func:`fidelity_chart` reads :meth:`steer.crossmodel.transfer.TransferFidelity.tidy`;
- :func:`generation_chart` reads a frame ``model, value, vader`` (one row per continuation).

Nothing is saved, themed or mutated here (frames are copied). Save with ``chart.save(...)`` or
:func:`lmecon.charts.save_chart`. Altair is imported lazily.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from lmecon.charts import alt as _alt
from lmecon.charts import need_columns

__all__ = ["delta_chart", "fidelity_chart", "generation_chart", "loadings_chart", "scree_chart"]


def _need(frame: pd.DataFrame, cols: Sequence[str], what: str) -> pd.DataFrame:
    need_columns(frame, cols, what)
    return frame.copy()


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
    df = _need(scree, ["slot_name", "factor", "explained", "cumulative"], "scree_chart")
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
    df = _need(loadings, cols, "loadings_chart")
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
    df = _need(tokens, ["position", "piece", "delta", "span"], "delta_chart")
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
    df = _need(positions, ["logit_corr"], "fidelity_chart")
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


def generation_chart(frame: pd.DataFrame) -> Any:
    """Mean VADER compound of continuations against the steer value, one line per model.

    Parameters
    ----------
    frame
        One row per continuation: ``model, value, vader``.

    Returns
    -------
    altair.LayerChart
        Means with +-1.96 standard-error bars.
    """
    alt = _alt()
    df = _need(frame, ["model", "value", "vader"], "generation_chart")
    g = df.groupby(["model", "value"])["vader"]
    agg = pd.DataFrame({"mean": g.mean(), "se": g.std(ddof=1) / g.count() ** 0.5}).reset_index()
    agg = agg.assign(low=agg["mean"] - 1.96 * agg["se"], high=agg["mean"] + 1.96 * agg["se"])
    base = alt.Chart(agg).encode(x=alt.X("value:Q", title="steer value s (ε = s·ε₀)"),
                                 color=alt.Color("model:N"))  # fmt: skip
    line = base.mark_line(point=True).encode(y=alt.Y("mean:Q", title="mean VADER compound"))
    err = base.mark_errorbar().encode(y=alt.Y("low:Q", title="mean VADER compound"), y2="high:Q")
    return (line + err).properties(width=360, height=220, title="Generation under the steer")
