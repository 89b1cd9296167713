"""Multiplier-bootstrap standard errors and sup-t critical values (R ``did::mboot``).

Draws arrive on the r scale: ``zb[b, k] = sum_c v_bc r_ck`` with Rademacher ``v``. R's ``bres`` is
``n / sqrt(n_clusters) * zb``; the robust scale ``IQR / (z_.75 - z_.25)`` and the sup-t statistic
are invariant to that factor, but R's degeneracy rule (``colSums(bres^2) > 10 sqrt(eps)``) is
not, so it is applied on R's scale. Quantiles are R's ``type = 1`` (inverse empirical CDF).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

from causalmem._types import BoolArray, Float64Array

_IQR_TO_SD = float(norm.ppf(0.75) - norm.ppf(0.25))
_DEGENERATE = float(np.sqrt(np.finfo(float).eps) * 10)


@dataclass(frozen=True, slots=True)
class BootstrapSummary:
    """Bootstrap SEs (NaN for degenerate columns) and the sup-t critical value."""

    se: Float64Array
    crit_val: float
    nondegenerate: BoolArray


def summarise_draws(
    zb: Float64Array, *, n_units: int, n_clusters: int, alp: float
) -> BootstrapSummary:
    """Bootstrap SE per column and the uniform critical value from r-scale draws.

    Parameters
    ----------
    zb : float64[B, K]
        Multiplier draws (NaN columns are cells that could not be estimated).
    n_units, n_clusters
        R's ``n`` and the number of clusters (``n`` without clustering).
    alp
        Significance level of the band.

    Returns
    -------
    BootstrapSummary
    """
    scale = n_units / np.sqrt(n_clusters)
    finite = ~np.isnan(zb).any(axis=0)
    ss = np.where(finite, np.nansum(zb**2, axis=0) * scale**2, 0.0)
    ndg = finite & (ss > _DEGENERATE)
    se = np.full(zb.shape[1], np.nan)
    if not ndg.any():
        return BootstrapSummary(se=se, crit_val=float("nan"), nondegenerate=ndg)
    sub = zb[:, ndg]
    q = np.quantile(sub, [0.25, 0.75], axis=0, method="inverted_cdf")
    sigma = (q[1] - q[0]) / _IQR_TO_SD
    se[ndg] = sigma
    with np.errstate(divide="ignore", invalid="ignore"):
        bt = np.nanmax(np.abs(sub / sigma), axis=1)
    bt = bt[np.isfinite(bt)]
    crit = float(np.quantile(bt, 1 - alp, method="inverted_cdf")) if bt.size else float("nan")
    return BootstrapSummary(se=se, crit_val=crit, nondegenerate=ndg)


def pointwise_crit(alp: float) -> float:
    """Two-sided normal critical value ``z_{1 - alp/2}``."""
    return float(norm.ppf(1 - alp / 2))
