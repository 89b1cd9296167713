"""Dynamic TWFE event study on a balanced panel, solved on cohort x period cells.

Model: ``y_it = a_i + l_t + sum_{e != ref} beta_e 1{bin(t - g_i) = e} + u_it`` with relative
periods counted in checkpoints. In a balanced panel the two-way demeaned indicator row
``x~_it = D_it - Dbar_i - Dbar_t + Dbar`` depends only on the unit's cohort ``g`` and the period
``t``, so with ``X_g`` the ``[T, P]`` matrix of those rows::

    X~'X~ = sum_g n_g X_g' X_g,      X~'y~ = sum_g X_g' S_g   (S_g[t] = sum_{i in g} y~_it)

and every score needed by iid / HC1 / CRV1 (unit, time, or two-way) covariances is a product of
cohort-level residual sums with ``X_g``. Cost O(G T P^2 + N T P) instead of O(N T P^2) and no
``NT x P`` design matrix, which is what makes ~300 indicators on 2.5M rows feasible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from causalmem._types import Float64Array, Int64Array
from causalmem.errors import IdentificationError, OptionError, SingularDesignError


def block_sums(x: Float64Array, block: Int64Array) -> Float64Array:
    """Row sums of ``x`` within consecutive blocks (empty blocks give zeros)."""
    padded = np.vstack([x, np.zeros((1, *x.shape[1:]))])
    out = np.add.reduceat(padded, block[:-1], axis=0)
    out[np.diff(block) == 0] = 0.0
    return out


def _weighted_gram(xg: Float64Array, w: Float64Array) -> Float64Array:
    """``sum_{g,t} w[g, t] xg[g, t] xg[g, t]'`` for non-negative ``w``."""
    rows = xg.reshape(-1, xg.shape[2]) * np.sqrt(np.asarray(w, dtype=float).reshape(-1))[:, None]
    return rows.T @ rows


@dataclass(frozen=True, slots=True)
class EventStudyFit:
    """Coefficients and the pieces needed for any covariance.

    beta : float64[P]; xtx_inv : float64[P, P]; rel : int64[P] relative periods of the columns;
    resid : float64[N, T] residuals; xg : float64[G + 1, T, P] demeaned rows per cohort (never
    treated last); block : int64[G + 2] unit offsets of the cohort blocks; rss, tss.
    """

    beta: Float64Array
    xtx_inv: Float64Array
    rel: Int64Array
    resid: Float64Array
    xg: Float64Array
    block: Int64Array
    rss: float
    tss: float


def bin_matrix(
    gpos: Int64Array, n_t: int, ref: int, window: tuple[int, int] | None
) -> tuple[Int64Array, Int64Array]:
    """Column index of each (cohort, period) cell (-1 = none/reference) and the columns' periods."""
    t = np.arange(n_t)
    k = t[None, :] - gpos[:, None]
    if window is not None:
        k = np.clip(k, window[0], window[1])
    rel = np.unique(k)
    rel = rel[rel != ref]
    col = np.searchsorted(rel, k)
    col = np.where(k == ref, -1, col)
    return col.astype(np.int64), rel.astype(np.int64)


def check_window(gpos: Int64Array, n_t: int, ref: int, window: tuple[int, int] | None) -> None:
    """Refuse a window or reference period the data cannot identify (before any fit).

    Parameters
    ----------
    gpos : int64[G]
        Treatment period index of each treated cohort.
    n_t
        Number of periods.
    ref
        Omitted relative period.
    window
        ``(lo, hi)`` binning window, or None.

    Raises
    ------
    OptionError
        ``lo > hi``.
    IdentificationError
        The window lies outside the relative periods of the data, or ``ref`` is not one of the
        (binned) relative periods, so no period would be omitted.
    """
    if gpos.size == 0:
        return
    k_lo, k_hi = -int(gpos.max()), n_t - 1 - int(gpos.min())
    avail = f"the data have relative periods {k_lo}..{k_hi} (in checkpoints)"
    if window is not None:
        lo, hi = window
        if lo > hi:
            raise OptionError(
                f"window={tuple(window)!r}: lo is above hi; pass (lo, hi) with lo <= hi ({avail})."
            )
        if hi < k_lo or lo > k_hi:
            raise IdentificationError(
                f"window={tuple(window)!r} lies outside the data: {avail}. Every period would "
                "fall into one end bin; choose lo and hi within that range."
            )
    k = np.arange(k_lo, k_hi + 1)
    binned = np.unique(np.clip(k, *window)) if window is not None else k
    if ref not in binned:
        where = f" after binning with window={tuple(window)!r}" if window is not None else ""
        raise IdentificationError(
            f"ref={ref} is not a relative period of the data{where} ({avail}), so no period "
            f"would be omitted; choose ref among {binned.min()}..{binned.max()}."
        )


