"""Within (fixed-effects) transformation and OLS inference for fixest-style regressions.

The within transformation removes the fixed effects by demeaning: for one factor it is the
group-mean deviation; for several it is the method of alternating projections (Guimaraes and
Portugal 2010; what fixest/pyfixest call demeaning), which converges in one sweep on a balanced
two-way panel (``y - ybar_i - ybar_t + ybar``). Group means use ``np.bincount``; no loop over
observations or groups.

Covariances follow pyfixest's defaults (``ssc(k_adj=True, k_fixef="nonnested", G_adj=True,
G_df="min")``): with ``df_k`` = slopes + fixed-effect levels not nested in a cluster dimension,
iid ``RSS / (N - df_k) (X'X)^-1``; hetero (HC1) ``N / (N - df_k)``; CRV1 ``(N - 1) / (N - df_k)
* G / (G - 1)`` with ``G`` the smallest cluster count; two-way clustering by Cameron, Gelbach
and Miller (2011), ``V_a + V_b - V_ab``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from causalmem._types import Float64Array, Int64Array


@dataclass(frozen=True, slots=True)
class Demeaned:
    """Demeaned columns and convergence record."""

    values: Float64Array  # [N, p]
    iterations: int
    converged: bool


def demean(
    x: Float64Array,
    factors: list[Int64Array],
    *,
    weights: Float64Array | None = None,
    tol: float = 1e-12,
    max_iter: int = 10_000,
) -> Demeaned:
    """Remove the fixed effects ``factors`` (integer codes) from every column of ``x``.

    Parameters
    ----------
    x : float64[N, p]
        Columns to demean (copied, never modified).
    factors
        One integer-code array per fixed effect, each ``int64[N]`` with codes ``0..L-1``.
    weights
        Optional observation weights (weighted means).
    tol
        Convergence tolerance on the largest change relative to the columns' scale.
    max_iter
        Maximum alternating-projection sweeps.

    Returns
    -------
    Demeaned
    """
    out = np.array(x, dtype=np.float64, copy=True)
    if out.ndim == 1:
        out = out[:, None]
    w = np.ones(out.shape[0]) if weights is None else np.asarray(weights, dtype=np.float64)
    sizes = [np.bincount(f, weights=w) for f in factors]
    scale = max(float(np.max(np.abs(out))) if out.size else 0.0, 1.0)
    for it in range(1, max_iter + 1):
        change = 0.0
        for f, n in zip(factors, sizes, strict=True):
            for j in range(out.shape[1]):
                m = np.bincount(f, weights=w * out[:, j], minlength=n.size) / n
                change = max(change, float(np.max(np.abs(m))))
                out[:, j] -= m[f]
        if len(factors) <= 1 or change <= tol * scale:
            return Demeaned(values=out, iterations=it, converged=True)
    return Demeaned(values=out, iterations=max_iter, converged=False)


def nested_in(factor: Int64Array, cluster: Int64Array) -> bool:
    """Whether every level of ``factor`` lies inside a single cluster."""
    order = np.lexsort((cluster, factor))
    f, c = factor[order], cluster[order]
    same = f[1:] == f[:-1]
    return bool(np.all(c[1:][same] == c[:-1][same]))


def cluster_meat(scores: Float64Array, cluster: Int64Array) -> tuple[Float64Array, int]:
    """``sum_g s_g s_g'`` with ``s_g`` the within-cluster sums of the score rows."""
    codes, inv = np.unique(cluster, return_inverse=True)
    p = scores.shape[1]
    sums = np.empty((codes.size, p))
    for j in range(p):
        sums[:, j] = np.bincount(inv, weights=scores[:, j], minlength=codes.size)
    return sums.T @ sums, int(codes.size)


def combine_codes(a: Int64Array, b: Int64Array) -> Int64Array:
    """Codes of the intersection ``a x b`` (for the two-way clustering overlap term)."""
    return np.unique(a.astype(np.int64) * (int(b.max()) + 1) + b, return_inverse=True)[1]
