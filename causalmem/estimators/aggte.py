"""Aggregations of ATT(g, t): simple, dynamic (event study), group and calendar."""

from __future__ import annotations

import warnings

import numpy as np

from causalmem._numerics.aggregate import AggSpec, build_aggregation
from causalmem._numerics.inference import pointwise_crit, summarise_draws
from causalmem._types import AggType, check_literal
from causalmem.errors import CausalmemWarning, IdentificationError, OptionError
from causalmem.results.aggte import AggteResult, AggteSpec
from causalmem.results.attgt import AttGtResult
from causalmem.results.base import provenance


def aggte(
    result: AttGtResult,
    type: AggType = "group",  # noqa: A002 - R did's argument name
    *,
    min_e: float = -np.inf,
    max_e: float = np.inf,
    balance_e: float | None = None,
    na_rm: bool = False,
    bstrap: bool | None = None,
    cband: bool | None = None,
    alp: float | None = None,
    event_time: str = "steps",
) -> AggteResult:
    """Aggregate group-time ATTs (R ``did::aggte``), with the estimated-weights IF term.

    Callaway & Sant'Anna (2021), Section 3: ``simple`` (group-size weighted average of
    post-treatment cells), ``dynamic`` (by event time ``e = t - g``, the paper's memorisation path
    ``theta(e)``), ``group`` (per cohort, then weighted by cohort size) and ``calendar``
    (per checkpoint). Standard errors come from the aggregated influence function, including the
    term for estimating the weights ``P(G = g)``; with the bootstrap they reuse the att_gt
    multiplier draws, so cells and aggregations share one joint bootstrap.

    Parameters
    ----------
    result
        An :class:`~causalmem.results.attgt.AttGtResult`.
    type
        ``"simple"``, ``"dynamic"``, ``"group"`` or ``"calendar"``.
    min_e, max_e
        Event-time window for ``dynamic``; ``max_e`` also limits ``simple`` and ``group``.
    balance_e
        Keep only cohorts observed for at least ``balance_e`` steps after treatment (dynamic).
    na_rm
        Drop cells whose ATT could not be estimated (otherwise their presence is an error).
    event_time
        ``"steps"`` (R ``did``: ``e = t - g`` in the units of ``tname``) or ``"periods"``
        (positions on the observed step grid; ``-1`` is the checkpoint before treatment, which
        matters on Pythia's uneven grid). Also applies to ``min_e``/``max_e``/``balance_e``.
    bstrap, cband, alp
        Default to the att_gt call's settings. A uniform band needs the bootstrap; it falls back
        to a pointwise one (with a warning) when the sup-t critical value is undefined or smaller
        than the normal one (R did #244).

    Returns
    -------
    AggteResult
        Parameters whose SE cannot be computed (one cluster, zero variance) have NaN SEs and
        intervals, with a :class:`~causalmem.errors.CausalmemWarning`.

    Raises
    ------
    OptionError
        ``min_e > max_e``.
    IdentificationError
        No estimated cell falls in the event-time window (the message lists the event times).

    Examples
    --------
    >>> from causalmem import att_gt, simulate_panel
    >>> df = simulate_panel(seed=1).frame
    >>> res = att_gt(df, "y", "step", "unit", "cohort", seed=0, biters=200)
    >>> aggte(res, "dynamic").tidy()["type"].iloc[0]
    'dynamic'
    """
    check_literal("type", type, AggType)
    if event_time not in ("steps", "periods"):
        raise ValueError(f"event_time={event_time!r}; use 'steps' or 'periods'.")
    spec0 = result.spec
    bstrap = spec0.bstrap if bstrap is None else bool(bstrap)
    cband_explicit = cband is not None
    cband = spec0.cband if cband is None else bool(cband)
    alp = spec0.alp if alp is None else float(alp)
    if not 0 < alp < 1:
        raise ValueError(f"alp must lie in (0, 1), got {alp!r}.")
    if min_e > max_e:
        raise OptionError(
            f"aggte(min_e={min_e}, max_e={max_e}): min_e is above max_e, so the event-time "
            "window is empty; swap them or widen the window."
        )
    if bstrap and result.draws is None:
        raise ValueError(
            "bstrap=True needs the multiplier draws, but att_gt was called with bstrap=False; "
            "re-run att_gt with bstrap=True or aggregate with bstrap=False."
        )
    cells = result.cells
    att = np.asarray(result.att, dtype=np.float64)
    keep = np.ones(att.size, dtype=bool)
    if np.isnan(att).any():
        if not na_rm:
            raise ValueError(
                f"{int(np.isnan(att).sum())} ATT(g, t) cells are NaN; pass na_rm=True to "
                "aggregate the remaining ones."
            )
        keep = ~np.isnan(att)
    group, time = cells.group, cells.time
    if event_time == "periods":
        group = np.searchsorted(cells.tlist, group).astype(np.float64)
        time = cells.t_idx.astype(np.float64)
    agg = build_aggregation(
        type,
        group=np.where(keep, group, np.nan),
        time=np.where(keep, time, np.nan),
        g_idx=cells.g_idx,
        att=np.where(keep, att, 0.0),
        post=cells.post & keep,
        pg_cohort=result.pg_cohort,
        glist=cells.glist,
        min_e=min_e,
        max_e=max_e,
        balance_e=balance_e,
    )
    _check_nonempty(type, agg, e=time - group, keep=keep & ~cells.reference, window=(min_e, max_e))
    labels = agg.labels
    if event_time == "periods" and type in ("group", "calendar"):
        ok = np.isfinite(labels)
        labels = labels.copy()
        labels[ok] = cells.tlist[labels[ok].astype(np.int64)]
    se = np.sqrt(result.engine.sum_squares(agg.weights, agg.h))
    se[se <= np.sqrt(np.finfo(float).eps) * 10] = np.nan
    se[np.isnan(agg.estimate)] = np.nan
    se, crit, band = _band(result, agg, keep, se, bstrap, cband, cband_explicit, alp)
    if result.n_clusters < 2:
        se = np.full_like(se, np.nan)
    _warn_degenerate(type, agg, se, result.n_clusters, cells.reference | ~keep)
    return AggteResult(
        spec=AggteSpec(
            type=type,
            min_e=min_e,
            max_e=max_e,
            balance_e=balance_e,
            bstrap=bstrap,
            cband=cband,
            alp=alp,
            event_time=event_time,
        ),
        yname=spec0.yname,
        labels=labels[:-1] if type != "simple" else np.zeros(0),
        estimate=agg.estimate[:-1] if type != "simple" else np.zeros(0),
        std_error=se[:-1] if type != "simple" else np.zeros(0),
        crit_val=float(crit),
        band=band,
        se_method="bootstrap" if bstrap else "analytic",
        overall_estimate=float(agg.estimate[-1]),
        overall_std_error=float(se[-1]),
        overall_crit_val=pointwise_crit(alp),
        _engine=result.engine,
        _weights=agg.weights,
        _h=agg.h,
        provenance=provenance(att_gt=result.provenance),
    )


