"""The measurement model on the cell estimates (``model="cells"``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from causalmem._types import Float64Array
from causalmem.estimators.bayes._decay_op import _decay_ops
from causalmem.estimators.bayes._draws import _PostCells
from causalmem.estimators.bayes._linalg import _psd_sqrt
from causalmem.estimators.bayes._ops import _block_op
from causalmem.estimators.bayes._priors import (
    LEVEL_SD,
    RW_PRIOR_TEXT,
    _Built,
    _gp_prior_text,
    _gp_spectral_density,
    _rw_logp,
    _with_scale,
)
from causalmem.estimators.bayes._whitening import _GaussBlock, _gaussian_block, _rotate, _Rotated

if TYPE_CHECKING:
    from causalmem._numerics.cellcov import CellCovFactors
    from causalmem.estimators.bayes._cells import _CellSet
    from causalmem.estimators.bayes._sensitivity import _Violation


def _build_cells_model(
    pm: Any,
    cs: _CellSet,
    fac: CellCovFactors,
    pooling: str,
    scale: float,
    center: float,
    n_decay: int = 0,
    violation: _Violation | None = None,
) -> _Built:
    """Measurement model on the cell estimates (see :func:`bayes_did`), in standardised units.

    Conditionally on the scales, the path (``mu`` values, or the GP's level and basis weights),
    the control-path latents ``z`` and, in the dense form, the cohort effects form a Gaussian
    block ``gamma``. Its posterior has a long ridge (a linear trend in the never-treated path
    is nearly confounded with a trend in ``mu``), so ``gamma`` is sampled in whitened
    coordinates ``gamma = gamma_hat + L eta`` with ``L L'`` its conditional posterior covariance
    at rough moment estimates of the scales. The map is affine and fixed, so the posterior is
    exactly the model's; only the sampler's geometry changes.
    """
    rot = _rotate(cs, fac, scale, center, n_decay)
    has_ctrl = rot.structured and fac.periods.size > 0
    l_ctrl = _psd_sqrt(fac.ctrl_cov) if has_ctrl and fac.ctrl_cov is not None else None
    extra = None
    if violation is not None:
        extra = ("violation", violation.design, violation.precision * scale**2)
    gb = _gaussian_block(cs, fac, rot, pooling, scale, l_ctrl, extra)
    model, priors = _cells_pymc_model(
        pm, cs, fac, rot, gb, l_ctrl, pooling, scale, center, violation
    )
    priors.update(_cells_prior_texts(pooling, rot.structured, gb, n_decay))
    if violation is not None:
        priors["violation"] = violation.text
    pc = _PostCells(
        y=cs.y,
        post=cs.post,
        e_code=cs.e_code,
        cohort_code=cs.cohort_code,
        bounds=fac.bounds,
        q=rot.qs,
        q_rot=rot.f_rot,
        loadings=rot.loadings,
        lam=rot.lam_all,
        l_ctrl=l_ctrl,
        t_pos=fac.t_pos,
        b_pos=fac.b_pos,
        terms=tuple(cs.terms()),
        cohorts=cs.cohorts,
        alpha_by_block=rot.structured,
        scale=scale,
        center=center,
    )
    return _Built(model=model, priors=_with_scale(priors, scale, center), post=pc)


def _cells_pymc_model(
    pm: Any,
    cs: _CellSet,
    fac: CellCovFactors,
    rot: _Rotated,
    gb: _GaussBlock,
    l_ctrl: Float64Array | None,
    pooling: str,
    scale: float,
    center: float,
    violation: _Violation | None = None,
) -> tuple[Any, dict[str, str]]:
    """Build the PyMC model: scales, whitened ``eta``, the path ``mu``, the exact likelihood."""
    import pytensor.tensor as pt

    n_decay = rot.loadings.shape[1] - 1
    coords: dict[str, Any] = {
        "cell": cs.terms(),
        "event_time": cs.e_grid,
        "cohort": cs.cohorts,
        "whitened": np.arange(gb.dims),
        "decay_basis": np.arange(1, n_decay + 1),
    }
    if violation is not None:
        coords["violation_time"] = violation.grid
    if l_ctrl is not None:
        coords["period"] = fac.periods
    priors: dict[str, str] = {}
    with pm.Model(coords=coords) as model:
        sigma_mu = pm.HalfNormal("sigma_mu_std", sigma=1.0)
        pm.Deterministic("sigma_mu", scale * sigma_mu)
        sigma_alpha = pm.HalfNormal("sigma_alpha_std", sigma=1.0)
        pm.Deterministic("sigma_alpha", scale * sigma_alpha)
        sigma_delta = pm.HalfNormal("sigma_delta_std", sigma=1.0)
        pm.Deterministic("sigma_delta", scale * sigma_delta)
        sigma_beta = None
        if n_decay:
            sigma_beta = pm.HalfNormal("sigma_beta_std", sigma=1.0, dims="decay_basis")
            pm.Deterministic("sigma_beta", scale * sigma_beta, dims="decay_basis")
        eta = pm.Flat("eta", dims="whitened")
        gamma = gb.gamma_hat + pt.dot(gb.l_white, eta)
        blocks: dict[str, Any] = {}
        start = 0
        for name, k in gb.parts:
            blocks[name] = gamma[start : start + k]
            start += k
        mu_m, priors["mu"] = _cells_mu(pm, pt, blocks, sigma_mu, gb, pooling)
        pm.Deterministic("mu", center + scale * mu_m, dims="event_time")
        m = _cells_mean(
            pm, pt, cs, fac, rot, gb, blocks, mu_m, sigma_alpha, sigma_beta, l_ctrl, scale
        )
        if violation is not None:
            v = blocks["violation"]
            prec_std = violation.precision * scale**2
            pm.Potential("violation_prior", -0.5 * pt.dot(v, pt.dot(prec_std, v)))
            pm.Deterministic("violation", scale * v, dims="violation_time")
            v_cells = pt.dot(violation.design, v)  # delta(e_t) - delta(e_b), standardised
            pm.Deterministic("violation_cells", scale * v_cells, dims="cell")
            m = m + v_cells
        if l_ctrl is not None:
            priors["z_ctrl"] = (
                "never-treated mean-path error u_C = L_C z, z ~ N(0, I), L_C L_C' = P_C (known)"
            )
        coef_sd = [sigma_alpha] + (
            [sigma_beta[k] for k in range(n_decay)] if sigma_beta is not None else []
        )
        _cells_likelihood(pm, pt, rot, m, coef_sd, sigma_delta)
    return model, priors


def _cells_mu(
    pm: Any, pt: Any, blocks: dict[str, Any], sigma_mu: Any, gb: _GaussBlock, pooling: str
) -> tuple[Any, str]:
    """Add the path ``mu``'s prior on its Gaussian-block values; return it and its text."""
    if pooling == "rw":
        mu_m = blocks["mu"]
        pm.Potential("mu_prior", _rw_logp(mu_m, sigma_mu, pt.as_tensor(gb.sc), loc=0.0))
        return mu_m, RW_PRIOR_TEXT
    gp = gb.gp
    assert gp is not None
    ell = pm.InverseGamma("lengthscale", alpha=gp.ls_a, beta=gp.ls_b)
    mu0 = blocks["mu0"][0]
    beta = pm.Normal("gp_beta", 0.0, 1.0, shape=gp.phi.shape[1])
    pm.Potential("mu0_prior", pm.logp(pm.Normal.dist(0.0, LEVEL_SD), mu0))
    spd = _gp_spectral_density(pt, sigma_mu, ell, gp.sqrt_eig)
    mu_m = mu0 + pt.dot(gp.phi, beta * pt.sqrt(spd))
    return mu_m, _gp_prior_text(gp.phi.shape[1], gp.ls_a, gp.ls_b, gp.ls_lo)


def _cells_mean(
    pm: Any,
    pt: Any,
    cs: _CellSet,
    fac: CellCovFactors,
    rot: _Rotated,
    gb: _GaussBlock,
    blocks: dict[str, Any],
    mu_m: Any,
    sigma_alpha: Any,
    sigma_beta: Any,
    l_ctrl: Float64Array | None,
    scale: float,
) -> Any:
    """Structural mean of the cells: ``mu(e)`` (+ sampled ``alpha``, ``beta``) ``- A u_C``."""
    postf = cs.post.astype(np.float64)
    n_coh = cs.cohorts.size
    m = pt.where(cs.post, mu_m[np.maximum(cs.e_code, 0)], 0.0)
    if not rot.structured and n_coh > 1:
        alpha_w = blocks["alpha_w"]
        pm.Potential("alpha_prior", pm.logp(pm.Normal.dist(0.0, 1.0), alpha_w).sum())
        alpha_m = sigma_alpha * pt.dot(gb.zs_basis, alpha_w)
        pm.Deterministic("alpha", scale * alpha_m, dims="cohort")
        m = m + postf * alpha_m[cs.cohort_code]
        betas = []
        for k in range(1, rot.loadings.shape[1]):
            beta_w = blocks[f"beta{k}_w"]
            pm.Potential(f"beta{k}_prior", pm.logp(pm.Normal.dist(0.0, 1.0), beta_w).sum())
            beta_m = sigma_beta[k - 1] * pt.dot(gb.zs_basis, beta_w)
            betas.append(beta_m)
            m = m + rot.loadings[:, k] * beta_m[cs.cohort_code]
        if betas:
            pm.Deterministic(
                "beta", scale * pt.stack(betas, axis=1), dims=("cohort", "decay_basis")
            )
    elif not rot.structured:
        pm.Deterministic("alpha", pt.zeros(1), dims="cohort")
        if rot.loadings.shape[1] > 1:
            pm.Deterministic(
                "beta", pt.zeros((1, rot.loadings.shape[1] - 1)), dims=("cohort", "decay_basis")
            )
    if l_ctrl is not None:
        z = blocks["z_ctrl"]
        pm.Potential("z_ctrl_prior", pm.logp(pm.Normal.dist(0.0, 1.0), z).sum())
        pm.Deterministic("z_ctrl", z, dims="period")
        u = pt.dot(l_ctrl / scale, z)
        m = m - (u[fac.t_pos] - u[fac.b_pos])
    return m


def _cells_likelihood(
    pm: Any, pt: Any, rot: _Rotated, m: Any, coef_sd: list[Any], sigma_delta: Any
) -> None:
    """Gaussian likelihood of the rotated residuals, the cohort coefficients and ``delta`` out.

    In the structured form the zero-sum cohort coefficients ``(alpha, beta_1, ...)`` are
    integrated out per cohort block (Woodbury) with the cross-cohort zero-sum correction, value
    and exact gradient in one compiled Op (:mod:`._decay_op`).
    """
    rho = rot.y_rot - _block_op()()(rot.pack_t, rot.pack, rot.off_v, rot.off_m, m)
    dvar = rot.lam_std + sigma_delta**2
    if rot.structured:
        s2 = pt.stack([sd**2 for sd in coef_sd])
        bounds = np.asarray(rot.seg.indptr, dtype=np.int64)  # the cohort blocks' boundaries
        nll2 = _decay_ops()()(rho, dvar, rot.f_rot, bounds, s2)[0]
    else:
        nll2 = pt.sum(rho**2 / dvar) + pt.sum(pt.log(dvar))
    pm.Potential("likelihood", -0.5 * nll2)


def _cells_prior_texts(
    pooling: str, structured: bool, gb: _GaussBlock, n_decay: int = 0
) -> dict[str, str]:
    """Descriptions of the priors and the likelihood of the cells model (after ``mu``)."""
    out = {
        "sigma_mu": "HalfNormal(s)" + (" (GP amplitude)" if pooling == "gp" else ""),
        "sigma_alpha": "HalfNormal(s)",
        "sigma_delta": "HalfNormal(s)",
        "alpha": (
            "alpha ~ ZeroSumNormal(sigma_alpha) over cohorts (N(0, sigma_alpha) given sum 0, so "
            "mu is the average cohort's path), "
            + ("integrated out; drawn given each draw" if structured else "non-centred")
        ),
        "delta": "delta ~ N(0, sigma_delta), integrated out; drawn given each draw",
        "likelihood": (
            "ATT_hat ~ N(theta_struct - A u_C, blockdiag(B_g + sigma_alpha^2 1 1') + "
            "sigma_delta^2 I), B_g = Q diag(lambda) Q' (alpha and delta integrated out)"
            if structured
            else "ATT_hat ~ N(theta_struct, V + sigma_delta^2 I), V = Q diag(lambda) Q' (dense)"
        ),
        "sampling": (
            f"Gaussian block ({gb.dims} values: "
            + ", ".join(f"{k} {m}" for k, m in gb.parts)
            + ") sampled as gamma_hat + L eta, L L' = conditional posterior covariance at "
            "moment estimates of the scales"
        ),
    }
    if n_decay:
        out["sigma_beta"] = f"HalfNormal(s), one per decay loading ({n_decay})"
        out["beta"] = (
            "per-cohort decay: theta[g, e] += sum_k beta[g, k] f_k(e), f_k the discrete "
            "orthogonal polynomial of degree k in u = log(1 + e / e_1) / log(1 + e_max / e_1) "
            "over the event-time grid (e_1: smallest positive event time), max |f_k| = 1; "
            "beta[., k] ~ ZeroSumNormal(sigma_beta_k), "
            + ("integrated out; drawn given each draw" if structured else "non-centred")
        )
        out["likelihood"] = out["likelihood"].replace(
            "sigma_alpha^2 1 1'", "F_g S F_g' (F = (1, f_1(e), ...), S = diag(scales^2))"
        )
    return out
