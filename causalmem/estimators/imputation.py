"""Imputation (Borusyak, Jaravel & Spiess 2024) and two-stage (Gardner 2022) DiD estimators.

Borusyak, K., Jaravel, X. and Spiess, J. (2024), "Revisiting Event-Study Designs: Robust and
Efficient Estimation", *Review of Economic Studies* 91(6), https://doi.org/10.1093/restud/rdae007
(R ``didimputation``); Gardner, J. (2022), "Two-stage differences in differences",
arXiv:2207.05943 (R ``did2s``, Butts & Gardner 2022, *The R Journal* 14(3)).

Both fit unit (or ``fe``-level) and period fixed effects on the **untreated** observations only
(never-treated instances at every checkpoint, later-trained ones before their training step),
impute the untreated outcome of every treated observation and average ``Y - Yhat(0)``. They
differ in inference: BJS's conservative variance (Theorem 3, with cohort x event-time auxiliary
averages as ``didimputation``), or Gardner's GMM-corrected two-stage variance (as ``did2s``).
The fit uses the cell structure (:mod:`causalmem._numerics.imputation`): no ``n x units``
design, so the paper-shaped panel (16,300 instances x 154 checkpoints) takes seconds.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from causalmem._numerics.imputation import (
    FirstStage,
    connected,
    first_stage,
    imputation_estimates,
    pretrend_regression,
    two_stage_estimates,
)
from causalmem._types import Float64Array, Int64Array
from causalmem.errors import (
    CausalmemWarning,
    ClusterError,
    CohortError,
    IdentificationError,
    MissingColumnError,
    OptionError,
    OutcomeError,
)
from causalmem.estimators._prepare import numeric_column as _num
from causalmem.estimators._prepare import step_and_cohort
from causalmem.results.base import provenance
from causalmem.results.imputation import ImputationResult, ImputationSpec, wald

EventTime = Literal["steps", "periods"]
Horizons = bool | Sequence[int] | None

__all__ = ["did2s", "did_imputation"]


def did_imputation(
    data: pd.DataFrame,
    yname: str,
    tname: str,
    idname: str,
    gname: str,
    *,
    horizon: Horizons = None,
    pretrends: Horizons = None,
    fe: str | None = None,
    cluster: str | None = None,
    anticipation: int = 0,
    event_time: EventTime = "steps",
    leave_out: bool = False,
    alp: float = 0.05,
) -> ImputationResult:
    """Imputation estimator of Borusyak, Jaravel & Spiess (2024), as R ``didimputation``.

    Identification: untreated outcomes follow ``Y_it(0) = alpha_i + lambda_t + e_it`` with
    ``E[e_it] = 0`` for every observation (parallel trends for all units and periods, no
    anticipation beyond ``anticipation`` steps). ``alpha`` and ``lambda`` are fitted on the
    untreated observations only, ``tau_it = Y_it - alpha_i - lambda_t`` on treated ones, and
    estimands are averages of ``tau_it`` with equal weights: ``overall`` (all treated
    observations, didimputation's ``treat``) and one per event time ``e = t - g``.

    Standard errors: BJS's conservative variance ``sum_c (sum_{it in c} v_it eps_it)^2`` with
    ``v`` the implied weights (``-Z0 (Z0'Z0)^{-1} Z1' w`` on untreated observations) and
    ``eps`` the first-stage residuals or ``tau_it`` minus its cohort x event-time average (the
    average leaves out the observation's own cluster with ``leave_out=True``, BJS Section 4.3).
    Unlike R ``didimputation`` (which drops never-treated units from the variance sum, see
    ``did_imputation.R``'s ``data[!is.infinite(zz000event_time)]``), every cluster contributes,
    as in the paper and BJS's Stata ``did_imputation``.

    Parameters
    ----------
    data
        Long panel (one row per instance and checkpoint; unbalanced panels are fine).
    yname, tname, idname, gname
        Outcome, step, unit and cohort (first treated step; NaN or ``inf`` = never treated).
    horizon
        Event-study horizons: ``True`` (every observed ``e >= 0``), a list of event times,
        or ``None`` (only the overall average).
    pretrends
        Leads for BJS's pre-trend test (Test 1: untreated observations regressed on lead
        indicators with unit and period effects, clustered as fixest's default): ``True``
        (every lead but the earliest, which is the reference: all of them together are
        collinear with the unit effects), a list of negative event times, or ``None``.
        A list whose leads are collinear with the fixed effects raises ``OptionError``.
    fe
        Column of the first fixed effect (default ``idname``; e.g. a coarser group).
    cluster
        Cluster column (default ``idname``).
    anticipation
        Observations from ``g - anticipation`` on count as treated.
    event_time
        ``"steps"`` (``e = t - g`` in step units, R's convention) or ``"periods"``
        (checkpoints on the observed grid, as :func:`causalmem.event_study`).
    leave_out
        Leave-cluster-out auxiliary averages in the variance.
    alp
        Significance level of the pointwise intervals.

    Returns
    -------
    ImputationResult
    """
    spec = _spec("imputation", locals(), horizon=horizon, pretrends=pretrends, leave_out=leave_out)
    d = _prepare(data, spec)
    fs = first_stage(d.y, d.a, d.t, d.untreated, d.n_a, d.n_t)
    post_e = _select(d.e_treated_values, spec.horizon, "horizon", nonneg=True)
    # estimand weights: overall + each horizon, equal within (cohort, event time) cells
    tr = np.flatnonzero(~d.untreated)
    n1 = tr.size
    col = _column_of(d.e[tr], post_e)
    hit = col >= 0
    n_h = np.bincount(col[hit], minlength=post_e.size).astype(np.float64)
    counts = [float(n1), *n_h.tolist()]
    w = sp.csr_matrix(
        (
            np.concatenate([np.full(n1, 1.0 / n1), 1.0 / n_h[col[hit]]]),
            (np.concatenate([tr, tr[hit]]), np.concatenate([np.zeros(n1, np.int64), col[hit] + 1])),
        ),
        shape=(d.y.size, 1 + post_e.size),
    )
    cell = np.full(d.y.size, -1, dtype=np.int64)
    cell_key = d.cohort_code[tr] * (d.n_e + 1) + d.e_code[tr]
    _, cell[tr] = np.unique(cell_key, return_inverse=True)
    est, n_fb = imputation_estimates(
        fs,
        w,
        cell,
        int(cell.max()) + 1,
        d.cl,
        d.a,
        d.t,
        d.untreated,
        d.n_cl,
        spec.leave_out,
    )
    if n_fb:
        warnings.warn(
            f"leave_out=True: {n_fb} cohort x event-time cells have a single cluster, so their "
            "leave-out average is undefined; the plain cell average is used there.",
            CausalmemWarning,
            stacklevel=2,
        )
    terms = ["overall", *(f"event_time={e:g}" for e in post_e)]
    kinds = ["overall", *(["post"] * len(post_e))]
    ev = [np.nan, *post_e]
    estimate, se, vcov = est.estimate, est.se, est.vcov
    n_term = np.array(counts)
    pretest: tuple[float, int, float] = (float("nan"), 0, float("nan"))
    pre_e = _select(d.e_lead_values, spec.pretrends, "pretrends", nonneg=False)
    if spec.pretrends is True and pre_e.size > 1:
        # Every untreated row of an eventually treated unit carries one lead: the full set
        # sums to the treated-unit indicator, collinear with the unit effects. The earliest
        # lead is the reference (fixest drops one of them for the same reason).
        pre_e = pre_e[1:]
    if pre_e.size:
        pre = _pretrends(d, pre_e)
        pretest = wald(pre.coef, pre.vcov)
        terms = [*(f"event_time={e:g}" for e in pre_e), *terms]
        kinds = [*(["pre"] * pre_e.size), *kinds]
        ev = [*pre_e, *ev]
        estimate = np.concatenate([pre.coef, estimate])
        se = np.concatenate([np.sqrt(np.diag(pre.vcov)), se])
        k0, k1 = pre_e.size, vcov.shape[0]
        full = np.full((k0 + k1, k0 + k1), np.nan)
        full[:k0, :k0] = pre.vcov
        full[k0:, k0:] = vcov
        vcov = full
        n_term = np.concatenate([[np.sum(d.e[d.untreated] == e) for e in pre_e], n_term])
    return _result(spec, d, terms, kinds, ev, estimate, se, n_term, vcov, pretest, fs)


def did2s(
    data: pd.DataFrame,
    yname: str,
    tname: str,
    idname: str,
    gname: str,
    *,
    horizon: Horizons = None,
    pretrends: Horizons = None,
    fe: str | None = None,
    cluster: str | None = None,
    anticipation: int = 0,
    event_time: EventTime = "steps",
    alp: float = 0.05,
) -> ImputationResult:
    """Two-stage DiD of Gardner (2022), as R ``did2s`` with ``first_stage = ~ 0 | fe + tname``.

    Stage 1 fits ``fe`` and period effects on the untreated observations and residualises every
    observation; stage 2 regresses the residualised outcome on the treatment indicator
    (``horizon=None``: R ``second_stage = ~ i(treat, ref = FALSE)``) or on event-time
    indicators (R ``~ i(rel_year, ref = Inf)``, restricted to the chosen ``horizon`` and
    ``pretrends``; never-treated and unlisted event times are the reference). Point estimates
    of post-treatment terms equal the imputation estimator's. Standard errors are the GMM
    sandwich of Gardner (2022, Section 3) / ``did2s::did2s`` (clustered, no small-sample
    factor): ``(X2'X2)^{-1} sum_c W_c W_c' (X2'X2)^{-1}`` with
    ``W_c = X2_c' u2_c - (X2'X1)(X10'X10)^{-1} X10_c' u1_c``.

    Parameters
    ----------
    data, yname, tname, idname, gname, fe, cluster, anticipation, event_time, alp
        As :func:`did_imputation`.
    horizon
        ``None`` (static), ``True`` (all ``e >= 0``) or a list of event times.
    pretrends
        Pre-period event-time coefficients (``True``: all leads; a list; ``None``). Their
        joint Wald test uses the same GMM covariance.

    Returns
    -------
    ImputationResult
    """
    spec = _spec("two_stage", locals(), horizon=horizon, pretrends=pretrends, leave_out=False)
    d = _prepare(data, spec)
    fs = first_stage(d.y, d.a, d.t, d.untreated, d.n_a, d.n_t)
    post_e = _select(d.e_treated_values, spec.horizon, "horizon", nonneg=True)
    pre_e = _select(d.e_lead_values, spec.pretrends, "pretrends", nonneg=False)
    n = d.y.size
    if post_e.size == 0 and pre_e.size == 0:
        tr = np.flatnonzero(~d.untreated)
        x2 = sp.csr_matrix((np.ones(tr.size), (tr, np.zeros(tr.size, int))), shape=(n, 1))
        terms, kinds, ev = ["overall"], ["overall"], [np.nan]
    else:
        es = np.concatenate([pre_e, post_e])
        col = _column_of(d.e, es)
        # leads are untreated rows; horizons are treated rows (anticipation shifts both)
        keep = col >= 0
        x2 = sp.csr_matrix(
            (np.ones(int(keep.sum())), (np.flatnonzero(keep), col[keep])), shape=(n, es.size)
        )
        terms = [f"event_time={e:g}" for e in es]
        kinds = ["pre"] * pre_e.size + ["post"] * post_e.size
        ev = list(es)
    est = two_stage_estimates(fs, x2, d.cl, d.a, d.t, d.untreated, d.n_cl)
    n_term = np.asarray(x2.sum(axis=0)).ravel().astype(np.float64)
    vcov = est.vcov
    pretest: tuple[float, int, float] = (float("nan"), 0, float("nan"))
    if pre_e.size:
        k = pre_e.size
        pretest = wald(est.estimate[:k], vcov[:k, :k])
    return _result(spec, d, terms, kinds, ev, est.estimate, est.se, n_term, vcov, pretest, fs)


# ----------------------------------------------------------------------------- helpers


@dataclass(frozen=True)
class _Data:
    y: Float64Array
    a: Int64Array
    t: Int64Array
    cl: Int64Array
    untreated: np.ndarray
    e: Float64Array  # event time (NaN for never treated)
    e_code: Int64Array
    n_e: int
    cohort_code: Int64Array
    n_a: int
    n_t: int
    n_cl: int
    n_units: int
    n_dropped: int

    @property
    def e_treated_values(self) -> Float64Array:
        return np.unique(self.e[~self.untreated])

    @property
    def e_lead_values(self) -> Float64Array:
        v = self.e[self.untreated]
        return np.unique(v[np.isfinite(v)])


def _spec(
    estimator: str, kw: dict[str, Any], *, horizon: Horizons, pretrends: Horizons, leave_out: bool
) -> ImputationSpec:
    def norm(v: Horizons, name: str) -> bool | tuple[int, ...] | None:
        if v is None or isinstance(v, bool):
            return None if v is False else v
        try:
            return tuple(int(x) for x in v)
        except (TypeError, ValueError) as exc:
            raise OptionError(f"{name} must be True, None or a list of event times.") from exc

    if kw["event_time"] not in ("steps", "periods"):
        raise OptionError(f"event_time={kw['event_time']!r}; use 'steps' or 'periods'.")
    alp = float(kw["alp"])
    if not 0 < alp < 1:
        raise ValueError(f"alp must lie in (0, 1), got {kw['alp']!r}.")
    ant = kw["anticipation"]
    if not isinstance(ant, int | np.integer) or isinstance(ant, bool) or ant < 0:
        raise OptionError(f"anticipation must be a non-negative integer, got {ant!r}.")
    return ImputationSpec(
        estimator=estimator,
        yname=kw["yname"],
        tname=kw["tname"],
        idname=kw["idname"],
        gname=kw["gname"],
        fe=kw["fe"] or kw["idname"],
        cluster=kw["cluster"] or kw["idname"],
        anticipation=int(ant),
        event_time=kw["event_time"],
        horizon=norm(horizon, "horizon"),
        pretrends=norm(pretrends, "pretrends"),
        leave_out=bool(leave_out),
        alp=alp,
    )


def _select(
    available: Float64Array, want: bool | tuple[int, ...] | None, name: str, nonneg: bool
) -> Float64Array:
    if want is None:
        return np.zeros(0)
    avail = available[available >= 0] if nonneg else available[available < 0]
    if want is True:
        return avail
    assert not isinstance(want, bool)
    req = np.asarray(sorted(set(want)), dtype=np.float64)
    bad = req[~np.isin(req, avail)]
    if bad.size:
        shown = ", ".join(f"{v:g}" for v in avail[:30])
        raise OptionError(
            f"{name}={list(want)!r}: event times {bad.tolist()} are not observed among the "
            f"{'treated' if nonneg else 'pre-treatment'} observations; available: {shown}."
        )
    return req


def _prepare(data: pd.DataFrame, spec: ImputationSpec) -> _Data:
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"data must be a pandas DataFrame, got {type(data).__name__}.")
    need = list(dict.fromkeys([spec.yname, spec.tname, spec.idname, spec.gname, spec.fe]))
    need += [spec.cluster] if spec.cluster not in need else []
    missing = [c for c in need if c not in data.columns]
    if missing:
        raise MissingColumnError(
            f"{spec.estimator}: columns {missing} are not in the data; available: "
            f"{', '.join(map(str, data.columns[:20]))}."
        )
    y = _num(data, spec.yname, "Outcome", OutcomeError)
    if not np.isfinite(y).all():
        raise OutcomeError(
            f"Outcome {spec.yname!r} has {int((~np.isfinite(y)).sum())} missing or non-finite "
            "values; drop those rows first."
        )
    step, g = step_and_cohort(data, spec.tname, spec.gname)
    for col, err in ((spec.idname, OutcomeError), (spec.fe, OutcomeError)):
        if data[col].isna().any():
            raise err(f"Column {col!r} has missing values.")
    if data[spec.cluster].isna().any():
        raise ClusterError(f"Cluster column {spec.cluster!r} has missing values.")
    uid = pd.factorize(data[spec.idname])[0].astype(np.int64)
    a_codes = uid if spec.fe == spec.idname else pd.factorize(data[spec.fe])[0].astype(np.int64)
    g_first = np.full(uid.max() + 1, np.nan)
    g_first[uid] = g
    if not np.array_equal(
        np.where(np.isinf(g_first[uid]), -1, g_first[uid]), np.where(np.isinf(g), -1, g)
    ):
        raise CohortError(f"Cohort {spec.gname!r} must be constant within each {spec.idname!r}.")
    tlist = np.unique(step)
    treated = np.isfinite(g) & (step >= g - spec.anticipation)
    if spec.event_time == "periods":
        tpos = np.searchsorted(tlist, step)
        gpos = np.searchsorted(tlist, np.where(np.isfinite(g), g, 0))
        e = np.where(np.isfinite(g), (tpos - gpos).astype(np.float64), np.nan)
    else:
        e = np.where(np.isfinite(g), step - g, np.nan)
    t_codes = np.searchsorted(tlist, step).astype(np.int64)
    # Observations whose untreated outcome cannot be imputed: their level or period has no
    # untreated observation (always-treated units, periods after everyone is treated).
    unt = ~treated
    has_a = np.bincount(a_codes[unt], minlength=a_codes.max() + 1) > 0
    has_t = np.bincount(t_codes[unt], minlength=tlist.size) > 0
    ok = has_a[a_codes] & has_t[t_codes]
    n_drop = int((~ok).sum())
    if n_drop:
        warnings.warn(
            f"{spec.estimator}: {n_drop} treated observations cannot be imputed (their "
            f"{spec.fe!r} level or step has no untreated observation, e.g. always-treated "
            "units) and are dropped, as R didimputation / did2s do.",
            CausalmemWarning,
            stacklevel=3,
        )
    if not (treated & ok).any():
        raise IdentificationError(f"{spec.estimator}: no treated observation can be imputed.")
    if n_drop:
        a2 = pd.factorize(a_codes[ok])[0].astype(np.int64)
        t2 = pd.factorize(t_codes[ok], sort=True)[0].astype(np.int64)
    else:
        a2, t2 = a_codes, t_codes
    unt2 = unt[ok]
    n_a, n_t = int(a2.max()) + 1, int(t2.max()) + 1
    if not connected(a2[unt2], t2[unt2], n_a, n_t):
        raise IdentificationError(
            f"{spec.estimator}: the untreated observations do not connect every "
            f"{spec.fe!r} level with every step (the two-way effects are not identified); "
            "add never-treated units or drop the disconnected cohorts."
        )
    if spec.cluster == spec.idname:
        cl = uid[ok].astype(np.int64)
    elif spec.cluster == spec.fe:
        cl = a_codes[ok]
    else:
        cl = pd.factorize(data[spec.cluster].to_numpy())[0].astype(np.int64)[ok]
    if n_drop:
        cl = pd.factorize(cl)[0].astype(np.int64)
    e2 = e[ok]
    fin = np.isfinite(e2)
    e_code = np.full(e2.size, -1, dtype=np.int64)
    e_code[fin] = pd.factorize(e2[fin], sort=True)[0]
    coh = pd.factorize(np.where(np.isinf(g[ok]), -1.0, g[ok]), sort=True)[0].astype(np.int64)
    return _Data(
        y=y[ok],
        a=a2,
        t=t2,
        cl=cl,
        untreated=unt2,
        e=e2,
        e_code=e_code,
        n_e=int(e_code.max()) + 1,
        cohort_code=coh,
        n_a=n_a,
        n_t=n_t,
        n_cl=int(cl.max()) + 1,
        n_units=int(np.unique(uid[ok]).size) if n_drop else int(uid.max()) + 1,
        n_dropped=n_drop,
    )


def _pretrends(d: _Data, pre_e: Float64Array) -> Any:
    """BJS Test 1 on the untreated rows (lead indicators + two-way effects)."""
    u = np.flatnonzero(d.untreated)
    eu = d.e[u]
    col = _column_of(eu, pre_e)
    keep = col >= 0
    leads = sp.csr_matrix(
        (np.ones(int(keep.sum())), (np.flatnonzero(keep), col[keep])), shape=(u.size, pre_e.size)
    )
    a = pd.factorize(d.a[u])[0].astype(np.int64)
    t = pd.factorize(d.t[u], sort=True)[0].astype(np.int64)
    cl = pd.factorize(d.cl[u])[0].astype(np.int64)
    n_a, n_t, n_cl = int(a.max()) + 1, int(t.max()) + 1, int(cl.max()) + 1
    # fixest's default small-sample K counts fixed effects not nested in the clusters.
    a_nested = _nested(a, cl)
    n_fe = (0 if a_nested else n_a) + n_t - (0 if a_nested else 1)
    try:
        return pretrend_regression(d.y[u], leads, a, t, cl, n_a, n_t, n_cl, n_fe)
    except np.linalg.LinAlgError as exc:
        raise OptionError(
            f"pretrends={[float(e) for e in pre_e][:10]}: {exc}; leave out the earliest leads "
            "(together they are collinear with the unit effects) or use pretrends=True."
        ) from exc


def _column_of(values: Float64Array, chosen: Float64Array) -> Int64Array:
    """Index of each value in the sorted ``chosen`` (-1 when absent or NaN), vectorised."""
    if chosen.size == 0:
        return np.full(values.size, -1, dtype=np.int64)
    idx = np.minimum(np.searchsorted(chosen, values), chosen.size - 1)
    return np.where(chosen[idx] == values, idx, -1).astype(np.int64)


def _nested(a: Int64Array, cl: Int64Array) -> bool:
    """Whether every level of ``a`` lies within one cluster."""
    first = np.full(int(a.max()) + 1, -1, dtype=np.int64)
    first[a] = cl
    return bool(np.all(first[a] == cl))


def _result(
    spec: ImputationSpec,
    d: _Data,
    terms: list[str],
    kinds: list[str],
    ev: list[float],
    estimate: Float64Array,
    se: Float64Array,
    n_term: Float64Array,
    vcov: Float64Array,
    pretest: tuple[float, int, float],
    fs: FirstStage,
) -> ImputationResult:
    if d.n_cl < 2:
        warnings.warn(
            f"{spec.estimator}: only {d.n_cl} cluster; standard errors are NaN.",
            CausalmemWarning,
            stacklevel=3,
        )
        se = np.full_like(se, np.nan)
    return ImputationResult(
        spec=spec,
        term=tuple(terms),
        kind=tuple(kinds),
        event_time=np.asarray(ev, dtype=np.float64),
        estimate=np.asarray(estimate, dtype=np.float64).copy(),
        std_error=np.asarray(se, dtype=np.float64).copy(),
        n_obs_term=np.asarray(n_term, dtype=np.float64).copy(),
        vcov=np.asarray(vcov, dtype=np.float64).copy(),
        pretest=pretest,
        n_obs=int(d.y.size),
        n_units=d.n_units,
        n_clusters=d.n_cl,
        n_treated_obs=int((~d.untreated).sum()),
        n_dropped=d.n_dropped,
        provenance=provenance(n_levels=fs.solver.n_a, n_periods=fs.solver.n_t),
    )
