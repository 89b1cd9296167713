"""TWFE diagnostics on cohort-by-period cells, as pure functions (no loops over units).

Goodman-Bacon (2021), "Difference-in-differences with variation in treatment timing",
*Journal of Econometrics* 225(2), Theorem 1: on a balanced panel with staggered adoption, the
static TWFE coefficient is a weighted average of every 2x2 DiD between timing groups and the
never/always treated, with weights that are products of group sizes and treatment variances.

de Chaisemartin & D'Haultfoeuille (2020), "Two-way fixed effects estimators with heterogeneous
treatment effects", *American Economic Review* 110(9), Theorem 1: the TWFE coefficient is
``sum_{(g,t): D=1} W_gt Delta_gt`` with ``W_gt`` proportional to the summed residuals of the
treatment on the two sets of fixed effects in cell ``(g, t)`` (some may be negative).

Every cohort is described by its number of units ``n``, its cell means ``ybar[k, :]`` on the
time grid and the grid index ``start`` of its first treated period (``T`` for cohorts never
treated within the panel, ``0`` for cohorts treated throughout).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from causalmem._types import Float64Array, Int64Array

__all__ = [
    "BaconCells",
    "TYPE_ALWAYS",
    "TYPE_EARLY",
    "TYPE_LATE",
    "TYPE_NEVER",
    "bacon_cells",
    "treatment_residual_cells",
    "twfe_coefficient_cells",
]

TYPE_NEVER = "Treated vs Untreated"
TYPE_EARLY = "Earlier vs Later Treated"
TYPE_LATE = "Later vs Earlier Treated"
TYPE_ALWAYS = "Later vs Always Treated"


@dataclass(frozen=True)
class BaconCells:
    """Every 2x2 comparison: indices of the treated and control cohort, estimate, weight, type."""

    treated: Int64Array
    control: Int64Array
    estimate: Float64Array
    weight: Float64Array
    type: np.ndarray
    variance_d: float


def treatment_residual_cells(n: Float64Array, start: Int64Array, n_periods: int) -> Float64Array:
    """Residual of ``D`` on unit and period effects in a balanced panel, by cohort x period.

    ``D[k, t] = t >= start[k]``; the residual is ``D - Dbar_k - Dbar_t + Dbar`` (period and
    grand means weighted by the cohort sizes ``n``).
    """
    t = np.arange(n_periods)
    d = (t[None, :] >= start[:, None]).astype(np.float64)
    w = n / n.sum()
    row = d.mean(axis=1, keepdims=True)
    col = (w[:, None] * d).sum(axis=0, keepdims=True)
    return d - row - col + float((w[:, None] * d).sum() / n_periods)


def twfe_coefficient_cells(
    ybar: Float64Array, n: Float64Array, start: Int64Array
) -> tuple[float, Float64Array]:
    """Return the static TWFE coefficient of a balanced panel (cell means) and ``D``'s residuals.

    ``beta = sum n_k Dtilde[k, t] ybar[k, t] / sum n_k Dtilde[k, t]^2`` (Frisch-Waugh-Lovell;
    the unit effects drop out because ``Dtilde`` sums to zero within every unit).
    """
    dt = treatment_residual_cells(n, start, ybar.shape[1])
    num = float((n[:, None] * dt * ybar).sum())
    den = float((n[:, None] * dt * dt).sum())
    return num / den, dt


def _window_mean(cum: Float64Array, k: Int64Array, a: Int64Array, b: Int64Array) -> Float64Array:
    return (cum[k, b] - cum[k, a]) / (b - a)


def bacon_cells(ybar: Float64Array, n: Float64Array, start: Int64Array) -> BaconCells:
    """Goodman-Bacon decomposition from cohort cell means of a balanced panel.

    Parameters
    ----------
    ybar : float64[K, T]
        Mean outcome of each cohort in each period.
    n : float64[K]
        Units per cohort.
    start : int64[K]
        Grid index of each cohort's first treated period (``T``: never treated in the panel;
        ``0``: treated throughout).

    Returns
    -------
    BaconCells
        Weights sum to one; ``sum(weight * estimate)`` equals the TWFE coefficient.
    """
    n_k, n_t = ybar.shape
    cum = np.concatenate([np.zeros((n_k, 1)), np.cumsum(ybar, axis=1)], axis=1)
    dbar = (n_t - start) / n_t
    timing = np.flatnonzero((start > 0) & (start < n_t))
    never = np.flatnonzero(start >= n_t)
    always = np.flatnonzero(start <= 0)
    timing = timing[np.argsort(start[timing], kind="stable")]
    parts: list[tuple[Int64Array, Int64Array, Float64Array, Float64Array, np.ndarray]] = []
    full_t = np.full(1, n_t)
    zero = np.zeros(1, dtype=np.int64)

    def dd(
        tr: Int64Array, co: Int64Array, a: Int64Array, m: Int64Array, b: Int64Array
    ) -> Float64Array:
        # (post [m, b) - pre [a, m)) of treated minus control
        post = _window_mean(cum, tr, m, b) - _window_mean(cum, co, m, b)
        pre = _window_mean(cum, tr, a, m) - _window_mean(cum, co, a, m)
        return post - pre

    # treated (timing) vs never treated / vs always treated, over the whole window
    for controls, label in ((never, TYPE_NEVER), (always, TYPE_ALWAYS)):
        if controls.size and timing.size:
            tr, co = (g.ravel() for g in np.meshgrid(timing, controls, indexing="ij"))
            s = start[tr]
            est = dd(tr, co, np.broadcast_to(zero, s.shape), s, np.broadcast_to(full_t, s.shape))
            wt = n[tr] * n[co] * dbar[tr] * (1.0 - dbar[tr])
            parts.append((tr, co, est, wt, np.full(tr.size, label, dtype=object)))
    # timing pairs: k earlier (start_k < start_l) and l later
    if timing.size > 1:
        i, j = np.triu_indices(timing.size, 1)
        k, l_ = timing[i], timing[j]
        same = start[k] == start[l_]
        k, l_ = k[~same], l_[~same]
        sk, sl = start[k], start[l_]
        nn = n[k] * n[l_]
        gap = dbar[k] - dbar[l_]
        # earlier group treated, later group control, window [0, s_l)
        est_e = dd(k, l_, np.zeros_like(sk), sk, sl)
        wt_e = nn * gap * (1.0 - dbar[k])
        # later group treated, earlier (already treated) group control, window [s_k, T)
        est_l = dd(l_, k, sk, sl, np.full_like(sl, n_t))
        wt_l = nn * gap * dbar[l_]
        parts.append((k, l_, est_e, wt_e, np.full(k.size, TYPE_EARLY, dtype=object)))
        parts.append((l_, k, est_l, wt_l, np.full(k.size, TYPE_LATE, dtype=object)))
    if not parts:
        empty = np.zeros(0)
        return BaconCells(
            np.zeros(0, np.int64), np.zeros(0, np.int64), empty, empty, np.zeros(0, object), 0.0
        )
    tr = np.concatenate([p[0] for p in parts])
    co = np.concatenate([p[1] for p in parts])
    est = np.concatenate([p[2] for p in parts])
    wt = np.concatenate([p[3] for p in parts])
    typ = np.concatenate([p[4] for p in parts])
    total = float(wt.sum())
    return BaconCells(
        tr.astype(np.int64),
        co.astype(np.int64),
        est,
        wt / total if total > 0 else wt,
        typ,
        total / float(n.sum()) ** 2,
    )
