"""``bayes_did``: argument checks, the fit pipeline and the result."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from causalmem._types import BayesModel, Pooling, Sampler, check_literal
from causalmem.estimators.bayes._cells import _cell_set, _CellSet, _data_scale, _factors, _reorder
from causalmem.estimators.bayes._decay import DECAY_BASIS
from causalmem.estimators.bayes._diagnostics import _diagnostics, _warn_diagnostics
from causalmem.estimators.bayes._draws import _add_constants, _add_theta
from causalmem.estimators.bayes._model_cells import _build_cells_model
from causalmem.estimators.bayes._model_units import _build_units_model
from causalmem.estimators.bayes._priors import _Built
from causalmem.estimators.bayes._sampling import (
    _bayes_versions,
    _choose_sampler,
    _import_pymc,
    _sample,
)
from causalmem.results.base import provenance

if TYPE_CHECKING:
    from causalmem.panel.panel import Panel
    from causalmem.results.attgt import AttGtResult
    from causalmem.results.bayes import BayesDidResult, BayesDidSpec


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
    cohort_decay: bool | None = None,
) -> BayesDidResult:
    r"""Fit a Bayesian hierarchical model that pools ATT(g, c) along event time.

    Each cell's effect is a pooled event-time path plus a cohort effect plus a cell deviation;
    noisy cells (small cohorts) are shrunk towards the pooled surface. For memorisation, ``g``
    is the step an instance was trained on and ``c`` a checkpoint (Lesci et al. 2024,
    https://arxiv.org/abs/2406.04327); the cells are Callaway & Sant'Anna's (2021),
    https://doi.org/10.1016/j.jeconom.2020.12.001, from :func:`~causalmem.att_gt`.

    **Effect model** (both ``model`` variants), for post-treatment cells, event time
    ``e = c - g >= 0`` (in steps)::

        theta[g, e] = mu(e) + alpha[g] + sum_k beta[g, k] f_k(e) + delta[g, e]
        alpha       ~ ZeroSumNormal(sigma_alpha)   cohort effects: N(0, sigma_alpha) given
                                                   sum(alpha) = 0, so mu is the average
                                                   cohort's path
        beta[., k]  ~ ZeroSumNormal(sigma_beta_k)  per-cohort decay (cells model, on by
                                                   default; cohort_decay=False: off)
        delta[g, e] ~ N(0, sigma_delta)            cell deviations from the pooled surface

    The decay loadings ``f_1, f_2`` are the discrete orthogonal polynomials of degree 1 and 2
    in ``u(e) = log(1 + e / e_1) / log(1 + e_max / e_1)``, the event time on a log scale in
    [0, 1] (``e_1`` the smallest positive event time), over the event-time grid, orthogonal to
    the constant and scaled to ``max |f_k| = 1``: each cohort's deviation from ``mu`` is a
    quadratic in log event time, so cohorts may differ in their level, their peak and how fast
    they decay (the learning-rate schedule changes all three), partially pooled through
    ``sigma_beta``. Without it every cohort is
    pulled towards one decay shape: in the mini-Pythia lab the level-only model's 95% HDIs
    covered the true tau in 0.83 of the cells (``reports/bayes_calibration.md``).

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
    ``u_C = L_C z``, ``z ~ N(0, I)``, ``L_C L_C' = P_C`` (known); the cohort coefficients
    ``b_g = (alpha_g, beta_g1, beta_g2)`` and ``delta`` are integrated out exactly through the
    eigendecomposition ``B_g = Q diag(lambda) Q'`` of each cohort's block
    (``Q'(ATT_hat_g - mu + A u_C)`` has covariance ``diag(lambda + sigma_delta^2) + F S F'``
    per cohort, ``F = Q'(1, f_1(e), f_2(e))``, ``S`` the coefficients' prior variances:
    Woodbury with a 3 x 3 matrix per cohort, and a zero-sum correction across cohorts, see
    :mod:`._decay`), so only ``mu``, ``z`` and the scales are sampled. ``alpha``, ``beta`` and
    ``theta`` are then drawn exactly from their Gaussian conditionals given each
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

    **Diagnostics**: ArviZ's rank-normalised split R-hat (bulk and folded) and bulk and tail ESS
    (Vehtari et al. 2021) over the reported quantities (the scales, ``mu``, ``alpha``,
    ``theta``) and divergences; a :class:`~causalmem.errors.CausalmemWarning` names the failing
    numbers. Internal coordinates (whitened ``eta``, ``z_ctrl``, non-centred offsets, unit and
    period effects) are summarised separately (``*_nuisance`` in ``diagnostics``).

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
    cohort_decay
        Per-cohort decay loadings ``beta[g, k] f_k(e)``. None (default): on for
        ``model="cells"``, off for ``model="units"`` (cohort levels only); False: off (the
        level-only model); True: on, and raises with ``model="units"``. The coefficients are
        integrated out exactly (value and gradient in one compiled Op), so the decay costs
        the sampler about as much as the level-only model (``bench/bayes.py``; the lab's
        calibration before and after: ``reports/bayes_calibration.md``).
    cores
        Chains run in parallel on this many cores (default ``min(chains, os.cpu_count())``).
        nutpie compiles the model with numba first (10-25 s on 2 cores, then fast sampling);
        PyMC's sampler compiles in seconds but samples ~2x slower at paper scale.

    Returns
    -------
    BayesDidResult
        Immutable result with ArviZ's container (``idata``: an xarray ``DataTree`` with
        ArviZ >= 1 and PyMC >= 6, an ``InferenceData`` with ArviZ 0.2x on Python 3.11),
        ``tidy(hdi_prob)``, ``profile()``, ``glance()``, ``summary()``, ``to_latex()`` and
        ``to_markdown()``.

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
    _check_args(result, model, pooling, sampler, draws, tune, chains, target_accept, shrinkage)
    n_decay = _decay_terms(model, cohort_decay)
    if model == "units" and data is None:
        raise ValueError(
            "model='units' needs the panel: pass data= (the frame or Panel given to att_gt)."
        )
    return _fit(
        result,
        model=model,
        data=data,
        pooling=pooling,
        include_pre=include_pre,
        draws=draws,
        tune=tune,
        chains=chains,
        target_accept=target_accept,
        seed=seed,
        sampler=sampler,
        progressbar=progressbar,
        shrinkage=shrinkage,
        cores=cores,
        n_decay=n_decay,
    )


