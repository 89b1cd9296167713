"""Altair charts of a factor analysis (:mod:`steer.factors`), built only from tidy frames.

- :func:`scree_chart` reads :meth:`steer.factors.FactorAnalysis.scree`;
- :func:`loadings_chart` reads :meth:`steer.factors.FactorAnalysis.tidy`.

Nothing is saved, themed or mutated here (frames are copied). Save with ``chart.save(...)`` or
:func:`lmecon.charts.save_chart`. Altair is imported lazily.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from lmecon.charts import alt as _alt
from steer.charts._common import _need

__all__ = ["loadings_chart", "scree_chart"]


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
