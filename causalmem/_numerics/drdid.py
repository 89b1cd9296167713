"""Two-period panel DiD estimators with covariates and their influence functions.

Sant'Anna, P. H. C. and Zhao, J. (2020), "Doubly robust difference-in-differences estimators",
Journal of Econometrics 219(1), https://doi.org/10.1016/j.jeconom.2020.06.003 — the estimators
R ``DRDID::drdid_panel`` (``dr``, traditional), ``reg_did_panel`` (``reg``, outcome regression)
and ``std_ipw_did_panel`` (``ipw``, Hajek-normalised) that R ``did::att_gt`` calls per cell.

Notation: ``dy = Y_post - Y_pre``, ``d`` treated indicator, ``x`` covariates with an intercept,
``w`` sampling weights normalised to mean one. The returned influence function ``inf`` satisfies
``att_hat - att ~ mean(inf)`` over the ``n1`` units of the cell. Propensity scores are capped at
``1 - 1e-6`` and comparison units with ``p >= 0.995`` are trimmed, as in DRDID >= 1.0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from causalmem._types import Float64Array

TRIM_LEVEL = 0.995
# R did marks a dr/ipw cell NA when an unweighted preliminary logit reaches this p-score.
OVERLAP_LIMIT = 0.999


@dataclass(frozen=True, slots=True)
class TwoByTwo:
    """A 2x2 DiD estimate: ``att`` and its influence function ``inf`` (float64[n1])."""

    att: float
    inf: Float64Array


@dataclass(frozen=True, slots=True)
class Logit:
    """Weighted logit fit: fitted probabilities and ``n * vcov`` of the coefficients."""

    p: Float64Array
    hessian_inv_n: Float64Array


class FitError(np.linalg.LinAlgError):
    """A propensity-score or outcome regression could not be fitted (singular design)."""


def logit_fit(d: Float64Array, x: Float64Array, w: Float64Array, max_iter: int = 100) -> Logit:
    """Fit ``P(d = 1 | x)`` by weighted maximum likelihood (Newton-Raphson / IRLS).

    Parameters
    ----------
    d : float64[n]
        Binary outcome.
    x : float64[n, k]
        Design including the intercept.
    w : float64[n]
        Weights.
    max_iter
        Newton iterations (converges in a handful for non-separated data).

    Returns
    -------
    Logit
        Fitted probabilities and ``n (X' diag(w p (1-p)) X)^{-1}`` (R: ``vcov(glm) * n``).
    """
    n, k = x.shape
    beta = np.zeros(k)
    pbar = np.clip(np.average(d, weights=w), 1e-6, 1 - 1e-6)
    beta[0] = np.log(pbar / (1 - pbar))
    for _ in range(max_iter):
        eta = x @ beta
        p = 1.0 / (1.0 + np.exp(-eta))
        wr = w * p * (1 - p)
        hess = x.T @ (wr[:, None] * x)
        grad = x.T @ (w * (d - p))
        try:
            step = np.linalg.solve(hess, grad)
        except np.linalg.LinAlgError as exc:
            raise FitError("singular propensity-score design") from exc
        beta = beta + step
        if np.max(np.abs(step)) < 1e-12 * (1 + np.max(np.abs(beta))):
            break
    eta = x @ beta
    p = 1.0 / (1.0 + np.exp(-eta))
    hess = x.T @ ((w * p * (1 - p))[:, None] * x)
    try:
        hinv = np.linalg.inv(hess)
    except np.linalg.LinAlgError as exc:
        raise FitError("singular propensity-score Hessian") from exc
    return Logit(p=p, hessian_inv_n=hinv * n)


def _wols(dy: Float64Array, x: Float64Array, w: Float64Array, d: Float64Array) -> Float64Array:
    ctrl = d == 0
    xc, wc = x[ctrl], w[ctrl]
    xtx = xc.T @ (wc[:, None] * xc)
    if np.linalg.cond(xtx) > 1.0 / np.finfo(float).eps:
        raise FitError("singular outcome-regression design among comparison units")
    return np.linalg.solve(xtx, xc.T @ (wc * dy[ctrl]))


def _ols_asy(
    dy: Float64Array, x: Float64Array, w: Float64Array, d: Float64Array, fitted: Float64Array
) -> Float64Array:
    n = dy.size
    wo = w * (1 - d)
    xpx_inv = np.linalg.inv((x.T @ (wo[:, None] * x)) / n)
    return (wo * (dy - fitted))[:, None] * x @ xpx_inv


def reg_did(dy: Float64Array, d: Float64Array, x: Float64Array, w: Float64Array) -> TwoByTwo:
    """Outcome-regression DiD (Heckman, Ichimura and Todd 1997), R ``DRDID::reg_did_panel``."""
    w = w / w.mean()
    beta = _wols(dy, x, w, d)
    out = x @ beta
    w_t = w * d
    eta_t = np.mean(w_t * dy) / np.mean(w_t)
    eta_c = np.mean(w_t * out) / np.mean(w_t)
    asy = _ols_asy(dy, x, w, d, out)
    inf_t = (w_t * dy - w_t * eta_t) / np.mean(w_t)
    m1 = np.mean(w_t[:, None] * x, axis=0)
    inf_c = (w_t * out - w_t * eta_c + asy @ m1) / np.mean(w_t)
    return TwoByTwo(att=float(eta_t - eta_c), inf=inf_t - inf_c)


def _ps_weights(d: Float64Array, w: Float64Array, fit: Logit) -> tuple[Float64Array, Float64Array]:
    p = np.minimum(fit.p, 1 - 1e-6)
    trim = np.where(d == 1, p < 1.01, p < TRIM_LEVEL).astype(np.float64)
    w_t = trim * w * d
    w_c = trim * w * p * (1 - d) / (1 - p)
    return w_t, w_c


def ipw_did(dy: Float64Array, d: Float64Array, x: Float64Array, w: Float64Array) -> TwoByTwo:
    """Hajek-normalised IPW DiD (Abadie 2005), R ``DRDID::std_ipw_did_panel``."""
    w = w / w.mean()
    fit = logit_fit(d, x, w)
    w_t, w_c = _ps_weights(d, w, fit)
    eta_t = np.mean(w_t * dy) / np.mean(w_t)
    eta_c = np.mean(w_c * dy) / np.mean(w_c)
    p = np.minimum(fit.p, 1 - 1e-6)
    asy_ps = (w * (d - p))[:, None] * x @ fit.hessian_inv_n
    inf_t = (w_t * dy - w_t * eta_t) / np.mean(w_t)
    m2 = np.mean((w_c * (dy - eta_c))[:, None] * x, axis=0)
    inf_c = (w_c * dy - w_c * eta_c + asy_ps @ m2) / np.mean(w_c)
    return TwoByTwo(att=float(eta_t - eta_c), inf=inf_t - inf_c)


def dr_did(dy: Float64Array, d: Float64Array, x: Float64Array, w: Float64Array) -> TwoByTwo:
    """Doubly robust DiD (Sant'Anna and Zhao 2020, traditional), R ``DRDID::drdid_panel``."""
    w = w / w.mean()
    fit = logit_fit(d, x, w)
    w_t, w_c = _ps_weights(d, w, fit)
    beta = _wols(dy, x, w, d)
    out = x @ beta
    r = dy - out
    eta_t = np.mean(w_t * r) / np.mean(w_t)
    eta_c = np.mean(w_c * r) / np.mean(w_c)
    asy_ols = _ols_asy(dy, x, w, d, out)
    p = np.minimum(fit.p, 1 - 1e-6)
    asy_ps = (w * (d - p))[:, None] * x @ fit.hessian_inv_n
    m1 = np.mean(w_t[:, None] * x, axis=0)
    inf_t = (w_t * r - w_t * eta_t - asy_ols @ m1) / np.mean(w_t)
    m2 = np.mean((w_c * (r - eta_c))[:, None] * x, axis=0)
    m3 = np.mean(w_c[:, None] * x, axis=0)
    inf_c = (w_c * r - w_c * eta_c + asy_ps @ m2 - asy_ols @ m3) / np.mean(w_c)
    return TwoByTwo(att=float(eta_t - eta_c), inf=inf_t - inf_c)


def mean_did(dy: Float64Array, d: Float64Array, w: Float64Array) -> TwoByTwo:
    """Unconditional DiD (difference of weighted mean changes); what all three reduce to."""
    w = w / w.mean()
    w_t, w_c = w * d, w * (1 - d)
    m_t = np.sum(w_t * dy) / np.sum(w_t)
    m_c = np.sum(w_c * dy) / np.sum(w_c)
    inf = w_t * (dy - m_t) / np.mean(w_t) - w_c * (dy - m_c) / np.mean(w_c)
    return TwoByTwo(att=float(m_t - m_c), inf=inf)


ESTIMATORS = {"dr": dr_did, "reg": reg_did, "ipw": ipw_did}
