"""Shared pieces of every result: provenance, the tidy contract and rendering.

Every ``tidy()`` frame starts with the columns :data:`TIDY_COLUMNS` (snake_case, machine names);
human labels are applied only when rendering (:data:`DISPLAY_LABELS`).
"""

from __future__ import annotations

import datetime as _dt
import platform
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import norm

from causalmem._types import Float64Array
from lmecon.provenance import versions
from lmecon.result import ResultMixin, render_table

TIDY_COLUMNS = (
    "term",
    "estimate",
    "std_error",
    "statistic",
    "p_value",
    "conf_low",
    "conf_high",
)

DISPLAY_LABELS: Mapping[str, str] = {
    "term": "Term",
    "group": "Group",
    "time": "Time",
    "event_time": "Event time",
    "estimate": "Estimate",
    "std_error": "Std. error",
    "statistic": "t",
    "p_value": "p",
    "conf_low": "Lower",
    "conf_high": "Upper",
    "band": "Band",
    "se_method": "SE",
}

_VERSIONED = ("causalmem", "numpy", "pandas", "scipy", "formulaic")


def provenance(**extra: Any) -> Mapping[str, Any]:
    """Library versions, creation time (UTC) and caller-supplied fields, as a plain mapping."""
    return {
        "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "versions": versions(_VERSIONED),
        **extra,
    }


def inference_columns(
    estimate: Float64Array, se: Float64Array, crit: float | Float64Array
) -> dict[str, Float64Array]:
    """``statistic``, pointwise normal ``p_value`` and the band ``estimate -/+ crit * se``.

    A non-positive SE is not a certainty but a variance that could not be computed: it gives
    NaN statistics, p-values and intervals (never ``p = 0`` with a zero-width interval).
    """
    estimate = np.asarray(estimate, dtype=np.float64)
    se = np.asarray(se, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        se = np.where(se > 0, se, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = estimate / se
    return {
        "statistic": stat,
        "p_value": 2.0 * norm.sf(np.abs(stat)),
        "conf_low": estimate - crit * se,
        "conf_high": estimate + crit * se,
    }


def significance_mark(conf_low: pd.Series, conf_high: pd.Series) -> pd.Series:
    """``"*"`` where the interval excludes zero (R did's convention), else ``""``."""
    sig = (conf_low > 0) | (conf_high < 0)
    return pd.Series(np.where(sig, "*", ""), index=conf_low.index)


def render_frame(frame: pd.DataFrame, fmt: str, digits: int = 4, caption: str | None = None) -> str:
    """Render a tidy subset as LaTeX (booktabs), Markdown or HTML with display labels."""
    shown = frame.rename(columns={c: DISPLAY_LABELS.get(c, c) for c in frame.columns})
    return render_table(shown, fmt, digits, caption)


class RenderMixin(ResultMixin):
    """:class:`lmecon.result.ResultMixin` with the package's display labels.

    A result defines ``_table()`` (the frame to show) and ``_caption()``; ``to_latex``,
    ``to_markdown`` and ``_repr_html_`` render it through :func:`render_frame`.
    """

    def to_latex(self, digits: int = 4) -> str:
        """Return the main table as LaTeX (booktabs)."""
        return render_frame(self._table(), "latex", digits, caption=self._caption())

    def to_markdown(self, digits: int = 4) -> str:
        """Return the main table as Markdown."""
        return render_frame(self._table(), "markdown", digits, caption=self._caption())

    def _repr_html_(self) -> str:
        return render_frame(self._table(), "html", 4, caption=self._caption())
