"""Event studies: dynamic TWFE, Sun & Abraham, the difference estimator, the reference baseline."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import pandas as pd

from causalmem._numerics import eventstudy as es
from causalmem._types import check_literal
from causalmem.errors import CausalmemWarning, IdentificationError
from causalmem.estimators.aggte import aggte
from causalmem.estimators.att_gt import att_gt
from causalmem.panel.validate import validate_long
from causalmem.results.aggte import AggteResult
from causalmem.results.attgt import AttGtResult
from causalmem.results.base import provenance
from causalmem.results.twfe import TwfeResult

EventEstimator = Literal["twfe", "sunab", "diff", "simple_diff"]


def event_study(
    data: pd.DataFrame,
    yname: str,
    tname: str,
    idname: str,
    gname: str,
    estimator: EventEstimator = "twfe",
    *,
    ref: int = -1,
    window: tuple[int, int] | None = None,
    vcov: str | Mapping[str, str] | None = None,
    alp: float = 0.05,
    bstrap: bool = False,
    biters: int = 1000,
    seed: int | np.random.Generator | None = None,
) -> TwfeResult | AggteResult | AttGtResult:
    """Event-study estimates of treatment effects by time relative to treatment.

    Relative time is counted in **periods** (checkpoints on the observed grid), so ``ref=-1`` is
    the checkpoint before treatment whatever the step spacing.

    Parameters
    ----------
    data, yname, tname, idname, gname
        Long panel and column roles as in :func:`~causalmem.att_gt` (never treated: NA cohort).
    estimator
        - ``"twfe"``: ``y_it = a_i + l_t + sum_{e != ref} beta_e 1{t - g_i = e} + u`` (dynamic
          TWFE). Biased under heterogeneous, dynamic effects (Sun and Abraham 2021); shown for
          comparison. Returns :class:`TwfeResult` with terms ``event_time=e``.
        - ``"sunab"``: the interaction-weighted estimator of Sun and Abraham (2021): the
          saturated cohort x relative-period regression with never-treated controls, whose
          cohort effects equal ATT(g, t) with a universal base period (balanced panel), averaged
          with cohort shares; returns :class:`AggteResult` (weights' estimation included in SEs).
        - ``"diff"``: the paper's difference estimator (Estimator 1),
          ``Ybar_c(g) - Ybar_c(inf)``, valid under random assignment; returns
          :class:`AttGtResult` (cells for every g, c, aggregable with :func:`aggte`).
        - ``"simple_diff"``: the reference repository's baseline (two-way demeaning, then the
          cohort-minus-control mean per cell) with its sign fixed (treated minus control;
          pitfall 2); SEs treat the demeaned outcome as data (approximate).
    ref
        Omitted relative period for ``"twfe"``.
    window
        ``(lo, hi)``: bin relative periods below ``lo`` / above ``hi`` into the end points
        (``"twfe"``).
    vcov
        ``"twfe"`` only: ``"iid"``, ``"hetero"``, ``{"CRV1": col}`` with a unit-level column or
        ``tname``, or two-way ``{"CRV1": "unit+step"}``; default clustered by ``idname``.
    alp, bstrap, biters, seed
        Inference options for the estimators built on :func:`~causalmem.att_gt`.

    Returns
    -------
    TwfeResult | AggteResult | AttGtResult
    """
    check_literal("estimator", estimator, EventEstimator)
    if estimator == "sunab":
        res = att_gt(
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
        return aggte(res, "dynamic", event_time="periods")
    if estimator in ("diff", "simple_diff"):
        return _difference(
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
    return _twfe_event_study(
        data, yname, tname, idname, gname, ref=ref, window=window, vcov=vcov, alp=alp
    )


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
    if vcov is None:
        vcov = {"CRV1": idname}
    clus_cols: list[str] = []
    if isinstance(vcov, Mapping):
        clus_cols = [c.strip() for c in str(vcov.get("CRV1", "")).split("+") if c.strip()]
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

    n_obs, p = n * n_t, fit.beta.size
    k_fe_adj = n + n_t - 1
    if isinstance(vcov, str):
        if vcov not in ("iid", "hetero"):
            raise ValueError(f"vcov={vcov!r}: use 'iid', 'hetero' or {{'CRV1': col}}.")
        df_k = p + k_fe_adj
        if vcov == "iid":
            cov = fit.rss / (n_obs - df_k) * fit.xtx_inv
        else:
            cov = n_obs / (n_obs - df_k) * (fit.xtx_inv @ es.hetero_meat(fit) @ fit.xtx_inv)
        label, df_t = vcov, n_obs - df_k
    else:
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
                codes = (
                    np.arange(n) if c == idname else pd.factorize(f[c].to_numpy()[first][order])[0]
                )
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
        cov = (
            (n_obs - 1) / (n_obs - df_k) * g_min / (g_min - 1) * (fit.xtx_inv @ meat @ fit.xtx_inv)
        )
        label, df_t = "CRV1:" + "+".join(clus_cols), g_min - 1
    names = tuple(f"event_time={int(e)}" for e in fit.rel)
    return TwfeResult(
        formula=f"{yname} ~ sum_e 1{{rel = e}} | {idname} + {tname} (ref {ref})",
        names=names,
        coef=fit.beta,
        vcov=cov,
        vcov_type=label,
        n_obs=n_obs,
        df_k=df_k,
        df_t=int(df_t),
        rss=fit.rss,
        r2_within=1 - fit.rss / fit.tss if fit.tss > 0 else float("nan"),
        alp=alp,
        provenance=provenance(),
        extra={"event_time": fit.rel.astype(float), "window": window, "ref": ref},
    )


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


__all__ = ["event_study"]
