"""Event studies: dynamic TWFE, Sun & Abraham, the difference estimator, the reference baseline.

:func:`event_study` returns one type, :class:`~causalmem.results.event_study.EventStudyResult`,
whatever the estimator (as R ``did2s::event_study`` returns one tidy frame): the same tidy
columns by relative period, with the estimator's own fit in ``path`` (and ``att_gt``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from causalmem._numerics import eventstudy as es
from causalmem._types import EventEstimator, Float64Array, check_literal
from causalmem.errors import CausalmemWarning, IdentificationError
from causalmem.estimators.aggte import aggte
from causalmem.estimators.att_gt import att_gt
from causalmem.panel.checks import validate_long
from causalmem.results.aggte import AggteResult
from causalmem.results.attgt import AttGtResult
from causalmem.results.base import provenance
from causalmem.results.event_study import EventStudyResult, EventStudySpec
from causalmem.results.twfe import (
    FIX_CLUSTERS,
    FIX_DF,
    FIX_EXACT,
    TwfeResult,
    TwfeSpec,
    exact_fit,
    freeze_vcov,
    undefined_vcov,
)


def event_study(
    data: pd.DataFrame,
    yname: str,
    tname: str,
    idname: str,
    gname: str,
    *,
    estimator: EventEstimator = "twfe",
    ref: int = -1,
    window: tuple[int, int] | None = None,
    vcov: str | Mapping[str, str] | None = None,
    alp: float = 0.05,
    bstrap: bool = False,
    biters: int = 1000,
    seed: int | np.random.Generator | None = None,
) -> EventStudyResult:
    """Event-study estimates of treatment effects by time relative to treatment.

    Relative time is counted in **periods** (checkpoints on the observed grid), so ``ref=-1`` is
    the checkpoint before treatment whatever the step spacing. Every estimator returns an
    :class:`~causalmem.results.event_study.EventStudyResult` with the same ``tidy()`` columns
    (``term, estimate, std_error, statistic, p_value, conf_low, conf_high, event_time,
    se_method, band, crit_val, estimator``), as R ``did2s::event_study`` does; the estimator's
    own fit is in ``result.path`` (and the group-time ATTs in ``result.att_gt``).

    Parameters
    ----------
    data, yname, tname, idname, gname
        Long panel and column roles, in the order of :func:`~causalmem.att_gt` (never
        treated: NA cohort).
    estimator
        - ``"twfe"``: ``y_it = a_i + l_t + sum_{e != ref} beta_e 1{t - g_i = e} + u`` (dynamic
          TWFE). Biased under heterogeneous, dynamic effects (Sun and Abraham 2021); shown for
          comparison. ``path`` is a :class:`~causalmem.results.twfe.TwfeResult` with terms
          ``event_time=e``; ``att_gt`` is None.
        - ``"sunab"``: the interaction-weighted estimator of Sun and Abraham (2021): the
          saturated cohort x relative-period regression with never-treated controls, whose
          cohort effects equal ATT(g, t) with a universal base period (balanced panel), averaged
          with cohort shares; ``path`` is the dynamic
          :class:`~causalmem.results.aggte.AggteResult` (weights' estimation included in SEs),
          ``att_gt`` the cohort effects.
        - ``"diff"``: the paper's difference estimator (Estimator 1),
          ``Ybar_c(g) - Ybar_c(inf)``, valid under random assignment; ``att_gt`` holds the
          cells for every g, c (an :class:`~causalmem.results.attgt.AttGtResult`), ``path``
          their dynamic aggregation (``aggte(..., "dynamic", event_time="periods",
          na_rm=True)``).
        - ``"simple_diff"``: the reference repository's baseline (two-way demeaning, then the
          cohort-minus-control mean per cell) with its sign fixed (treated minus control;
          pitfall 2); SEs treat the demeaned outcome as data (approximate). Same layout as
          ``"diff"``.
    ref
        Omitted relative period for ``"twfe"``.
    window
        ``(lo, hi)``: bin relative periods below ``lo`` / above ``hi`` into the end points
        (``"twfe"``). A window outside the data's relative periods, ``lo > hi`` or a ``ref``
        that is not a (binned) relative period is refused with an error naming the available
        relative periods.
    vcov
        ``"twfe"`` only: ``"iid"``, ``"hetero"``, ``{"CRV1": col}`` with a unit-level column or
        ``tname``, or two-way ``{"CRV1": "unit+step"}``; default clustered by ``idname``.
    alp, bstrap, biters, seed
        Level of the intervals; bootstrap options for the estimators built on
        :func:`~causalmem.att_gt`.

    Returns
    -------
    EventStudyResult

    Examples
    --------
    >>> import causalmem as cm
    >>> df = cm.simulate_panel(seed=0).frame
    >>> es_ = event_study(df, "y", "step", "unit", "cohort", estimator="sunab")
    >>> list(es_.tidy().columns[:3]), type(es_.path).__name__
    (['term', 'estimate', 'std_error'], 'AggteResult')
    """
    check_literal("estimator", estimator, EventEstimator)
    spec = EventStudySpec(
        estimator=estimator,
        yname=yname,
        tname=tname,
        idname=idname,
        gname=gname,
        ref=ref,
        window=window,
        vcov=freeze_vcov(vcov),
        alp=alp,
        bstrap=bstrap,
        biters=biters,
        seed=_seed_repr(seed),
    )
    cells: AttGtResult | None = None
    path: TwfeResult | AggteResult
    if estimator == "sunab":
        cells = att_gt(
            data,
            yname,
            tname,
            idname,
            gname,
            base_period="universal",
            control_group="nevertreated",
            bstrap=bstrap,
            biters=biters,
            alp=alp,
            seed=seed,
        )
        path = aggte(cells, "dynamic", event_time="periods")
    elif estimator in ("diff", "simple_diff"):
        cells = _difference(
            data,
            yname,
            tname,
            idname,
            gname,
            demeaned=estimator == "simple_diff",
            bstrap=bstrap,
            biters=biters,
            alp=alp,
            seed=seed,
        )
        path = aggte(cells, "dynamic", event_time="periods", na_rm=True)
    else:
        path = _twfe_event_study(
            data, yname, tname, idname, gname, ref=ref, window=window, vcov=vcov, alp=alp
        )
    prov = cells.provenance if cells is not None else path.provenance
    return EventStudyResult(spec=spec, path=path, att_gt=cells, provenance=prov)


def _seed_repr(seed: int | np.random.Generator | None) -> int | str | None:
    """Return the seed as recorded in the spec (a Generator is recorded by name only)."""
    if seed is None or isinstance(seed, np.random.Generator):
        return None if seed is None else "caller Generator"
    return int(seed)


def _twfe_event_study(
    data: pd.DataFrame,
    yname: str,
    tname: str,
    idname: str,
    gname: str,
    *,
    ref: int,
    window: tuple[int, int] | None,
    vcov: str | Mapping[str, str] | None,
    alp: float,
) -> TwfeResult:
    vc = {"CRV1": idname} if vcov is None else vcov
    clus_cols: list[str] = []
    if isinstance(vc, Mapping):
        clus_cols = [c.strip() for c in str(vc.get("CRV1", "")).split("+") if c.strip()]
    extra = [c for c in clus_cols if c not in (idname, tname)]
    checked = validate_long(
        data,
        idname=idname,
        tname=tname,
        gname=gname,
        ynames=(yname,),
        clustervars=tuple(extra),
        allow_unbalanced_panel=True,
    )
    if not checked.balanced:
        raise IdentificationError(
            "The TWFE event study needs a balanced panel (its within transformation is solved "
            "on cohort x period cells); use twfe() with explicit indicators for unbalanced data."
        )
    f = checked.frame
    steps = checked.steps
    uid, _ = pd.factorize(f[idname], sort=False)
    n_t = steps.size
    n = int(uid.max()) + 1
    y = np.empty((n, n_t))
    y[uid, np.searchsorted(steps, f[tname].to_numpy(np.int64))] = f[yname].to_numpy(np.float64)
    first = np.zeros(n, dtype=np.int64)
    first[uid[::-1]] = np.arange(uid.size)[::-1]
    coh = f[gname].to_numpy(dtype=np.float64, na_value=np.inf)[first]
    glist = np.unique(coh[np.isfinite(coh)])
    k = np.where(np.isfinite(coh), np.searchsorted(glist, coh), glist.size)
    order = np.argsort(k, kind="stable")
    block = np.searchsorted(k[order], np.arange(glist.size + 2)).astype(np.int64)
    gpos = np.searchsorted(steps, glist).astype(np.int64)
    fit = es.fit_event_study(y[order], gpos, block, ref, window)

    def unit_codes(col: str) -> np.ndarray:
        """Cluster codes of the units (in the fit's order) for a unit-level column."""
        return np.arange(n) if col == idname else pd.factorize(f[col].to_numpy()[first][order])[0]

    cov, label, df_k, df_t = _event_study_vcov(
        fit, vc, clus_cols, idname=idname, tname=tname, n=n, n_t=n_t, unit_codes=unit_codes
    )
    return TwfeResult(
        spec=TwfeSpec(
            formula=f"{yname} ~ sum_e 1{{rel = e}} | {idname} + {tname} (ref {ref})",
            outcome=yname,
            fixed_effects=(idname, tname),
            vcov=freeze_vcov(vcov),
            alp=alp,
            ref=ref,
            window=window,
        ),
        names=tuple(f"event_time={int(e)}" for e in fit.rel),
        coef=fit.beta,
        vcov=cov,
        vcov_type=label,
        n_obs=n * n_t,
        df_k=df_k,
        df_t=int(df_t),
        rss=fit.rss,
        r2_within=1 - fit.rss / fit.tss if fit.tss > 0 else float("nan"),
        provenance=provenance(),
        event_time=fit.rel.astype(float),
    )


def _event_study_vcov(
    fit: es.EventStudyFit,
    vcov: str | Mapping[str, str],
    clus_cols: list[str],
    *,
    idname: str,
    tname: str,
    n: int,
    n_t: int,
    unit_codes: Callable[[str], np.ndarray],
) -> tuple[Float64Array, str, int, int]:
    """``(vcov, label, df_k, df_t)`` of the event-study coefficients (pyfixest's corrections)."""
    n_obs, p = n * n_t, fit.beta.size
    if exact_fit(fit.rss, fit.tss):
        label = vcov if isinstance(vcov, str) else "CRV1:" + "+".join(clus_cols)
        why = "the regression fits the outcome exactly (zero residual variance)"
        return undefined_vcov(p, label, p + n + n_t - 1, 0, why, FIX_EXACT)
    k_fe_adj = n + n_t - 1
    if isinstance(vcov, str):
        if vcov not in ("iid", "hetero"):
            raise ValueError(f"vcov={vcov!r}: use 'iid', 'hetero' or {{'CRV1': col}}.")
        df_k = p + k_fe_adj
        if n_obs - df_k <= 0:
            why = f"no residual degrees of freedom (N={n_obs})"
            return undefined_vcov(p, vcov, df_k, 0, why, FIX_DF)
        if vcov == "iid":
            cov = fit.rss / (n_obs - df_k) * fit.xtx_inv
        else:
            cov = n_obs / (n_obs - df_k) * (fit.xtx_inv @ es.hetero_meat(fit) @ fit.xtx_inv)
        return cov, vcov, df_k, n_obs - df_k
    if set(vcov) != {"CRV1"} or not 1 <= len(clus_cols) <= 2:
        raise ValueError(f"vcov={vcov!r}: use {{'CRV1': 'col'}} or {{'CRV1': 'a+b'}}.")
    meats, gs, nested = [], [], 0
    unit_s = None
    for c in clus_cols:
        if c == tname:
            sc = es.period_scores(fit)
            meats.append(sc.T @ sc)
            gs.append(n_t)
            nested += n_t - 1  # the period FE is nested: drop its levels, add one back
        else:
            unit_s = es.unit_scores(fit) if unit_s is None else unit_s
            codes = unit_codes(c)
            ssum = np.zeros((int(codes.max()) + 1, p))
            np.add.at(ssum, codes, unit_s)
            meats.append(ssum.T @ ssum)
            gs.append(ssum.shape[0])
            nested += n - 1
    meat = meats[0]
    if len(clus_cols) == 2:
        if tname in clus_cols and len({*clus_cols} - {tname}) == 1:
            other = [c for c in clus_cols if c != tname][0]
            if other != idname:
                raise ValueError("Two-way clustering in the event study supports unit+time.")
            meat = meats[0] + meats[1] - es.hetero_meat(fit)  # unit x period = observation
        else:
            raise ValueError("Two-way clustering in the event study supports unit+time.")
    df_k = p + k_fe_adj - nested
    g_min = min(gs)
    if g_min < 2 or n_obs - df_k <= 0:
        why = (
            f"only {g_min} cluster in {'+'.join(clus_cols)!r}; a clustered variance needs at "
            "least two"
            if g_min < 2
            else f"no residual degrees of freedom (N={n_obs})"
        )
        fix = FIX_CLUSTERS if g_min < 2 else FIX_DF
        return undefined_vcov(p, "CRV1:" + "+".join(clus_cols), df_k, max(g_min - 1, 0), why, fix)
    cov = (n_obs - 1) / (n_obs - df_k) * g_min / (g_min - 1) * (fit.xtx_inv @ meat @ fit.xtx_inv)
    return cov, "CRV1:" + "+".join(clus_cols), df_k, g_min - 1


def _difference(
    data: pd.DataFrame,
    yname: str,
    tname: str,
    idname: str,
    gname: str,
    *,
    demeaned: bool,
    bstrap: bool,
    biters: int,
    alp: float,
    seed: Any,
) -> AttGtResult:
    from causalmem.estimators.att_gt import _att_gt

    if demeaned:
        checked = validate_long(data, idname=idname, tname=tname, gname=gname, ynames=(yname,))
        f = checked.frame
        y = f[yname].to_numpy(np.float64)
        ui = pd.factorize(f[idname])[0]
        ti = pd.factorize(f[tname])[0]
        if not checked.balanced:
            raise IdentificationError("simple_diff (two-way demeaning) needs a balanced panel.")
        um = np.bincount(ui, weights=y) / np.bincount(ui)
        tm = np.bincount(ti, weights=y) / np.bincount(ti)
        data = f.assign(**{yname: y - um[ui] - tm[ti] + y.mean()})
        warnings.warn(
            "simple_diff: SEs treat the two-way demeaned outcome as data (the reference "
            "repository reports none); prefer att_gt for inference.",
            CausalmemWarning,
            stacklevel=3,
        )
    return _att_gt(
        _difference=True,
        data=data,
        yname=yname,
        tname=tname,
        idname=idname,
        gname=gname,
        control_group="nevertreated",
        bstrap=bstrap,
        biters=biters,
        alp=alp,
        seed=seed,
    )


__all__ = ["EventEstimator", "event_study"]
