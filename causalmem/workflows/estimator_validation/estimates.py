"""Fit every estimator on one panel: estimates on the memorisation scale, pointwise intervals."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from causalmem.panel.panel import Panel
    from causalmem.results.attgt import AttGtResult

__all__ = ["ESTIMATORS", "ESTIMATOR_LABELS", "estimate_all"]

ESTIMATORS: tuple[str, ...] = ("cs_never", "cs_notyet", "twfe", "sunab", "diff", "bayes")
"""Estimator keys, in display order."""

ESTIMATOR_LABELS: Mapping[str, str] = {
    "cs_never": "CS, never-trained controls",
    "cs_notyet": "CS, not-yet-trained controls",
    "twfe": "TWFE event study",
    "sunab": "Sun & Abraham",
    "diff": "Difference estimator",
    "bayes": "Bayesian model",
}

_EST_COLS = ["estimate", "std_error", "conf_low", "conf_high"]


def _periods(values: Any, grid: np.ndarray) -> np.ndarray:
    pos = {int(s): i for i, s in enumerate(grid)}
    return np.array([pos.get(int(v), -(10**9)) for v in values], dtype=np.int64)


def _cells(frame: pd.DataFrame, grid: np.ndarray, sign: int) -> pd.DataFrame:
    from causalmem.analysis.profile import to_memorisation

    t = to_memorisation(frame, sign)
    t = t[t["std_error"].notna() & np.isfinite(t["estimate"])]
    out = pd.DataFrame(
        {
            "level": "cell",
            "group": t["group"].astype(np.int64).to_numpy(),
            "time": t["time"].astype(np.int64).to_numpy(),
            **{c: t[c].to_numpy(np.float64) for c in _EST_COLS},
        }
    )
    out["event_period"] = _periods(out["time"], grid) - _periods(out["group"], grid)
    return out


def _events(frame: pd.DataFrame, sign: int) -> pd.DataFrame:
    from causalmem.analysis.profile import to_memorisation

    t = frame[frame["event_time"].notna()]
    t = to_memorisation(t, sign)
    t = t[t["std_error"].notna() & np.isfinite(t["estimate"])]
    return pd.DataFrame(
        {
            "level": "event",
            "event_period": t["event_time"].astype(np.int64).to_numpy(),
            **{c: t[c].to_numpy(np.float64) for c in _EST_COLS},
        }
    )


def _event_steps_to_periods(e_steps: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Event time in steps → periods, on a grid with a constant spacing after its first step."""
    gaps = np.diff(grid)
    if gaps.size == 0 or not np.all(gaps == gaps[-1]):
        raise ValueError(
            "the Bayesian path is in steps; mapping it to periods needs an evenly spaced grid."
        )
    return np.round(e_steps / gaps[-1]).astype(np.int64)


def _check_request(panel: Panel, estimators: Sequence[str]) -> None:
    unknown = sorted(set(estimators) - set(ESTIMATORS))
    if unknown:
        raise ValueError(f"unknown estimators {unknown}; use some of {list(ESTIMATORS)}.")
    if not panel.is_balanced:
        raise ValueError(
            "the panel is unbalanced; the event-study estimators need every instance scored at "
            "every checkpoint (score without a plan, or LabConfig(pre_periods=None))."
        )


def _bayes_parts(
    res: AttGtResult,
    grid: np.ndarray,
    sign: int,
    *,
    level: float,
    draws: int,
    tune: int,
    seed: int,
) -> list[pd.DataFrame]:
    """Cells and event path of the Bayesian model fitted on the CS cells ``res``."""
    from causalmem.estimators.bayes import bayes_did

    b = bayes_did(res, draws=draws, tune=tune, seed=seed)
    path = b.profile(hdi_prob=level)
    # mu(e) lives on event time in steps; map it to periods on the grid.
    ev = _events(path.assign(event_time=0), sign)
    ev["event_period"] = _event_steps_to_periods(
        path.loc[path["std_error"].notna(), "event_time"].to_numpy(np.float64),
        grid,
    )
    return [_cells(b.tidy(hdi_prob=level), grid, sign), ev]


