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
    q_rot: Float64Array  # Q' 1_post per block (alpha's loading), model order
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
    alpha: Float64Array | None  # sampled cohort effects (dense form only)
    ctrl: Float64Array | None  # never-treated path error u_C, data units


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
    draws = _Draws(
        mu=_stacked(idata, "mu"),
        sd=_stacked(idata, "sigma_delta"),
        sa=_stacked(idata, "sigma_alpha"),
        alpha=None if pc.alpha_by_block else _stacked(idata, "alpha"),
        ctrl=ctrl,
    )
    n_tot = draws.mu.shape[0]
    theta = np.empty((n_tot, pc.y.size))
    alpha_out = np.zeros((n_tot, pc.cohorts.size))
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7]))
    for s0 in range(0, n_tot, chunk):
        _theta_chunk(pc, draws, slice(s0, min(s0 + chunk, n_tot)), rng, theta, alpha_out)
    _store_theta(idata.posterior, pc, theta, alpha_out)


def _theta_chunk(
    pc: _PostCells,
    draws: _Draws,
    sl: slice,
    rng: np.random.Generator,
    theta: Float64Array,
    alpha_out: Float64Array,
) -> None:
    """Fill ``theta[sl]`` (and ``alpha_out[sl]``) with conditional draws for one chunk."""
    nd = sl.stop - sl.start
    e_idx = np.maximum(pc.e_code, 0)
    postf = pc.post.astype(np.float64)
    struct = draws.mu[sl][:, e_idx] * postf[None, :]
    if draws.alpha is not None:
        struct += draws.alpha[sl][:, pc.cohort_code] * postf[None, :]
    r = pc.y[None, :] - struct
    if draws.ctrl is not None:
        u = draws.ctrl[sl]
        r += u[:, pc.t_pos] - u[:, pc.b_pos]
    sd2 = draws.sd[sl, None] ** 2
    rho = np.empty((nd, pc.y.size))
    for h, q in enumerate(pc.q):
        blk = slice(pc.bounds[h], pc.bounds[h + 1])
        rho[:, blk] = r[:, blk] @ q
    d = pc.lam[None, :] + sd2
    al = np.zeros((nd, len(pc.q)))
    if pc.alpha_by_block:
        al = _draw_alpha(pc, rho, d, draws.sa[sl, None], rng)
        alpha_out[sl][:, pc.cohort_code[pc.bounds[:-1]]] = al
    out = theta[sl]
    for h, q in enumerate(pc.q):
        blk = slice(pc.bounds[h], pc.bounds[h + 1])
        lam = pc.lam[None, blk]
        base = struct[:, blk]
        rho_h = rho[:, blk]
        if pc.alpha_by_block:
            rho_h = rho_h - al[:, h : h + 1] * pc.q_rot[None, blk]
            base = base + al[:, h : h + 1] * postf[None, blk]
        w = sd2 / d[:, blk]
        xi = rng.standard_normal((nd, q.shape[0]))
        out[:, blk] = base + (w * rho_h + np.sqrt(lam * w) * xi) @ q.T


def _draw_alpha(
    pc: _PostCells, rho: Float64Array, d: Float64Array, sa: Float64Array, rng: np.random.Generator
) -> Float64Array:
    """Zero-sum cohort effects ``[draws, blocks]`` given the rotated residuals ``rho``."""
    nd, n_blk = rho.shape[0], len(pc.q)
    qr = pc.q_rot[None, :]
    a_g = np.add.reduceat(qr * rho / d, pc.bounds[:-1], axis=1)
    c_g = np.add.reduceat(qr**2 / d, pc.bounds[:-1], axis=1)
    prec = 1.0 / sa**2 + c_g
    al = a_g / prec + rng.standard_normal((nd, n_blk)) / np.sqrt(prec)
    v = 1.0 / prec
    al -= v * (al.sum(axis=1) / v.sum(axis=1))[:, None]
    return np.asarray(al)


def _store_theta(post: Any, pc: _PostCells, theta: Float64Array, alpha_out: Float64Array) -> None:
    """Add ``theta`` (and, when drawn here, ``alpha``) to the posterior group."""
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
            alpha_out.reshape(n_chain, n_draw, pc.cohorts.size),
            dims=("chain", "draw", "cohort"),
            coords={**coords, "cohort": pc.cohorts},
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
