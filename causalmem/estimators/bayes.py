"""Bayesian hierarchical model of a memorisation profile: partial pooling of ATT(g, c).

:func:`bayes_did` takes an :class:`~causalmem.AttGtResult` and fits, with PyMC's NUTS (nutpie
when installed), either a measurement model on the cell estimates (``model="cells"``) or a
unit-level model on the panel (``model="units"``, small panels). PyMC, ArviZ (and optionally
nutpie) are imported only when the function runs: ``pip install causalmem[bayes]``.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from causalmem._numerics.cellcov import CellCovFactors, dense_factors, structured_factors
from causalmem._types import BoolArray, Float64Array, Int64Array, check_literal
from causalmem.errors import CausalmemWarning
from causalmem.results.base import provenance
from lmecon.provenance import versions

if TYPE_CHECKING:
    from causalmem.panel.panel import Panel
    from causalmem.results.attgt import AttGtResult
    from causalmem.results.bayes import BayesDidResult

BayesModel = Literal["cells", "units"]
Pooling = Literal["rw", "gp"]
Sampler = Literal["auto", "pymc", "nutpie"]

INSTALL_HINT = (
    "bayes_did needs PyMC and ArviZ, which are optional: pip install causalmem[bayes] "
    "(nutpie is used as the sampler when it is installed too)."
)
# Dense fallback (not-yet-treated controls, covariates, unbalanced panels): an eigendecomposition
# of the J x J covariance per fit, so J is capped.
MAX_DENSE_CELLS = 3000
# Unit-level model: one latent per unit, period and cell; meant for small panels.
MAX_UNIT_OBS = 200_000
# Diagnostics thresholds (Vehtari et al. 2021, "Rank-normalization, folding, and localization").
RHAT_MAX = 1.01
ESS_MIN = 400.0
REPORTED = frozenset(
    {
        "sigma_mu",
        "sigma_alpha",
        "sigma_delta",
        "sigma_eps",
        "sigma_unit",
        "lengthscale",
        "mu",
        "alpha",
        "theta",
    }
)
# Prior constants, in units of the data scale ``s`` (see bayes_did's docstring).
LEVEL_SD = 2.5
GP_BASIS_MAX = 40
GP_C = 1.5
# Prior degrees of freedom of each cohort's per-period variances (moderated towards the pooled
# ones; limma-style), used by the cells model's sampling covariance.
VARIANCE_DF = 4.0
# Empirical-Bayes passes that refine the scales at which the sampler is preconditioned.
PRECOND_ITERS = 2


@dataclass(frozen=True, slots=True)
class _CellSet:
    """The modelled cells (layout indices) and their labels, in model order."""

    order: Int64Array
    y: Float64Array
    se: Float64Array
    post: BoolArray
    group: Float64Array
    time: Float64Array
    cohort_code: Int64Array  # into cohorts
    cohorts: Float64Array
    e_code: Int64Array  # into e_grid; -1 for pre cells
    e_grid: Float64Array

    @property
    def n(self) -> int:
        return int(self.order.size)

    def terms(self) -> list[str]:
        return [f"ATT({g:g},{t:g})" for g, t in zip(self.group, self.time, strict=True)]


def bayes_did(
    result: AttGtResult,
    *,
    model: BayesModel = "cells",
    data: pd.DataFrame | Panel | None = None,
    pooling: Pooling = "rw",
    include_pre: bool = False,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 2,
    target_accept: float = 0.9,
    seed: int | None = None,
    sampler: Sampler = "auto",
    progressbar: bool = False,
    shrinkage: float | None = None,
    cores: int | None = None,
) -> BayesDidResult:
    r"""Fit a Bayesian hierarchical model that pools ATT(g, c) along event time.

    Each cell's effect is a pooled event-time path plus a cohort effect plus a cell deviation;
    noisy cells (small cohorts) are shrunk towards the pooled surface. For memorisation, ``g``
    is the step an instance was trained on and ``c`` a checkpoint (Lesci et al. 2024,
    https://arxiv.org/abs/2406.04327); the cells are Callaway & Sant'Anna's (2021),
    https://doi.org/10.1016/j.jeconom.2020.12.001, from :func:`~causalmem.att_gt`.

    **Effect model** (both ``model`` variants), for post-treatment cells, event time
    ``e = c - g >= 0`` (in steps)::

        theta[g, e] = mu(e) + alpha[g] + delta[g, e]
        alpha       ~ ZeroSumNormal(sigma_alpha)   cohort effects: N(0, sigma_alpha) given
                                                   sum(alpha) = 0, so mu is the average
                                                   cohort's path
        delta[g, e] ~ N(0, sigma_delta)            cell deviations from the pooled surface

    Pre-treatment (placebo) cells, with ``include_pre=True``, are ``theta = 0 + delta``: they
    inform ``sigma_delta`` (and the never-treated path) but not ``mu``. ``mu`` lives on the
    ordered distinct event times ``e_1 < ... < e_m`` of the modelled post cells:

    * ``pooling="rw"`` (default): Gaussian random walk, ``mu(e_1) ~ N(m_y, 2.5 s)``,
      ``mu(e_k) - mu(e_k-1) ~ N(0, sigma_mu sqrt(dE_k / median dE))`` (Brownian scaling for
      irregular grids). A random walk smooths sharp bends: where the true path drops steeply
      (instantaneous memorisation, ``e = 0``) ``mu`` is pulled towards its neighbours, and
      ``sigma_delta`` absorbs the misfit so that the cell intervals stay honest.
    * ``pooling="gp"``: ``mu(e) = mu_0 + f(e)``, ``mu_0 ~ N(m_y, 2.5 s)``, ``f`` a Gaussian
      process (squared-exponential kernel, amplitude ``sigma_mu``) on event time rescaled to
      [0, 1], in the Hilbert-space approximation (Solin & Sarkka 2020; Riutort-Mayol et al.
      2023: ``min(max(m, 8), 40)`` basis functions, boundary factor 1.5, non-centred weights);
      length scale ``ell ~ InverseGamma`` with 1% of its mass below the shortest length scale
      the grid and the basis resolve and 1% above 1.

    Scales: ``sigma_mu, sigma_alpha, sigma_delta ~ HalfNormal(s)``. Priors are weakly
    informative and scaled to the data: ``m_y`` and ``s`` are the mean and SD of the raw
    post-treatment cell estimates (``s`` at least their median SE). The model runs in
    standardised units ``(ATT - m_y) / s``; every reported variable is in data units. The
    priors actually used (with the numbers) are in the result's ``priors``.

    **Measurement model** (``model="cells"``, default): ``ATT_hat = theta + eps``,
    ``eps ~ N(0, V)`` with ``V`` the sampling covariance of the cells from their influence
    functions. With never-treated comparison units (no covariates, balanced panel, clusters
    nested in cohorts) ``V`` is block-diagonal over cohorts plus a rank-``T`` term shared by all
    cells, from the never-treated mean path (:mod:`causalmem._numerics.cellcov` derives it and
    the tests check it against ``engine.combine`` to 1e-10). That path's error is a latent
    ``u_C = L_C z``, ``z ~ N(0, I)``, ``L_C L_C' = P_C`` (known); ``alpha`` and ``delta`` are
    integrated out exactly through the eigendecomposition ``B_g = Q diag(lambda) Q'`` of each
    cohort's block (``Q'(ATT_hat_g - mu + A u_C)`` has covariance
    ``diag(lambda + sigma_delta^2) + sigma_alpha^2 q q'`` per cohort and a rank-one zero-sum
    correction across cohorts), so only ``mu``, ``z`` and the three scales are sampled.
    ``alpha`` and ``theta`` are then drawn exactly from their Gaussian conditionals given each
    posterior draw. The sampled Gaussian block ``(mu, z)`` is whitened by its conditional
    posterior covariance at empirical-Bayes estimates of the scales (a fixed affine map: the
    posterior is unchanged, the sampler's geometry becomes isotropic; without it a linear trend
    in the never-treated path and one in ``mu`` form a ridge).

    The covariance is regularised for small cohorts, where it is singular (rank ``n_g - 1``
    below the number of periods): each cohort's period covariance is rescaled by
    ``n_g / (n_g - 1)`` (the influence-function variance divides by ``n``), its per-period
    variances are moderated towards the pooled within-cohort variances with 4 prior degrees of
    freedom, and its correlation is shrunk towards the pooled within-cohort correlation with
    weight ``shrinkage`` (default ``p / (p + n_g - 1)`` for ``p`` periods).

    Other settings (not-yet-treated comparisons, covariates, unbalanced panels, clusters that
    span cohorts) use the dense ``r' r`` of ``engine.combine`` (correlation shrunk towards the
    identity with weight ``J / (J + n - 1)``), with ``alpha`` sampled explicitly; at most 3,000
    cells.

    **Unit-level model** (``model="units"``, small panels): on the outcome standardised by its
    mean and SD, ``y_it = a_i + lambda_t + theta[g_i, t] D_it + eps_it``,
    ``eps ~ N(0, sigma_eps)``, ``sigma_eps ~ HalfNormal(1)``, ``a ~ ZeroSumNormal(sigma_a)``,
    ``sigma_a ~ HalfNormal(2.5)``, ``lambda_t ~ N(0, 2.5)``, ``theta`` pooled as above
    (non-centred ``alpha`` and ``delta``; the effect scale is ``s`` over the outcome SD).
    Never-treated units and the untreated periods of treated units (up to their base period)
    identify ``a`` and ``lambda``, as in the imputation estimator of Borusyak, Jaravel & Spiess
    (2024); periods between the base period and treatment (anticipation) are dropped. With
    ``include_pre=True`` every pre-period cell gets a placebo term relative to the base period
    (universal-base semantics, whatever ``base_period`` the result used). Errors are i.i.d.
    (no serial correlation; prefer ``model="cells"`` when that matters); unweighted, no
    covariates, no extra clusters; at most 200,000 observations.

    **Diagnostics**: rank-normalised split R-hat (bulk and folded) and bulk ESS (Vehtari et al.
    2021) over the reported quantities (the scales, ``mu``, ``alpha``, ``theta``) and
    divergences; a :class:`~causalmem.errors.CausalmemWarning` names the failing numbers.
    Internal coordinates (whitened ``eta``, ``z_ctrl``, non-centred offsets, unit and period
    effects) are summarised separately (``*_nuisance`` in ``diagnostics``).

    Parameters
    ----------
    result
        A fitted :func:`~causalmem.att_gt` result. Never modified.
    model
        ``"cells"`` (measurement model on the cell estimates) or ``"units"``.
    data
        The panel the result was fitted on (DataFrame or Panel); needed for ``model="units"``.
        Never modified.
    pooling
        ``"rw"`` (Gaussian random walk) or ``"gp"`` (Gaussian process) over event time.
    include_pre
        Also model the pre-treatment (placebo) cells as ``0 + delta``.
    draws, tune, chains
        NUTS draws kept and tuning steps per chain, and the number of chains.
    target_accept
        NUTS target acceptance rate.
    seed
        Seed of the sampler and of the conditional draws of ``theta``; None draws fresh entropy,
        which is recorded in the result's spec.
    sampler
        ``"auto"`` (nutpie when installed, else PyMC), ``"pymc"`` or ``"nutpie"``.
    progressbar
        Show the sampler's progress bar.
    shrinkage
        Correlation-shrinkage weight of the per-cohort sampling covariances in [0, 1]
        (``model="cells"``); None chooses ``p / (p + n_g - 1)`` per cohort.
    cores
        Chains run in parallel on this many cores (default ``min(chains, os.cpu_count())``).
        nutpie compiles the model with numba first (10-25 s on 2 cores, then fast sampling);
        PyMC's sampler compiles in seconds but samples ~2x slower at paper scale.

    Returns
    -------
    BayesDidResult
        Immutable result with the ArviZ ``InferenceData`` (``idata``), ``tidy(hdi_prob)``,
        ``profile()``, ``glance()``, ``summary()``, ``to_latex()`` and ``to_markdown()``.

    Warns
    -----
    CausalmemWarning
        When a diagnostic of the reported quantities fails: max R-hat > 1.01, min bulk ESS
        < 400, or any divergent transition.

    Raises
    ------
    ImportError
        PyMC or ArviZ is missing (``pip install causalmem[bayes]``).
    ValueError
        Unknown options, ``model="units"`` without ``data``, or a problem too large for the
        chosen path.

    Examples
    --------
    >>> import causalmem as cm
    >>> sim = cm.simulate_panel(cohorts=(3, 4, 5), units_per_cohort=5, seed=1)
    >>> res = cm.att_gt(sim.frame, "y", "step", "unit", "cohort", bstrap=False)
    >>> post = bayes_did(res, draws=500, tune=500, seed=1)  # doctest: +SKIP
    >>> post.tidy(hdi_prob=0.9)[["group", "time", "estimate", "conf_low"]]  # doctest: +SKIP
    """
    from causalmem.results.attgt import AttGtResult
    from causalmem.results.bayes import BayesDidResult, BayesDidSpec

    if not isinstance(result, AttGtResult):
        raise TypeError(f"result must be an AttGtResult from att_gt(), got {type(result)!r}.")
    check_literal("model", model, BayesModel)
    check_literal("pooling", pooling, Pooling)
    check_literal("sampler", sampler, Sampler)
    for name, val, low in (("draws", draws, 1), ("tune", tune, 0), ("chains", chains, 1)):
        if not isinstance(val, int | np.integer) or isinstance(val, bool) or val < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {val!r}.")
    if not 0.0 < float(target_accept) < 1.0:
        raise ValueError(f"target_accept must lie in (0, 1), got {target_accept!r}.")
    if shrinkage is not None and not 0.0 <= float(shrinkage) <= 1.0:
        raise ValueError(f"shrinkage must be None or lie in [0, 1], got {shrinkage!r}.")
    if model == "units" and data is None:
        raise ValueError(
            "model='units' needs the panel: pass data= (the frame or Panel given to att_gt)."
        )
    if seed is None:
        seed = int(np.random.SeedSequence().entropy % (2**31))  # type: ignore[operator]
    elif not isinstance(seed, int | np.integer) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int or None, got {seed!r}.")
    seed = int(seed)
    pm, az = _import_pymc()
    if sampler == "auto":
        sampler_used = "nutpie" if importlib.util.find_spec("nutpie") is not None else "pymc"
    else:
        sampler_used = sampler
        if sampler == "nutpie" and importlib.util.find_spec("nutpie") is None:
            raise ImportError("sampler='nutpie' needs nutpie: pip install nutpie.")
    n_cores = int(cores) if cores is not None else min(chains, os.cpu_count() or 1)

    cellset = _cell_set(result, include_pre)
    scale, center = _data_scale(cellset)
    t0 = time.perf_counter()
    if model == "cells":
        factors, cov_kind = _factors(result, cellset.order, shrinkage)
        cellset = _reorder(cellset, factors.order)
        built = _build_cells_model(pm, cellset, factors, pooling, scale, center)
    else:
        cov_kind = "none (unit-level likelihood)"
        built = _build_units_model(pm, result, data, cellset, pooling, scale, center, include_pre)
    t_build = time.perf_counter() - t0
    t1 = time.perf_counter()
    idata, t_compile = _sample(
        pm,
        built.model,
        sampler_used,
        draws,
        tune,
        chains,
        n_cores,
        target_accept,
        seed,
        progressbar,
    )
    t_sample = time.perf_counter() - t1
    if model == "cells":
        assert built.post is not None
        _add_theta(idata, built.post, seed)
    _add_constants(idata, cellset)
    t_draws = time.perf_counter() - t1 - t_sample
    t2 = time.perf_counter()
    diagnostics, per_var = _diagnostics(idata)
    t_diag = time.perf_counter() - t2
    _warn_diagnostics(diagnostics)
    spec = BayesDidSpec(
        model=model,
        pooling=pooling,
        include_pre=bool(include_pre),
        draws=int(draws),
        tune=int(tune),
        chains=int(chains),
        target_accept=float(target_accept),
        seed=seed,
        sampler=sampler,
        sampler_used=sampler_used,
        shrinkage=None if shrinkage is None else float(shrinkage),
        cores=n_cores,
        yname=result.spec.yname,
    )
    return BayesDidResult(
        spec=spec,
        idata=idata,
        group=cellset.group,
        time=cellset.time,
        post=cellset.post,
        raw_estimate=cellset.y,
        raw_std_error=cellset.se,
        e_grid=cellset.e_grid,
        cohorts=cellset.cohorts,
        diagnostics=diagnostics,
        convergence=per_var,
        priors=built.priors,
        covariance=cov_kind,
        timing={
            "build_s": t_build,
            "compile_s": t_compile,
            "sample_s": t_sample if np.isnan(t_compile) else t_sample - t_compile,
            "conditional_draws_s": t_draws,
            "diagnostics_s": t_diag,
        },
        provenance=provenance(seed=seed, bayes_versions=_bayes_versions(sampler_used)),
    )


# ---------------------------------------------------------------------------------- helpers
def _import_pymc() -> tuple[Any, Any]:
    try:
        import arviz as az
        import pymc as pm
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(INSTALL_HINT) from exc
    return pm, az


def _bayes_versions(sampler_used: str) -> dict[str, str]:
    out = versions(("pymc", "pytensor", "arviz", "nutpie"))
    out["sampler"] = sampler_used
    return out


def _cell_set(result: AttGtResult, include_pre: bool) -> _CellSet:
    c = result.cells
    ok = ~c.reference & np.isfinite(result.att) & np.isfinite(result.se_analytic)
    keep = ok & (c.post | bool(include_pre))
    order = np.flatnonzero(keep).astype(np.int64)
    if not np.any(keep & c.post):
        raise ValueError("The result has no estimable post-treatment cell to model.")
    group, time_ = c.group[order], c.time[order]
    post = c.post[order]
    cohorts, cohort_code = np.unique(group, return_inverse=True)
    e = time_ - group
    e_grid = np.unique(e[post])
    e_code = np.where(post, np.searchsorted(e_grid, e), -1).astype(np.int64)
    return _CellSet(
        order=order,
        y=np.asarray(result.att[order], dtype=np.float64),
        se=np.asarray(result.se_analytic[order], dtype=np.float64),
        post=post,
        group=group,
        time=time_,
        cohort_code=cohort_code.astype(np.int64),
        cohorts=cohorts,
        e_code=e_code,
        e_grid=e_grid,
    )


def _reorder(cs: _CellSet, order: Int64Array) -> _CellSet:
    pos = {int(j): i for i, j in enumerate(cs.order)}
    p = np.array([pos[int(j)] for j in order], dtype=np.int64)
    return _CellSet(
        order=cs.order[p],
        y=cs.y[p],
        se=cs.se[p],
        post=cs.post[p],
        group=cs.group[p],
        time=cs.time[p],
        cohort_code=cs.cohort_code[p],
        cohorts=cs.cohorts,
        e_code=cs.e_code[p],
        e_grid=cs.e_grid,
    )


def _data_scale(cs: _CellSet) -> tuple[float, float]:
    """``s``: SD of the raw post cells (at least their median SE); ``m_y``: their mean."""
    y = cs.y[cs.post]
    sd = float(np.std(y, ddof=1)) if y.size > 1 else 0.0
    scale = max(sd, float(np.median(cs.se[cs.post])))
    if not np.isfinite(scale) or scale <= 0:
        scale = max(float(np.max(np.abs(y))), 1.0)
    return scale, float(np.mean(y))


def _factors(
    result: AttGtResult, order: Int64Array, shrinkage: float | None
) -> tuple[CellCovFactors, str]:
    from causalmem._numerics.structured import StructuredIF

    eng = result.engine
    if isinstance(eng, StructuredIF) and eng.never_only:
        fac = structured_factors(
            eng.rows, result.cells, order, shrinkage, ddof=1, variance_df=VARIANCE_DF
        )
        return fac, "structured"
    if order.size > MAX_DENSE_CELLS:
        raise ValueError(
            f"model='cells' with {order.size} cells needs the structured covariance, which "
            "exists for never-treated comparison units without covariates on a balanced panel "
            "(clusters nested in cohorts); this result has "
            f"control_group={result.spec.control_group!r}, xformla={result.spec.xformla!r}, "
            f"allow_unbalanced_panel={result.spec.allow_unbalanced_panel}. The dense fallback is "
            f"limited to {MAX_DENSE_CELLS} cells: model fewer cells (include_pre=False) or "
            "refit with control_group='nevertreated'."
        )
    j_all = result.cells.n_cells
    w = sp.csr_matrix(
        (np.ones(order.size), (order, np.arange(order.size))), shape=(j_all, order.size)
    )
    r = eng.combine(w, np.zeros((result.cells.glist.size + 1, order.size)))
    return dense_factors(r, order, shrinkage), "dense"


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
class _Built:
    model: Any
    priors: Mapping[str, str]
    post: _PostCells | None


def _psd_sqrt(a: Float64Array) -> Float64Array:
    """Return a factor ``L`` with ``L L' = a`` for a symmetric PSD matrix (eigen-based)."""
    lam, q = np.linalg.eigh(0.5 * (a + a.T))
    return q * np.sqrt(np.maximum(lam, 0.0))[None, :]


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
        priors["mu"] = (
            "Gaussian random walk over the ordered event times: mu(e_1) ~ N(m_y, 2.5 s), "
            "mu(e_k) - mu(e_k-1) ~ N(0, sigma_mu * sqrt(dE_k / median dE))"
        )
    else:
        phi, sqrt_eig = _gp_basis(cs.e_grid)
        ls_a, ls_b, ls_lo = _lengthscale_prior(cs.e_grid, phi.shape[1])
        ell = pm.InverseGamma("lengthscale", alpha=ls_a, beta=ls_b)
        mu0 = pm.Normal("mu0_std", loc, LEVEL_SD * sd)
        beta = pm.Normal("gp_beta", 0.0, 1.0, shape=phi.shape[1])
        # Spectral density of the squared-exponential kernel at the basis frequencies.
        spd = sigma_mu**2 * np.sqrt(2.0 * np.pi) * ell * pt.exp(-0.5 * (ell * sqrt_eig) ** 2)
        mu_m = mu0 + pt.dot(phi, beta * pt.sqrt(spd))
        priors["mu"] = _gp_prior_text(phi.shape[1], ls_a, ls_b, ls_lo)
    pm.Deterministic("mu", out_loc + out_scale * mu_m, dims="event_time")
    priors["sigma_mu"] = "HalfNormal(s)"
    priors["sigma_alpha"] = "HalfNormal(s)"
    priors["sigma_delta"] = "HalfNormal(s)"
    return mu_m, priors


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