def _attgt_parts(res: AttGtResult, grid: np.ndarray, sign: int) -> list[pd.DataFrame]:
    """Cells and event path (dynamic aggregation over periods) of an ATT(g, t) result."""
    from causalmem.estimators.aggte import aggte

    dyn = aggte(res, "dynamic", event_time="periods", na_rm=True)
    return [_cells(res.tidy(), grid, sign), _events(dyn.tidy(), sign)]


class _Fitter:
    """Fits one estimator after another on a panel, sharing the never-trained CS fit."""

    def __init__(
        self,
        panel: Panel,
        outcome: str,
        sign: int,
        *,
        level: float,
        bayes_draws: int,
        bayes_tune: int,
        seed: int,
    ) -> None:
        self.panel = panel
        self.outcome = outcome
        self.sign = sign
        self.level = level
        self.alp = 1.0 - level
        self.bayes = {"draws": bayes_draws, "tune": bayes_tune, "seed": seed}
        self.grid = np.asarray(panel.steps, dtype=np.int64)
        sch = panel.schema
        self.cols = (sch.step, sch.unit, sch.cohort)  # event_study: tname, idname, gname
        self.cs_never: AttGtResult | None = None

    def _cs(self, key: str) -> AttGtResult:
        from causalmem.estimators.att_gt import att_gt

        if key == "bayes" and self.cs_never is not None:
            return self.cs_never
        res = att_gt(
            self.panel,
            yname=self.outcome,
            control_group="notyettreated" if key == "cs_notyet" else "nevertreated",
            bstrap=False,
            cband=False,
            alp=self.alp,
        )
        if key != "cs_notyet":
            self.cs_never = res
        return res

    def parts(self, key: str) -> list[pd.DataFrame]:
        """Return the cell and / or event-path frames of estimator ``key``."""
        from causalmem.estimators.event_study import event_study

        frame, grid, sign = self.panel.frame, self.grid, self.sign
        if key in ("cs_never", "cs_notyet", "bayes"):
            res = self._cs(key)
            if key == "bayes":
                return _bayes_parts(res, grid, sign, level=self.level, **self.bayes)
            return _attgt_parts(res, grid, sign)
        # twfe, sunab, diff: the estimator's own fit is the event study's ``path`` (``att_gt``:
        # the difference estimator's cells).
        es = event_study(frame, self.outcome, *self.cols, estimator=key, alp=self.alp)  # type: ignore[arg-type]
        if key == "diff":
            assert es.att_gt is not None
            return _attgt_parts(es.att_gt, grid, sign)
        return [_events(es.path.tidy(), sign)]


def estimate_all(
    panel: Panel,
    outcome: str,
    sign: int,
    *,
    estimators: Sequence[str] = ESTIMATORS,
    level: float = 0.95,
    bayes_draws: int = 500,
    bayes_tune: int = 500,
    seed: int = 0,
) -> pd.DataFrame:
    """Fit the estimators on one panel; estimates on the memorisation scale, pointwise intervals.

    Parameters
    ----------
    panel
        A balanced panel (the event-study estimators need one), e.g. ``GroundTruth.panel``.
    outcome, sign
        Outcome column and the sign turning its ATT into memorisation.
    estimators
        Keys of :data:`ESTIMATORS`.
    level
        Interval level (pointwise; HDI probability for ``bayes``).
    bayes_draws, bayes_tune
        Posterior draws and tuning steps per chain (2 chains) of :func:`~causalmem.bayes_did`.
    seed
        Seed of the Bayesian sampler.

    Returns
    -------
    pandas.DataFrame
        ``estimator, level`` (``cell`` / ``event``), ``group, time`` (cells), ``event_period``
        (checkpoints since training), ``estimate, std_error, conf_low, conf_high``.
    """
    from causalmem.errors import CausalmemWarning

    _check_request(panel, estimators)
    fitter = _Fitter(
        panel,
        outcome,
        sign,
        level=level,
        bayes_draws=bayes_draws,
        bayes_tune=bayes_tune,
        seed=seed,
    )
    parts: list[pd.DataFrame] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CausalmemWarning)
        for key in estimators:
            parts += [g.assign(estimator=key) for g in fitter.parts(key)]
    out = pd.concat(parts, ignore_index=True)
    lead = ["estimator", "level", "group", "time", "event_period"]
    return out[[*lead, *_EST_COLS]]
