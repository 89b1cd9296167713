"""Group-time average treatment effects, ATT(g, t) (Callaway & Sant'Anna 2021).

Mirrors R ``did::att_gt`` (argument names, defaults, cell enumeration, influence functions,
multiplier bootstrap) with two documented differences: clustered *analytic* SEs are computed
(R ignores ``clustervars`` without the bootstrap, with a warning), and unbalanced panels use the
units observed in both periods of each cell (R switches to a repeated-cross-section estimator).
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from causalmem._numerics.cells import CellLayout, build_cells
from causalmem._numerics.dense import DenseIF
from causalmem._numerics.inference import (
    MIN_BITERS,
    degenerate_se,
    pointwise_crit,
    summarise_draws,
)
from causalmem._numerics.keyed import (
    DRAW_CHUNK,
    BlockSums,
    bootstrap_key,
    cell_draws,
    hash_ids,
    keyed_chunks,
)
from causalmem._numerics.streamed import StreamedIF
from causalmem._numerics.structured import CohortRows, StructuredIF
from causalmem._types import BasePeriod, ControlGroup, EstMethod, check_literal
from causalmem.errors import (
    CausalmemWarning,
    IdentificationError,
    OptionError,
    OutcomeError,
    WeightsError,
)
from causalmem.estimators._prepare import WideData, covariate_matrix, panel_arguments, to_wide
from causalmem.panel.checks import validate_long
from causalmem.panel.panel import Panel
from causalmem.results.attgt import AttGtResult, AttGtSpec, Draws
from causalmem.results.base import provenance


def att_gt(
    data: pd.DataFrame | Panel | str | os.PathLike[str] | Any,
    yname: str | None = None,
    tname: str | None = None,
    idname: str | None = None,
    gname: str | None = None,
    *,
    xformla: str | None = None,
    control_group: ControlGroup = "nevertreated",
    anticipation: int = 0,
    base_period: BasePeriod = "varying",
    est_method: EstMethod = "dr",
    allow_unbalanced_panel: bool = False,
    clustervars: str | Sequence[str] | None = None,
    weightsname: str | None = None,
    bstrap: bool = True,
    biters: int = 1000,
    cband: bool = True,
    alp: float = 0.05,
    seed: int | np.random.Generator | None = None,
    drop_always_treated: bool = False,
    panel: bool = True,
) -> AttGtResult:
    """Estimate every group-time average treatment effect ATT(g, t).

    Callaway, B. and Sant'Anna, P. H. C. (2021), "Difference-in-Differences with multiple time
    periods", *Journal of Econometrics* 225(2), https://doi.org/10.1016/j.jeconom.2020.12.001.
    For memorisation, ``g`` is the step at which an instance is trained on, ``t`` a checkpoint,
    and ATT(g, t) the causal effect of that training on the outcome at ``t`` (Lesci et al. 2024).

    The data and the four role columns are positional (R ``did``'s order); every other
    argument is keyword-only.

    Parameters
    ----------
    data
        Long panel: one row per (unit, step), or a :class:`~causalmem.Panel`. Never modified.
        A Polars or pyarrow frame is read through its role columns only; a parquet file or
        folder of shards, a pyarrow ``Dataset``, a Polars ``LazyFrame`` or a DuckDB relation
        is streamed in bounded batches (rows sorted by unit; see
        :func:`~causalmem.estimators.streaming.att_gt_stream`), with the same results.
    yname, tname, idname, gname
        Outcome, step (time), unit and cohort columns. The cohort is the first step at which the
        unit is treated; never-treated units have a missing cohort (NA/NaN) or ``inf``. With a
        ``Panel`` they default to its schema (``yname`` to its first outcome), and so do
        ``weightsname``, ``clustervars``, ``xformla`` (its covariates; pass ``"~ 1"`` for none)
        and ``allow_unbalanced_panel`` (when the panel was validated with it).
    xformla
        One-sided covariate formula, e.g. ``"~ x1 + x2"`` (formulaic); base-period values are used.
        formulaic evaluates the terms as Python expressions with full power: pass only formulas
        you trust (the command line checks them with
        :func:`~causalmem.estimators.formula.check_formula_text`).
    control_group
        ``"nevertreated"`` or ``"notyettreated"`` comparison units.
    anticipation
        Steps of anticipation ``delta``; the base period is the last step ``p`` with
        ``p + delta < g``.
    base_period
        ``"varying"`` (pre-period cells compare consecutive periods) or ``"universal"``.
    est_method
        ``"dr"`` (doubly robust), ``"reg"`` (outcome regression) or ``"ipw"``; identical without
        covariates.
    allow_unbalanced_panel
        Accept units missing some steps; each cell uses the units observed at both its periods.
    clustervars
        At most one cluster variable besides ``idname`` (time-invariant within unit).
    weightsname
        Time-invariant sampling weights.
    bstrap, biters, cband, alp
        Multiplier bootstrap (Rademacher, ``biters`` draws, at least
        :data:`~causalmem._numerics.inference.MIN_BITERS` = 10), uniform sup-t band and level.
        Inference that cannot be computed (one cluster, zero variance) is reported as NaN with
        a :class:`~causalmem.errors.CausalmemWarning`, never as a zero SE.
    seed
        Seed or ``numpy.random.Generator`` for the bootstrap (never global state).
    drop_always_treated
        Drop units treated at or before the first step (R ``did`` does so with a warning)
        instead of raising :class:`~causalmem.errors.AlwaysTreatedError`.
    panel
        ``False`` for repeated cross-sections (R ``did``'s ``panel = FALSE``: each checkpoint
        scores its own sample of instances): the DRDID repeated-cross-section estimators of
        :func:`~causalmem.estimators.att_gt_rc.att_gt_rc`, where ``idname`` is optional (rows
        are the sampling units; it is kept for clustering when given) and
        ``allow_unbalanced_panel`` does not apply.

    Returns
    -------
    AttGtResult
        Immutable result with ``tidy()``, ``glance()``, ``summary()``, ``to_latex()``,
        ``to_markdown()`` and the memorisation views.

    Examples
    --------
    >>> from causalmem import simulate_panel
    >>> sim = simulate_panel(seed=1)
    >>> res = att_gt(sim.frame, "y", "step", "unit", "cohort", seed=0, biters=200)
    >>> res.tidy()[["group", "time", "estimate"]].shape[1]
    3
    """
    return _att_gt(**locals())


def _att_gt(*, _engine: str = "auto", _difference: bool = False, **kw: Any) -> AttGtResult:
    data = kw["data"]
    if isinstance(data, Panel):  # the stored design (roles, weights, clusters, covariates)
        kw = panel_arguments(data, kw)
        data = kw["data"]
    if not kw.pop("panel", True):
        return _att_gt_rc(kw)
    missing = [k for k in ("yname", "tname", "idname", "gname") if kw.get(k) is None]
    if missing:
        raise TypeError(
            f"att_gt() needs {', '.join(missing)} (column names) when data is a DataFrame."
        )
    if not isinstance(data, pd.DataFrame):
        from causalmem.estimators.streaming import att_gt_stream, is_streamable

        if is_streamable(data) and _engine == "auto" and not _difference:
            kw.pop("data")
            return att_gt_stream(data, **kw)
        data = kw["data"] = _frame_from(data, kw)
    spec = AttGtSpec.from_kwargs(kw)
    clustervars = _check_spec(spec)
    xnames: tuple[str, ...] = ()
    if spec.xformla is not None:
        # Evaluate the formula on the caller's rows, then carry the design columns (named
        # "x:<term>") through validation with the other roles. The caller's frame is untouched.
        xmat, xterms = covariate_matrix(data, spec.xformla)
        if xmat is not None:
            roles = [spec.idname, spec.tname, spec.gname, spec.yname, *clustervars]
            roles += [spec.weightsname] if spec.weightsname else []
            missing = [c for c in dict.fromkeys(roles) if c not in data.columns]
            if not missing:
                xnames = tuple(f"x:{t}" for t in xterms)
                data = data.loc[:, list(dict.fromkeys(roles))].assign(
                    **{n: xmat[:, i] for i, n in enumerate(xnames)}
                )
    checked = validate_long(
        data,
        idname=spec.idname,
        tname=spec.tname,
        gname=spec.gname,
        ynames=(spec.yname,),
        weightsname=spec.weightsname,
        clustervars=clustervars,
        xnames=xnames,
        allow_unbalanced_panel=spec.allow_unbalanced_panel,
        drop_always_treated=spec.drop_always_treated,
    )
    wide = to_wide(checked, spec.yname)
    return _estimate(spec, wide, _engine, difference=_difference)


def _frame_from(data: Any, kw: dict[str, Any]) -> pd.DataFrame:
    """Return a pandas frame of the columns ``att_gt`` needs from a Polars or pyarrow frame.

    Only the role columns are converted (all columns when ``xformla`` may use any).
    """
    mod = type(data).__module__
    if not (mod.startswith("polars") or mod.startswith("pyarrow")):
        raise TypeError(
            f"data must be a pandas, Polars or pyarrow frame, a parquet path, a pyarrow "
            f"Dataset, a Polars LazyFrame or a DuckDB relation; got {type(data).__name__}."
        )
    import narwhals as nw

    frame = nw.from_native(data, eager_only=True)
    if kw.get("xformla") is None:
        cl = kw.get("clustervars")
        cols = [kw["idname"], kw["tname"], kw["gname"], kw["yname"], kw.get("weightsname")]
        cols += [cl] if isinstance(cl, str) else list(cl or [])
        names = [c for c in dict.fromkeys(cols) if isinstance(c, str) and c in frame.columns]
        frame = frame.select(names)
    return frame.to_pandas()


def _check_spec(spec: AttGtSpec) -> tuple[str, ...]:
    """Validate the options; return the cluster variables besides ``idname``."""
    check_literal("control_group", spec.control_group, ControlGroup)
    check_literal("base_period", spec.base_period, BasePeriod)
    check_literal("est_method", spec.est_method, EstMethod)
    if not isinstance(spec.biters, int) or spec.biters < 1:
        raise ValueError(f"biters must be a positive integer, got {spec.biters!r}.")
    if spec.bstrap and spec.biters < MIN_BITERS:
        raise OptionError(
            f"biters={spec.biters} is too few bootstrap draws to estimate a standard error (the "
            f"interquartile range of so few draws is not one); use biters >= {MIN_BITERS} "
            "(R did uses 999), or bstrap=False for analytic standard errors."
        )
    if not 0 < spec.alp < 1:
        raise ValueError(f"alp must lie in (0, 1), got {spec.alp!r}.")
    if not isinstance(spec.anticipation, int | np.integer) or spec.anticipation < 0:
        raise ValueError(f"anticipation must be a non-negative integer, got {spec.anticipation!r}.")
    clustervars = tuple(c for c in spec.clustervars if c != spec.idname)
    if len(clustervars) > 1:
        raise ValueError(
            f"clustervars={list(spec.clustervars)!r}: at most one cluster variable besides "
            f"idname={spec.idname!r} is supported (as in R did)."
        )
    return clustervars


def _estimate(
    spec: AttGtSpec, wide: WideData, engine: str, difference: bool = False
) -> AttGtResult:
    y, tlist, x, cohort, glist = _window(spec, wide)
    cells, y = _layout(spec, tlist, glist, y, x, difference)
    k_idx = np.searchsorted(glist, cohort)  # never treated (inf) -> K
    k_idx = np.where(np.isin(cohort, glist), k_idx, glist.size)
    # Units of dropped cohorts (no base period) are neither treated nor comparison units.
    in_sample = np.isinf(cohort) | np.isin(cohort, glist)
    sel = np.flatnonzero(in_sample)
    failures: list[tuple[int, str]] = []
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is checked below
        engine_obj, n_clusters = _engine_for(
            spec, wide, y, x, k_idx, sel, cells, glist.size, engine, failures
        )
    ysel = y[sel]
    y_scale = float(np.nanmax(np.abs(ysel))) if np.isfinite(ysel).any() else 1.0
    pg = np.bincount(k_idx[sel], weights=wide.w[sel], minlength=glist.size + 1)[:-1] / sel.size
    return _finish(
        spec,
        cells,
        engine_obj,
        n_clusters,
        failures,
        n_units=int(sel.size),
        y_scale=y_scale,
        k_idx=k_idx[sel],
        w=wide.w[sel],
        pg=pg,
    )


def _finish(
    spec: AttGtSpec,
    cells: CellLayout,
    engine_obj: Any,
    n_clusters: int,
    failures: list[tuple[int, str]],
    *,
    n_units: int,
    y_scale: float,
    k_idx: np.ndarray,
    w: np.ndarray,
    pg: np.ndarray,
    w_range: np.ndarray | None = None,
) -> AttGtResult:
    """Check, infer and build the result (shared by the in-memory and the streamed engines).

    ``y_scale`` is ``max |y|`` over the sample; ``k_idx``/``w`` are cohort blocks and weights
    of the rows (units, or one row per block with the block's total weight: only totals and
    presence are used); ``w_range`` holds the unit weights (or just their smallest positive
    and largest value) for the overflow check, ``w`` when None.
    """
    est = engine_obj.est
    if failures:
        shown = "; ".join(
            f"(g={cells.group[j]:g}, t={cells.time[j]:g}): {m}" for j, m in failures[:5]
        )
        warnings.warn(
            f"{len(failures)} ATT(g, t) cells could not be estimated and are NaN: {shown}",
            CausalmemWarning,
            stacklevel=4,
        )
    failed = np.zeros(cells.n_cells, dtype=bool)
    failed[[j for j, _ in failures]] = True
    w_all = w if w_range is None else w_range
    _check_overflow(spec, cells, est.att, est.se, failed, np.array([y_scale]), w_all)
    _warn_unexplained_nan(spec, cells, est.att, failed, k_idx, w)
    se_an = _clean_se(np.array(est.se, dtype=np.float64), y_scale, n_clusters)
    se, draws, crit, band = _inference(spec, engine_obj, cells, se_an, n_units, n_clusters)
    if spec.bstrap:
        se = _clean_se(se, y_scale, n_clusters)
    _warn_degenerate(spec, cells, est.att, se, n_clusters)
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
        engine=engine_obj,
        draws=draws,
        pg_cohort=pg,
        n_units=n_units,
        n_clusters=n_clusters,
        provenance=provenance(seed=spec.seed_repr()),
    )


def _clean_se(se: np.ndarray, y_scale: float, n_clusters: int) -> np.ndarray:
    """Set SEs that cannot be computed to NaN: all with < 2 clusters, rounding-level ones."""
    if n_clusters < 2:
        return np.full_like(se, np.nan)
    se[degenerate_se(se, y_scale)] = np.nan
    return se


def _cell_list(cells: CellLayout, idx: np.ndarray, limit: int = 5) -> str:
    """``(g=.., t=..)`` of the first ``limit`` cells in ``idx`` (and how many more)."""
    shown = ", ".join(f"(g={cells.group[j]:g}, t={cells.time[j]:g})" for j in idx[:limit])
    return shown + (f" and {idx.size - limit} more" if idx.size > limit else "")


def _warn_degenerate(
    spec: AttGtSpec, cells: CellLayout, att: np.ndarray, se: np.ndarray, n_clusters: int
) -> None:
    """Warn when estimated cells have no usable SE (one cluster, zero variance)."""
    bad = np.flatnonzero(~cells.reference & np.isfinite(att) & ~np.isfinite(se))
    if bad.size == 0:
        return
    if n_clusters < 2:
        why = (
            f"there is only {n_clusters} cluster"
            + (f" ({spec.clustervars[-1]!r})" if spec.clustervars else "")
            + ", and a clustered variance needs at least two; cluster on a variable with "
            "several levels (or none)"
        )
    else:
        why = (
            "the outcome does not vary around these estimates (zero variance, or a degenerate "
            "bootstrap), so their standard errors are zero up to rounding; check the outcome "
            f"{spec.yname!r} for a constant or deterministic column"
        )
    warnings.warn(
        f"att_gt: {bad.size} of {cells.n_cells} ATT(g, t) cells have no usable standard error "
        f"and are reported with NaN SEs, p-values and intervals: {why}. Cells: "
        f"{_cell_list(cells, bad)}.",
        CausalmemWarning,
        stacklevel=5,
    )


def _check_overflow(
    spec: AttGtSpec,
    cells: CellLayout,
    att: np.ndarray,
    se: np.ndarray,
    failed: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
) -> None:
    """Refuse results that overflowed (huge outcomes or weights) instead of returning NaN SEs."""
    bad = ~cells.reference & ~failed & (~np.isfinite(att) | ~np.isfinite(se))
    with np.errstate(over="ignore", invalid="ignore"):
        ymax = float(np.nanmax(np.abs(y))) if np.isfinite(y).any() else 0.0
        wpos = w[w > 0]
        wratio = float(wpos.max() / wpos.min()) if wpos.size else 1.0
        big = not np.isfinite(ymax * wratio) or ymax * wratio > 1e100 or ymax > 1e100
    if not (bad.any() and big):
        return
    what = (
        f"the weights {spec.weightsname!r} span {wratio:.3g} (largest / smallest positive)"
        if wratio > 1e50
        else f"the outcome {spec.yname!r} reaches |y| = {ymax:.3g}"
    )
    cls = WeightsError if wratio > 1e50 else OutcomeError
    raise cls(
        f"att_gt: {int(bad.sum())} of {cells.n_cells} ATT(g, t) cells overflowed to a non-finite "
        f"estimate or standard error because {what}; squares of such numbers exceed the "
        "floating-point range. Rescale the "
        + ("weights (e.g. divide by their mean)" if cls is WeightsError else "outcome")
        + " before estimating."
    )


def _warn_unexplained_nan(
    spec: AttGtSpec,
    cells: CellLayout,
    att: np.ndarray,
    failed: np.ndarray,
    k_idx: np.ndarray,
    w: np.ndarray,
) -> None:
    """Warn about NaN cells no engine reported, naming groups that carry zero total weight."""
    bad = np.flatnonzero(~cells.reference & ~failed & np.isnan(att))
    if bad.size == 0:
        return
    n_g = cells.glist.size
    tot = np.bincount(k_idx, weights=w, minlength=n_g + 1)
    present = np.bincount(k_idx, minlength=n_g + 1) > 0
    zero = np.flatnonzero(present & (tot <= 0))
    names = ["never treated" if k == n_g else f"cohort {cells.glist[k]:g}" for k in zero]
    why = (
        f"these groups have zero total weight in {spec.weightsname!r}: {', '.join(names)} "
        "(a cell needs treated and comparison units with positive weight); give them positive "
        "weights or drop them"
        if names
        else "their treated or comparison units are empty; check the cohorts and the window"
    )
    warnings.warn(
        f"att_gt: {bad.size} of {cells.n_cells} ATT(g, t) cells are NaN because {why}. "
        f"Cells: {_cell_list(cells, bad)}.",
        CausalmemWarning,
        stacklevel=5,
    )


def _window(
    spec: AttGtSpec, wide: WideData
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray, np.ndarray]:
    """Select the steps and cohorts that identify ATT(g, t): ``(y, tlist, x, cohort, glist)``.

    Without never-treated units the last cohort becomes the comparison group (its steps are
    dropped); cohorts without a pre-treatment period are dropped. Both warn, as R did does.
    """
    glist = np.unique(wide.cohort[np.isfinite(wide.cohort)])
    cohort = wide.cohort
    y, tlist = wide.y, wide.tlist
    x = wide.x
    has_never = bool(np.isinf(cohort).any())
    keep_t, glist = _window_cohorts(spec, tlist, glist, has_never, stacklevel=5)
    if keep_t is not None:
        y, tlist = y[:, keep_t], tlist[keep_t]
        x = x[:, keep_t] if x is not None else None
        # Cohorts first treated after the last kept step are untreated throughout the window.
        cohort = np.where(cohort > tlist[-1], np.inf, cohort)
    return y, tlist, x, cohort, glist


def _window_cohorts(
    spec: AttGtSpec, tlist: np.ndarray, glist: np.ndarray, has_never: bool, stacklevel: int
) -> tuple[np.ndarray | None, np.ndarray]:
    """R did's window rules on the steps ``tlist`` and treated cohorts ``glist`` of a panel.

    Returns the mask of kept steps (``None``: all are kept; without never-treated units the
    last cohort becomes the comparison group and its steps are dropped) and the kept cohorts
    (those with a pre-treatment period). Shared by ``att_gt`` and the streamed engine;
    ``stacklevel`` is that of the warnings.
    """
    if glist.size == 0:
        raise IdentificationError(
            f"{spec.gname!r}: no unit is ever treated, so there is no ATT(g, t) to estimate."
        )
    keep_t = None
    if not has_never:
        if spec.control_group != "notyettreated":
            raise IdentificationError(
                f"{spec.gname!r}: there are no never-treated units (missing cohort), so "
                "control_group='nevertreated' has no usable comparison units. Use "
                "control_group='notyettreated', or add never-treated (e.g. validation) units."
            )
        last = glist[-1]
        keep_t = tlist < last - spec.anticipation
        if keep_t.sum() < 2:
            raise IdentificationError(
                "No never-treated units and too few periods before the last cohort "
                f"({last:g}) to use it as the comparison group."
            )
        warnings.warn(
            f"No never-treated units: cohort {last:g} serves as the comparison group and steps "
            f">= {last - spec.anticipation:g} are dropped (as R did does).",
            CausalmemWarning,
            stacklevel=stacklevel,
        )
        tlist = tlist[keep_t]
        glist = glist[glist <= tlist[-1]]
    no_base = glist <= tlist[0] + spec.anticipation
    if no_base.any():
        warnings.warn(
            f"Cohorts {glist[no_base].tolist()} have no pre-treatment period given "
            f"anticipation={spec.anticipation}; their units are dropped (as R did does).",
            CausalmemWarning,
            stacklevel=stacklevel,
        )
        glist = glist[~no_base]
        if glist.size == 0:
            raise IdentificationError(
                f"No cohort has a pre-treatment period with anticipation={spec.anticipation}."
            )
    return keep_t, glist


def _layout(
    spec: AttGtSpec,
    tlist: np.ndarray,
    glist: np.ndarray,
    y: np.ndarray,
    x: np.ndarray | None,
    difference: bool,
) -> tuple[CellLayout, np.ndarray]:
    """Build the ATT(g, t) cells (and ``y``, with a zero column for the difference estimator)."""
    cells = build_cells(
        tlist,
        glist,
        base_period="universal" if difference else spec.base_period,
        anticipation=spec.anticipation,
        notyettreated=spec.control_group == "notyettreated",
    )
    if difference:
        # Estimator 1: no base period. Point every cell at an all-zero outcome column.
        cells = dataclasses.replace(
            cells,
            b_idx=np.full(cells.n_cells, tlist.size, dtype=np.int64),
            reference=np.zeros(cells.n_cells, dtype=bool),
            difference=True,
        )
        y = np.column_stack([y, np.zeros(y.shape[0])])
        if x is not None:
            raise ValueError("The difference estimator takes no covariates.")
    if cells.n_cells == 0:
        raise IdentificationError("No ATT(g, t) cell is identified with these settings.")
    return cells, y


def _engine_for(
    spec: AttGtSpec,
    wide: WideData,
    y: np.ndarray,
    x: np.ndarray | None,
    k_idx: np.ndarray,
    sel: np.ndarray,
    cells: CellLayout,
    n_g: int,
    engine: str,
    failures: list[tuple[int, str]],
) -> tuple[StructuredIF | DenseIF, int]:
    """Build the influence-function engine; return it with the number of clusters.

    ``"structured"`` (closed form per cohort block: balanced, no covariates, clusters nested in
    cohorts) or ``"dense"``; ``"auto"`` picks the structured one when it applies. Cells the
    dense engine cannot estimate are appended to ``failures``.
    """
    nested = _clusters_nested(wide.cluster[sel], k_idx[sel])
    use_structured = engine == "structured" or (
        engine == "auto" and x is None and wide.balanced and nested
    )
    if use_structured:
        rows = _cohort_rows(
            y[sel],
            wide.w[sel],
            k_idx[sel],
            wide.cluster[sel],
            n_g,
            wide.units[sel],
            wide.cluster_ids,
        )
        return StructuredIF(rows, cells), rows.Z.shape[0]
    cl_codes, cl_keys = pd.factorize(wide.cluster[sel])
    cl = cl_codes.astype(np.int64)
    if wide.cluster_ids is None:
        row_keys = wide.units[sel][np.unique(cl_codes, return_index=True)[1]]
    else:
        row_keys = wide.cluster_ids[np.asarray(cl_keys, dtype=np.int64)]
    dense = DenseIF(
        y[sel],
        k_idx[sel],
        wide.w[sel],
        cl,
        cells,
        x[sel] if x is not None else None,
        spec.est_method,
        on_fail=lambda j, msg: failures.append((j, msg)),
        keys=row_keys,
    )
    return dense, dense.n_clusters


def _inference(
    spec: AttGtSpec,
    engine: StructuredIF | DenseIF,
    cells: CellLayout,
    se_analytic: np.ndarray,
    n_units: int,
    n_clusters: int,
) -> tuple[np.ndarray, Draws | None, float, str]:
    """``(se, draws, crit, band)``: analytic and pointwise, or multiplier bootstrap."""
    draws = None
    se = se_analytic.copy()
    crit = pointwise_crit(spec.alp)
    band = "pointwise"
    if spec.bstrap:
        zb, omega_b = keyed_bootstrap(engine, spec.biters, bootstrap_key(spec.rng()))
        summ = summarise_draws(zb, n_units=n_units, n_clusters=n_clusters, alp=spec.alp)
        se = summ.se
        se[cells.reference] = np.nan
        draws = Draws(cells=zb, omega=omega_b, n_clusters=n_clusters)
        if spec.cband and np.isfinite(summ.crit_val):
            crit, band = summ.crit_val, "uniform"
    return se, draws, crit, band


def keyed_bootstrap(
    engine: StructuredIF | DenseIF | StreamedIF, biters: int, key: int
) -> tuple[Any, Any]:
    """Multiplier draws ``([J, B], [K + 1, B])`` with multipliers keyed by (key, row id).

    The rows are units, or clusters (keyed by the cluster value), so the draws do not depend on
    the order, batching or sharding of the rows (:mod:`causalmem._numerics.keyed`).
    """
    if isinstance(engine, StreamedIF):
        return engine.keyed_draws()
    if isinstance(engine, StructuredIF):
        rows = engine.rows
        if rows.keys is None:  # pragma: no cover - att_gt always sets keys
            raise ValueError("the engine's rows carry no ids to key the bootstrap multipliers.")
        kb = rows.n_blocks
        block_of_row = np.repeat(np.arange(kb), np.diff(rows.block))
        sums = BlockSums(rows.Z, rows.omega, block_of_row, hash_ids(rows.keys), key, kb)
        e = engine.est
        zb = np.empty((engine.cells.n_cells, biters))
        ok = np.zeros((kb, biters))
        rk = np.empty((kb, rows.Z.shape[1], min(DRAW_CHUNK, biters)))  # reused per chunk
        for s in range(0, biters, DRAW_CHUNK):  # one chunk of draws at a time: small buffers
            stop = min(s + DRAW_CHUNK, biters)
            rk_c = rk[:, :, : stop - s]
            rk_c.fill(0.0)
            sums.add(s, stop, rk_c, ok[:, s:stop])
            cell_draws(
                rk_c,
                ok[:, s:stop],
                engine.cells,
                e.att,
                e.m_treat,
                e.m_ctrl,
                e.w_treat,
                e.w_ctrl,
                out=zb[:, s:stop],
            )
        return zb, ok
    if engine.keys is None:  # pragma: no cover - att_gt always sets keys
        raise ValueError("the engine's rows carry no ids to key the bootstrap multipliers.")
    return engine.draws(keyed_chunks(hash_ids(engine.keys), key, biters), biters)


def _clusters_nested(cluster: np.ndarray, k_idx: np.ndarray) -> bool:
    if cluster.size == 0:
        return True
    order = np.lexsort((k_idx, cluster))
    c, k = cluster[order], k_idx[order]
    same_c = c[1:] == c[:-1]
    return bool(np.all(k[1:][same_c] == k[:-1][same_c]))


def _cohort_rows(
    y: np.ndarray,
    w: np.ndarray,
    k_idx: np.ndarray,
    cluster: np.ndarray,
    n_g: int,
    units: np.ndarray,
    cluster_ids: np.ndarray | None = None,
) -> CohortRows:
    """Rows = clusters (nested in cohorts), sorted by cohort block, globally centred.

    ``keys`` are the unit ids, or the cluster values (``cluster_ids[code]``) with a cluster
    variable: they key the bootstrap multipliers.
    """
    cl_codes, cl_first = np.unique(cluster, return_index=True)
    inv = np.searchsorted(cl_codes, cluster)
    n_rows = cl_codes.size
    if cluster_ids is None and n_rows == y.shape[0] and np.array_equal(inv, np.arange(n_rows)):
        # One row per unit: gather the rows in cohort order once, then work in place.
        order = np.argsort(k_idx, kind="stable")
        z = y[order]
        om, rk, keys = w[order], k_idx[order], np.asarray(units)[order]
        if not np.all(om == 1.0):
            z *= om[:, None]
        cnt = np.ones(n_rows)
    else:
        wy = w[:, None] * y
        z = np.zeros((n_rows, y.shape[1]))
        np.add.at(z, inv, wy)
        om = np.bincount(inv, weights=w, minlength=n_rows)
        cnt = np.bincount(inv, minlength=n_rows).astype(np.float64)
        rk = k_idx[cl_first]
        keys = cl_codes if cluster_ids is None else cluster_ids[cl_codes]
        order = np.argsort(rk, kind="stable")
        z, om, cnt, rk, keys = z[order], om[order], cnt[order], rk[order], np.asarray(keys)[order]
    mu = z.sum(axis=0) / om.sum()
    z -= om[:, None] * mu[None, :]
    block = np.searchsorted(rk, np.arange(n_g + 2)).astype(np.int64)
    return CohortRows(Z=z, omega=om, counts=cnt, block=block, n_units=int(y.shape[0]), keys=keys)


def _att_gt_rc(kw: dict[str, Any]) -> AttGtResult:
    """``att_gt(..., panel=False)``: the repeated-cross-section estimators, same arguments."""
    from causalmem.estimators.att_gt_rc import att_gt_rc

    missing = [k for k in ("yname", "tname", "gname") if kw.get(k) is None]
    if missing:
        raise TypeError(f"att_gt(panel=False) needs {', '.join(missing)} (column names).")
    if kw.get("allow_unbalanced_panel"):
        raise OptionError(
            "allow_unbalanced_panel applies to panels only: with panel=False every row is its "
            "own observation; drop allow_unbalanced_panel=True."
        )
    data = kw["data"]
    if not isinstance(data, pd.DataFrame):
        data = _frame_from(data, kw)
    return att_gt_rc(
        data,
        kw["yname"],
        kw["tname"],
        kw["gname"],
        idname=kw.get("idname"),
        xformla=kw.get("xformla"),
        control_group=kw["control_group"],
        anticipation=kw["anticipation"],
        base_period=kw["base_period"],
        est_method=kw["est_method"],
        clustervars=kw.get("clustervars"),
        weightsname=kw.get("weightsname"),
        bstrap=kw["bstrap"],
        biters=kw["biters"],
        cband=kw["cband"],
        alp=kw["alp"],
        seed=kw["seed"],
        drop_always_treated=kw["drop_always_treated"],
    )