def _segment_matrix(bounds: Int64Array, n: int) -> sp.csr_matrix:
    """``[G, J]`` indicator of the blocks ``bounds[h]:bounds[h + 1]`` (per-block sums)."""
    lengths = np.diff(bounds)
    rows = np.repeat(np.arange(lengths.size), lengths)
    return sp.csr_matrix((np.ones(n), (rows, np.arange(n))), shape=(lengths.size, n))


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


def _plugin_scales(cs: _CellSet, scale: float) -> dict[str, float]:
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
        "sigma_mu": max(sig_mu, float(np.sqrt(floor))),
    }


def _refine_scales(
    hyp: dict[str, float],
    rho: Float64Array,
    lam: Float64Array,
    q_rot: Float64Array,
    seg: sp.csr_matrix,
    structured: bool,
    mu_hat: Float64Array | None,
    sc: Float64Array,
) -> dict[str, float]:
    """Maximise the rotated residuals' likelihood over ``sigma_delta`` (and ``sigma_alpha``).

    ``rho ~ N(0, blockdiag(diag(lam + sd^2) + sa^2 q q'))`` per block; ``sigma_mu`` from the
    increments of the current path. Only the sampler's preconditioner uses these values.
    """
    from scipy.optimize import minimize

    def nll(par: Float64Array) -> float:
        sd2 = float(np.exp(2 * par[0]))
        d = lam + sd2
        val = float(np.sum(rho**2 / d) + np.sum(np.log(d)))
        if structured:
            sa2 = float(np.exp(2 * par[1]))
            a = seg @ (q_rot * rho / d)
            c = seg @ (q_rot**2 / d)
            val += float(np.sum(np.log1p(sa2 * c)) - np.sum(sa2 * a**2 / (1.0 + sa2 * c)))
            kappa = sa2 / a.size
            at = float(np.sum(a / (1.0 + sa2 * c)))
            ct = float(np.sum(c / (1.0 + sa2 * c)))
            val += kappa * at**2 / (1.0 - kappa * ct) + float(np.log1p(-kappa * ct))
        return 0.5 * val

    x0 = np.log([max(hyp["sigma_delta"], 1e-8), max(hyp["sigma_alpha"], 1e-8)])
    res = minimize(nll, x0, method="Nelder-Mead", options={"xatol": 1e-3, "fatol": 1e-6})
    floor = 1e-3 * float(np.sqrt(np.median(lam)) + 1e-12)
    out = dict(hyp)
    out["sigma_delta"] = max(float(np.exp(res.x[0])), floor)
    if structured:
        out["sigma_alpha"] = max(float(np.exp(res.x[1])), floor)
    if mu_hat is not None and mu_hat.size > 1:
        inc = np.diff(mu_hat) / sc[1:]
        out["sigma_mu"] = max(float(np.sqrt(np.mean(inc**2))), floor)
    return out


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