def _fit_cells(
    result: AttGtResult, *, violation_scale: float, cohort_decay: bool | None, **kw: Any
) -> BayesDidResult:
    """Fit the cells model with the violation path of scale ``s`` (none at 0)."""
    return _fit(
        result,
        model="cells",
        data=None,
        n_decay=_decay_terms("cells", cohort_decay),
        violation_scale=violation_scale,
        **kw,
    )


def _fit(
    result: AttGtResult,
    *,
    model: str,
    data: Any,
    pooling: str,
    include_pre: bool,
    draws: int,
    tune: int,
    chains: int,
    target_accept: float,
    seed: int | None,
    sampler: str,
    progressbar: bool,
    shrinkage: float | None,
    cores: int | None,
    n_decay: int,
    violation_scale: float = 0.0,
) -> BayesDidResult:
    """Run the fit pipeline of :func:`bayes_did` (arguments already checked)."""
    from causalmem.results.bayes import BayesDidSpec

    seed = _resolve_seed(seed)
    pm, _ = _import_pymc()
    sampler_used = _choose_sampler(sampler)
    n_cores = int(cores) if cores is not None else min(chains, os.cpu_count() or 1)

    cellset = _cell_set(result, include_pre)
    scale, center = _data_scale(cellset)
    t0 = time.perf_counter()
    cellset, built, cov_kind = _build(
        pm,
        result,
        model,
        data,
        cellset,
        pooling,
        scale,
        center,
        include_pre,
        shrinkage,
        n_decay,
        violation_scale,
    )
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
        cohort_decay=n_decay > 0,
        violation_scale=float(violation_scale),
    )
    timing = {
        "build_s": t_build,
        "compile_s": t_compile,
        "sample_s": t_sample if np.isnan(t_compile) else t_sample - t_compile,
        "conditional_draws_s": t_draws,
        "diagnostics_s": t_diag,
    }
    return _result(spec, idata, cellset, built, cov_kind, diagnostics, per_var, timing)


def _check_args(
    result: Any,
    model: str,
    pooling: str,
    sampler: str,
    draws: Any,
    tune: Any,
    chains: Any,
    target_accept: float,
    shrinkage: float | None,
) -> None:
    """Validate the options of :func:`bayes_did` (types, literals and ranges)."""
    from causalmem.results.attgt import AttGtResult

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


def _build(
    pm: Any,
    result: AttGtResult,
    model: str,
    data: Any,
    cellset: _CellSet,
    pooling: str,
    scale: float,
    center: float,
    include_pre: bool,
    shrinkage: float | None,
    n_decay: int = 0,
    violation_scale: float = 0.0,
) -> tuple[_CellSet, _Built, str]:
    """Build the PyMC model; returns the cells in model order, the model and the covariance."""
    if model == "cells":
        from causalmem.estimators.bayes.sensitivity import violation_prior

        factors, cov_kind = _factors(result, cellset.order, shrinkage)
        cellset = _reorder(cellset, factors.order)
        viol = violation_prior(result, cellset, violation_scale) if violation_scale > 0 else None
        built = _build_cells_model(pm, cellset, factors, pooling, scale, center, n_decay, viol)
        return cellset, built, cov_kind
    built = _build_units_model(pm, result, data, cellset, pooling, scale, center, include_pre)
    return cellset, built, "none (unit-level likelihood)"


def _decay_terms(model: str, cohort_decay: bool | None) -> int:
    """Return the number of per-cohort decay loadings (``DECAY_BASIS`` for the cells model)."""
    if cohort_decay is not None and not isinstance(cohort_decay, bool | np.bool_):
        raise TypeError(f"cohort_decay must be True, False or None, got {cohort_decay!r}.")
    if model == "units":
        if cohort_decay:
            raise ValueError(
                "cohort_decay=True needs model='cells'; the unit-level model has cohort levels "
                "only. Use model='cells' or cohort_decay=None."
            )
        return 0
    return 0 if cohort_decay is False else DECAY_BASIS


def _resolve_seed(seed: Any) -> int:
    """Return the seed as an int; None draws fresh entropy (recorded in the result's spec)."""
    if seed is None:
        seed = int(np.random.SeedSequence().entropy % (2**31))  # type: ignore[operator]
    elif not isinstance(seed, int | np.integer) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int or None, got {seed!r}.")
    return int(seed)


def _result(
    spec: BayesDidSpec,
    idata: Any,
    cellset: _CellSet,
    built: _Built,
    cov_kind: str,
    diagnostics: dict[str, Any],
    per_var: dict[str, Any],
    timing: dict[str, float],
) -> BayesDidResult:
    """Assemble the immutable result."""
    from causalmem.results.bayes import BayesDidResult

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
        timing=timing,
        provenance=provenance(seed=spec.seed, bayes_versions=_bayes_versions(spec.sampler_used)),
    )
