"""Fixed-length confidence intervals (FLCI) under Δ^SD(M) (Rambachan & Roth 2023, Section 4.1).

The FLCI of ``θ = l'τ_post`` is ``a + v'β̂ ± χ``, with ``v`` chosen to minimise the half-length
``χ = cv_α(b̄ / σ_v) σ_v`` where ``b̄ = M · bias(v)`` is the worst-case bias of ``v'β̂`` over
Δ^SD(M), ``σ_v`` its standard deviation and ``cv_α(t)`` the ``1 - α`` quantile of ``|N(t, 1)|``
(Armstrong & Kolesár 2018; Donoho 1994). This follows R ``HonestDiD::findOptimalFLCI``'s
parametrisation: pre-period weights ``ℓ`` are the second differences of a vector ``c``
(``ℓ = D² c``), whose last entry is fixed by unbiasedness under linear trends
(``c_K = Σ_s s l_s``), and ``bias(c) = const + Σ_k |c_k|``.

R solves one second-order cone programme per candidate ``σ_v`` (CVXR) inside a bisection. Here
the bias–standard-deviation frontier is traced by its Lagrangian form ``min Σ|c_k| + λ var(c)``
(a lasso in ``K - 1`` variables), solved exactly by an active-set method; the half-length is
then minimised over ``λ`` for every ``M`` at once. R's folded-normal quantile is simulated
(``10^6`` draws); here it is exact (:func:`folded_normal_quantile`), so R's printed FLCIs carry
about ``10^-3`` relative simulation and bisection noise that these values do not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.stats import norm

from causalmem._types import Float64Array

__all__ = ["FlciFit", "flci", "folded_normal_quantile", "second_difference"]


def folded_normal_quantile(p: float, mu: Float64Array | float) -> Float64Array:
    """``p``-quantile of ``|N(mu, 1)|``, exact (R HonestDiD simulates it with 10^6 draws).

    Vectorised safeguarded Newton on ``Φ(c - μ) - Φ(-c - μ) = p`` (increasing in ``c``),
    bracketed by ``[max(0, μ + Φ⁻¹(p)), μ + Φ⁻¹((1 + p) / 2)]``.
    """
    mu = np.abs(np.atleast_1d(np.asarray(mu, dtype=np.float64)))
    lo = np.maximum(0.0, mu + norm.ppf(p))
    hi = mu + norm.ppf(0.5 * (1.0 + p))
    c = 0.5 * (lo + hi)
    for _ in range(100):
        f = norm.cdf(c - mu) - norm.cdf(-c - mu) - p
        lo = np.where(f < 0, c, lo)
        hi = np.where(f > 0, c, hi)
        dens = norm.pdf(c - mu) + norm.pdf(c + mu)
        with np.errstate(divide="ignore", invalid="ignore"):
            step = c - f / dens
        inside = np.isfinite(step) & (step > lo) & (step < hi)
        new = np.where(inside, step, 0.5 * (lo + hi))
        if np.all(np.abs(new - c) <= 1e-14 * (1.0 + c)):
            c = new
            break
        c = new
    return c


def second_difference(k: int) -> Float64Array:
    """``K x K`` lower-triangular second-difference operator (``ℓ = D c``, zero initial values)."""
    d = np.eye(k)
    if k > 1:
        d -= 2.0 * np.eye(k, k=-1)
    if k > 2:
        d += np.eye(k, k=-2)
    return d


@dataclass(frozen=True, slots=True)
class _Frontier:
    """Quadratic form of the variance in the free entries ``c_f`` and the bias constant."""

    Q: Float64Array  # var = c_f' Q c_f + 2 q' c_f + r
    q: Float64Array
    r: float
    D: Float64Array  # ℓ = D_f c_f + d_last * S
    d_last: Float64Array
    S: float
    const: float  # bias / M = const + |S| + Σ|c_f|


def _frontier(sigma: Float64Array, n_pre: int, l_vec: Float64Array) -> _Frontier:
    k = n_pre
    l_vec = np.asarray(l_vec, dtype=np.float64)
    t = l_vec.size
    s_pre = sigma[:k, :k]
    s_pp = sigma[:k, k:]
    s_post = float(l_vec @ sigma[k:, k:] @ l_vec)
    big_s = float(np.arange(1, t + 1) @ l_vec)
    const = sum(abs(float(np.arange(1, s + 1) @ l_vec[t - s :])) for s in range(1, t + 1)) - big_s
    dd = second_difference(k)
    d_f, d_last = dd[:, : k - 1], dd[:, k - 1]
    off = d_last * big_s
    q_mat = d_f.T @ s_pre @ d_f
    q_vec = d_f.T @ (s_pre @ off + s_pp @ l_vec)
    r = float(off @ s_pre @ off + 2.0 * off @ s_pp @ l_vec + s_post)
    return _Frontier(
        Q=0.5 * (q_mat + q_mat.T), q=q_vec, r=r, D=d_f, d_last=d_last, S=big_s, const=const
    )


def _lasso(fr: _Frontier, lam: float, start: Float64Array | None) -> Float64Array:
    """Exact minimiser of ``Σ|c| + λ (c'Qc + 2q'c)`` (feature-sign search, Lee et al. 2007).

    An active-set method: on the active set with a sign pattern the problem is a quadratic
    with a closed-form minimiser; a line search to it (stopping where signs change) keeps the
    objective decreasing; inactive entries join while ``|2λ(Qc + q)_j| > 1``. Warm-started
    along a path of ``λ`` it needs few passes.
    """
    n = fr.q.size
    if n == 0:
        return np.zeros(0)
    c = np.zeros(n) if start is None else start.copy()
    tol = 1e-11

    def objective(x: Float64Array) -> float:
        return float(np.abs(x).sum() + lam * (x @ fr.Q @ x + 2.0 * fr.q @ x))

    for _ in range(50 * n + 100):
        grad = 2.0 * lam * (fr.Q @ c + fr.q)
        zero = c == 0
        viol = np.where(zero, np.abs(grad) - 1.0, -np.inf)
        nz_ok = np.all(np.abs(grad[~zero] + np.sign(c[~zero])) <= 1e-9)
        theta = np.sign(c)
        if nz_ok:
            j = int(np.argmax(viol))
            if viol[j] <= tol:
                return c
            theta[j] = -np.sign(grad[j])
        idx = np.flatnonzero(theta != 0)
        qa = fr.Q[np.ix_(idx, idx)]
        try:
            target = np.linalg.solve(2.0 * lam * qa, -theta[idx] - 2.0 * lam * fr.q[idx])
        except np.linalg.LinAlgError:
            target = np.linalg.lstsq(2.0 * lam * qa, -theta[idx] - 2.0 * lam * fr.q[idx])[0]
        old = c[idx]
        # Candidate points: the target and every sign change on the segment old -> target.
        with np.errstate(divide="ignore", invalid="ignore"):
            ts = -old / (target - old)
        ts = ts[np.isfinite(ts) & (ts > 0) & (ts < 1)]
        best_c, best_f = c, objective(c)
        for t in np.append(ts, 1.0):
            cand = c.copy()
            cand[idx] = old + t * (target - old)
            if t < 1.0:
                cand[idx[np.abs(cand[idx]) <= 1e-15 * (1 + np.abs(old))]] = 0.0
                k = np.argmin(np.abs(cand[idx]))
                cand[idx[k]] = 0.0
            f = objective(cand)
            if f < best_f - 1e-16 * max(1.0, abs(best_f)):
                best_c, best_f = cand, f
        if best_c is c:
            return c
        c = best_c
    return c


def _point(fr: _Frontier, c_f: Float64Array) -> tuple[float, float]:
    """``(bias / M, sd)`` of the estimator with free entries ``c_f``."""
    var = float(c_f @ fr.Q @ c_f + 2.0 * fr.q @ c_f + fr.r)
    return fr.const + abs(fr.S) + float(np.abs(c_f).sum()), float(np.sqrt(max(var, 0.0)))


@dataclass(frozen=True, slots=True)
class FlciFit:
    """FLCI per value of ``M``: weights on ``β̂`` (pre then post), centre and half-length."""

    m: Float64Array
    weights: Float64Array  # [n_m, n_pre + n_post]
    centre: Float64Array
    half_length: Float64Array
    max_bias: Float64Array
    sd: Float64Array


def flci(
    betahat: Float64Array,
    sigma: Float64Array,
    n_pre: int,
    l_vec: Float64Array,
    m_grid: Float64Array,
    alp: float,
) -> FlciFit:
    """Optimal FLCI for ``l'τ_post`` under Δ^SD(M) for every ``M`` in ``m_grid``.

    Parameters
    ----------
    betahat, sigma
        Event-study coefficients (pre periods first, reference period omitted) and covariance.
    n_pre
        Number of pre-period coefficients.
    l_vec
        Target weights on the post-period coefficients.
    m_grid
        Values of ``M`` (≥ 0).
    alp
        Significance level.

    Returns
    -------
    FlciFit
    """
    betahat = np.asarray(betahat, dtype=np.float64)
    sigma = np.asarray(sigma, dtype=np.float64)
    l_vec = np.asarray(l_vec, dtype=np.float64)
    m_grid = np.atleast_1d(np.asarray(m_grid, dtype=np.float64))
    fr = _frontier(sigma, n_pre, l_vec)
    n = fr.q.size
    p = 1.0 - alp

    def weights_of(c_f: Float64Array) -> Float64Array:
        ell = fr.D @ c_f + fr.d_last * fr.S
        return np.concatenate([ell, l_vec])

    # Frontier end points: minimum bias (c_f = 0) and minimum variance (λ = ∞).
    if n:
        c_minvar = np.asarray(np.linalg.lstsq(fr.Q, -fr.q, rcond=None)[0], dtype=np.float64)
        grad0 = np.abs(fr.q).max()
        lam0 = 0.5 / grad0 if grad0 > 0 else 1.0
    else:
        c_minvar = np.zeros(0)
        lam0 = 1.0
    b_minvar, sd_minvar = _point(fr, c_minvar)
    # Geometric grid of λ from "all bias" to close to the minimum-variance end, warm-started.
    lams = lam0 * np.logspace(0.0, 12.0, 49)
    path: list[Float64Array] = []
    c_prev: Float64Array | None = None
    for lam in lams:
        c_prev = _lasso(fr, float(lam), c_prev) if n else np.zeros(0)
        path.append(c_prev.copy())
    pts = np.array([_point(fr, c) for c in path] + [(b_minvar, sd_minvar)])

    def half_length(bias: float, sd: float, m: float) -> float:
        if sd <= 0:
            return float(m * bias)
        return float(folded_normal_quantile(p, m * bias / sd)[0] * sd)

    out_w = np.empty((m_grid.size, betahat.size))
    out_hl = np.empty(m_grid.size)
    out_b = np.empty(m_grid.size)
    out_sd = np.empty(m_grid.size)
    for i, m in enumerate(m_grid):
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(pts[:, 1] > 0, m * pts[:, 0] / pts[:, 1], 0.0)
        hls = np.where(pts[:, 1] > 0, folded_normal_quantile(p, ratio) * pts[:, 1], m * pts[:, 0])
        j = int(np.argmin(hls))
        best_c = c_minvar if j == len(path) else path[j]
        best: tuple[float, Float64Array] = (float(hls[j]), best_c)
        if n and 0 < j < len(path):
            lo = np.log(lams[j - 1])
            # The last λ of the grid brackets up to one more grid step (towards λ = ∞).
            hi = np.log(lams[j + 1]) if j + 1 < lams.size else 2 * np.log(lams[j]) - lo
            cache: dict[float, Float64Array] = {}

            def obj(
                loglam: float,
                m: float = float(m),
                warm: Float64Array = path[j],
                cache: dict[float, Float64Array] = cache,
            ) -> float:
                c = _lasso(fr, float(np.exp(loglam)), warm)
                cache[loglam] = c
                return half_length(*_point(fr, c), m)

            res = minimize_scalar(obj, bounds=(lo, hi), method="bounded", options={"xatol": 1e-5})
            if res.fun < best[0]:
                best = (float(res.fun), cache[float(res.x)])
        b, sd = _point(fr, best[1])
        out_w[i] = weights_of(best[1])
        out_hl[i] = best[0]
        out_b[i] = m * b
        out_sd[i] = sd
    centre = out_w @ betahat
    return FlciFit(
        m=m_grid, weights=out_w, centre=centre, half_length=out_hl, max_bias=out_b, sd=out_sd
    )
