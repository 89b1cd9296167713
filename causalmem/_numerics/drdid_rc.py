"""Two-period DiD estimators for repeated cross-sections and their influence functions.

Sant'Anna, P. H. C. and Zhao, J. (2020), "Doubly robust difference-in-differences estimators",
Journal of Econometrics 219(1), https://doi.org/10.1016/j.jeconom.2020.06.003, Section 3 — the
estimators R ``DRDID::drdid_rc`` (``dr``: the locally efficient doubly robust estimator, R
``did``'s default for ``panel = FALSE``), ``reg_did_rc`` (``reg``, outcome regression) and
``std_ipw_did_rc`` (``ipw``, Hajek-normalised IPW) that R ``did::att_gt`` calls per cell when the
data are repeated cross-sections.

Notation: one row per *observation* (an instance scored at one checkpoint), ``y`` its outcome,
``post`` whether it is from the cell's outcome period (1) or base period (0), ``d`` whether it
belongs to the treated cohort, ``x`` covariates with an intercept, ``w`` sampling weights
normalised to mean one. The returned influence function ``inf`` satisfies
``att_hat - att ~ mean(inf)`` over the ``n1`` observations of the cell. Propensity scores are
capped at ``1 - 1e-6`` and comparison observations with ``p >= 0.995`` are trimmed (DRDID >= 1.0).
"""

from __future__ import annotations

import numpy as np

from causalmem._numerics.drdid import TRIM_LEVEL, FitError, TwoByTwo, logit_fit
from causalmem._types import BoolArray, Float64Array


def _ols_subset(
    y: Float64Array, x: Float64Array, w: Float64Array, sub: BoolArray
) -> tuple[Float64Array, Float64Array]:
    """Weighted OLS of ``y`` on ``x`` among ``sub``: fitted values (all rows) and the IF rows.

    The influence rows are R DRDID's ``asy.lin.rep.ols``:
    ``w_i 1[sub] (y_i - x_i'b) x_i' (X'WX / n)^{-1}`` (float64[n, k]).
    """
    n = y.size
    ws = w * sub
    xtx = x.T @ (ws[:, None] * x)
    if not sub.any() or np.linalg.cond(xtx) > 1.0 / np.finfo(float).eps:
        raise FitError("singular outcome-regression design in a period/group subset")
    beta = np.linalg.solve(xtx, x.T @ (ws * y))
    fit = x @ beta
    asy = (ws * (y - fit))[:, None] * x @ np.linalg.inv(xtx / n)
    return fit, asy


def _check_cells(post: Float64Array, d: Float64Array) -> None:
    for dd, pp, what in ((1, 1, "treated/post"), (1, 0, "treated/pre"), (0, 1, "comparison/post")):
        if not np.any((d == dd) & (post == pp)):
            raise FitError(f"no {what} observations")
    if not np.any((d == 0) & (post == 0)):
        raise FitError("no comparison/pre observations")


def _ps(d: Float64Array, x: Float64Array, w: Float64Array) -> tuple[Float64Array, Float64Array]:
    """Capped propensity scores, trimming indicator and the logit's IF rows."""
    fit = logit_fit(d, x, w)
    p = np.minimum(fit.p, 1 - 1e-6)
    trim = np.where(d == 1, p < 1.01, p < TRIM_LEVEL).astype(np.float64)
    asy_ps = (w * (d - p))[:, None] * x @ fit.hessian_inv_n
    return np.column_stack([p, trim]), asy_ps


def reg_did_rc(
    y: Float64Array, post: Float64Array, d: Float64Array, x: Float64Array, w: Float64Array
) -> TwoByTwo:
    """Outcome-regression DiD for repeated cross-sections, R ``DRDID::reg_did_rc``."""
    _check_cells(post, d)
    w = w / w.mean()
    out_pre, asy_pre = _ols_subset(y, x, w, (d == 0) & (post == 0))
    out_post, asy_post = _ols_subset(y, x, w, (d == 0) & (post == 1))
    w_t0 = w * d * (1 - post)
    w_t1 = w * d * post
    w_c = w * d
    a_t0 = w_t0 * y
    a_t1 = w_t1 * y
    a_c = w_c * (out_post - out_pre)
    eta_t0 = np.mean(a_t0) / np.mean(w_t0)
    eta_t1 = np.mean(a_t1) / np.mean(w_t1)
    eta_c = np.mean(a_c) / np.mean(w_c)
    inf_t = (a_t1 - w_t1 * eta_t1) / np.mean(w_t1) - (a_t0 - w_t0 * eta_t0) / np.mean(w_t0)
    m1 = np.mean(w_c[:, None] * x, axis=0)
    inf_c = (a_c - w_c * eta_c + asy_post @ m1 - asy_pre @ m1) / np.mean(w_c)
    return TwoByTwo(att=float((eta_t1 - eta_t0) - eta_c), inf=inf_t - inf_c)