def _band(
    result: AttGtResult,
    agg: AggSpec,
    keep: np.ndarray,
    se: np.ndarray,
    bstrap: bool,
    cband: bool,
    cband_explicit: bool,
    alp: float,
) -> tuple[np.ndarray, float, str]:
    """``(se, crit, band)``: bootstrap SEs from att_gt's draws and the sup-t band if asked.

    The uniform band falls back to a pointwise one (with a warning) when the draws are
    missing or the sup-t critical value is undefined or below the normal one (R did #244).
    """
    crit = pointwise_crit(alp)
    band = "pointwise"
    n_lab = agg.labels.size - 1
    if not (bstrap or cband):
        return se, crit, band
    if result.draws is None:
        if cband_explicit:
            warnings.warn(
                "A uniform band needs the bootstrap draws (att_gt was run with "
                "bstrap=False); reporting pointwise intervals.",
                CausalmemWarning,
                stacklevel=3,
            )
        return se, crit, band
    d = result.draws
    zc = np.nan_to_num(d.cells[keep]) if not keep.all() else d.cells
    w = agg.weights[keep] if not keep.all() else agg.weights
    zb = np.asarray(w.T @ zc) + agg.h.T @ d.omega / result.n_units
    if bstrap:
        summ = summarise_draws(zb, n_units=result.n_units, n_clusters=d.n_clusters, alp=alp)
        se = np.where(np.isnan(se), np.nan, summ.se)
    if cband and n_lab > 0:
        summ_e = summarise_draws(
            zb[:n_lab], n_units=result.n_units, n_clusters=d.n_clusters, alp=alp
        )
        if not np.isfinite(summ_e.crit_val) or summ_e.crit_val < crit:
            warnings.warn(
                f"The sup-t critical value ({summ_e.crit_val:.3f}) is undefined or below "
                f"the pointwise one ({crit:.3f}); reporting pointwise intervals "
                "(as R did does, did #244).",
                CausalmemWarning,
                stacklevel=3,
            )
        else:
            crit, band = summ_e.crit_val, "uniform"
    return se, crit, band


def _check_nonempty(
    kind: str, agg: AggSpec, *, e: np.ndarray, keep: np.ndarray, window: tuple[float, float]
) -> None:
    """Refuse an aggregation that averages no cell (its estimates would all be NaN)."""
    if agg.weights.nnz and not np.isnan(agg.estimate).all():
        return
    avail = np.unique(e[keep & np.isfinite(e)])
    shown = ", ".join(f"{v:g}" for v in avail[:20]) + (" ..." if avail.size > 20 else "")
    raise IdentificationError(
        f"aggte(type={kind!r}, min_e={window[0]:g}, max_e={window[1]:g}): no estimated ATT(g, t) "
        f"cell falls in this event-time window, so there is nothing to aggregate. Event times "
        f"of the estimated cells: {shown or 'none'}; choose min_e/max_e among them."
    )


def _warn_degenerate(
    kind: str, agg: AggSpec, se: np.ndarray, n_clusters: int, structural: np.ndarray
) -> None:
    """Warn when aggregated parameters with an estimate have no usable SE.

    Parameters made only of ``structural`` cells (the universal base period's reference cells,
    zero by construction, or cells left out) have no SE by design and are not reported.
    """
    informative = np.asarray(abs(agg.weights[~structural]).sum(axis=0)).ravel() > 0
    bad = np.isfinite(agg.estimate) & ~np.isfinite(se) & informative
    if not bad.any():
        return
    why = (
        f"there is only {n_clusters} cluster and a clustered variance needs at least two"
        if n_clusters < 2
        else "their influence function is zero up to rounding (zero variance)"
    )
    names = ["overall" if np.isnan(lab) else f"{lab:g}" for lab in agg.labels[np.flatnonzero(bad)]]
    warnings.warn(
        f"aggte(type={kind!r}): {int(bad.sum())} of {agg.estimate.size} parameters have no "
        f"usable standard error and are reported with NaN SEs and intervals ({', '.join(names[:8])}"
        f"{' ...' if len(names) > 8 else ''}): {why}.",
        CausalmemWarning,
        stacklevel=3,
    )
