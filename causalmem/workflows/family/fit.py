"""Fit ``att_gt`` on every model of a family: per-model profiles and stacked tidy views."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from causalmem.analysis.profile import MemorisationProfile, metric_sign
from causalmem.results.attgt import AttGtResult
from causalmem.workflows.family.build import Family

__all__ = ["FamilyFit", "fit_family"]


def _cohort_mean_lr(schedule: pd.DataFrame, groups: np.ndarray, steps: np.ndarray) -> pd.DataFrame:
    """Mean LR over each macro-batch ``(c_{k-1}, c_k]`` of the checkpoint grid."""
    grid = np.unique(np.append(steps.astype(float), 0.0))
    s = schedule["step"].to_numpy(dtype=float)
    lr = schedule["lr"].to_numpy(dtype=float)
    rows = []
    for g in np.unique(groups):
        k = int(np.searchsorted(grid, g))
        lo = grid[k - 1] if k > 0 else 0.0
        sel = (s > lo) & (s <= g)
        if sel.any():
            val = float(lr[sel].mean())
        else:
            val = float(np.interp(g, s, lr)) if s.size else float("nan")
        rows.append({"group": float(g), "lr_mean": val})
    return pd.DataFrame(rows)


@dataclass(frozen=True, eq=False)
class FamilyFit:
    """ATT(g, c) of one outcome for every model, on the memorisation scale.

    ``results`` are the raw :class:`AttGtResult` (the joint bootstrap needs them); the tidy views
    add a ``model`` column, ordered smallest first.
    """

    family: Family
    outcome: str
    sign: int
    results: Mapping[str, AttGtResult]
    profiles: Mapping[str, MemorisationProfile]

    def cells(self) -> pd.DataFrame:
        """Every ATT(g, c) cell of every model (memorisation scale) with ``model``."""
        return self._stack(lambda p: p.tidy())

    def path(self) -> pd.DataFrame:
        """Event-time path theta(e) of every model."""
        return self._stack(lambda p: p.path.dropna(subset=["event_time"]))  # type: ignore[union-attr]

    def persistent(self) -> pd.DataFrame:
        """Return persistent memorisation theta(e), ``e >= 0``, of every model."""
        return self._stack(lambda p: p.persistent().dropna(subset=["event_time"]))

    def instantaneous(self) -> pd.DataFrame:
        """tau(g, g) per model with the macro-batch's mean LR of that model (``lr_mean``)."""
        frames = []
        for m in self.family.models:
            inst = self.profiles[m.name].instantaneous()
            lr = _cohort_mean_lr(m.lr, inst["group"].to_numpy(), m.panel.steps)
            frames.append(inst.merge(lr, on="group", how="left").assign(model=m.name))
        return pd.concat(frames, ignore_index=True)

    def residual(self) -> pd.DataFrame:
        """tau(g, T) at each model's epoch boundary T (the last checkpoint <= T), ``at`` column."""
        frames = []
        for m in self.family.models:
            steps = m.panel.steps
            at = float(steps[steps <= m.epoch_end].max())
            frames.append(self.profiles[m.name].residual(at=at).assign(model=m.name, at=at))
        return pd.concat(frames, ignore_index=True)

    def pretrends(self) -> pd.DataFrame:
        """Pre-trend (placebo) summary and joint Wald test per model."""
        return pd.DataFrame(
            [{"model": n, **self.profiles[n].pretrend()} for n in self.family.names]
        )

    def glance(self) -> pd.DataFrame:
        """One row per model: :meth:`AttGtResult.glance` with ``model``."""
        return pd.concat(
            [self.results[n].glance().assign(model=n) for n in self.family.names],
            ignore_index=True,
        )

    def _stack(self, view: Callable[[MemorisationProfile], pd.DataFrame]) -> pd.DataFrame:
        return pd.concat(
            [view(self.profiles[n]).assign(model=n) for n in self.family.names],
            ignore_index=True,
        )


def fit_family(
    family: Family,
    outcome: str,
    *,
    biters: int = 1000,
    alp: float = 0.05,
    seed: int = 1234,
    sign: int | None = None,
) -> FamilyFit:
    """Fit ``att_gt`` (never-trained controls, varying base) on every model's panel.

    Parameters
    ----------
    family
        The models.
    outcome
        Outcome column (``logprob``, ``sup_seq``, ``acc_seq``, ``entr_seq``, ``avg_rank``).
    biters, alp, seed
        Multiplier bootstrap for each model's uniform band (same seed for every model).
    sign
        Memorisation sign (default from the outcome name: -1 surprisal/entropy/rank).

    Returns
    -------
    FamilyFit
    """
    from causalmem.errors import CausalmemWarning
    from causalmem.estimators.att_gt import att_gt

    s = metric_sign(outcome) if sign is None else sign
    results: dict[str, AttGtResult] = {}
    profiles: dict[str, MemorisationProfile] = {}
    for m in family.models:
        if outcome not in m.panel.schema.outcomes:
            raise KeyError(
                f"{m.name}: no outcome {outcome!r} in its panel; it has {m.panel.schema.outcomes}."
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CausalmemWarning)
            res = att_gt(
                m.panel,
                yname=outcome,
                allow_unbalanced_panel=not m.panel.is_balanced,
                bstrap=biters > 0,
                biters=max(biters, 1),
                alp=alp,
                seed=seed,
            )
        results[m.name] = res
        profiles[m.name] = MemorisationProfile.from_result(res, metric=outcome, sign=s)
    return FamilyFit(family=family, outcome=outcome, sign=s, results=results, profiles=profiles)
