"""The unit-level model on the panel (``model="units"``, small panels)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from causalmem._types import Float64Array, Int64Array
from causalmem.errors import CausalmemWarning
from causalmem.estimators.bayes._priors import LEVEL_SD, _Built, _mu_path, _with_scale

if TYPE_CHECKING:
    from causalmem.estimators.bayes._cells import _CellSet
    from causalmem.results.attgt import AttGtResult

# Unit-level model: one latent per unit, period and cell; meant for small panels.
MAX_UNIT_OBS = 200_000


@dataclass(frozen=True)
class _UnitObs:
    """The kept observations: unit code, period index, modelled cell (-1: none), outcome."""

    u_code: Int64Array
    ti: Int64Array
    cp: Int64Array
    yy: Float64Array
    n_units: int


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
    wide = _units_wide(result, data)
    obs = _unit_observations(result, wide, cs, include_pre)
    y_mean = float(np.mean(obs.yy))
    y_sd = float(np.std(obs.yy, ddof=1)) if obs.yy.size > 1 else 1.0
    y_sd = y_sd if y_sd > 0 else 1.0
    model, priors = _units_pymc_model(pm, result, cs, obs, pooling, scale, center, y_mean, y_sd)
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


def _units_wide(result: AttGtResult, data: Any) -> Any:
    """Validate ``data`` against the result and return its wide form (outcome ``[unit, t]``)."""
    from causalmem.estimators._prepare import to_wide
    from causalmem.panel.checks import validate_long
    from causalmem.panel.panel import Panel

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
    return wide


def _unit_observations(result: AttGtResult, wide: Any, cs: _CellSet, include_pre: bool) -> _UnitObs:
    """Select the observations that identify the model and map each to its modelled cell."""
    c = result.cells
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
    units_used, u_code = np.unique(ui, return_inverse=True)
    return _UnitObs(u_code=u_code, ti=ti, cp=cp, yy=y[ui, ti], n_units=int(units_used.size))


def _units_pymc_model(
    pm: Any,
    result: AttGtResult,
    cs: _CellSet,
    obs: _UnitObs,
    pooling: str,
    scale: float,
    center: float,
    y_mean: float,
    y_sd: float,
) -> tuple[Any, dict[str, str]]:
    """Build the PyMC model on the standardised outcome; return it and the path's priors."""
    import pytensor.tensor as pt

    y_std = (obs.yy - y_mean) / y_sd
    eff_sd = scale / y_sd
    eff_loc = center / y_sd
    coords = {
        "cell": cs.terms(),
        "event_time": cs.e_grid,
        "cohort": cs.cohorts,
        "unit": np.arange(obs.n_units),
        "period": result.cells.tlist,
        "obs": np.arange(obs.yy.size),
    }
    has_cell = obs.cp >= 0
    cp0 = np.maximum(obs.cp, 0)
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
        mean = a[obs.u_code] + lam_t[obs.ti] + pt.where(has_cell, theta_m[cp0], 0.0)
        pm.Normal("y", mu=mean, sigma=sigma_eps, observed=y_std, dims="obs")
    return model, dict(priors)
