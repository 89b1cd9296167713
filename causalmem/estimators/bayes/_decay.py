"""Per-cohort decay of the cells model: basis, exact marginal likelihood and small-matrix algebra.

Each cohort ``g`` gets coefficients ``b_g = (alpha_g, beta_g1, ..., beta_gK)`` on the loadings
``F(e) = (1, f_1(e), ..., f_K(e))`` of its post cells (zero on placebo cells)::

    theta[g, e] = mu(e) + alpha_g + sum_k beta_gk f_k(e) + delta[g, e]

with ``f_k`` the discrete orthogonal polynomial of degree ``k`` in ``u(e) = log(1 + e / e_unit)
/ log(1 + e_max / e_unit)`` (the event time on a log scale in [0, 1], ``e_unit`` the smallest
positive event time) over the grid's event times, orthogonal to the constant: a per-cohort
quadratic in log event time, so cohorts differ in their level, in how much higher their peak
is (the linear term) and in how fast they decay (the curvature). ``b_g ~ N(0, S)``,
``S = diag(sigma_alpha^2, sigma_beta_1^2, ...)``, conditioned on ``sum_g b_g = 0`` (zero-sum
per coefficient: ``mu`` stays the average cohort's path).

Given the scales, ``b`` is Gaussian and is integrated out exactly. Per cohort block, with the
rotated residuals ``rho = Q' r``, ``d = lambda + sigma_delta^2`` and the rotated loadings
``F_rot = Q' F``: ``a_g = F_rot' diag(1/d) rho``, ``C_g = F_rot' diag(1/d) F_rot``,
``P_g = S^-1 + C_g``, ``V_g = P_g^-1``, ``m_g = V_g a_g``; then (Woodbury)::

    -2 log p(rho | iid b) = sum rho^2 / d + sum log d - sum_g (a_g' V_g a_g - log det(S P_g))

and the zero-sum constraint adds ``M' W^-1 M + log det W - log det(G S)`` with
``M = sum_g m_g`` and ``W = sum_g V_g`` (Bayes: ``p(rho | sum b = 0) = p(rho | iid) p(sum b = 0
| rho) / p(sum b = 0)``, both Gaussian). With ``K = 0`` this is the rank-one Sherman-Morrison
form of the level-only model. The model evaluates it, with its exact gradient, in one compiled
Op (:mod:`._decay_op`); the NumPy form here serves the preconditioner and the tests.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from causalmem._types import BoolArray, Float64Array, Int64Array

# Number of per-cohort decay loadings f_k (besides the level alpha_g).
DECAY_BASIS = 2


def decay_basis(e_grid: Float64Array, k: int = DECAY_BASIS) -> Float64Array:
    """Per-cohort decay loadings on the event-time grid, ``[n_e, k]``.

    Discrete orthogonal polynomials of degree ``1 .. k`` in the log event time ``u`` (rescaled
    to [0, 1], see the module docstring) over the grid's event times, each orthogonal to the
    constant (``alpha``'s loading) and to the others, scaled to ``max |f_k| = 1`` with
    ``f_k(e_1) > 0``. Orthogonality keeps the cohort scales ``sigma_alpha, sigma_beta_k`` apart
    (the raw powers of ``u`` are nearly collinear). Fewer grid points than ``k + 1``: the
    loadings that cannot be formed are 0.
    """
    e = np.asarray(e_grid, dtype=np.float64)
    out = np.zeros((e.size, k))
    pos = e[e > 0]
    if k == 0 or pos.size == 0:
        return out
    unit = float(pos.min())
    x = np.log1p(np.maximum(e, 0.0) / unit)
    u = x / float(x.max())
    n_free = min(k, e.size - 1)
    vander = np.stack([u**j for j in range(n_free + 1)], axis=1)
    q, _ = np.linalg.qr(vander)
    for j in range(n_free):
        col = q[:, j + 1]
        col = col / np.max(np.abs(col))
        out[:, j] = col if col[0] >= 0 else -col
    return out


def cell_loadings(post: BoolArray, e_code: Int64Array, basis: Float64Array) -> Float64Array:
    """Return the loadings ``F`` per cell ``[n, 1 + K]``: ``(1, f_1(e), ...)``, 0 on placebo."""
    postf = post.astype(np.float64)
    f = basis[np.maximum(e_code, 0)] * postf[:, None]
    return np.asarray(np.column_stack([postf, f]))


# ----------------------------------------------------------------- NumPy (preconditioner, tests)
def marginal_nll2(
    rho: Float64Array,
    lam: Float64Array,
    f_rot: Float64Array,
    seg: sp.csr_matrix,
    s2: Float64Array,
    sd2: float,
    zero_sum: bool = True,
) -> float:
    """``-2 log p(rho)`` up to ``n log 2 pi``, ``b`` integrated out (the module's formula)."""
    d = lam + sd2
    val = float(np.sum(rho**2 / d) + np.sum(np.log(d)))
    a = np.asarray(seg @ (f_rot * (rho / d)[:, None]))  # [G, K1]
    c = _seg_gram(seg, f_rot, 1.0 / d)  # [G, K1, K1]
    p = c + np.diag(1.0 / s2)[None]
    v = np.linalg.inv(p)
    m = np.einsum("gij,gj->gi", v, a)
    _, logdet_p = np.linalg.slogdet(p)
    val += float(np.sum(-np.einsum("gi,gi->g", a, m) + logdet_p + np.sum(np.log(s2))))
    if zero_sum:
        n_g = a.shape[0]
        big_m = m.sum(axis=0)
        w = v.sum(axis=0)
        _, logdet_w = np.linalg.slogdet(w)
        val += float(big_m @ np.linalg.solve(w, big_m) + logdet_w - np.sum(np.log(n_g * s2)))
    return val


def _seg_gram(seg: sp.csr_matrix, f: Float64Array, wts: Float64Array) -> Float64Array:
    """Per-segment ``F' diag(wts) F`` as ``[G, K1, K1]``."""
    k1 = f.shape[1]
    prods = (f[:, :, None] * f[:, None, :]).reshape(f.shape[0], k1 * k1)
    return np.asarray(seg @ (prods * wts[:, None])).reshape(-1, k1, k1)


def coefficient_precision(
    g_rot: Float64Array,
    y_rot: Float64Array,
    f_rot: Float64Array,
    seg: sp.csr_matrix,
    d: Float64Array,
    s2: Float64Array,
) -> tuple[Float64Array, Float64Array]:
    """Precision and linear term of ``gamma`` with ``b`` integrated out (zero-sum prior).

    ``rho = y_rot - g_rot gamma``; returns ``(H, h)`` with ``-2 log p = gamma' H gamma -
    2 h' gamma + const``.
    """
    h = g_rot.T @ (g_rot / d[:, None])
    bvec = g_rot.T @ (y_rot / d)
    wts = 1.0 / d
    # per cohort: W_g = F' D^-1 G  [G, K1, dg];  a_g = F' D^-1 y  [G, K1]
    k1, dg = f_rot.shape[1], g_rot.shape[1]
    prods = (f_rot[:, :, None] * g_rot[:, None, :]).reshape(f_rot.shape[0], k1 * dg)
    w_g = np.asarray(seg @ (prods * wts[:, None])).reshape(-1, k1, dg)
    a_g = np.asarray(seg @ (f_rot * (y_rot * wts)[:, None]))
    p = _seg_gram(seg, f_rot, wts) + np.diag(1.0 / s2)[None]
    v = np.linalg.inv(p)
    vw = np.einsum("gij,gjk->gik", v, w_g)
    h -= np.einsum("gij,gik->jk", w_g, vw)
    bvec -= np.einsum("gij,gi->j", vw, a_g)
    sum_vw = vw.sum(axis=0)  # [K1, dg]
    sum_va = np.einsum("gij,gj->i", v, a_g)
    w_tot = v.sum(axis=0)
    sol_w = np.linalg.solve(w_tot, sum_vw)
    h += sum_vw.T @ sol_w
    bvec += sol_w.T @ sum_va
    return h, bvec


# ----------------------------------------------------------------- NumPy conditional draws
def draw_coefficients(
    rho: Float64Array,
    d: Float64Array,
    f_rot: Float64Array,
    bounds: Int64Array,
    s2: Float64Array,
    rng: np.random.Generator,
) -> Float64Array:
    """Draw ``b`` ``[draws, G, K1]`` from its Gaussian conditional given ``rho`` (zero-sum).

    ``rho``, ``d``: ``[draws, n]``; ``s2``: ``[draws, K1]``. Independent per-cohort draws
    ``b_g ~ N(V_g a_g, V_g)`` are conditioned on ``sum_g b_g = 0`` by kriging
    (``b_g -= V_g W^-1 sum_h b_h``, ``W = sum_h V_h``), which is exact for the zero-sum prior.
    """
    k1 = f_rot.shape[1]
    starts = bounds[:-1]
    a = np.stack(
        [np.add.reduceat(f_rot[None, :, i] * rho / d, starts, axis=1) for i in range(k1)], axis=-1
    )  # [nd, G, K1]
    prods = f_rot[:, :, None] * f_rot[:, None, :]  # [n, K1, K1]
    c = np.add.reduceat(prods[None] / d[:, :, None, None], starts, axis=1)  # [nd, G, K1, K1]
    p = c + (np.eye(k1)[None] / s2[:, None, :])[:, None]
    v = np.linalg.inv(p)
    v = 0.5 * (v + np.swapaxes(v, -1, -2))
    mean = np.einsum("dgij,dgj->dgi", v, a)
    chol = np.linalg.cholesky(v)
    b = mean + np.einsum("dgij,dgj->dgi", chol, rng.standard_normal(mean.shape))
    w = v.sum(axis=1)  # [nd, K1, K1]
    corr = np.linalg.solve(w, b.sum(axis=1)[..., None])[..., 0]  # [nd, K1]
    b -= np.einsum("dgij,dj->dgi", v, corr)
    return np.asarray(b)