def _build_cells_model(
    pm: Any,
    cs: _CellSet,
    fac: CellCovFactors,
    pooling: str,
    scale: float,
    center: float,
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
    import pytensor.sparse as ps
    import pytensor.tensor as pt

    qs, lams = [], []
    for blk in fac.blocks:
        lam, q = np.linalg.eigh(blk)
        qs.append(q)
        lams.append(np.maximum(lam, 0.0))
    lam_all = np.concatenate(lams)
    qt = sp.block_diag([q.T for q in qs], format="csr")
    sizes = np.array([q.shape[0] for q in qs], dtype=np.int64)
    off_v = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    off_m = np.concatenate([[0], np.cumsum(sizes**2)]).astype(np.int64)
    pack_t = np.concatenate([np.ascontiguousarray(q.T).ravel() for q in qs])  # Q' blocks
    pack = np.concatenate([np.ascontiguousarray(q).ravel() for q in qs])  # Q blocks
    post = cs.post
    postf = post.astype(np.float64)
    n = cs.n
    structured = fac.ctrl_cov is not None
    has_ctrl = structured and fac.periods.size > 0
    l_ctrl = _psd_sqrt(fac.ctrl_cov) if has_ctrl and fac.ctrl_cov is not None else None
    e_idx = np.maximum(cs.e_code, 0)
    n_e = cs.e_grid.size
    const = np.where(post, 0.0, -center / scale)  # placebo cells: theta = 0 + delta
    y_rot = qt @ ((cs.y - center) / scale - const)
    lam_std = lam_all / scale**2
    q_rot = qt @ postf if structured else np.zeros(n)
    seg = _segment_matrix(fac.bounds, n)
    n_coh = cs.cohorts.size

    # ---- the Gaussian block: design of m (standardised) and prior precision at plug-in scales
    hyp = _plugin_scales(cs, scale)
    onehot_e = sp.csr_matrix((postf, (np.arange(n), e_idx)), shape=(n, n_e))
    parts: list[tuple[str, int]] = []
    design: list[Float64Array] = []
    prec: list[Float64Array] = []
    de = np.diff(cs.e_grid)
    sc = np.concatenate([[LEVEL_SD], np.sqrt(de / np.median(de)) if de.size else []])
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
        ls_a, ls_b, ls_lo = _lengthscale_prior(cs.e_grid, phi.shape[1])
    zs_basis = _zero_sum_basis(n_coh)  # [K, K - 1], orthonormal, columns sum to 0
    if not structured and n_coh > 1:
        parts.append(("alpha_w", n_coh - 1))
        oh_k = np.zeros((n, n_coh))
        oh_k[np.arange(n), cs.cohort_code] = postf * hyp["sigma_alpha"]
        design.append(oh_k @ zs_basis)
        prec.append(np.eye(n_coh - 1))
    if has_ctrl:
        assert l_ctrl is not None
        parts.append(("z_ctrl", fac.periods.size))
        lc = l_ctrl / scale
        design.append(-(lc[fac.t_pos] - lc[fac.b_pos]))
        prec.append(np.eye(fac.periods.size))
    g_rot = np.asarray(qt @ np.hstack(design))
    for it in range(PRECOND_ITERS + 1):
        d0 = lam_std + hyp["sigma_delta"] ** 2
        h = g_rot.T @ (g_rot / d0[:, None])
        bvec = g_rot.T @ (y_rot / d0)
        if structured:
            s2 = hyp["sigma_alpha"] ** 2
            v = np.asarray(seg @ (g_rot * (q_rot / d0)[:, None]))  # [G, d_gamma]
            c = np.asarray(seg @ (q_rot**2 / d0))
            a = np.asarray(seg @ (q_rot * y_rot / d0))
            f = s2 / (1.0 + s2 * c)
            h -= v.T @ (v * f[:, None])
            bvec -= v.T @ (f * a)
            kappa = s2 / n_coh
            vt = v.T @ (1.0 / (1.0 + s2 * c))  # q' M0^-1 G
            at = float(np.sum(a / (1.0 + s2 * c)))
            ct = float(np.sum(c / (1.0 + s2 * c)))
            h += kappa * np.outer(vt, vt) / (1.0 - kappa * ct)
            bvec += kappa * vt * at / (1.0 - kappa * ct)
        if pooling == "rw":
            prec[0] = _rw_precision(sc, hyp["sigma_mu"])
        h += _block_diag_dense(prec)
        chol_h = np.linalg.cholesky(0.5 * (h + h.T))
        gamma_hat = np.linalg.solve(chol_h.T, np.linalg.solve(chol_h, bvec))
        if it < PRECOND_ITERS:
            # Empirical-Bayes refinement of the scales the preconditioner is built at.
            hyp = _refine_scales(
                hyp,
                y_rot - g_rot @ gamma_hat,
                lam_std,
                q_rot,
                seg,
                structured,
                gamma_hat[:n_e] if pooling == "rw" else None,
                sc,
            )
    # L with L L' = H^-1: L = (chol_h^-1)'; lower-triangular after flipping the order.
    l_white = np.linalg.inv(chol_h).T
    dims_gamma = int(sum(k for _, k in parts))

    coords: dict[str, Any] = {
        "cell": cs.terms(),
        "event_time": cs.e_grid,
        "cohort": cs.cohorts,
        "whitened": np.arange(dims_gamma),
    }
    if has_ctrl:
        coords["period"] = fac.periods
    priors: dict[str, str] = {}
    with pm.Model(coords=coords) as model:
        sigma_mu = pm.HalfNormal("sigma_mu_std", sigma=1.0)
        pm.Deterministic("sigma_mu", scale * sigma_mu)
        sigma_alpha = pm.HalfNormal("sigma_alpha_std", sigma=1.0)
        pm.Deterministic("sigma_alpha", scale * sigma_alpha)
        sigma_delta = pm.HalfNormal("sigma_delta_std", sigma=1.0)
        pm.Deterministic("sigma_delta", scale * sigma_delta)
        eta = pm.Flat("eta", dims="whitened")
        gamma = gamma_hat + pt.dot(l_white, eta)
        blocks: dict[str, Any] = {}
        start = 0
        for name, k in parts:
            blocks[name] = gamma[start : start + k]
            start += k
        if pooling == "rw":
            mu_m = blocks["mu"]
            pm.Potential("mu_prior", _rw_logp(mu_m, sigma_mu, pt.as_tensor(sc), loc=0.0))
            priors["mu"] = (
                "Gaussian random walk over the ordered event times: mu(e_1) ~ N(m_y, 2.5 s), "
                "mu(e_k) - mu(e_k-1) ~ N(0, sigma_mu * sqrt(dE_k / median dE))"
            )
        else:
            ell = pm.InverseGamma("lengthscale", alpha=ls_a, beta=ls_b)
            mu0 = blocks["mu0"][0]
            beta = pm.Normal("gp_beta", 0.0, 1.0, shape=phi.shape[1])
            pm.Potential("mu0_prior", pm.logp(pm.Normal.dist(0.0, LEVEL_SD), mu0))
            spd = sigma_mu**2 * np.sqrt(2.0 * np.pi) * ell * pt.exp(-0.5 * (ell * sqrt_eig) ** 2)
            mu_m = mu0 + pt.dot(phi, beta * pt.sqrt(spd))
            priors["mu"] = _gp_prior_text(phi.shape[1], ls_a, ls_b, ls_lo)
        pm.Deterministic("mu", center + scale * mu_m, dims="event_time")
        m = pt.where(post, mu_m[e_idx], 0.0)
        if not structured and n_coh > 1:
            alpha_w = blocks["alpha_w"]
            pm.Potential("alpha_prior", pm.logp(pm.Normal.dist(0.0, 1.0), alpha_w).sum())
            alpha_m = sigma_alpha * pt.dot(zs_basis, alpha_w)
            pm.Deterministic("alpha", scale * alpha_m, dims="cohort")
            m = m + postf * alpha_m[cs.cohort_code]
        elif not structured:
            pm.Deterministic("alpha", pt.zeros(1), dims="cohort")
        if has_ctrl:
            assert l_ctrl is not None
            z = blocks["z_ctrl"]
            pm.Potential("z_ctrl_prior", pm.logp(pm.Normal.dist(0.0, 1.0), z).sum())
            pm.Deterministic("z_ctrl", z, dims="period")
            u = pt.dot(l_ctrl / scale, z)
            m = m - (u[fac.t_pos] - u[fac.b_pos])
            priors["z_ctrl"] = (
                "never-treated mean-path error u_C = L_C z, z ~ N(0, I), L_C L_C' = P_C (known)"
            )
        rho = y_rot - _block_op()()(pack_t, pack, off_v, off_m, m)
        dvar = lam_std + sigma_delta**2
        quad = pt.sum(rho**2 / dvar)
        logdet = pt.sum(pt.log(dvar))
        if structured:
            # alpha_g ~ N(0, sigma_alpha) integrated out per cohort block (Sherman-Morrison on
            # diag(d) + sigma_alpha^2 q q', q = Q_g' 1_post).
            seg_v = ps.as_sparse_variable(seg)
            a_g = ps.structured_dot(seg_v, (q_rot * rho / dvar)[:, None])[:, 0]
            c_g = ps.structured_dot(seg_v, (q_rot**2 / dvar)[:, None])[:, 0]
            s2v = sigma_alpha**2
            quad = quad - pt.sum(s2v * a_g**2 / (1.0 + s2v * c_g))
            logdet = logdet + pt.sum(pt.log1p(s2v * c_g))
            # Zero-sum cohort effects: the prior covariance is s2 (I - 1 1' / K), a rank-one
            # correction across blocks (Sherman-Morrison once more).
            kappa = s2v / n_coh
            a_tot = pt.sum(a_g / (1.0 + s2v * c_g))
            c_tot = pt.sum(c_g / (1.0 + s2v * c_g))
            quad = quad + kappa * a_tot**2 / (1.0 - kappa * c_tot)
            logdet = logdet + pt.log1p(-kappa * c_tot)
        pm.Potential("likelihood", -0.5 * quad - 0.5 * logdet)
    priors["sigma_mu"] = "HalfNormal(s)" + (" (GP amplitude)" if pooling == "gp" else "")
    priors["sigma_alpha"] = "HalfNormal(s)"
    priors["sigma_delta"] = "HalfNormal(s)"
    priors["alpha"] = (
        "alpha ~ ZeroSumNormal(sigma_alpha) over cohorts (N(0, sigma_alpha) given sum 0, so "
        "mu is the average cohort's path), "
        + ("integrated out; drawn given each draw" if structured else "non-centred")
    )
    priors["delta"] = "delta ~ N(0, sigma_delta), integrated out; drawn given each draw"
    priors["likelihood"] = (
        "ATT_hat ~ N(theta_struct - A u_C, blockdiag(B_g + sigma_alpha^2 1 1') + "
        "sigma_delta^2 I), B_g = Q diag(lambda) Q' (alpha and delta integrated out)"
        if structured
        else "ATT_hat ~ N(theta_struct, V + sigma_delta^2 I), V = Q diag(lambda) Q' (dense)"
    )
    priors["sampling"] = (
        f"Gaussian block ({dims_gamma} values: "
        + ", ".join(f"{k} {m}" for k, m in parts)
        + ") sampled as gamma_hat + L eta, L L' = conditional posterior covariance at "
        "moment estimates of the scales"
    )
    pc = _PostCells(
        y=cs.y,
        post=post,
        e_code=cs.e_code,
        cohort_code=cs.cohort_code,
        bounds=fac.bounds,
        q=tuple(qs),
        q_rot=q_rot,
        lam=lam_all,
        l_ctrl=l_ctrl,
        t_pos=fac.t_pos,
        b_pos=fac.b_pos,
        terms=tuple(cs.terms()),
        cohorts=cs.cohorts,
        alpha_by_block=structured,
        scale=scale,
        center=center,
    )
    return _Built(model=model, priors=_with_scale(priors, scale, center), post=pc)


def _zero_sum_basis(k: int) -> Float64Array:
    """Orthonormal ``[k, k - 1]`` basis of the vectors summing to zero (Helmert contrasts)."""
    if k < 2:
        return np.zeros((k, 0))
    q, _ = np.linalg.qr(np.eye(k) - 1.0 / k)
    return np.asarray(q[:, : k - 1])


def _block_op() -> Any:
    """Return the ``BlockMatVec`` PyTensor Op class (built on first use: PyTensor is optional)."""
    global _BLOCK_OP_CLASS
    if _BLOCK_OP_CLASS is not None:
        return _BLOCK_OP_CLASS
    import pytensor.tensor as pt
    from pytensor.gradient import disconnected_type
    from pytensor.graph.basic import Apply
    from pytensor.graph.op import Op

    class BlockMatVec(Op):  # type: ignore[misc]
        """``out = blockdiag(M_1, ..., M_G) @ x`` with the blocks packed row-major.

        Inputs: ``fwd`` (the blocks), ``bwd`` (their transposes, for the gradient),
        ``off_v`` (int64[G + 1], block boundaries in ``x``), ``off_m`` (int64[G + 1], in the
        packs) and ``x``. A dense product per block: ~2x faster than a sparse matrix here.
        """

        __props__ = ()

        def make_node(self, *inputs: Any) -> Any:
            fwd, bwd, off_v, off_m, x = (pt.as_tensor_variable(v) for v in inputs)
            return Apply(self, [fwd, bwd, off_v, off_m, x], [x.type()])

        def perform(self, node: Any, inputs: Any, output_storage: Any) -> None:
            fwd, _, off_v, off_m, x = inputs
            out = np.empty_like(x)
            for h in range(off_v.size - 1):
                a, b = int(off_v[h]), int(off_v[h + 1])
                p = b - a
                out[a:b] = fwd[off_m[h] : off_m[h + 1]].reshape(p, p) @ x[a:b]
            output_storage[0][0] = out

        def infer_shape(self, fgraph: Any, node: Any, shapes: Any) -> Any:
            return [shapes[4]]

        def connection_pattern(self, node: Any) -> list[list[bool]]:
            return [[False], [False], [False], [False], [True]]

        def grad(self, inputs: Any, grads: Any) -> list[Any]:
            fwd, bwd, off_v, off_m, _ = inputs
            dis = [disconnected_type() for _ in range(4)]
            return [*dis, self(bwd, fwd, off_v, off_m, grads[0])]

    BlockMatVec.__module__ = __name__
    BlockMatVec.__qualname__ = "_BlockMatVec"
    _register_numba(BlockMatVec)
    _BLOCK_OP_CLASS = BlockMatVec
    return BlockMatVec


def _register_numba(op_class: Any) -> None:
    try:
        from pytensor.link.numba.dispatch.basic import (
            numba_njit,
            register_funcify_default_op_cache_key,
        )
    except ImportError:  # pragma: no cover - numba is optional for PyMC's own sampler
        return

    @register_funcify_default_op_cache_key(op_class)  # type: ignore[misc]
    def _funcify(op: Any, node: Any = None, **kwargs: Any) -> Any:
        @numba_njit  # type: ignore[misc]
        def block_matvec(fwd: Any, bwd: Any, off_v: Any, off_m: Any, x: Any) -> Any:
            xc = np.ascontiguousarray(x)
            out = np.empty_like(xc)
            for h in range(off_v.size - 1):
                a = off_v[h]
                b = off_v[h + 1]
                p = b - a
                if p == 0:
                    continue
                m = fwd[off_m[h] : off_m[h + 1]].reshape((p, p))
                out[a:b] = np.dot(m, xc[a:b])
            return out

        return block_matvec


_BLOCK_OP_CLASS: Any = None


def __getattr__(name: str) -> Any:
    # Lets pickle (PyMC's worker processes) find the lazily built Op class by name.
    if name == "_BlockMatVec":
        return _block_op()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _block_diag_dense(mats: list[Float64Array]) -> Float64Array:
    n = sum(m.shape[0] for m in mats)
    out = np.zeros((n, n))
    i = 0
    for m in mats:
        k = m.shape[0]
        out[i : i + k, i : i + k] = m
        i += k
    return out


def _with_scale(priors: dict[str, str], scale: float, center: float) -> dict[str, str]:
    out = {"data_scale_s": f"{scale:.6g}", "data_mean_m_y": f"{center:.6g}"}
    out.update(priors)
    return out


def _build_units_model(
    pm: Any,
    result: AttGtResult,
    data: Any,
    cs: _CellSet,
    pooling: str,
    scale: float,
    center: float,
    include_pre: bool,
) -> _Built:
    import pytensor.tensor as pt

    from causalmem.estimators._prepare import to_wide
    from causalmem.panel.panel import Panel
    from causalmem.panel.validate import validate_long

    s = result.spec
    if s.xformla is not None or s.weightsname is not None or s.clustervars:
        raise ValueError(
            "model='units' supports unweighted panels without covariates or extra clusters; "
            "use model='cells' (it takes the influence-function covariance of any att_gt fit)."
        )
    frame = data.frame if isinstance(data, Panel) else data
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"data must be a DataFrame or Panel, got {type(data).__name__}.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CausalmemWarning)
        checked = validate_long(
            frame,
            idname=s.idname,
            tname=s.tname,
            gname=s.gname,
            ynames=(s.yname,),
            allow_unbalanced_panel=True,
            drop_always_treated=s.drop_always_treated,
        )
    wide = to_wide(checked, s.yname)
    c = result.cells
    if not np.array_equal(wide.tlist, c.tlist):
        raise ValueError(
            "data does not match the result: its steps differ from the att_gt fit "
            f"({wide.tlist.size} vs {c.tlist.size} steps)."
        )
    n_obs = int(np.isfinite(wide.y).sum())
    if n_obs > MAX_UNIT_OBS:
        raise ValueError(
            f"model='units' is meant for small panels ({n_obs:,} observations > "
            f"{MAX_UNIT_OBS:,}); use model='cells', which needs only the cell estimates."
        )
    glist = c.glist
    gbase = np.full(glist.size, -1, dtype=np.int64)
    post_cells = c.post & ~c.reference
    gbase[c.g_idx[post_cells]] = c.b_idx[post_cells]
    in_sample = np.isinf(wide.cohort) | np.isin(wide.cohort, glist)
    y = wide.y[in_sample]
    coh = wide.cohort[in_sample]
    k_of = np.where(np.isinf(coh), -1, np.searchsorted(glist, coh))
    # Map (cohort index, period index) -> modelled cell position.
    cell_pos = np.full((glist.size, c.tlist.size), -1, dtype=np.int64)
    cell_pos[c.g_idx[cs.order], c.t_idx[cs.order]] = np.arange(cs.n)
    ui, ti = np.nonzero(np.isfinite(y))
    k = k_of[ui]
    treated = k >= 0
    cp = np.full(ui.size, -1, dtype=np.int64)
    cp[treated] = cell_pos[k[treated], ti[treated]]
    base = np.zeros(ui.size, dtype=bool)
    base[treated] = gbase[k[treated]] == ti[treated]
    before = np.zeros(ui.size, dtype=bool)
    before[treated] = ti[treated] < gbase[k[treated]]
    # Kept: never treated; base periods; modelled cells; untreated pre-base periods when the
    # placebo cells are not modelled. Dropped: anything else (e.g. anticipation windows).
    keep = ~treated | base | (cp >= 0) | (before & (not include_pre))
    ui, ti, cp = ui[keep], ti[keep], cp[keep]
    yy = y[ui, ti]
    units_used, u_code = np.unique(ui, return_inverse=True)
    y_mean = float(np.mean(yy))
    y_sd = float(np.std(yy, ddof=1)) if yy.size > 1 else 1.0
    y_sd = y_sd if y_sd > 0 else 1.0
    y_std = (yy - y_mean) / y_sd
    eff_sd = scale / y_sd
    eff_loc = center / y_sd
    coords = {
        "cell": cs.terms(),
        "event_time": cs.e_grid,
        "cohort": cs.cohorts,
        "unit": np.arange(units_used.size),
        "period": c.tlist,
        "obs": np.arange(yy.size),
    }
    has_cell = cp >= 0
    cp0 = np.maximum(cp, 0)
    with pm.Model(coords=coords) as model:
        mu_m, priors = _mu_path(pm, pt, cs, pooling, eff_loc, eff_sd, 0.0, y_sd)
        sigma_alpha = pm.HalfNormal("sigma_alpha_std", sigma=eff_sd)
        pm.Deterministic("sigma_alpha", y_sd * sigma_alpha)
        # Zero-sum (as in the cells model): mu is the average cohort's path, no level ridge.
        alpha_z = pm.ZeroSumNormal("alpha_z", sigma=1.0, dims="cohort")
        alpha_m = sigma_alpha * alpha_z
        pm.Deterministic("alpha", y_sd * alpha_m, dims="cohort")
        sigma_delta = pm.HalfNormal("sigma_delta_std", sigma=eff_sd)
        pm.Deterministic("sigma_delta", y_sd * sigma_delta)
        delta_z = pm.Normal("delta_z", 0.0, 1.0, dims="cell")
        e_idx = np.maximum(cs.e_code, 0)
        theta_m = (
            pt.where(cs.post, mu_m[e_idx] + alpha_m[cs.cohort_code], 0.0) + sigma_delta * delta_z
        )
        pm.Deterministic("theta", y_sd * theta_m, dims="cell")
        sigma_a = pm.HalfNormal("sigma_unit", sigma=LEVEL_SD)
        a = pm.ZeroSumNormal("unit_effect", sigma=sigma_a, dims="unit")
        lam_t = pm.Normal("time_effect", 0.0, LEVEL_SD, dims="period")
        sigma_eps = pm.HalfNormal("sigma_eps_std", sigma=1.0)
        pm.Deterministic("sigma_eps", y_sd * sigma_eps)
        mean = a[u_code] + lam_t[ti] + pt.where(has_cell, theta_m[cp0], 0.0)
        pm.Normal("y", mu=mean, sigma=sigma_eps, observed=y_std, dims="obs")
    priors = dict(priors)
    priors.update(
        {
            "alpha": "alpha ~ ZeroSumNormal(sigma_alpha) over cohorts (non-centred)",
            "delta": "delta ~ N(0, sigma_delta) (non-centred)",
            "unit_effect": "ZeroSumNormal(sigma_unit), sigma_unit ~ HalfNormal(2.5 sd_y)",
            "time_effect": "N(mean_y, 2.5 sd_y)",
            "sigma_eps": "HalfNormal(sd_y)",
            "outcome_mean_sd": f"{y_mean:.6g}, {y_sd:.6g}",
        }
    )
    return _Built(model=model, priors=_with_scale(priors, scale, center), post=None)


def _sample(
    pm: Any,
    model: Any,
    sampler: str,
    draws: int,
    tune: int,
    chains: int,
    cores: int,
    target_accept: float,
    seed: int,
    progressbar: bool,
) -> tuple[Any, float]:
    """Run NUTS; returns the InferenceData and the compile time (nutpie; NaN for PyMC)."""
    with warnings.catch_warnings():
        # PyTensor's BLAS notice and ArviZ's refactor notice; convergence is checked by us.
        warnings.filterwarnings("ignore", message=".*BLAS.*")
        warnings.filterwarnings("ignore", message=".*ArviZ is undergoing.*")
        warnings.filterwarnings("ignore", category=FutureWarning)
        if sampler == "nutpie":
            import nutpie

            t0 = time.perf_counter()
            compiled = nutpie.compile_pymc_model(model)
            t_compile = time.perf_counter() - t0
            idata = nutpie.sample(
                compiled,
                draws=draws,
                tune=tune,
                chains=chains,
                cores=cores,
                seed=seed,
                target_accept=target_accept,
                progress_bar=progressbar,
            )
            return idata, t_compile
        with model:
            idata = pm.sample(
                draws=draws,
                tune=tune,
                chains=chains,
                cores=cores,
                target_accept=target_accept,
                random_seed=seed,
                progressbar=progressbar,
                compute_convergence_checks=False,
                return_inferencedata=True,
            )
        return idata, float("nan")


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
    import xarray as xr

    post = idata.posterior
    n_chain, n_draw = post.sizes["chain"], post.sizes["draw"]
    mu = _stacked(idata, "mu")
    sd = _stacked(idata, "sigma_delta")
    sa = _stacked(idata, "sigma_alpha")
    alpha_s = None if pc.alpha_by_block else _stacked(idata, "alpha")
    ctrl = None
    if pc.l_ctrl is not None:
        ctrl = _stacked(idata, "z_ctrl") @ pc.l_ctrl.T  # u_C in data units
    n_tot = mu.shape[0]
    j = pc.y.size
    n_blk = len(pc.q)
    theta = np.empty((n_tot, j))
    alpha_out = np.zeros((n_tot, pc.cohorts.size))
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7]))
    e_idx = np.maximum(pc.e_code, 0)
    postf = pc.post.astype(np.float64)
    blk_cohort = pc.cohort_code[pc.bounds[:-1]]
    for s0 in range(0, n_tot, chunk):
        s1 = min(s0 + chunk, n_tot)
        nd = s1 - s0
        struct = mu[s0:s1][:, e_idx] * postf[None, :]
        if alpha_s is not None:
            struct += alpha_s[s0:s1][:, pc.cohort_code] * postf[None, :]
        r = pc.y[None, :] - struct
        if ctrl is not None:
            u = ctrl[s0:s1]
            r += u[:, pc.t_pos] - u[:, pc.b_pos]
        sd2 = sd[s0:s1, None] ** 2
        rho = np.empty((nd, j))
        for h, q in enumerate(pc.q):
            sl = slice(pc.bounds[h], pc.bounds[h + 1])
            rho[:, sl] = r[:, sl] @ q
        d = pc.lam[None, :] + sd2
        al = np.zeros((nd, n_blk))
        if pc.alpha_by_block:
            qr = pc.q_rot[None, :]
            a_g = np.add.reduceat(qr * rho / d, pc.bounds[:-1], axis=1)
            c_g = np.add.reduceat(qr**2 / d, pc.bounds[:-1], axis=1)
            prec = 1.0 / sa[s0:s1, None] ** 2 + c_g
            al = a_g / prec + rng.standard_normal((nd, n_blk)) / np.sqrt(prec)
            v = 1.0 / prec
            al -= v * (al.sum(axis=1) / v.sum(axis=1))[:, None]
            alpha_out[s0:s1][:, blk_cohort] = al
        out = theta[s0:s1]
        for h, q in enumerate(pc.q):
            sl = slice(pc.bounds[h], pc.bounds[h + 1])
            lam = pc.lam[None, sl]
            base = struct[:, sl]
            rho_h = rho[:, sl]
            if pc.alpha_by_block:
                rho_h = rho_h - al[:, h : h + 1] * pc.q_rot[None, sl]
                base = base + al[:, h : h + 1] * postf[None, sl]
            w = sd2 / d[:, sl]
            xi = rng.standard_normal((nd, q.shape[0]))
            out[:, sl] = base + (w * rho_h + np.sqrt(lam * w) * xi) @ q.T
    coords = {"chain": post["chain"].values, "draw": post["draw"].values}
    post["theta"] = xr.DataArray(
        theta.reshape(n_chain, n_draw, j),
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
    if "constant_data" in idata.groups():
        idata.constant_data = idata.constant_data.merge(ds, compat="override")
    else:
        idata.add_groups(constant_data=ds)


def _diagnostics(
    idata: Any,
) -> tuple[dict[str, Any], dict[str, tuple[Float64Array, Float64Array]]]:
    """Summary diagnostics and per-variable ``(r_hat, ess_bulk)`` of every posterior variable.

    The warning thresholds apply to the reported quantities (:data:`REPORTED`: the scales,
    ``mu``, ``alpha`` and ``theta``). The sampler's internal coordinates (whitened ``eta``, the
    never-treated path latents ``z_ctrl``, non-centred offsets, unit and period effects) are
    summarised separately as nuisance (``*_nuisance`` keys): with a few hundred of them, the
    maximum folded R-hat over 1,000 draws per chain exceeds 1.01 by chance alone.
    """
    from causalmem.results.bayes import convergence, ess_tail

    post = idata.posterior
    per_var: dict[str, tuple[Float64Array, Float64Array]] = {}
    worst: dict[str, tuple[float, str]] = {}

    def update(key: str, vals: Float64Array, name: str, high: bool) -> None:
        if not np.isfinite(vals).any():
            return
        v = float(np.nanmax(vals) if high else np.nanmin(vals))
        cur = worst.get(key, (np.nan, ""))[0]
        if np.isnan(cur) or (v > cur if high else v < cur):
            worst[key] = (v, name)

    for name in post.data_vars:
        arr = np.asarray(post[name].values)
        if arr.dtype.kind != "f" or str(name).endswith("__"):
            continue  # nutpie also stores unconstrained copies (same rank diagnostics)
        x = arr.reshape(arr.shape[0], arr.shape[1], -1).astype(np.float64)
        rhat, ess = convergence(x)
        per_var[str(name)] = (rhat, ess)
        suffix = "" if str(name) in REPORTED else "_nuisance"
        update("r_hat" + suffix, rhat, str(name), True)
        update("ess" + suffix, ess, str(name), False)
        if name != "theta":  # tail ESS of 10k+ cells is skipped (reported only)
            update("ess_tail" + suffix, ess_tail(x), str(name), False)
    div = idata.sample_stats.get("diverging")
    n_div = int(np.asarray(div.values).sum()) if div is not None else 0
    depth = idata.sample_stats.get("tree_depth")
    if depth is None:
        depth = idata.sample_stats.get("depth")
    steps = idata.sample_stats.get("n_steps")
    max_rhat = worst.get("r_hat", (np.nan, ""))
    min_ess = worst.get("ess", (np.nan, ""))
    summary = {
        "max_r_hat": max_rhat[0],
        "max_r_hat_var": max_rhat[1],
        "min_ess_bulk": min_ess[0],
        "min_ess_bulk_var": min_ess[1],
        "min_ess_tail": worst.get("ess_tail", (np.nan, ""))[0],
        "divergences": n_div,
        "max_r_hat_nuisance": worst.get("r_hat_nuisance", (np.nan, ""))[0],
        "min_ess_bulk_nuisance": worst.get("ess_nuisance", (np.nan, ""))[0],
        "mean_tree_depth": float(np.asarray(depth.values).mean()) if depth is not None else np.nan,
        "mean_n_steps": float(np.asarray(steps.values).mean()) if steps is not None else np.nan,
        "n_samples": int(post.sizes["chain"] * post.sizes["draw"]),
        "passed": bool(
            np.isfinite(max_rhat[0])
            and max_rhat[0] <= RHAT_MAX
            and np.isfinite(min_ess[0])
            and min_ess[0] >= ESS_MIN
            and n_div == 0
        ),
    }
    return summary, per_var


def _warn_diagnostics(d: Mapping[str, Any]) -> None:
    problems = []
    if not (np.isfinite(d["max_r_hat"]) and d["max_r_hat"] <= RHAT_MAX):
        problems.append(f"max r_hat = {d['max_r_hat']:.3f} > {RHAT_MAX} ({d['max_r_hat_var']})")
    if not (np.isfinite(d["min_ess_bulk"]) and d["min_ess_bulk"] >= ESS_MIN):
        problems.append(
            f"min ess_bulk = {d['min_ess_bulk']:.0f} < {ESS_MIN:.0f} ({d['min_ess_bulk_var']})"
        )
    if d["divergences"] > 0:
        problems.append(f"{d['divergences']} divergent transitions")
    if problems:
        warnings.warn(
            "bayes_did: the sampler's diagnostics failed: "
            + "; ".join(problems)
            + ". Do not trust the posterior yet: raise draws/tune, raise target_accept, or "
            "simplify the model (e.g. pooling='rw', include_pre=False).",
            CausalmemWarning,
            stacklevel=3,
        )
