"""The cells model's Gaussian block, rotated data and sampler whitening (NumPy only).

Conditionally on the scales, the path (``mu`` values, or the GP's level), the control-path
latents ``z`` and, in the dense form, the cohort effects form a Gaussian block ``gamma``. It is
sampled as ``gamma_hat + L eta`` with ``L L'`` its conditional posterior covariance at
empirical-Bayes estimates of the scales (a fixed affine map: only the sampler's geometry
changes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from causalmem._types import Float64Array, Int64Array
from causalmem.estimators.bayes._decay import (
    cell_loadings,
    coefficient_precision,
    decay_basis,
    marginal_nll2,
)
from causalmem.estimators.bayes._linalg import _block_diag_dense, _segment_matrix, _zero_sum_basis
from causalmem.estimators.bayes._priors import (
    LEVEL_SD,
    _gp_basis,
    _lengthscale_prior,
    _rw_precision,
)

if TYPE_CHECKING:
    from causalmem._numerics.cellcov import CellCovFactors
    from causalmem.estimators.bayes._cells import _CellSet

# Empirical-Bayes passes that refine the scales at which the sampler is preconditioned.
PRECOND_ITERS = 2


@dataclass(frozen=True)
class _Rotated:
    """The cells in the eigenbases ``Q`` of their covariance blocks (standardised units)."""

    qs: tuple[Float64Array, ...]
    lam_all: Float64Array  # eigenvalues, data units^2
    qt: sp.csr_matrix  # blockdiag(Q_g')
    pack_t: Float64Array  # Q' blocks, packed row-major
    pack: Float64Array  # Q blocks, packed row-major
    off_v: Int64Array
    off_m: Int64Array
    y_rot: Float64Array
    lam_std: Float64Array
    q_rot: Float64Array  # Q' 1_post (alpha's loading); zeros in the dense form
    seg: sp.csr_matrix
    structured: bool
    f_rot: Float64Array  # Q' F, F = (1_post, f_1(e), ...) (the cohort loadings); [n, 1 + K]
    loadings: Float64Array  # F, unrotated


@dataclass(frozen=True)
class _GpSpec:
    """Hilbert-space GP basis and the length-scale prior of ``pooling="gp"``."""

    phi: Float64Array
    sqrt_eig: Float64Array
    ls_a: float
    ls_b: float
    ls_lo: float


@dataclass(frozen=True)
class _GaussBlock:
    """The Gaussian block: its named parts, prior scales and whitening ``gamma_hat + L eta``."""

    parts: tuple[tuple[str, int], ...]
    sc: Float64Array  # random-walk scales: start SD, then Brownian step scales
    gp: _GpSpec | None
    zs_basis: Float64Array
    gamma_hat: Float64Array
    l_white: Float64Array

    @property
    def dims(self) -> int:
        return int(sum(k for _, k in self.parts))


def _rotate(
    cs: _CellSet, fac: CellCovFactors, scale: float, center: float, n_decay: int = 0
) -> _Rotated:
    """Eigendecompose each covariance block and rotate the standardised cell estimates.

    ``n_decay`` per-cohort decay loadings (:mod:`._decay`) join the level ``1_post``.
    """
    qs, lams = [], []
    for blk in fac.blocks:
        lam, q = np.linalg.eigh(blk)
        qs.append(q)
        lams.append(np.maximum(lam, 0.0))
    lam_all = np.concatenate(lams)
    # A sparse-matrix first block keeps the csr_matrix result (SciPy 1.18 moves block_diag of
    # dense inputs to sparse arrays and warns).
    qt = sp.block_diag([sp.csr_matrix(qs[0].T), *(q.T for q in qs[1:])], format="csr")
    sizes = np.array([q.shape[0] for q in qs], dtype=np.int64)
    postf = cs.post.astype(np.float64)
    structured = fac.ctrl_cov is not None
    const = np.where(cs.post, 0.0, -center / scale)  # placebo cells: theta = 0 + delta
    loadings = cell_loadings(cs.post, cs.e_code, decay_basis(cs.e_grid, n_decay))
    return _Rotated(
        qs=tuple(qs),
        lam_all=lam_all,
        qt=qt,
        pack_t=np.concatenate([np.ascontiguousarray(q.T).ravel() for q in qs]),
        pack=np.concatenate([np.ascontiguousarray(q).ravel() for q in qs]),
        off_v=np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
        off_m=np.concatenate([[0], np.cumsum(sizes**2)]).astype(np.int64),
        y_rot=qt @ ((cs.y - center) / scale - const),
        lam_std=lam_all / scale**2,
        q_rot=qt @ postf if structured else np.zeros(cs.n),
        seg=_segment_matrix(fac.bounds, cs.n),
        structured=structured,
        f_rot=np.asarray(qt @ loadings),
        loadings=loadings,
    )


def _gaussian_block(
    cs: _CellSet,
    fac: CellCovFactors,
    rot: _Rotated,
    pooling: str,
    scale: float,
    l_ctrl: Float64Array | None,
    extra: tuple[str, Float64Array, Float64Array] | None = None,
) -> _GaussBlock:
    """Design and prior precision of ``gamma`` at plug-in scales, then its whitening.

    ``extra``: an additional Gaussian part ``(name, design [n, k] in standardised units,
    prior precision [k, k])`` with a fixed prior (the sensitivity model's violation path).
    """
    hyp = _plugin_scales(cs, scale, rot.loadings.shape[1] - 1)
    parts, design, prec, sc, gp = _design(
        cs, fac, rot.structured, pooling, hyp, l_ctrl, scale, rot.loadings
    )
    if extra is not None:
        parts.append((extra[0], extra[1].shape[1]))
        design.append(extra[1])
        prec.append(extra[2])
    g_rot = np.asarray(rot.qt @ np.hstack(design))
    gamma_hat, l_white = _precondition(rot, g_rot, prec, sc, hyp, pooling, cs)
    return _GaussBlock(
        parts=tuple(parts),
        sc=sc,
        gp=gp,
        zs_basis=_zero_sum_basis(cs.cohorts.size),  # [K, K - 1], orthonormal, columns sum to 0
        gamma_hat=gamma_hat,
        l_white=l_white,
    )


def _design(
    cs: _CellSet,
    fac: CellCovFactors,
    structured: bool,
    pooling: str,
    hyp: dict[str, Any],
    l_ctrl: Float64Array | None,
    scale: float,
    loadings: Float64Array,
) -> tuple[
    list[tuple[str, int]], list[Float64Array], list[Float64Array], Float64Array, _GpSpec | None
]:
    """Named parts of ``gamma``, their designs (standardised) and prior precisions."""
    postf = cs.post.astype(np.float64)
    n, n_e, n_coh = cs.n, cs.e_grid.size, cs.cohorts.size
    onehot_e = sp.csr_matrix((postf, (np.arange(n), np.maximum(cs.e_code, 0))), shape=(n, n_e))
    parts: list[tuple[str, int]] = []
    design: list[Float64Array] = []
    prec: list[Float64Array] = []
    de = np.diff(cs.e_grid)
    sc = np.concatenate([[LEVEL_SD], np.sqrt(de / np.median(de)) if de.size else []])
    gp = None
    if pooling == "rw":
        parts.append(("mu", n_e))
        design.append(onehot_e.toarray())
        prec.append(_rw_precision(sc, hyp["sigma_mu"]))
    else:
        phi, sqrt_eig = _gp_basis(cs.e_grid)
        # The basis weights stay non-centred and outside the whitened block: their scale moves
        # with the length scale, so a fixed whitening of them creates a funnel.
        parts += [("mu0", 1)]
        design += [postf[:, None]]
        prec += [np.array([[1.0 / LEVEL_SD**2]])]
        gp = _GpSpec(phi, sqrt_eig, *_lengthscale_prior(cs.e_grid, phi.shape[1]))
    if not structured and n_coh > 1:
        parts.append(("alpha_w", n_coh - 1))
        oh_k = np.zeros((n, n_coh))
        oh_k[np.arange(n), cs.cohort_code] = postf * hyp["sigma_alpha"]
        design.append(oh_k @ _zero_sum_basis(n_coh))
        prec.append(np.eye(n_coh - 1))
        for k in range(1, loadings.shape[1]):
            parts.append((f"beta{k}_w", n_coh - 1))
            oh_b = np.zeros((n, n_coh))
            oh_b[np.arange(n), cs.cohort_code] = loadings[:, k] * hyp["sigma_beta"][k - 1]
            design.append(oh_b @ _zero_sum_basis(n_coh))
            prec.append(np.eye(n_coh - 1))
    if l_ctrl is not None:
        parts.append(("z_ctrl", fac.periods.size))
        lc = l_ctrl / scale
        design.append(-(lc[fac.t_pos] - lc[fac.b_pos]))
        prec.append(np.eye(fac.periods.size))
    return parts, design, prec, sc, gp


def _precondition(
    rot: _Rotated,
    g_rot: Float64Array,
    prec: list[Float64Array],
    sc: Float64Array,
    hyp: dict[str, Any],
    pooling: str,
    cs: _CellSet,
) -> tuple[Float64Array, Float64Array]:
    """``gamma_hat`` and ``L`` (``L L' = H^-1``) after the empirical-Bayes refinements."""
    prec = list(prec)
    n_e = cs.e_grid.size
    for it in range(PRECOND_ITERS + 1):
        h, bvec = _posterior_precision(rot, g_rot, hyp)
        if pooling == "rw":
            prec[0] = _rw_precision(sc, hyp["sigma_mu"])
        h += _block_diag_dense(prec)
        chol_h = np.linalg.cholesky(0.5 * (h + h.T))
        gamma_hat = np.linalg.solve(chol_h.T, np.linalg.solve(chol_h, bvec))
        if it < PRECOND_ITERS:
            # Empirical-Bayes refinement of the scales the preconditioner is built at.
            hyp = _refine_scales(
                hyp,
                rot.y_rot - g_rot @ gamma_hat,
                rot,
                gamma_hat[:n_e] if pooling == "rw" else None,
                sc,
            )
    # L with L L' = H^-1: L = (chol_h^-1)'; lower-triangular after flipping the order.
    return gamma_hat, np.linalg.inv(chol_h).T


def _coef_s2(hyp: dict[str, Any]) -> Float64Array:
    """Prior variances of the per-cohort coefficients ``(alpha, beta_1, ...)``."""
    return np.asarray([hyp["sigma_alpha"], *hyp["sigma_beta"]], dtype=np.float64) ** 2


def _posterior_precision(
    rot: _Rotated, g_rot: Float64Array, hyp: dict[str, Any]
) -> tuple[Float64Array, Float64Array]:
    """Likelihood part of ``gamma``'s precision ``H`` and of ``H gamma_hat`` (b, delta out)."""
    d0 = rot.lam_std + hyp["sigma_delta"] ** 2
    if rot.structured:
        return coefficient_precision(g_rot, rot.y_rot, rot.f_rot, rot.seg, d0, _coef_s2(hyp))
    return g_rot.T @ (g_rot / d0[:, None]), g_rot.T @ (rot.y_rot / d0)


def _plugin_scales(cs: _CellSet, scale: float, n_decay: int = 0) -> dict[str, Any]:
    """Rough moment estimates of the scales (standardised units), for preconditioning only."""
    post = cs.post
    y = cs.y[post] / scale
    se2 = (cs.se[post] / scale) ** 2
    e, k = cs.e_code[post], cs.cohort_code[post]
    n_e, n_k = cs.e_grid.size, cs.cohorts.size
    cnt_e = np.bincount(e, minlength=n_e)
    ybar = np.bincount(e, weights=y, minlength=n_e) / np.maximum(cnt_e, 1)
    r = y - ybar[e]
    cnt_k = np.bincount(k, minlength=n_k)
    rbar = np.bincount(k, weights=r, minlength=n_k) / np.maximum(cnt_k, 1)
    floor = (0.1 * float(np.sqrt(np.median(se2)))) ** 2 + 1e-12
    var_d = max(float(np.var(r - rbar[k])) - float(np.mean(se2)), floor)
    var_a = max(float(np.var(rbar)) - float(np.mean(se2)) / max(float(np.mean(cnt_k)), 1.0), floor)
    if n_e > 1:
        step = np.sqrt(np.diff(cs.e_grid) / np.median(np.diff(cs.e_grid)))
        sig_mu = float(np.sqrt(np.mean((np.diff(ybar) / step) ** 2)))
    else:
        sig_mu = 1.0
    return {
        "sigma_delta": float(np.sqrt(var_d)),
        "sigma_alpha": float(np.sqrt(var_a)),
        "sigma_beta": [float(np.sqrt(var_a))] * n_decay,
        "sigma_mu": max(sig_mu, float(np.sqrt(floor))),
    }


def _refine_scales(
    hyp: dict[str, Any],
    rho: Float64Array,
    rot: _Rotated,
    mu_hat: Float64Array | None,
    sc: Float64Array,
) -> dict[str, Any]:
    """Maximise the rotated residuals' likelihood over ``sigma_delta`` (and the cohort scales).

    ``rho ~ N(0, blockdiag(diag(lam + sd^2) + F_rot S F_rot'))`` per block with the zero-sum
    coefficients integrated out (:func:`._decay.marginal_nll2`); ``sigma_mu`` from the
    increments of the current path. Only the sampler's preconditioner uses these values.
    """
    from scipy.optimize import minimize

    lam = rot.lam_std
    k1 = rot.f_rot.shape[1] if rot.structured else 0

    def nll(par: Float64Array) -> float:
        sd2 = float(np.exp(2 * par[0]))
        if not rot.structured:
            d = lam + sd2
            return 0.5 * float(np.sum(rho**2 / d) + np.sum(np.log(d)))
        s2 = np.exp(2 * np.asarray(par[1:]))
        return 0.5 * marginal_nll2(rho, lam, rot.f_rot, rot.seg, s2, sd2)

    x0 = np.log(
        [max(hyp["sigma_delta"], 1e-8)]
        + [max(v, 1e-8) for v in [hyp["sigma_alpha"], *hyp["sigma_beta"]][:k1]]
    )
    res = minimize(nll, x0, method="Nelder-Mead", options={"xatol": 1e-3, "fatol": 1e-6})
    floor = 1e-3 * float(np.sqrt(np.median(lam)) + 1e-12)
    out = dict(hyp)
    out["sigma_delta"] = max(float(np.exp(res.x[0])), floor)
    if rot.structured:
        vals = [max(float(np.exp(v)), floor) for v in res.x[1:]]
        out["sigma_alpha"] = vals[0]
        out["sigma_beta"] = vals[1:]
    if mu_hat is not None and mu_hat.size > 1:
        inc = np.diff(mu_hat) / sc[1:]
        out["sigma_mu"] = max(float(np.sqrt(np.mean(inc**2))), floor)
    return out
