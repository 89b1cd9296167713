"""Altair chart of generations under a steer, built only from a tidy frame.

- :func:`generation_chart` reads a frame ``model, value, vader`` (one row per continuation).

Nothing is saved, themed or mutated here (frames are copied). Save with ``chart.save(...)`` or
:func:`lmecon.charts.save_chart`. Altair is imported lazily.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from lmecon.charts import alt as _alt
from steer.charts._common import _need

__all__ = ["generation_chart"]


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
