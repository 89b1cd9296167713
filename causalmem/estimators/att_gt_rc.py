"""Group-time ATTs for repeated cross-sections (R ``did::att_gt(panel = FALSE)``).

Each checkpoint scores its own sample of instances: a row is one observation (an instance
scored at one step), and no instance needs to be seen twice. Every cell ``(g, t)`` with base
period ``b`` is a two-period DiD on the rows of the treated cohort ``g`` and of the comparison
cohorts at periods ``t`` and ``b`` (Callaway & Sant'Anna 2021, Section 4.2, repeated
cross-sections; Sant'Anna & Zhao 2020, Section 3). The estimators are R ``DRDID``'s
``drdid_rc`` (``"dr"``, locally efficient doubly robust, R did's default), ``reg_did_rc``
(``"reg"``) and ``std_ipw_did_rc`` (``"ipw"``), see :mod:`causalmem._numerics.drdid_rc`.

Influence functions are kept per observation (R did's scaling, ``n`` = number of rows), so the
result is an ordinary :class:`~causalmem.results.attgt.AttGtResult`: :func:`causalmem.aggte`
(simple, dynamic, group, calendar), the multiplier bootstrap and the uniform bands work
unchanged, with the cohort shares ``P(G = g)`` estimated over rows as R did does for
``panel = FALSE``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from causalmem._numerics.cells import CellLayout, build_cells
from causalmem._numerics.dense import DenseIF, cell_estimates, overlap_violation
from causalmem._numerics.drdid import FitError
from causalmem._numerics.drdid_rc import ESTIMATORS_RC, mean_did_rc
from causalmem._numerics.inference import (
    MIN_BITERS,
)
from causalmem._types import (
    BasePeriod,
    ControlGroup,
    EstMethod,
    Float64Array,
    Int64Array,
    check_literal,
)
from causalmem.errors import (
    AlwaysTreatedError,
    CausalmemWarning,
    ClusterError,
    CohortError,
    IdentificationError,
    MissingColumnError,
    OptionError,
    OutcomeError,
    WeightsError,
)
from causalmem.estimators._prepare import covariate_matrix, step_and_cohort
from causalmem.estimators._prepare import numeric_column as _numeric
from causalmem.estimators.att_gt import _clean_se, _inference
from causalmem.results.attgt import AttGtResult, AttGtSpec
from causalmem.results.base import provenance


class RcIF(DenseIF):
    """Observation-level influence functions of repeated-cross-section ATT(g, t) cells.

    Same interface as :class:`~causalmem._numerics.dense.DenseIF` (``est``,
    ``draws``, ``combine``, ``sum_squares``), with rows = observations (or clusters of them).
    The influence matrix is sparse: a cell's column is non-zero only on the rows of its two
    periods, so memory is O(sum over cells of the cell's rows), not O(n J).

    Parameters
    ----------
    y : float64[n]
        Outcome of each observation.
    t_pos : int64[n]
        Period index (into ``cells.tlist``) of each observation.
    cohort_idx : int64[n]
        Cohort block (``K`` = never treated).
    w : float64[n]
        Sampling weights.
    cluster : int64[n]
        Cluster code (``arange(n)`` for observation-level inference).
    cells : CellLayout
    x : float64[n, k] or None
        Covariates with an intercept (the observation's own values), or None.
    est_method
        ``"dr"``, ``"reg"`` or ``"ipw"``.
    on_fail
        Called with ``(cell_index, message)`` for a cell that cannot be estimated.
    """

    def __init__(  # noqa: PLR0913 - mirrors DenseIF
        self,
        y: Float64Array,
        t_pos: Int64Array,
        cohort_idx: Int64Array,
        w: Float64Array,
        cluster: Int64Array,
        cells: CellLayout,
        x: Float64Array | None,
        est_method: str,
        on_fail: Any,
        keys: np.ndarray | None = None,
    ) -> None:
        n = y.size
        self.keys = keys
        self.n_units = n
        self.cells = cells
        n_c = int(cluster.max()) + 1 if n else 0
        self.n_clusters = n_c
        kb = cells.glist.size + 1
        cmat = sp.csr_matrix((np.ones(n), (cluster, np.arange(n))), shape=(n_c, n))
        self.omega_c = np.asarray(
            (cmat @ sp.csr_matrix((w, (np.arange(n), cohort_idx)), shape=(n, kb))).todense()
        )
        j_n = cells.n_cells
        att = np.full(j_n, np.nan)
        n_t = np.zeros(j_n)
        n_ctl = np.zeros(j_n)
        order = np.argsort(t_pos, kind="stable")
        bounds = np.searchsorted(t_pos[order], np.arange(cells.tlist.size + 1))
        est = ESTIMATORS_RC[est_method] if x is not None else None
        rows: list[Int64Array] = []
        cols: list[Int64Array] = []
        vals: list[Float64Array] = []
        for j in range(j_n):
            g, t, b, k0 = cells.g_idx[j], cells.t_idx[j], cells.b_idx[j], cells.k0[j]
            idx = np.concatenate(
                [order[bounds[t] : bounds[t + 1]], order[bounds[b] : bounds[b + 1]]]
            )
            k = cohort_idx[idx]
            treat = k == g
            ctrl = (k >= k0) & ~treat
            sub = idx[treat | ctrl]
            d = treat[treat | ctrl].astype(np.float64)
            post = (t_pos[sub] == t).astype(np.float64)
            n_t[j], n_ctl[j] = d.sum(), (1 - d).sum()
            if cells.reference[j]:
                att[j] = 0.0
                continue
            try:
                if est is None:
                    res = mean_did_rc(y[sub], post, d, w[sub])
                else:
                    assert x is not None
                    xs = x[sub]
                    if est_method in ("dr", "ipw"):
                        why = overlap_violation(d, xs)
                        if why is not None:
                            on_fail(j, why)
                            continue
                    res = est(y[sub], post, d, xs, w[sub])
            except (FitError, np.linalg.LinAlgError) as exc:
                on_fail(j, str(exc))
                continue
            if not np.isfinite(res.att):
                on_fail(j, "non-finite estimate")
                continue
            att[j] = res.att
            rows.append(sub)
            cols.append(np.full(sub.size, j, dtype=np.int64))
            vals.append(res.inf / sub.size)
        r = sp.csc_matrix(
            (
                np.concatenate(vals) if vals else np.zeros(0),
                (
                    np.concatenate(rows) if rows else np.zeros(0, np.int64),
                    np.concatenate(cols) if cols else np.zeros(0, np.int64),
                ),
            ),
            shape=(n, j_n),
        )
        self.rc_sparse = sp.csc_matrix(cmat @ r)
        se = np.sqrt(np.asarray(self.rc_sparse.multiply(self.rc_sparse).sum(axis=0)).ravel())
        se[np.isnan(att) | cells.reference] = np.nan
        self.est = cell_estimates(att, se, n_t, n_ctl)

    @property
    def rc(self) -> Float64Array:  # type: ignore[override]
        """Dense ``[n_clusters, J]`` influence matrix (materialised on demand)."""
        return np.asarray(self.rc_sparse.todense())

    def _rc_transposed(self) -> Any:
        return sp.csr_matrix(self.rc_sparse.T)

    def combine(self, weights: sp.csr_matrix, h: Float64Array) -> Float64Array:
        """Cluster-level r-scale IF of ``cells @ weights`` plus the weight-estimation term."""
        part = self.rc_sparse @ sp.csc_matrix(weights)
        return np.asarray(part.todense()) + self.omega_c @ h / self.n_units


def att_gt_rc(
    data: pd.DataFrame,
    yname: str,
    tname: str,
    gname: str,
    *,
    idname: str | None = None,
    xformla: str | None = None,
    control_group: ControlGroup = "nevertreated",
    anticipation: int = 0,
    base_period: BasePeriod = "varying",
    est_method: EstMethod = "dr",
    clustervars: str | Sequence[str] | None = None,
    weightsname: str | None = None,
    weights: str | None = None,
    bstrap: bool = True,
    biters: int = 1000,
    cband: bool = True,
    alp: float = 0.05,
    seed: int | np.random.Generator | None = None,
    drop_always_treated: bool = False,
) -> AttGtResult:
    """Estimate every ATT(g, t) from repeated cross-sections (R ``att_gt(panel = FALSE)``).

    Callaway, B. and Sant'Anna, P. H. C. (2021), *Journal of Econometrics* 225(2), with the
    repeated-cross-section 2x2 estimators of Sant'Anna, P. H. C. and Zhao, J. (2020), *Journal
    of Econometrics* 219(1). Use it when each checkpoint scores its own sample of instances.

    Identification: the treated cohort ``g`` and its comparison units (never treated, or not yet
    treated at ``max(t, b) + anticipation``) would have followed parallel paths in the
    population; the samples at ``t`` and ``b`` are drawn from the same population (stationary
    composition of each cohort across checkpoints). Units do not need to recur.

    Parameters
    ----------
    data
        Long frame, one row per observation. Never modified.
    yname, tname, gname
        Outcome, step and cohort columns (never treated: NaN or ``inf``).
    idname
        Optional instance column; unused by the estimators (rows are independent draws) and
        recorded in the spec. To cluster on instances that recur, pass it as ``clustervars``.
    xformla
        One-sided covariate formula (each row's own values), e.g. ``"~ x1 + x2"``.
    control_group, anticipation, base_period
        As in :func:`causalmem.att_gt`.
    est_method
        ``"dr"`` (R ``DRDID::drdid_rc``, locally efficient; R did's default), ``"reg"``
        (``reg_did_rc``) or ``"ipw"`` (``std_ipw_did_rc``); identical without covariates.
    clustervars
        One cluster column (e.g. the instance or its source document); influence functions are
        summed within clusters for SEs and the bootstrap. Default: observations.
    weightsname, weights
        Sampling-weight column (``weights`` is an alias of ``weightsname``).
    bstrap, biters, cband, alp, seed
        Multiplier bootstrap over observations (or clusters), uniform band, level and seed.
    drop_always_treated
        Drop rows of cohorts treated at or before the first step instead of raising.

    Returns
    -------
    AttGtResult
        The same result type as :func:`causalmem.att_gt` (``n_units`` = number of rows);
        ``provenance["panel"]`` is False.

    Examples
    --------
    >>> res = att_gt_rc(df, "y", "step", "cohort", seed=0)  # doctest: +SKIP
    >>> aggte(res, "dynamic").tidy()  # doctest: +SKIP
    """
    if weights is not None and weightsname is not None and weights != weightsname:
        raise OptionError(f"weights={weights!r} and weightsname={weightsname!r} disagree.")
    weightsname = weightsname or weights
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"data must be a pandas DataFrame, got {type(data).__name__}.")
    if isinstance(clustervars, str):
        clustervars = (clustervars,)
    cl_names = tuple(clustervars or ())
    if len(cl_names) > 1:
        raise OptionError(f"clustervars={list(cl_names)!r}: give at most one cluster column.")
    kw: dict[str, Any] = {
        "data": data,
        "yname": yname,
        "tname": tname,
        "idname": idname or "",
        "gname": gname,
        "xformla": xformla,
        "control_group": control_group,
        "anticipation": anticipation,
        "base_period": base_period,
        "est_method": est_method,
        "allow_unbalanced_panel": True,
        "clustervars": cl_names or None,
        "weightsname": weightsname,
        "bstrap": bstrap,
        "biters": biters,
        "cband": cband,
        "alp": alp,
        "seed": seed,
        "drop_always_treated": drop_always_treated,
    }
    spec = AttGtSpec.from_kwargs(kw)
    _check_options(spec)
    y, step, cohort, w, cluster, x = _columns(data, spec, cl_names)
    return _estimate(spec, y, step, cohort, w, cluster, x)


def _check_options(spec: AttGtSpec) -> None:
    check_literal("control_group", spec.control_group, ControlGroup)
    check_literal("base_period", spec.base_period, BasePeriod)
    check_literal("est_method", spec.est_method, EstMethod)
    if not isinstance(spec.biters, int) or spec.biters < 1:
        raise ValueError(f"biters must be a positive integer, got {spec.biters!r}.")
    if spec.bstrap and spec.biters < MIN_BITERS:
        raise OptionError(
            f"biters={spec.biters} is too few bootstrap draws; use biters >= {MIN_BITERS} "
            "(R did uses 999), or bstrap=False for analytic standard errors."
        )
    if not 0 < spec.alp < 1:
        raise ValueError(f"alp must lie in (0, 1), got {spec.alp!r}.")
    if not isinstance(spec.anticipation, int | np.integer) or spec.anticipation < 0:
        raise ValueError(f"anticipation must be a non-negative integer, got {spec.anticipation!r}.")


def _columns(
    data: pd.DataFrame, spec: AttGtSpec, cl_names: tuple[str, ...]
) -> tuple[Float64Array, Float64Array, Float64Array, Float64Array, Int64Array, Float64Array | None]:
    """Return validated row arrays ``(y, step, cohort, w, cluster, x)`` (frame untouched)."""
    need = [spec.yname, spec.tname, spec.gname, *cl_names]
    need += [spec.weightsname] if spec.weightsname else []
    missing = [c for c in dict.fromkeys(need) if c not in data.columns]
    if missing:
        raise MissingColumnError(
            f"att_gt_rc: columns {missing} are not in the data; available: "
            f"{', '.join(map(str, data.columns[:20]))}."
        )
    if len(data) == 0:
        raise IdentificationError("att_gt_rc: the data have no rows.")
    y = _numeric(data, spec.yname, "Outcome", OutcomeError)
    if not np.isfinite(y).all():
        bad = int((~np.isfinite(y)).sum())
        raise OutcomeError(
            f"Outcome {spec.yname!r} has {bad} missing or non-finite values; drop those rows "
            "(in repeated cross-sections each row is its own observation)."
        )
    step, cohort = step_and_cohort(data, spec.tname, spec.gname)
    if np.any(np.isneginf(cohort)):
        raise CohortError(f"Cohort column {spec.gname!r} has -inf values.")
    if spec.weightsname:
        w = _numeric(data, spec.weightsname, "Weights", WeightsError)
        if not np.isfinite(w).all() or (w < 0).any():
            raise WeightsError(
                f"Weights {spec.weightsname!r} must be finite and non-negative "
                f"({int((~np.isfinite(w) | (w < 0)).sum())} rows are not)."
            )
    else:
        w = np.ones(y.size)
    if cl_names:
        cs = data[cl_names[0]]
        if cs.isna().any():
            raise ClusterError(f"Cluster column {cl_names[0]!r} has missing values.")
        cluster = cs.to_numpy()  # the ids: codes are made once the rows are final
    else:
        cluster = np.arange(y.size, dtype=np.int64)  # observations: their position
    x = None
    if spec.xformla is not None:
        x, _ = covariate_matrix(data, spec.xformla)
    t_first = float(step.min())
    always = np.isfinite(cohort) & (cohort <= t_first)
    if always.any():
        if not spec.drop_always_treated:
            raise AlwaysTreatedError(
                f"{int(always.sum())} rows belong to cohorts treated at or before the first "
                f"step {t_first:g} ({sorted(set(cohort[always].tolist()))[:5]}), so they have "
                "no pre-period; pass drop_always_treated=True to drop them (R did does, with "
                "a warning) or code never-treated units as NaN."
            )
        warnings.warn(
            f"Dropped {int(always.sum())} rows of cohorts treated at or before step {t_first:g}.",
            CausalmemWarning,
            stacklevel=3,
        )
        keep = ~always
        y, step, cohort, w, cluster = y[keep], step[keep], cohort[keep], w[keep], cluster[keep]
        x = x[keep] if x is not None else None
    return y, step, cohort, w, cluster, x


def _estimate(
    spec: AttGtSpec,
    y: Float64Array,
    step: Float64Array,
    cohort: Float64Array,
    w: Float64Array,
    cluster_ids: np.ndarray,
    x: Float64Array | None,
) -> AttGtResult:
    tlist = np.unique(step)
    cohort, tlist, glist, keep_rows = _window(spec, tlist, cohort, step)
    if not keep_rows.all():
        y, step, cohort, w = y[keep_rows], step[keep_rows], cohort[keep_rows], w[keep_rows]
        cluster_ids = cluster_ids[keep_rows]
        x = x[keep_rows] if x is not None else None
    codes, keys = pd.factorize(cluster_ids, sort=False)
    cluster = codes.astype(np.int64)
    cells = build_cells(
        tlist,
        glist,
        base_period=spec.base_period,
        anticipation=spec.anticipation,
        notyettreated=spec.control_group == "notyettreated",
    )
    if cells.n_cells == 0:
        raise IdentificationError("No ATT(g, t) cell is identified with these settings.")
    k_idx = np.searchsorted(glist, cohort)
    k_idx = np.where(np.isin(cohort, glist), k_idx, glist.size).astype(np.int64)
    t_pos = np.searchsorted(tlist, step).astype(np.int64)
    failures: list[tuple[int, str]] = []
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        eng = RcIF(
            y,
            t_pos,
            k_idx,
            w,
            cluster,
            cells,
            x,
            spec.est_method,
            on_fail=lambda j, m: failures.append((j, m)),
            keys=np.asarray(keys),
        )
    if failures:
        shown = "; ".join(
            f"(g={cells.group[j]:g}, t={cells.time[j]:g}): {m}" for j, m in failures[:5]
        )
        warnings.warn(
            f"{len(failures)} ATT(g, t) cells could not be estimated and are NaN: {shown}",
            CausalmemWarning,
            stacklevel=3,
        )
    n_obs, n_cl = int(y.size), eng.n_clusters
    est = eng.est
    y_scale = float(np.max(np.abs(y))) if y.size else 1.0
    se_an = _clean_se(np.array(est.se, dtype=np.float64), y_scale, n_cl)
    se, draws, crit, band = _inference(spec, eng, cells, se_an, n_obs, n_cl)
    if spec.bstrap:
        se = _clean_se(np.array(se, dtype=np.float64), y_scale, n_cl)
    bad = np.flatnonzero(~cells.reference & np.isfinite(est.att) & ~np.isfinite(se))
    if bad.size:
        warnings.warn(
            f"att_gt_rc: {bad.size} ATT(g, t) cells have no usable standard error (fewer than "
            "two clusters or zero variance) and are reported with NaN SEs.",
            CausalmemWarning,
            stacklevel=3,
        )
    pg = np.bincount(k_idx, weights=w, minlength=glist.size + 1)[:-1] / n_obs
    return AttGtResult(
        spec=spec,
        cells=cells,
        att=est.att,
        se=se,
        se_analytic=se_an,
        n_treated=est.n_treated,
        n_control=est.n_control,
        crit_val=float(crit),
        band=band,
        se_method="bootstrap" if spec.bstrap else "analytic",
        engine=eng,
        draws=draws,
        pg_cohort=pg,
        n_units=n_obs,
        n_clusters=n_cl,
        provenance=provenance(seed=spec.seed_repr(), panel=False, design="repeated cross-sections"),
    )


def _window(
    spec: AttGtSpec, tlist: Float64Array, cohort: Float64Array, step: Float64Array
) -> tuple[Float64Array, Float64Array, Float64Array, np.ndarray]:
    """``(cohort, tlist, glist, keep_rows)`` as R did's pre-processing for ``panel = FALSE``.

    Without never-treated rows the last cohort is the comparison group (its steps dropped);
    cohorts without a pre-treatment period are dropped; both warn.
    """
    glist = np.unique(cohort[np.isfinite(cohort)])
    keep = np.ones(cohort.size, dtype=bool)
    if glist.size == 0:
        raise IdentificationError(f"{spec.gname!r}: no row belongs to a treated cohort.")
    if not np.isinf(cohort).any():
        if spec.control_group != "notyettreated":
            raise IdentificationError(
                f"{spec.gname!r}: there are no never-treated rows (missing cohort), so "
                "control_group='nevertreated' has no comparison units; use "
                "control_group='notyettreated' or add never-treated instances."
            )
        last = glist[-1]
        keep_t = tlist < last - spec.anticipation
        if keep_t.sum() < 2:
            raise IdentificationError(
                f"No never-treated rows and too few steps before the last cohort ({last:g})."
            )
        warnings.warn(
            f"No never-treated rows: cohort {last:g} serves as the comparison group and steps "
            f">= {last - spec.anticipation:g} are dropped (as R did does).",
            CausalmemWarning,
            stacklevel=4,
        )
        tlist = tlist[keep_t]
        keep &= step <= tlist[-1]
        cohort = np.where(cohort > tlist[-1], np.inf, cohort)
        glist = glist[glist <= tlist[-1]]
    no_base = glist <= tlist[0] + spec.anticipation
    if no_base.any():
        warnings.warn(
            f"Cohorts {glist[no_base].tolist()} have no pre-treatment period given "
            f"anticipation={spec.anticipation}; their rows are dropped (as R did does).",
            CausalmemWarning,
            stacklevel=4,
        )
        keep &= ~np.isin(cohort, glist[no_base])
        glist = glist[~no_base]
        if glist.size == 0:
            raise IdentificationError(
                f"No cohort has a pre-treatment period with anticipation={spec.anticipation}."
            )
    return cohort, tlist, glist, keep