def ipw_did_rc(
    y: Float64Array, post: Float64Array, d: Float64Array, x: Float64Array, w: Float64Array
) -> TwoByTwo:
    """Hajek-normalised IPW DiD for repeated cross-sections, R ``DRDID::std_ipw_did_rc``."""
    _check_cells(post, d)
    w = w / w.mean()
    pt, asy_ps = _ps(d, x, w)
    p, trim = pt[:, 0], pt[:, 1]
    w_t0 = trim * w * d * (1 - post)
    w_t1 = trim * w * d * post
    odds = p / (1 - p)
    w_c0 = trim * w * odds * (1 - d) * (1 - post)
    w_c1 = trim * w * odds * (1 - d) * post
    parts = []
    for wt in (w_t0, w_t1, w_c0, w_c1):
        eta = wt * y / np.mean(wt)
        att = float(np.mean(eta))
        parts.append((eta, att, eta - wt * att / np.mean(wt)))
    (_, a_t0, i_t0), (_, a_t1, i_t1), (_, a_c0, i_c0), (_, a_c1, i_c1) = parts
    m2_pre = np.mean((w_c0 * (y - a_c0))[:, None] * x, axis=0) / np.mean(w_c0)
    m2_post = np.mean((w_c1 * (y - a_c1))[:, None] * x, axis=0) / np.mean(w_c1)
    inf_c = i_c1 - i_c0 + asy_ps @ (m2_post - m2_pre)
    att = (a_t1 - a_t0) - (a_c1 - a_c0)
    return TwoByTwo(att=float(att), inf=(i_t1 - i_t0) - inf_c)


def dr_did_rc(
    y: Float64Array, post: Float64Array, d: Float64Array, x: Float64Array, w: Float64Array
) -> TwoByTwo:
    """Locally efficient doubly robust DiD for repeated cross-sections, R ``DRDID::drdid_rc``."""
    _check_cells(post, d)
    w = w / w.mean()
    pt, asy_ps = _ps(d, x, w)
    p, trim = pt[:, 0], pt[:, 1]
    oc0, asy_c0 = _ols_subset(y, x, w, (d == 0) & (post == 0))
    oc1, asy_c1 = _ols_subset(y, x, w, (d == 0) & (post == 1))
    ot0, asy_t0 = _ols_subset(y, x, w, (d == 1) & (post == 0))
    ot1, asy_t1 = _ols_subset(y, x, w, (d == 1) & (post == 1))
    oc = post * oc1 + (1 - post) * oc0
    odds = p / (1 - p)
    w_t0 = trim * w * d * (1 - post)
    w_t1 = trim * w * d * post
    w_c0 = trim * w * odds * (1 - d) * (1 - post)
    w_c1 = trim * w * odds * (1 - d) * post
    w_d = trim * w * d
    r = y - oc

    def comp(wt: Float64Array, v: Float64Array) -> tuple[float, Float64Array]:
        eta = wt * v / np.mean(wt)
        att = float(np.mean(eta))
        return att, eta - wt * att / np.mean(wt)

    a_t0, i_t0 = comp(w_t0, r)
    a_t1, i_t1 = comp(w_t1, r)
    a_c0, i_c0 = comp(w_c0, r)
    a_c1, i_c1 = comp(w_c1, r)
    a_d1, i_d1 = comp(w_d, ot1 - oc1)
    a_dt1, i_dt1 = comp(w_t1, ot1 - oc1)
    a_d0, i_d0 = comp(w_d, ot0 - oc0)
    a_dt0, i_dt0 = comp(w_t0, ot0 - oc0)
    att = (a_t1 - a_t0) - (a_c1 - a_c0) + (a_d1 - a_dt1) - (a_d0 - a_dt0)

    def colmean(v: Float64Array) -> Float64Array:
        return np.asarray(np.mean(v[:, None] * x, axis=0), dtype=np.float64)

    m1_post = -colmean(w_t1 * post) / np.mean(w_t1)
    m1_pre = -colmean(w_t0 * (1 - post)) / np.mean(w_t0)
    inf_treat = i_t1 - i_t0 + asy_c1 @ m1_post + asy_c0 @ m1_pre
    m2_pre = colmean(w_c0 * (r - a_c0)) / np.mean(w_c0)
    m2_post = colmean(w_c1 * (r - a_c1)) / np.mean(w_c1)
    m3_post = -colmean(w_c1 * post) / np.mean(w_c1)
    m3_pre = -colmean(w_c0 * (1 - post)) / np.mean(w_c0)
    inf_cont = i_c1 - i_c0 + asy_ps @ (m2_post - m2_pre) + asy_c1 @ m3_post + asy_c0 @ m3_pre
    inf_eff = (i_d1 - i_dt1) - (i_d0 - i_dt0)
    mom_post = colmean(w_d / np.mean(w_d) - w_t1 / np.mean(w_t1))
    mom_pre = colmean(w_d / np.mean(w_d) - w_t0 / np.mean(w_t0))
    inf_or = (asy_t1 - asy_c1) @ mom_post - (asy_t0 - asy_c0) @ mom_pre
    return TwoByTwo(att=float(att), inf=inf_treat - inf_cont + inf_eff + inf_or)


def mean_did_rc(y: Float64Array, post: Float64Array, d: Float64Array, w: Float64Array) -> TwoByTwo:
    """Unconditional repeated-cross-section DiD: four weighted cell means (all methods agree).

    ``(Ybar_{1,post} - Ybar_{1,pre}) - (Ybar_{0,post} - Ybar_{0,pre})`` with influence function
    ``sum_cells +- w_i 1[cell] (y_i - Ybar_cell) / mean(w 1[cell])``.
    """
    _check_cells(post, d)
    w = w / w.mean()
    att = 0.0
    inf = np.zeros_like(y)
    for dd, pp, sign in ((1, 1, 1.0), (1, 0, -1.0), (0, 1, -1.0), (0, 0, 1.0)):
        wc = w * ((d == dd) & (post == pp))
        m = float(np.sum(wc * y) / np.sum(wc))
        att += sign * m
        inf += sign * wc * (y - m) / np.mean(wc)
    return TwoByTwo(att=att, inf=inf)


ESTIMATORS_RC = {"dr": dr_did_rc, "reg": reg_did_rc, "ipw": ipw_did_rc}
