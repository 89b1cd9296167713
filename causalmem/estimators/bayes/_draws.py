"""Exact conditional draws of ``alpha`` and ``theta`` given each posterior draw (cells model)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from causalmem._types import BoolArray, Float64Array, Int64Array

if TYPE_CHECKING:
    from causalmem.estimators.bayes._cells import _CellSet


@dataclass(frozen=True)
class _PostCells:
    """What the conditional draws of ``theta`` need (cells model)."""

    y: Float64Array
    post: BoolArray
    e_code: Int64Array
    cohort_code: Int64Array
    bounds: Int64Array
    q: tuple[Float64Array, ...]
    lam: Float64Array  # data units^2, model order
    l_ctrl: Float64Array | None
    t_pos: Int64Array
    b_pos: Int64Array
    q_rot: Float64Array  # Q' F per block (the cohort loadings, [n, 1 + K]), model order
    loadings: Float64Array  # F = (1_post, f_1(e), ...), [n, 1 + K]
    terms: tuple[str, ...]
    cohorts: Float64Array
    alpha_by_block: bool
    scale: float
    center: float


@dataclass(frozen=True)
class _Draws:
    """Stacked posterior draws ``[chain * draw, ...]`` that the conditionals depend on."""

    mu: Float64Array
    sd: Float64Array  # sigma_delta
    sa: Float64Array  # sigma_alpha
    sb: Float64Array  # sigma_beta [draws, K]
    alpha: Float64Array | None  # sampled cohort effects (dense form only)
    beta: Float64Array | None  # sampled cohort decay coefficients [draws, G, K] (dense form)
    ctrl: Float64Array | None  # never-treated path error u_C, data units
    viol: Float64Array | None  # violation path per cell (sensitivity model), data units


def _stacked(idata: Any, name: str) -> Float64Array:
    """Posterior draws ``[chain * draw, ...]`` of a variable."""
    arr = np.asarray(idata.posterior[name].values, dtype=np.float64)
    return arr.reshape(arr.shape[0] * arr.shape[1], *arr.shape[2:])


def _add_theta(idata: Any, pc: _PostCells, seed: int, chunk: int = 256) -> None:
    """Draw ``alpha`` and ``theta`` from their Gaussian conditionals, for every posterior draw.

    Per cohort block, with ``r = ATT_hat - mu(e) + A u_C`` (data units), ``B = Q diag(lam) Q'``,
    ``rho = Q' r``, ``q = Q' 1_post`` and ``d = lam + sd^2``, ``alpha_g`` alone has likelihood
    ``exp(a_g alpha - c_g alpha^2 / 2)`` with ``a_g = sum q rho / d``, ``c_g = sum q^2 / d``.
    Independent draws ``alpha_g ~ N(a_g / P_g, 1 / P_g)``, ``P_g = 1 / sa^2 + c_g``, are then
    conditioned on ``sum alpha = 0`` (kriging: ``alpha -= v sum(alpha) / sum(v)``,
    ``v = 1 / P``), which is exact for the zero-sum prior. Given ``alpha``:
    ``delta = Q [w (rho - alpha q) + sqrt(lam w) xi]``, ``w = sd^2 / d``, ``xi ~ N(0, I)``;
    ``theta = mu(e) + alpha + delta`` on post cells and ``delta`` on placebo cells. In the dense
    form ``alpha`` was sampled and only ``delta`` is drawn here.
    """
    ctrl = None
    if pc.l_ctrl is not None:
        ctrl = _stacked(idata, "z_ctrl") @ pc.l_ctrl.T  # u_C in data units
    n_decay = pc.loadings.shape[1] - 1
    mu = _stacked(idata, "mu")
    if "violation_cells" in idata.posterior:
        # The sensitivity model's violation path enters every cell's structural mean.
        viol = _stacked(idata, "violation_cells")
    else:
        viol = None
    draws = _Draws(
        mu=mu,
        sd=_stacked(idata, "sigma_delta"),
        sa=_stacked(idata, "sigma_alpha"),
        sb=(
            _stacked(idata, "sigma_beta").reshape(mu.shape[0], n_decay)
            if n_decay
            else np.zeros((mu.shape[0], 0))
        ),
        alpha=None if pc.alpha_by_block else _stacked(idata, "alpha"),
        beta=(
            _stacked(idata, "beta").reshape(mu.shape[0], pc.cohorts.size, n_decay)
            if n_decay and not pc.alpha_by_block
            else None
        ),
        ctrl=ctrl,
        viol=viol,
    )
    n_tot = draws.mu.shape[0]
    theta = np.empty((n_tot, pc.y.size))
    coef_out = np.zeros((n_tot, pc.cohorts.size, 1 + n_decay))
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7]))
    for s0 in range(0, n_tot, chunk):
        _theta_chunk(pc, draws, slice(s0, min(s0 + chunk, n_tot)), rng, theta, coef_out)
    _store_theta(idata.posterior, pc, theta, coef_out)


def _theta_chunk(
    pc: _PostCells,
    draws: _Draws,
    sl: slice,
    rng: np.random.Generator,
    theta: Float64Array,
    coef_out: Float64Array,
) -> None:
    """Fill ``theta[sl]`` (and ``coef_out[sl]``) with conditional draws for one chunk."""
    from causalmem.estimators.bayes._decay import draw_coefficients

    nd = sl.stop - sl.start
    e_idx = np.maximum(pc.e_code, 0)
    postf = pc.post.astype(np.float64)
    struct = draws.mu[sl][:, e_idx] * postf[None, :]
    if draws.alpha is not None:
        struct += draws.alpha[sl][:, pc.cohort_code] * postf[None, :]
    if draws.beta is not None:
        bk = draws.beta[sl][:, pc.cohort_code, :]  # [nd, n, K]
        struct += np.einsum("dnk,nk->dn", bk, pc.loadings[:, 1:])
    r = pc.y[None, :] - struct
    if draws.viol is not None:
        r -= draws.viol[sl]  # the violation is in the cells' mean, not in their effect theta
    if draws.ctrl is not None:
        u = draws.ctrl[sl]
        r += u[:, pc.t_pos] - u[:, pc.b_pos]
    sd2 = draws.sd[sl, None] ** 2
    rho = np.empty((nd, pc.y.size))
    for h, q in enumerate(pc.q):
        blk = slice(pc.bounds[h], pc.bounds[h + 1])
        rho[:, blk] = r[:, blk] @ q
    d = pc.lam[None, :] + sd2
    if pc.alpha_by_block:
        s2 = np.column_stack([draws.sa[sl], draws.sb[sl]]) ** 2
        b = draw_coefficients(rho, d, pc.q_rot, pc.bounds, s2, rng)  # [nd, blocks, 1 + K]
        coef_out[sl][:, pc.cohort_code[pc.bounds[:-1]], :] = b
        cell_b = np.repeat(b, np.diff(pc.bounds), axis=1)  # [nd, n, 1 + K]
        rho = rho - np.einsum("dnk,nk->dn", cell_b, pc.q_rot)
        struct = struct + np.einsum("dnk,nk->dn", cell_b, pc.loadings)
    out = theta[sl]
    for h, q in enumerate(pc.q):
        blk = slice(pc.bounds[h], pc.bounds[h + 1])
        lam = pc.lam[None, blk]
        w = sd2 / d[:, blk]
        xi = rng.standard_normal((nd, q.shape[0]))
        out[:, blk] = struct[:, blk] + (w * rho[:, blk] + np.sqrt(lam * w) * xi) @ q.T


def _store_theta(post: Any, pc: _PostCells, theta: Float64Array, coef_out: Float64Array) -> None:
    """Add ``theta`` (and, when drawn here, ``alpha`` and ``beta``) to the posterior group."""
    import xarray as xr

    n_chain, n_draw = post.sizes["chain"], post.sizes["draw"]
    coords = {"chain": post["chain"].values, "draw": post["draw"].values}
    post["theta"] = xr.DataArray(
        theta.reshape(n_chain, n_draw, pc.y.size),
        dims=("chain", "draw", "cell"),
        coords={**coords, "cell": list(pc.terms)},
    )
    if pc.alpha_by_block:
        post["alpha"] = xr.DataArray(
            coef_out[:, :, 0].reshape(n_chain, n_draw, pc.cohorts.size),
            dims=("chain", "draw", "cohort"),
            coords={**coords, "cohort": pc.cohorts},
        )
        n_decay = coef_out.shape[2] - 1
        if n_decay:
            post["beta"] = xr.DataArray(
                coef_out[:, :, 1:].reshape(n_chain, n_draw, pc.cohorts.size, n_decay),
                dims=("chain", "draw", "cohort", "decay_basis"),
                coords={**coords, "cohort": pc.cohorts, "decay_basis": np.arange(1, n_decay + 1)},
            )


def _add_constants(idata: Any, cs: _CellSet) -> None:
    """Add the raw cells to the ``constant_data`` group (merged with PyMC's, if any).

    ``idata`` is an xarray ``DataTree`` (ArviZ >= 1) or an ArviZ ``InferenceData`` (ArviZ 0.2x).
    """
    import xarray as xr

    ds = xr.Dataset(
        {
            "att_raw": ("cell", cs.y),
            "se_raw": ("cell", cs.se),
            "group": ("cell", cs.group),
            "time": ("cell", cs.time),
            "post": ("cell", cs.post),
        },
        coords={"cell": cs.terms()},
    )
    if isinstance(idata, xr.DataTree):
        if "constant_data" in idata.children:
            ds = idata["constant_data"].to_dataset().merge(ds, compat="override")
        idata["constant_data"] = xr.DataTree(ds)
    elif "constant_data" in idata.groups():
        idata.constant_data = idata.constant_data.merge(ds, compat="override")
    else:
        idata.add_groups(constant_data=ds)