def fit_event_study(
    y: Float64Array, gpos: Int64Array, block: Int64Array, ref: int, window: tuple[int, int] | None
) -> EventStudyFit:
    """Fit the dynamic TWFE event study.

    Parameters
    ----------
    y : float64[N, T]
        Balanced outcomes with units in cohort blocks (never treated last).
    gpos : int64[G]
        Treatment period index of each treated cohort.
    block : int64[G + 2]
        Unit offsets of the cohort blocks.
    ref
        Reference relative period (omitted), usually -1.
    window
        ``(lo, hi)`` to bin relative periods outside it into the end points, or None.
    """
    n, n_t = y.shape
    n_g = gpos.size
    check_window(gpos, n_t, ref, window)
    col, rel = bin_matrix(gpos, n_t, ref, window)
    p = rel.size
    sizes = np.diff(block).astype(np.float64)
    # Raw indicator rows per cohort (never treated: zeros).
    e = np.zeros((n_g + 1, n_t, p))
    gi, ti = np.nonzero(col >= 0)
    e[gi, ti, col[gi, ti]] = 1.0
    counts = e.sum(axis=1)  # [G+1, P]
    a = counts / n_t  # unit means, per cohort
    b = np.einsum("g,gtp->tp", sizes, e) / n  # period means
    dbar = counts.T @ sizes / (n * n_t)
    xg = e - a[:, None, :] - b[None, :, :] + dbar[None, None, :]

    yd = y - y.mean(axis=1, keepdims=True) - y.mean(axis=0, keepdims=True) + y.mean()
    s = block_sums(yd, block)
    xtx = _weighted_gram(xg, np.repeat(sizes[:, None], n_t, axis=1))
    xty = np.einsum("gtp,gt->p", xg, s)
    if not np.isfinite(np.linalg.cond(xtx)) or np.linalg.cond(xtx) > 1e12:
        raise SingularDesignError(
            "The relative-period indicators are collinear with the unit and period fixed "
            "effects (typical without never-treated units: a fully dynamic specification needs "
            "a second reference period). Bin distant periods with window=(lo, hi) or add "
            "never-treated units."
        )
    xtx_inv: Float64Array = np.asarray(np.linalg.inv(xtx), dtype=np.float64)
    beta = xtx_inv @ xty
    fitted = xg @ beta  # [G+1, T]
    resid = yd - np.repeat(fitted, np.diff(block), axis=0)
    return EventStudyFit(
        beta=beta,
        xtx_inv=xtx_inv,
        rel=rel,
        resid=resid,
        xg=xg,
        block=block,
        rss=float(np.sum(resid**2)),
        tss=float(np.sum(yd**2)),
    )


def unit_scores(fit: EventStudyFit) -> Float64Array:
    """``s_i = sum_t x~_it u_it`` per unit, ``[N, P]``."""
    out = np.empty((fit.resid.shape[0], fit.beta.size))
    for g in range(fit.xg.shape[0]):
        a, b = fit.block[g], fit.block[g + 1]
        out[a:b] = fit.resid[a:b] @ fit.xg[g]
    return out


def period_scores(fit: EventStudyFit) -> Float64Array:
    """``s_t = sum_i x~_it u_it`` per period, ``[T, P]``."""
    v = block_sums(fit.resid, fit.block)  # [G+1, T]
    return np.einsum("gt,gtp->tp", v, fit.xg)


def hetero_meat(fit: EventStudyFit) -> Float64Array:
    """``sum_it u_it^2 x~_it x~_it'``."""
    return _weighted_gram(fit.xg, block_sums(fit.resid**2, fit.block))
