"""Multiplier-bootstrap standard errors and sup-t critical values (R ``did::mboot``).

Draws arrive on the r scale: ``zb[b, k] = sum_c v_bc r_ck`` with Rademacher ``v``. R's ``bres`` is
``n / sqrt(n_clusters) * zb``; the robust scale ``IQR / (z_.75 - z_.25)`` and the sup-t statistic
are invariant to that factor, but R's degeneracy rule (``colSums(bres^2) > 10 sqrt(eps)``) is
not, so it is applied on R's scale. Quantiles are R's ``type = 1`` (inverse empirical CDF).

Degenerate inference is never reported as certain: a bootstrap needs at least
:data:`MIN_BITERS` draws (the quartiles of fewer draws are not an SE), clustered inference at
least two clusters, and an SE at rounding-noise level (:func:`degenerate_se`) is set to NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

from causalmem._types import BoolArray, Float64Array, FloatArray

_IQR_TO_SD = float(norm.ppf(0.75) - norm.ppf(0.25))
_DEGENERATE = float(np.sqrt(np.finfo(float).eps) * 10)
#: Fewest multiplier-bootstrap draws accepted: the interquartile range of fewer draws is too
#: coarse to be a standard error (``biters=1`` gives an SE of exactly 0). R ``did`` uses 999.
MIN_BITERS = 10
#: An SE at or below ``_ROUNDING * max|y|`` is floating-point noise of a zero variance, not an
#: SE: variances computed from moments cancel to ``~eps * y^2``, so their square root is
#: ``~sqrt(eps) * |y|`` (R did's absolute rule ``se <= 10 sqrt(eps)``, made scale-aware).
_ROUNDING = _DEGENERATE


def degenerate_se(se: FloatArray, scale: float) -> BoolArray:
    """Which standard errors are degenerate: non-positive or at rounding-noise level.

    Parameters
    ----------
    se
        Standard errors (NaN entries are not flagged: they are already missing).
    scale
        Magnitude of the data the SEs are computed from (e.g. ``max |y|``); an SE at or below
        ``10 sqrt(eps) * scale`` (or exactly 0) is the rounding noise of a zero variance.

    Returns
    -------
    bool array
        True where the SE must be reported as NaN.
    """
    se = np.asarray(se, dtype=np.float64)
    tol = _ROUNDING * (scale if np.isfinite(scale) and scale > 0 else 1.0)
    with np.errstate(invalid="ignore"):
        return np.asarray(~np.isnan(se) & (se <= tol), dtype=bool)


@dataclass(frozen=True, slots=True)
class BootstrapSummary:
    """Bootstrap SEs (NaN for degenerate columns) and the sup-t critical value."""

    se: Float64Array
    crit_val: float
    nondegenerate: BoolArray


def _type1_index(p: float, n: int) -> int:
    """0-based order statistic of R's ``quantile(type = 1)`` (= numpy ``inverted_cdf``)."""
    return int(min(max(np.ceil(np.round(p * n, 9)) - 1, 0), n - 1))


def _order_stats(rows: FloatArray, lo: int, hi: int) -> tuple[FloatArray, FloatArray]:
    """Order statistics ``lo <= hi`` (0-based) of every row, in the rows' dtype.

    Two single-``kth`` partitions, the second on the ``hi`` smallest values only: numpy's
    vectorised selection handles one ``kth`` and is several times faster than
    ``np.partition(rows, [lo, hi])``; the values are the same order statistics.
    """
    part = np.partition(rows, hi, axis=1)
    q_hi = part[:, hi].copy()
    if lo == hi:
        return q_hi.copy(), q_hi
    part[:, :hi].partition(lo, axis=1)
    return part[:, lo].copy(), q_hi


def summarise_draws(
    zb: FloatArray, *, n_units: int, n_clusters: int, alp: float
) -> BootstrapSummary:
    """Bootstrap SE per row and the uniform critical value from r-scale draws.

    Parameters
    ----------
    zb : float64[K, B]
        Multiplier draws, one row per parameter (NaN rows could not be estimated).
    n_units, n_clusters
        R's ``n`` and the number of clusters (``n`` without clustering).
    alp
        Significance level of the band.

    Returns
    -------
    BootstrapSummary
    """
    n_par, n_b = zb.shape
    scale = n_units / np.sqrt(n_clusters)
    ss = np.einsum("kb,kb->k", zb, zb)  # NaN rows stay NaN
    ndg = np.isfinite(ss) & (ss * scale**2 > _DEGENERATE)
    se = np.full(n_par, np.nan)
    if not ndg.any():
        return BootstrapSummary(se=se, crit_val=float("nan"), nondegenerate=ndg)
    lo, hi = _type1_index(0.25, n_b), _type1_index(0.75, n_b)
    idx = np.flatnonzero(ndg)
    bt = np.zeros(n_b)
    step = 2048
    buf = np.empty((min(step, idx.size), n_b), dtype=zb.dtype)  # |z| / sigma, reused
    for i0 in range(0, idx.size, step):
        sel = idx[i0 : i0 + step]
        # A run of rows is read in place (a view): no copy of the draws besides the selection's.
        rows = zb[sel[0] : sel[-1] + 1] if sel[-1] - sel[0] == sel.size - 1 else zb[sel]
        q_lo, q_hi = _order_stats(rows, lo, hi)
        sigma = (q_hi - q_lo) / _IQR_TO_SD
        se[sel] = sigma
        t = buf[: sel.size]
        with np.errstate(divide="ignore", invalid="ignore"):
            np.divide(rows, sigma[:, None], out=t)
        np.abs(t, out=t)
        np.maximum(bt, np.max(t, axis=0), out=bt)
    bt = bt[np.isfinite(bt)]
    crit = float(np.quantile(bt, 1 - alp, method="inverted_cdf")) if bt.size else float("nan")
    return BootstrapSummary(se=se, crit_val=crit, nondegenerate=ndg)


def pointwise_crit(alp: float) -> float:
    """Two-sided normal critical value ``z_{1 - alp/2}``."""
    return float(norm.ppf(1 - alp / 2))
