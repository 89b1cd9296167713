"""Shared model pieces: the pooled event-time path ``mu``, its priors and the build result."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from causalmem._types import Float64Array

if TYPE_CHECKING:
    from causalmem.estimators.bayes._cells import _CellSet
    from causalmem.estimators.bayes._draws import _PostCells

# Prior constants, in units of the data scale ``s`` (see bayes_did's docstring).
LEVEL_SD = 2.5
GP_BASIS_MAX = 40
GP_C = 1.5
RW_PRIOR_TEXT = (
    "Gaussian random walk over the ordered event times: mu(e_1) ~ N(m_y, 2.5 s), "
    "mu(e_k) - mu(e_k-1) ~ N(0, sigma_mu * sqrt(dE_k / median dE))"
)


@dataclass(frozen=True)
class _Built:
    model: Any
    priors: Mapping[str, str]
    post: _PostCells | None


def _with_scale(priors: dict[str, str], scale: float, center: float) -> dict[str, str]:
    out = {"data_scale_s": f"{scale:.6g}", "data_mean_m_y": f"{center:.6g}"}
    out.update(priors)
    return out


def _mu_path(
    pm: Any,
    pt: Any,
    cs: _CellSet,
    pooling: str,
    loc: float,
    sd: float,
    out_loc: float,
    out_scale: float,
) -> tuple[Any, dict[str, str]]:
    """Event-time path ``mu`` in model units, with ``sigma_mu`` and the Deterministic ``mu``.

    ``loc``/``sd``: prior location and scale in model units; ``out_loc + out_scale * x`` maps a
    model-unit value to data units (for the reported Deterministics).
    """
    priors: dict[str, str] = {}
    sigma_mu = pm.HalfNormal("sigma_mu_std", sigma=sd)
    pm.Deterministic("sigma_mu", out_scale * sigma_mu)
    if pooling == "rw":
        de = np.diff(cs.e_grid)
        # First entry: SD of mu(e_1); then the Brownian step scales sqrt(dE / median dE).
        sc = np.concatenate([[LEVEL_SD * sd], np.sqrt(de / np.median(de)) if de.size else []])
        mu_m = pm.CustomDist(
            "mu_std",
            sigma_mu,
            sc,
            logp=functools.partial(_rw_logp, loc=loc),
            random=functools.partial(_rw_random, loc=loc),
            signature="(),(n)->(n)",
            dims="event_time",
        )
        priors["mu"] = RW_PRIOR_TEXT
    else:
        phi, sqrt_eig = _gp_basis(cs.e_grid)
        ls_a, ls_b, ls_lo = _lengthscale_prior(cs.e_grid, phi.shape[1])
        ell = pm.InverseGamma("lengthscale", alpha=ls_a, beta=ls_b)
        mu0 = pm.Normal("mu0_std", loc, LEVEL_SD * sd)
        beta = pm.Normal("gp_beta", 0.0, 1.0, shape=phi.shape[1])
        mu_m = mu0 + pt.dot(phi, beta * pt.sqrt(_gp_spectral_density(pt, sigma_mu, ell, sqrt_eig)))
        priors["mu"] = _gp_prior_text(phi.shape[1], ls_a, ls_b, ls_lo)
    pm.Deterministic("mu", out_loc + out_scale * mu_m, dims="event_time")
    priors["sigma_mu"] = "HalfNormal(s)"
    priors["sigma_alpha"] = "HalfNormal(s)"
    priors["sigma_delta"] = "HalfNormal(s)"
    return mu_m, priors


def _gp_spectral_density(pt: Any, sigma_mu: Any, ell: Any, sqrt_eig: Float64Array) -> Any:
    """Spectral density of the squared-exponential kernel at the basis frequencies."""
    return sigma_mu**2 * np.sqrt(2.0 * np.pi) * ell * pt.exp(-0.5 * (ell * sqrt_eig) ** 2)


def _rw_logp(value: Any, sigma: Any, sc: Any, *, loc: float) -> Any:
    """Log density of the random walk: ``N(loc, sc[0])`` start, ``N(0, sigma sc[k])`` steps."""
    import pymc as pm

    first = pm.logp(pm.Normal.dist(loc, sc[..., 0]), value[..., 0])
    d = value[..., 1:] - value[..., :-1]
    steps = pm.logp(pm.Normal.dist(0.0, sigma[..., None] * sc[..., 1:]), d)
    return first + steps.sum(axis=-1)


def _rw_random(
    sigma: Any, sc: Any, *, loc: float, rng: np.random.Generator, size: Any = None
) -> Float64Array:
    """Prior draws of the random walk (for prior predictive checks)."""
    n = np.shape(sc)[-1]
    shape = () if size is None else tuple(np.atleast_1d(size))
    if shape and shape[-1] == n:
        shape = shape[:-1]
    z = rng.standard_normal(shape + (n,))
    mult = np.concatenate([[1.0], np.full(n - 1, 1.0)]) * np.asarray(sc)
    inc = z * mult
    inc[..., 1:] *= np.asarray(sigma)[..., None]
    inc[..., 0] += loc
    return np.cumsum(inc, axis=-1)


def _rw_precision(sc: Float64Array, sigma: float) -> Float64Array:
    """Prior precision of the random walk (start SD ``sc[0]``, step SDs ``sigma * sc[1:]``)."""
    n = sc.size
    prec = np.zeros((n, n))
    prec[0, 0] = 1.0 / sc[0] ** 2
    if n > 1:
        d = np.zeros((n - 1, n))
        d[np.arange(n - 1), np.arange(n - 1)] = -1.0
        d[np.arange(n - 1), np.arange(1, n)] = 1.0
        prec += d.T @ (d / (sigma * sc[1:])[:, None] ** 2)
    return prec


def _gp_basis(e_grid: Float64Array) -> tuple[Float64Array, Float64Array]:
    """Hilbert-space GP basis on event time rescaled to [-0.5, 0.5]: ``phi`` and ``sqrt(eig)``."""
    x = e_grid - e_grid[0]
    x = x / (x[-1] if x[-1] > 0 else 1.0) - 0.5
    m = int(min(max(e_grid.size, 8), GP_BASIS_MAX))
    big_l = GP_C * 0.5
    sqrt_eig = np.pi * np.arange(1, m + 1) / (2.0 * big_l)
    phi = np.sqrt(1.0 / big_l) * np.sin(sqrt_eig[None, :] * (x[:, None] + big_l))
    return np.asarray(phi, dtype=np.float64), np.asarray(sqrt_eig, dtype=np.float64)


def _gp_prior_text(m: int, a: float, b: float, lo: float) -> str:
    return (
        "mu(e) = mu_0 + f(e), mu_0 ~ N(m_y, 2.5 s), f ~ GP(0, sigma_mu^2 exp(-d^2 / 2 ell^2)) "
        f"on event time scaled to [0, 1] (Hilbert-space approximation, {m} basis functions, "
        f"c = {GP_C}; non-centred weights), ell ~ InverseGamma({a:.3g}, {b:.3g}): 1% of its "
        f"mass below {lo:.3g} (the shortest length scale the grid and basis resolve), 1% above 1"
    )


def _lengthscale_prior(e_grid: Float64Array, n_basis: int) -> tuple[float, float, float]:
    """InverseGamma(a, b) with 1% of its mass below ``lo`` and 1% above 1 (event time in [0, 1]).

    ``lo`` is the larger of the smallest grid spacing and the shortest length scale that the
    Hilbert-space basis resolves, ``1.75 c S / m`` (Riutort-Mayol et al. 2023, S = 0.5).
    """
    from scipy import optimize, stats

    x = e_grid - e_grid[0]
    span = x[-1] if x[-1] > 0 else 1.0
    spacing = float(np.min(np.diff(x)) / span) if x.size > 1 else 1.0
    lo = min(max(spacing, 1.75 * GP_C * 0.5 / n_basis), 0.5)

    # Scale-free: the ratio of the 99% and 1% quantiles fixes the shape, then the scale.
    def ratio_gap(log_a: float) -> float:
        a = float(np.exp(log_a))
        return float(np.log(stats.invgamma.ppf(0.99, a) / stats.invgamma.ppf(0.01, a)) + np.log(lo))

    a = float(np.exp(optimize.brentq(ratio_gap, np.log(0.05), np.log(1e4))))
    b = float(1.0 / stats.invgamma.ppf(0.99, a))
    return a, b, float(lo)
