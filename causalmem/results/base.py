"""Shared pieces of every result: provenance, the tidy contract and rendering.

Every ``tidy()`` frame starts with the columns :data:`TIDY_COLUMNS` (snake_case, machine names);
human labels are applied only when rendering (:data:`DISPLAY_LABELS`).
"""

from __future__ import annotations

import datetime as _dt
import platform
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy.stats import norm

from causalmem._types import Float64Array
from lmecon.options import check_literal
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


PAdjust = Literal["holm", "hochberg", "hommel", "bonferroni", "BH", "BY", "fdr", "none"]

# R ``p.adjust`` method names -> ``statsmodels.stats.multitest.multipletests`` method names.
P_ADJUST_METHODS: Mapping[str, str] = {
    "holm": "holm",
    "hochberg": "simes-hochberg",
    "hommel": "hommel",
    "bonferroni": "bonferroni",
    "BH": "fdr_bh",
    "fdr": "fdr_bh",
    "BY": "fdr_by",
}


def adjust_pvalues(p_value: Float64Array | pd.Series, method: PAdjust) -> Float64Array:
    """Multiplicity-adjusted p-values, as R ``p.adjust(p, method)`` (via statsmodels).

    The family is every finite p-value passed (NaN ones, e.g. reference cells or undefined
    SEs, stay NaN and do not count towards the family size, as R's ``p.adjust`` with NAs).

    Parameters
    ----------
    p_value
        Unadjusted p-values.
    method
        R's names: ``"holm"``, ``"hochberg"``, ``"hommel"``, ``"bonferroni"`` (family-wise
        error rate), ``"BH"`` (= ``"fdr"``, Benjamini-Hochberg false discovery rate), ``"BY"``
        (Benjamini-Yekutieli, FDR under any dependence), ``"none"``; computed by
        :func:`statsmodels.stats.multitest.multipletests` (``fdr_bh``, ``fdr_by``, ...).

    Returns
    -------
    numpy.ndarray
        Adjusted p-values (float64, NaN where the input is NaN), capped at 1.

    Raises
    ------
    ValueError
        For an unknown method.

    Examples
    --------
    >>> adjust_pvalues(np.array([0.01, 0.02, np.nan, 0.04]), "BH").round(3).tolist()
    [0.03, 0.03, nan, 0.04]
    """
    check_literal("p_adjust", method, PAdjust)
    p = np.asarray(p_value, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if method == "none" or not ok.any():
        out[ok] = p[ok]
        return out
    from statsmodels.stats.multitest import multipletests

    out[ok] = multipletests(p[ok], method=P_ADJUST_METHODS[method])[1]
    return out


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
