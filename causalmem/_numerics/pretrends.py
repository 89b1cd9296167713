"""Power of pre-trend tests and the distortion they cause (Roth 2022), as pure functions.

Roth, J. (2022), "Pretest with Caution: Event-Study Estimates after Testing for Parallel
Trends", *American Economic Review: Insights* 4(3), 305-322; R package ``pretrends``.

The event-study estimate is ``betahat ~ N(beta, sigma)``, split into pre-period (index set
``pre``) and post-period (``post``) coefficients. Two pre-tests are covered:

``"pointwise"`` (Roth's, the R package's)
    the pre-test passes when every pre-period coefficient has ``|t| < z``,
    ``z = Phi^{-1}(1 - alp / 2)``: a rectangle ``[-z se, z se]`` for the pre block;
``"wald"``
    the pre-test passes when ``b' S^{-1} b < chi2_{k, 1 - alp}`` (an ellipsoid).

Pointwise probabilities are multivariate-normal rectangle probabilities (Genz's algorithm on
a seeded, randomly shifted lattice; absolute error about ``ABSEPS``); the moments of the
truncated normal are exact up to those probabilities (Tallis 1961; Manjunath & Wilhelm
2012: the formula of R's ``tmvtnorm::mtmvnorm``). Wald power is exact (non-central
chi-square); its conditional moments are a seeded Monte Carlo whose standard errors are
returned with them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize
from scipy.special import ndtr, ndtri
from scipy.stats import chi2, ncx2, norm

from causalmem._types import Float64Array

__all__ = [
    "ConditionalMoments",
    "conditional_moments",
    "pass_probability",
    "rectangle_probability",
    "slope_for_power_pointwise",
    "slope_for_power_wald",
    "truncated_normal_mean",
]

#: Target absolute error (three standard errors) of the rectangle probabilities: ABSEPS up to
#: SMALL_DIM dimensions, ABSEPS_HIGH above (the cost grows with k^2); and the seed of the
#: lattice shifts.
ABSEPS = 1e-6
ABSEPS_HIGH = 1e-4
SMALL_DIM = 5
#: Target absolute error of the face and coverage integrals of the conditional moments above
#: SMALL_DIM dimensions (they are ratios of probabilities, reported to about 1e-3).
ABSEPS_MOMENTS = 1e-3
SEED = 20220601


def _primes(n: int) -> np.ndarray:
    out: list[int] = []
    c = 2
    while len(out) < n:
        if all(c % p for p in out if p * p <= c):
            out.append(c)
        c += 1
    return np.asarray(out, dtype=np.float64)


def _genz(
    a: Float64Array, b: Float64Array, chol: Float64Array, n_points: int, n_shifts: int, seed: int
) -> tuple[float, float]:
    """Genz's separation of variables on a randomly shifted Richtmyer lattice (vectorised).

    ``a, b`` are the centred bounds (already reordered), ``chol`` the lower Cholesky factor.
    Returns the estimate and its standard error over the ``n_shifts`` random shifts.
    """
    k = a.size
    gen = np.sqrt(_primes(max(k - 1, 1)))
    j = np.arange(1, n_points + 1, dtype=np.float64)[:, None]
    base = (j * gen[None, : k - 1]) % 1.0
    rng = np.random.default_rng(seed)
    tiny = 1e-300
    est = np.empty(n_shifts)
    d0 = ndtr(a[0] / chol[0, 0])
    e0 = ndtr(b[0] / chol[0, 0])
    for r in range(n_shifts):
        w = np.abs(2.0 * ((base + rng.random(k - 1)) % 1.0) - 1.0)  # baker's transform
        y = np.zeros((n_points, k))
        f = np.full(n_points, e0 - d0)
        d = np.full(n_points, d0)
        e = np.full(n_points, e0)
        for i in range(1, k):
            u = d + w[:, i - 1] * (e - d)
            y[:, i - 1] = ndtri(np.clip(u, tiny, 1.0 - 1e-16))
            s = y[:, :i] @ chol[i, :i]
            d = ndtr((a[i] - s) / chol[i, i])
            e = ndtr((b[i] - s) / chol[i, i])
            f = f * (e - d)
        est[r] = f.mean()
    return float(est.mean()), float(est.std(ddof=1) / np.sqrt(n_shifts))


def rectangle_probability(
    mean: Float64Array,
    cov: Float64Array,
    lower: Float64Array,
    upper: Float64Array,
    *,
    tol: float | None = None,
    seed: int = SEED,
) -> float:
    """``P(lower <= X <= upper)`` for ``X ~ N(mean, cov)`` (bounds may be infinite).

    One dimension: the normal CDF (exact). More: Genz's (1992) separation-of-variables
    integral with the variables ordered by interval probability (narrowest first), evaluated
    on a Richtmyer lattice with 10 seeded random shifts and the baker's transform, doubling the
    lattice until three standard errors fall below ``tol`` (default :data:`ABSEPS` up to
    :data:`SMALL_DIM` dimensions, :data:`ABSEPS_HIGH` above) (R ``mvtnorm::GenzBretz``'s method;
    deterministic for a given ``seed``; points capped at 2^15, or 2^13 above :data:`SMALL_DIM`
    dimensions, where the standard error can then stay near 1e-4 to 1e-3).
    """
    mean = np.atleast_1d(np.asarray(mean, dtype=np.float64))
    cov = np.atleast_2d(np.asarray(cov, dtype=np.float64))
    lower = np.atleast_1d(np.asarray(lower, dtype=np.float64))
    upper = np.atleast_1d(np.asarray(upper, dtype=np.float64))
    k = mean.size
    if k == 0:
        return 1.0
    sd = np.sqrt(np.diag(cov))
    a, b = (lower - mean) / sd, (upper - mean) / sd
    if k == 1:
        return float(max(norm.cdf(b[0]) - norm.cdf(a[0]), 0.0))
    corr = cov / np.outer(sd, sd)
    order = np.argsort(norm.cdf(b) - norm.cdf(a), kind="stable")
    a, b, corr = a[order], b[order], corr[np.ix_(order, order)]
    chol = np.linalg.cholesky(corr + 1e-14 * np.eye(k))
    if tol is None:
        tol = ABSEPS if k <= SMALL_DIM else ABSEPS_HIGH
    n_points = 1 << 10
    while True:
        p, se = _genz(a, b, chol, n_points, 10, seed)
        if 3.0 * se < tol or n_points >= (1 << 15 if k <= SMALL_DIM else 1 << 13):
            break
        n_points <<= 1
    return float(min(max(p, 0.0), 1.0))


def _box(cov: Float64Array, z: float) -> tuple[Float64Array, Float64Array]:
    half = z * np.sqrt(np.diag(cov))
    return -half, half


def pass_probability(
    beta_pre: Float64Array,
    sigma_pre: Float64Array,
    *,
    z: float,
    test: str = "pointwise",
    crit: float | None = None,
    tol: float | None = None,
) -> float:
    """Probability that the pre-test passes when the pre-period coefficients have mean ``beta_pre``.

    ``test="pointwise"``: no ``|t_j| >= z``; ``test="wald"``: ``b' S^{-1} b < crit``
    (``crit`` the chi-square critical value; exact non-central chi-square). ``tol``: target
    absolute error of the pointwise rectangle probability.
    """
    beta_pre = np.asarray(beta_pre, dtype=np.float64)
    if test == "wald":
        if crit is None:
            raise ValueError("crit is required for test='wald'.")
        ncp = float(beta_pre @ np.linalg.solve(sigma_pre, beta_pre))
        k = beta_pre.size
        if ncp <= 0:
            return float(chi2.cdf(crit, k))
        return float(ncx2.cdf(crit, k, ncp))
    lo, hi = _box(sigma_pre, z)
    return rectangle_probability(beta_pre, sigma_pre, lo, hi, tol=tol)


def truncated_normal_mean(
    mean: Float64Array,
    cov: Float64Array,
    lower: Float64Array,
    upper: Float64Array,
    *,
    face_tol: float | None = None,
) -> tuple[Float64Array, float]:
    """Mean of ``N(mean, cov)`` truncated to the rectangle ``[lower, upper]``, and its mass.

    Tallis' formula: ``E[X] = mean + cov @ (F(lower) - F(upper)) / P`` with ``F_k(x)`` the
    density of ``X_k`` at ``x`` times the probability that the other coordinates fall in the
    box given ``X_k = x`` (a ``k - 1`` dimensional rectangle probability, to ``face_tol``;
    default: :data:`ABSEPS` up to :data:`SMALL_DIM` dimensions, :data:`ABSEPS_MOMENTS` above).
    """
    mean = np.asarray(mean, dtype=np.float64)
    cov = np.asarray(cov, dtype=np.float64)
    lower = np.asarray(lower, dtype=np.float64)
    upper = np.asarray(upper, dtype=np.float64)
    k = mean.size
    prob = rectangle_probability(mean, cov, lower, upper)
    if prob <= 0:
        return np.full(k, np.nan), 0.0
    if face_tol is None:
        face_tol = ABSEPS if k <= SMALL_DIM else ABSEPS_MOMENTS
    sd = np.sqrt(np.diag(cov))
    f_lo = np.zeros(k)
    f_hi = np.zeros(k)
    idx = np.arange(k)
    for j in range(k):  # k faces of the box: k (k-1)-dimensional integrals
        rest = idx != j
        c_rj = cov[rest, j]
        cond_cov = cov[np.ix_(rest, rest)] - np.outer(c_rj, c_rj) / cov[j, j]
        for bound, out in ((lower[j], f_lo), (upper[j], f_hi)):
            if not np.isfinite(bound):
                continue
            dens = norm.pdf(bound, loc=mean[j], scale=sd[j])
            cond_mean = mean[rest] + c_rj * (bound - mean[j]) / cov[j, j]
            out[j] = dens * rectangle_probability(
                cond_mean, cond_cov, lower[rest], upper[rest], tol=face_tol
            )
    return mean + cov @ (f_lo - f_hi) / prob, prob


@dataclass(frozen=True)
class ConditionalMoments:
    """Moments of the event-study estimate conditional on passing the pre-test.

    ``mean`` (all coefficients, pre then post), ``coverage`` of the post-period intervals
    ``betahat_j -/+ z se_j`` for the true ``beta_j``, the pass probability ``prob``, and Monte
    Carlo standard errors (``mean_mc_se``, ``coverage_mc_se``; zeros when exact).
    """

    mean_pre: Float64Array
    mean_post: Float64Array
    coverage: Float64Array
    prob: float
    mean_mc_se: Float64Array
    coverage_mc_se: Float64Array
    method: str


def conditional_moments(
    beta: Float64Array,
    sigma: Float64Array,
    pre: np.ndarray,
    post: np.ndarray,
    *,
    z: float,
    test: str = "pointwise",
    crit: float | None = None,
    n_draws: int = 200_000,
    seed: int = SEED,
) -> ConditionalMoments:
    """Conditional means and post-period coverage given that the pre-test passes.

    ``beta`` is the true mean of ``betahat`` (Roth's ``deltatrue`` for the coefficients).
    Pointwise: exact (Tallis) mean of the pre block; post means ``beta_post + S21 S11^{-1}
    (E[b_pre | pass] - beta_pre)`` (as R ``meanBetaPost_NIS``); coverage of each post interval
    from a ``k_pre + 1`` dimensional rectangle probability (as R
    ``betaPostNullRejectionProbability_NIS`` with ``nullRejectionForZero = FALSE``).
    Wald: Monte Carlo with ``n_draws`` seeded draws (standard errors returned).
    """
    beta = np.asarray(beta, dtype=np.float64)
    sigma = np.asarray(sigma, dtype=np.float64)
    b_pre, b_post = beta[pre], beta[post]
    s11 = sigma[np.ix_(pre, pre)]
    s21 = sigma[np.ix_(post, pre)]
    se_post = np.sqrt(np.diag(sigma)[post])
    if test == "wald":
        if crit is None:
            raise ValueError("crit is required for test='wald'.")
        rng = np.random.default_rng(seed)
        chol = np.linalg.cholesky(sigma + 1e-300 * np.eye(sigma.shape[0]))
        draws = beta + rng.standard_normal((n_draws, beta.size)) @ chol.T
        dp = draws[:, pre]
        stat = np.einsum("ij,ij->i", dp, np.linalg.solve(s11, dp.T).T)
        keep = stat < crit
        m = int(keep.sum())
        if m < 2:
            nan_pre, nan_post = np.full(pre.size, np.nan), np.full(post.size, np.nan)
            return ConditionalMoments(
                nan_pre, nan_post, nan_post, m / n_draws, nan_post, nan_post, "monte_carlo"
            )
        kept = draws[keep]
        mean = kept.mean(axis=0)
        mse = kept.std(axis=0, ddof=1) / np.sqrt(m)
        cov_hit = np.abs(kept[:, post] - b_post) < z * se_post
        cov_p = cov_hit.mean(axis=0)
        return ConditionalMoments(
            mean[pre],
            mean[post],
            cov_p,
            float(pass_probability(b_pre, s11, z=z, test="wald", crit=crit)),
            mse[post],
            np.sqrt(cov_p * (1 - cov_p) / m),
            "monte_carlo",
        )
    lo, hi = _box(s11, z)
    mom_tol = ABSEPS if pre.size + 1 <= SMALL_DIM else ABSEPS_MOMENTS
    mean_pre, prob = truncated_normal_mean(b_pre, s11, lo, hi)
    mean_post = b_post + s21 @ np.linalg.solve(s11, mean_pre - b_pre)
    coverage = np.empty(post.size)
    for j, p in enumerate(post):  # one (k_pre + 1)-dimensional rectangle per post period
        idx = np.append(pre, p)
        sub = sigma[np.ix_(idx, idx)]
        lo_j = np.append(lo, b_post[j] - z * se_post[j])
        hi_j = np.append(hi, b_post[j] + z * se_post[j])
        both = rectangle_probability(beta[idx], sub, lo_j, hi_j, tol=mom_tol)
        coverage[j] = both / prob if prob > 0 else np.nan
    zeros = np.zeros(post.size)
    return ConditionalMoments(mean_pre, mean_post, coverage, prob, zeros, zeros, "exact")


def slope_for_power_pointwise(
    sigma_pre: Float64Array, rel_t: Float64Array, target: float, *, z: float
) -> float:
    """Slope ``s`` at which the pointwise pre-test rejects ``s * rel_t`` with power ``target``.

    Root of ``power(s) - target`` on ``[0, 8 max se]`` (R ``stats::uniroot``'s bracket), by
    Brent's method to a relative tolerance of 1e-7; the bracket is widened when it does not
    contain the root.
    """
    size = 1.0 - pass_probability(np.zeros(rel_t.size), sigma_pre, z=z)

    def gap(s: float) -> float:
        return 1.0 - pass_probability(s * rel_t, sigma_pre, z=z) - target

    if target <= size:
        raise ValueError(
            f"target power {target} is not above the pre-test's size {size:.4f} (its rejection "
            "probability under parallel trends); choose a larger target."
        )
    upper = 8.0 * float(np.max(np.sqrt(np.diag(sigma_pre))))
    for _ in range(60):
        if gap(upper) > 0:
            break
        upper *= 2.0
    return float(optimize.brentq(gap, 0.0, upper, xtol=1e-14, rtol=1e-7, maxiter=1000))


def slope_for_power_wald(
    sigma_pre: Float64Array, rel_t: Float64Array, target: float, *, crit: float
) -> float:
    """Slope at which the Wald pre-test has power ``target`` (exact: ``ncp = s^2 r' S^{-1} r``)."""
    k = rel_t.size
    size = float(chi2.sf(crit, k))
    if target <= size:
        raise ValueError(
            f"target power {target} is not above the pre-test's size {size:.4f}; choose a larger "
            "target."
        )
    quad = float(rel_t @ np.linalg.solve(sigma_pre, rel_t))

    def gap(ncp: float) -> float:
        return float(ncx2.sf(crit, k, ncp)) - target

    hi = 1.0
    while gap(hi) < 0:
        hi *= 2.0
    ncp = optimize.brentq(gap, 1e-12, hi, xtol=1e-14, rtol=1e-14, maxiter=1000)
    return float(np.sqrt(ncp / quad))
