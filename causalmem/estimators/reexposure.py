"""Re-exposure estimands: the effect of seeing a training instance a second time.

An instance trained at step ``s1`` (first-exposure cohort ``g1``: the checkpoint closing the
macro-batch of ``s1``) and again at ``s2`` (cohort ``g2 > g1``, e.g. in the second epoch). Three
estimands, each per (g1, g2) group and checkpoint ``c`` (a Callaway–Sant'Anna group-time design
over pairs of cohorts):

**Second exposure (re-memorisation)**, ``estimand="second"``::

    ATT₂(g1, g2, c) = E[Y_c(g1, g2) − Y_c(g1, ∞) | G1 = g1, G2 = g2]

the effect of the repeat on instances already trained once at ``g1``; ``Y_c(g1, ∞)`` is the
outcome had the instance been trained at ``g1`` only. *Identification*: (i) parallel trends
conditional on the first-exposure cohort — for units with the same ``g1``, the mean of
``Y(g1, ∞)`` would have moved alike from the base period ``b`` (the checkpoint before ``g2``) to
``c`` whatever their second-exposure cohort; (ii) no anticipation and no spill-over of one
instance's repeat onto another instance's score (the SUTVA the first-exposure design also
needs); (iii) second-exposure cohorts assigned independently of the first-exposure outcome path
given ``g1`` (true by construction when the repeat order is a fresh shuffle, as in the lab and
in Pythia-deduped's second epoch). Valid controls of group (g1, g2) at ``c`` are the units with
the **same first exposure** ``g1`` that are not yet re-exposed at ``max(c, b)`` — trained once
only, or re-exposed in a later cohort (``control="notyet"``, default) — or only those trained
once (``control="once"``). Units of another first cohort are never controls: memorisation of the
first exposure decays at a cohort-specific rate (learning-rate schedule), which would break
unconditional parallel trends. The base period is universal (``b`` for every cell of the
group); cells before ``b`` are placebos (pre-trends of the second exposure). Post cells ``c ≥ g2``
give the re-memorisation at ``c = g2`` and, as ``c`` grows, the forgetting after re-exposure
(:meth:`~causalmem.results.reexposure.ReexposureResult.aggregate` ``"forgetting"``).

**Combined path**, ``estimand="combined"``::

    ATT₁₂(g1, g2, c) = E[Y_c(g1, g2) − Y_c(∞) | G1 = g1, G2 = g2]

the total effect of both exposures relative to never trained; for ``c`` between ``g1`` and
``g2`` it is the first-exposure effect of the group, after ``g2`` first + second. Identified as
the paper's first-exposure design: parallel trends of ``Y(∞)`` between the group and never-trained
instances (``control="never"``, default) or also instances first trained after ``max(c, b1)``
(``control="notyet"``), base period ``b1`` = the checkpoint before ``g1``. Groups trained once
(``g2`` missing) are reported too (their path is the first exposure without repeat).

Estimation is the unconditional DiD of means per cell (no covariates; a balanced panel), with
influence functions, analytic or cluster-robust standard errors, and a multiplier (Rademacher)
bootstrap with a sup-t uniform band (R ``did``'s ``mboot``). Aggregations use fixed weights
∝ the treated-group sizes (fixed by the Pythia-style sampling design).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from causalmem._numerics.reexposure import cluster_sum, combined_cells, second_exposure_cells
from causalmem.errors import (
    ClusterError,
    CohortError,
    DuplicateKeyError,
    MissingColumnError,
    OptionError,
    OutcomeError,
    UnbalancedPanelError,
)
from causalmem.results.base import provenance
from causalmem.results.reexposure import ReexposureResult, ReexposureSpec

__all__ = ["reexposure_att"]

_CONTROLS = {"second": ("notyet", "once"), "combined": ("never", "notyet")}


def _frame(data: Any) -> pd.DataFrame:
    frame = getattr(data, "frame", data)
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"data must be a pandas DataFrame or a Panel, not {type(data).__name__}.")
    return frame


def reexposure_att(
    data: Any,
    yname: str,
    *,
    unit: str = "unit",
    time: str = "step",
    first: str = "cohort",
    second: str = "cohort2",
    estimand: str = "second",
    control: str | None = None,
    cluster: str | None = None,
    se_correction: bool = False,
    bstrap: bool = True,
    biters: int = 999,
    cband: bool = True,
    alp: float = 0.05,
    seed: int = 0,
) -> ReexposureResult:
    """Estimate a re-exposure estimand per (g1, g2) group and checkpoint (see module docstring).

    Parameters
    ----------
    data
        Long balanced panel (DataFrame or :class:`~causalmem.panel.Panel`): one row per
        (unit, checkpoint) with the outcome, the first-exposure cohort ``first`` (missing: never
        trained) and the second-exposure cohort ``second`` (missing: trained once only).
    yname
        Outcome column (on the memorisation scale the estimates are memorisation).
    unit, time, first, second
        Role columns.
    estimand
        ``"second"`` (effect of the repeat) or ``"combined"`` (both exposures vs never trained).
    control
        ``"second"``: ``"notyet"`` (default) or ``"once"``; ``"combined"``: ``"never"``
        (default) or ``"notyet"``.
    cluster
        Cluster column (constant within unit), e.g. the training batch; default: units.
    se_correction
        Welch small-sample scaling of each arm's influence function by
        ``sqrt(n_arm / (n_arm − 1))`` (variance ``s²_T/n_T + s²_C/n_C``). Default False: the
        plug-in variance of R ``did`` (it under-covers when groups have ~10 units).
    bstrap, biters, cband, alp, seed
        Multiplier bootstrap (SEs and, with ``cband``, a uniform sup-t band over cells and over
        each aggregation's labels); ``alp`` is the significance level.

    Returns
    -------
    ReexposureResult

    Raises
    ------
    MissingColumnError, DuplicateKeyError, UnbalancedPanelError, OutcomeError, CohortError,
    ClusterError, OptionError
        Bad input, with what to fix.
    """
    if estimand not in _CONTROLS:
        raise OptionError(f"estimand={estimand!r}; use 'second' or 'combined'.")
    control = control or _CONTROLS[estimand][0]
    if control not in _CONTROLS[estimand]:
        raise OptionError(
            f"control={control!r} is not valid for estimand={estimand!r}; use one of "
            f"{list(_CONTROLS[estimand])}."
        )
    if not 0 < alp < 1:
        raise OptionError(f"alp={alp} must lie in (0, 1).")
    if bstrap and biters < 10:
        raise OptionError(f"biters={biters}: the bootstrap needs at least 10 draws.")
    frame = _frame(data)
    cols = [unit, time, first, second, yname] + ([cluster] if cluster else [])
    missing = [c for c in cols if c not in frame.columns]
    if missing:
        raise MissingColumnError(
            f"columns {missing} are not in the data; have {list(frame.columns)}."
        )
    y, times, g1, g2, codes, keys = _wide(frame, yname, unit, time, first, second, cluster)
    units = int(y.shape[0])
    fn = second_exposure_cells if estimand == "second" else combined_cells
    est = fn(y, times, g1, g2, control=control, welch=se_correction)
    infl = cluster_sum(est.influence, codes)
    infl.setflags(write=False)
    spec = ReexposureSpec(
        yname=yname,
        estimand=estimand,
        control=control,
        unit=unit,
        time=time,
        first=first,
        second=second,
        cluster=cluster,
        se_correction=se_correction,
        bstrap=bstrap,
        biters=int(biters),
        cband=cband,
        alp=float(alp),
        seed=int(seed),
    )
    prov = provenance(
        estimator="causalmem.reexposure_att",
        n_units=int(units),
        n_times=int(times.size),
        n_clusters=int(infl.shape[0]),
    )
    return ReexposureResult(
        spec=spec, cells=est.cells, influence=infl, n_units=units, provenance=prov, keys=keys
    )


def _wide(
    frame: pd.DataFrame,
    yname: str,
    unit: str,
    time: str,
    first: str,
    second: str,
    cluster: str | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
    """Pivot to ``Y[n, T]`` and per-unit cohorts; check balance, keys and cohorts.

    The last item is the id of each influence row after clustering: the unit ids, or the
    cluster values (sorted, as the cluster codes).
    """
    if frame.duplicated([unit, time]).any():
        raise DuplicateKeyError(f"({unit}, {time}) keys repeat; keep one row per unit and step.")
    uid, ucode = np.unique(frame[unit].to_numpy(), return_inverse=True)
    times, tcode = np.unique(frame[time].to_numpy(np.float64), return_inverse=True)
    n, t = uid.size, times.size
    if len(frame) != n * t:
        raise UnbalancedPanelError(
            f"the re-exposure estimator needs a balanced panel: {n} units × {t} checkpoints but "
            f"{len(frame)} rows; score every instance at every checkpoint."
        )
    vals = pd.to_numeric(frame[yname], errors="coerce").to_numpy(np.float64)
    if not np.isfinite(vals).all():
        raise OutcomeError(f"{yname!r} has missing or non-finite values; remove or fix them.")
    y = np.empty((n, t))
    y[ucode, tcode] = vals

    def per_unit(col: str) -> np.ndarray:
        v = pd.to_numeric(frame[col], errors="coerce").to_numpy(np.float64)
        out = np.full(n, np.nan)
        out[ucode] = v
        agree = np.isclose(out[ucode], v, equal_nan=True)
        if not agree.all():
            raise CohortError(f"{col!r} varies within units; it must be constant per unit.")
        return out

    g1, g2 = per_unit(first), per_unit(second)
    bad = np.isfinite(g2) & ~(g1 < g2)
    if bad.any():
        raise CohortError(
            f"{int(bad.sum())} units have a second-exposure cohort not after their first (or no "
            f"first exposure); {second!r} must exceed {first!r}."
        )
    for col, g in ((first, g1), (second, g2)):
        off = np.isfinite(g) & ~np.isin(g, times)
        if off.any():
            raise CohortError(f"{col!r} values {sorted(set(g[off]))[:5]} are not checkpoints.")
        if (np.isfinite(g) & (g <= times[0])).any():
            raise CohortError(f"{col!r} has cohorts at the first checkpoint (no base period).")
    codes = None
    if cluster is not None:
        cv = frame[cluster].to_numpy()
        first_row = np.zeros(n, dtype=np.int64)
        first_row[ucode] = np.arange(len(frame))
        cuid, ccode = np.unique(cv, return_inverse=True)
        if not np.array_equal(ccode, ccode[first_row][ucode]):
            raise ClusterError(f"{cluster!r} varies within units; clusters must nest units.")
        codes = ccode[first_row]
        if np.unique(codes).size < 2:
            raise ClusterError("clustered inference needs at least two clusters.")
        return y, times, g1, g2, codes, cuid
    return y, times, g1, g2, codes, uid
