"""Altair chart of a transfer's fidelity (:mod:`steer.crossmodel`), built from its tidy frame.

- :func:`fidelity_chart` reads :meth:`steer.crossmodel.fidelity.TransferFidelity.tidy`.

Nothing is saved, themed or mutated here (frames are copied). Save with ``chart.save(...)`` or
:func:`lmecon.charts.save_chart`. Altair is imported lazily.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from lmecon.charts import alt as _alt
from steer.charts._common import _need

__all__ = ["fidelity_chart"]


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
