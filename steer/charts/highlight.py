"""Altair chart of a highlight (:mod:`steer.highlighting`), built only from its tidy frame.

- :func:`delta_chart` reads :meth:`steer.highlighting.Highlight.tidy`.

Nothing is saved, themed or mutated here (frames are copied). Save with ``chart.save(...)`` or
:func:`lmecon.charts.save_chart`. Altair is imported lazily.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from lmecon.charts import alt as _alt
from steer.charts._common import _need

__all__ = ["delta_chart"]


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
