"""Simulated two-exposure panels with known re-exposure effects (for tests and demos).

Data-generating process, unit ``i`` with first-exposure cohort ``g1_i`` (or never trained) and
second-exposure cohort ``g2_i`` (or trained once), ``k`` the position of ``t`` on the grid::

    Y_it = alpha_i + lambda_t + cohort_trend * r(g1_i) * k
           + tau1(g1_i, e1) 1{t >= g1_i} + tau2(g1_i, g2_i, e2) 1{t >= g2_i} + eps_it

* ``alpha_i ~ N(0, unit_sd^2)``, ``lambda_t`` a common trend, ``eps ~ N(0, noise_sd^2)``.
* ``r(g1)``: 1-based rank of the first cohort (0 for never trained), so ``cohort_trend != 0``
  gives each first-exposure cohort its own linear trend: parallel trends hold *within* a first
  cohort (the second-exposure design) but not between trained and never-trained instances.
* ``e1``, ``e2``: checkpoints since ``g1`` and ``g2``. Defaults: ``tau1 = 2 exp(-e1 / 2) + 0.5``
  and ``tau2 = (1 + 0.2 r(g1)) exp(-e2 / 3) + 0.3`` (re-memorisation that decays and differs by
  first cohort).
* Second cohorts: each trained unit is re-exposed with probability ``1 - p_once``, in a cohort
  drawn uniformly among ``second_cohorts`` after its ``g1``.

The effects are the same for every unit of a group, so they are both the population and the
sample ATTs: the ``truth`` table holds them exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pandas as pd

__all__ = ["SimulatedReexposure", "simulate_reexposure"]

Effect1 = Callable[[np.ndarray, np.ndarray], npt.NDArray[np.float64]]
Effect2 = Callable[[np.ndarray, np.ndarray, np.ndarray], npt.NDArray[np.float64]]


def _tau1(rank: np.ndarray, e: np.ndarray) -> npt.NDArray[np.float64]:
    return np.asarray(2.0 * np.exp(-e / 2.0) + 0.5, dtype=np.float64)


def _tau2(rank: np.ndarray, g2: np.ndarray, e: np.ndarray) -> npt.NDArray[np.float64]:
    return np.asarray((1.0 + 0.2 * rank) * np.exp(-e / 3.0) + 0.3, dtype=np.float64)


@dataclass(frozen=True, eq=False)
class SimulatedReexposure:
    """A simulated two-exposure panel and its true effects.

    Attributes
    ----------
    frame
        Long balanced panel: ``unit, step, cohort`` (first exposure, ``NaN`` never trained),
        ``cohort2`` (second exposure, ``NaN`` trained once), ``batch`` (cluster id) and ``y``.
    truth
        Per (g1, g2, time) of the trained groups: ``second`` (true ATT of the second exposure,
        0 before ``g2``) and ``combined`` (true effect of both exposures vs never trained).
    """

    frame: pd.DataFrame = field(repr=False)
    truth: pd.DataFrame = field(repr=False)


def simulate_reexposure(
    *,
    steps: Sequence[int] = (0, 10, 20, 30, 40, 50, 60, 70, 80),
    first_cohorts: Sequence[int] = (10, 20, 30),
    second_cohorts: Sequence[int] = (50, 60, 70),
    n_per_cohort: int = 300,
    n_never: int = 300,
    p_once: float = 0.3,
    cohort_trend: float = 0.0,
    unit_sd: float = 1.0,
    noise_sd: float = 0.5,
    tau1: Effect1 | None = None,
    tau2: Effect2 | None = None,
    batch_size: int = 10,
    seed: int = 0,
) -> SimulatedReexposure:
    """Simulate a balanced two-exposure panel with known effects (see the module docstring).

    Parameters
    ----------
    steps
        Checkpoint grid (sorted, starting before the first cohort).
    first_cohorts, second_cohorts
        Checkpoints of the first and second exposures (each after the grid's first step).
    n_per_cohort, n_never
        Units per first cohort and never-trained units.
    p_once
        Probability that a trained unit is not re-exposed.
    cohort_trend
        Slope of the first-cohort-specific linear trends.
    unit_sd, noise_sd
        Unit-effect and idiosyncratic noise standard deviations.
    tau1, tau2
        Effects ``tau1(rank_g1, e1)`` and ``tau2(rank_g1, g2, e2)`` (vectorised).
    batch_size
        Consecutive units per ``batch`` (a cluster variable).
    seed
        Seed.

    Returns
    -------
    SimulatedReexposure
    """
    grid = np.asarray(steps, dtype=np.int64)
    f1 = np.asarray(first_cohorts, dtype=np.int64)
    f2 = np.asarray(second_cohorts, dtype=np.int64)
    if not (np.isin(f1, grid).all() and np.isin(f2, grid).all()):
        raise ValueError("first_cohorts and second_cohorts must be steps of the grid.")
    if (f1 <= grid.min()).any() or (f2 <= grid.min()).any():
        raise ValueError("cohorts must come after the first checkpoint (their base period).")
    if not 0 <= p_once <= 1:
        raise ValueError("p_once must lie in [0, 1].")
    t1, t2 = tau1 or _tau1, tau2 or _tau2
    rng = np.random.default_rng(seed)
    g1 = np.concatenate([np.repeat(f1.astype(np.float64), n_per_cohort), np.full(n_never, np.nan)])
    n = g1.size
    g2 = np.full(n, np.nan)
    for c in f1:  # one draw per cohort, vectorised over its units
        idx = np.flatnonzero(g1 == c)
        later = f2[f2 > c]
        if later.size == 0:
            continue
        pick = later[rng.integers(0, later.size, idx.size)].astype(np.float64)
        g2[idx] = np.where(rng.random(idx.size) < p_once, np.nan, pick)
    rank = np.where(np.isnan(g1), 0, np.searchsorted(f1, np.nan_to_num(g1)) + 1).astype(np.float64)
    pos = {int(s): i for i, s in enumerate(grid)}
    k = np.arange(grid.size, dtype=np.float64)
    p1 = np.array([pos.get(int(x), 0) if np.isfinite(x) else 0 for x in g1], dtype=np.float64)
    p2 = np.array([pos.get(int(x), 0) if np.isfinite(x) else 0 for x in g2], dtype=np.float64)
    e1 = k[None, :] - p1[:, None]
    e2 = k[None, :] - p2[:, None]
    on1 = np.isfinite(g1)[:, None] & (e1 >= 0)
    on2 = np.isfinite(g2)[:, None] & (e2 >= 0)
    eff1 = np.where(on1, t1(np.broadcast_to(rank[:, None], e1.shape), np.maximum(e1, 0)), 0.0)
    eff2 = np.where(
        on2,
        t2(
            np.broadcast_to(rank[:, None], e2.shape),
            np.broadcast_to(np.nan_to_num(g2)[:, None], e2.shape),
            np.maximum(e2, 0),
        ),
        0.0,
    )
    lam = 0.3 * k + 0.5 * np.sin(k)
    y = (
        rng.normal(0, unit_sd, n)[:, None]
        + lam[None, :]
        + cohort_trend * rank[:, None] * k[None, :]
        + eff1
        + eff2
        + rng.normal(0, noise_sd, (n, grid.size))
    )
    frame = pd.DataFrame(
        {
            "unit": np.repeat(np.arange(n), grid.size),
            "step": np.tile(grid, n),
            "cohort": np.repeat(g1, grid.size),
            "cohort2": np.repeat(g2, grid.size),
            "batch": np.repeat(np.arange(n) // batch_size, grid.size),
            "y": y.reshape(-1),
        }
    )
    trained = np.isfinite(g1)
    key = pd.DataFrame({"g1": g1, "g2": g2, "row": np.arange(n)})[trained]
    first = key.groupby(["g1", "g2"], dropna=False)["row"].first().reset_index()
    rows = first["row"].to_numpy()
    truth = pd.DataFrame(
        {
            "g1": np.repeat(first["g1"].to_numpy(), grid.size),
            "g2": np.repeat(first["g2"].to_numpy(), grid.size),
            "time": np.tile(grid, len(first)).astype(np.float64),
            "second": eff2[rows].reshape(-1),
            "combined": (eff1 + eff2)[rows].reshape(-1),
        }
    )
    return SimulatedReexposure(frame=frame, truth=truth)
