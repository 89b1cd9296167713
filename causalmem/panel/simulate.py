"""Simulated staggered-adoption panels with a known ATT(g, t).

The data-generating process (DGP), for unit ``i`` in cohort ``g_i`` (or never treated) at the
``k``-th step ``t_k`` of the grid::

    Y_it = alpha_i + lambda_t + covariate_effect * x_i * k + tau(g_i, t) * 1{t >= g_i} + eps_it

* ``alpha_i ~ N(level_shift * r_i, unit_sd^2)``, unit effect (instance difficulty); ``r_i`` is
  the 1-based rank of the unit's cohort (0 for never treated), so ``level_shift != 0`` makes
  cohorts differ in level, which DiD differences out but a plain difference of means does not.
* ``lambda_t``: a common time effect (``trend``), the same for every unit.
* ``x_i ~ N(r_i / n_cohorts, 1)``: a unit covariate whose mean depends on the cohort. With
  ``covariate_effect != 0`` its effect grows with the step index, so *unconditional* parallel
  trends fail while parallel trends conditional on ``x`` hold.
* ``tau(g, t)``: the treatment effect, ``att(g, t, e)`` with ``e`` the event time in
  checkpoints (position of ``t`` minus position of ``g`` on the step grid); it is the same for
  every unit of a cohort, so it is both the population and the sample ATT(g, t).
* ``eps_it ~ N(0, noise_sd^2)``, independent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from causalmem.panel.panel import Panel

__all__ = ["SimulatedPanel", "memorisation_att", "simulate_panel"]

AttFunction = Callable[[np.ndarray, np.ndarray, np.ndarray], Any]


def memorisation_att(g: np.ndarray, t: np.ndarray, e: np.ndarray) -> npt.NDArray[np.float64]:
    """Return the default memorisation-like effect: ``-(2 exp(-e/2) + 0.5)`` for ``e >= 0``.

    A drop in the outcome (e.g. surprisal) that is largest at treatment (instantaneous,
    ``-2.5``) and decays to a residual ``-0.5``; 0 before treatment.

    Parameters
    ----------
    g
        Cohort (treatment step) of each cell; unused.
    t
        Step of each cell; unused.
    e
        Event time in checkpoints.

    Returns
    -------
    numpy.ndarray
        The effect per cell.

    Examples
    --------
    >>> import numpy as np
    >>> memorisation_att(np.array([3, 3]), np.array([2, 3]), np.array([-1, 0])).tolist()
    [0.0, -2.5]
    """
    e = np.asarray(e, dtype=np.float64)
    return np.where(e >= 0, -(2.0 * np.exp(-np.maximum(e, 0.0) / 2.0) + 0.5), 0.0)


@dataclass(frozen=True, slots=True, eq=False)
class SimulatedPanel:
    """A simulated long panel with its true ATT(g, t).

    Attributes
    ----------
    frame
        Columns ``unit`` (int64), ``step`` (int64), ``cohort`` (Int64, ``<NA>`` = never),
        the outcome (float64; ``"y"`` by default) and ``x`` (float64); sorted by
        (unit, step).
    truth
        One row per cohort × step cell: ``group``, ``time``, ``event_time`` (int64) and
        ``att`` (float64; 0 in pre-treatment cells).
    params
        The arguments of :func:`simulate_panel` (JSON-serialisable).
    """

    frame: pd.DataFrame
    truth: pd.DataFrame
    params: dict[str, Any] = field(default_factory=dict)

    def to_panel(self, *, include_covariate: bool = False) -> Panel:
        """Validate the frame into a :class:`~causalmem.panel.Panel`.

        Parameters
        ----------
        include_covariate
            If True, keep ``x`` as a covariate column of the panel.

        Returns
        -------
        Panel
            With the simulation parameters in ``meta["user"]["simulation"]``.

        Examples
        --------
        >>> simulate_panel().to_panel().n_units
        250
        """
        return Panel.from_frame(
            self.frame,
            unit="unit",
            step="step",
            cohort="cohort",
            outcomes=self.params["outcome"],
            covariates=("x",) if include_covariate else (),
            allow_unbalanced_panel=self.params["unbalanced_fraction"] > 0,
            meta={"simulation": self.params},
        )


def _int_grid(values: Any, name: str) -> npt.NDArray[np.int64]:
    arr = np.asarray(list(values))
    if arr.ndim != 1 or arr.size == 0 or arr.dtype.kind not in "iu":
        raise ValueError(f"{name} must be a non-empty sequence of integers; got {values!r}.")
    return arr.astype(np.int64)


def _check_design(
    steps: Sequence[int],
    cohorts: Sequence[int],
    units_per_cohort: int | Sequence[int],
    n_never: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Check the step grid, the cohorts and the cohort sizes; return them as int64 arrays."""
    step_grid = _int_grid(steps, "steps")
    if step_grid.size < 2 or (np.diff(step_grid) <= 0).any() or step_grid[0] < 0:
        raise ValueError(
            f"steps must be at least two strictly increasing non-negative integers; got "
            f"{step_grid.tolist()}."
        )
    g_grid = _int_grid(cohorts, "cohorts")
    if np.unique(g_grid).size != g_grid.size:
        raise ValueError(f"cohorts must be distinct; got {g_grid.tolist()}.")
    g_grid = np.sort(g_grid)
    bad = g_grid[~np.isin(g_grid, step_grid) | (g_grid <= step_grid[0])]
    if bad.size:
        raise ValueError(
            f"cohorts {bad.tolist()} are not steps after the first step {int(step_grid[0])}; "
            f"every cohort must be one of {step_grid.tolist()[1:]}."
        )
    n_g = g_grid.size
    sizes = np.asarray(units_per_cohort)
    if sizes.ndim > 1 or (sizes.ndim == 1 and sizes.size != n_g) or sizes.dtype.kind not in "iu":
        raise ValueError(
            f"units_per_cohort must be an integer or one integer per cohort ({n_g}); got "
            f"{units_per_cohort!r}."
        )
    sizes = np.broadcast_to(sizes, (n_g,)).astype(np.int64)
    if (sizes < 0).any() or n_never < 0 or sizes.sum() + n_never == 0:
        raise ValueError("units_per_cohort and n_never must be >= 0 with at least one unit.")
    return step_grid, g_grid, sizes


def _trend_values(
    trend: Callable[[np.ndarray], Any] | Sequence[float] | None,
    step_grid: npt.NDArray[np.int64],
    pos: npt.NDArray[np.float64],
) -> npt.NDArray[np.float64]:
    """Return the common time effect, one finite value per step."""
    n_t = step_grid.size
    if trend is None:
        lam = -np.log1p(pos)
    elif callable(trend):
        lam = np.asarray(trend(step_grid.copy()), dtype=np.float64)
    else:
        lam = np.asarray(trend, dtype=np.float64)
    if lam.shape != (n_t,) or not np.isfinite(lam).all():
        raise ValueError(f"trend must give {n_t} finite values, one per step.")
    return lam


def _true_att(
    att: AttFunction | None,
    g_grid: npt.NDArray[np.int64],
    step_grid: npt.NDArray[np.int64],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, npt.NDArray[np.float64]]:
    """Return the cohort × step grids ``G``, ``T``, event times ``E`` and the true ATT ``tau``."""
    n_t = step_grid.size
    gpos = np.searchsorted(step_grid, g_grid)
    G, T = np.meshgrid(g_grid, step_grid, indexing="ij")
    E = np.arange(n_t)[None, :] - gpos[:, None]
    tau = np.asarray((att or memorisation_att)(G, T, E), dtype=np.float64)
    try:
        tau = np.broadcast_to(tau, G.shape).copy()
    except ValueError as exc:
        raise ValueError(f"att must return one value per cell, shape {G.shape}.") from exc
    post = E >= 0
    tau = np.where(post, tau, 0.0)
    if not np.isfinite(tau).all():
        raise ValueError("att returned non-finite values.")
    return G, T, E, tau


def _drop_rows(
    frame: pd.DataFrame,
    rng: np.random.Generator,
    n: int,
    n_t: int,
    unbalanced_fraction: float,
) -> pd.DataFrame:
    """Drop a share of rows at random, keeping at least one row of every unit."""
    n_rows = n * n_t
    protected = np.arange(n) * n_t + rng.integers(n_t, size=n)
    candidates = np.setdiff1d(np.arange(n_rows), protected, assume_unique=True)
    n_drop = int(round(unbalanced_fraction * n_rows))
    if n_drop > candidates.size:
        raise ValueError(
            f"unbalanced_fraction={unbalanced_fraction} would drop whole units; use at "
            f"most {candidates.size / n_rows:.3f}."
        )
    keep = np.ones(n_rows, dtype=bool)
    keep[rng.choice(candidates, size=n_drop, replace=False)] = False
    return frame.loc[keep].reset_index(drop=True)


def simulate_panel(
    *,
    cohorts: Sequence[int] = (3, 4, 5),
    units_per_cohort: int | Sequence[int] = 50,
    n_never: int = 100,
    steps: Sequence[int] = range(1, 7),
    att: AttFunction | None = None,
    unit_sd: float = 1.0,
    noise_sd: float = 0.5,
    trend: Callable[[np.ndarray], Any] | Sequence[float] | None = None,
    level_shift: float = 0.0,
    covariate_effect: float = 0.0,
    unbalanced_fraction: float = 0.0,
    outcome: str = "y",
    seed: int | np.random.Generator = 0,
) -> SimulatedPanel:
    """Simulate a staggered-adoption long panel with a known ATT(g, t).

    See the module docstring for the data-generating process.

    Parameters
    ----------
    cohorts
        Treatment steps; each must be one of ``steps`` and later than the first step.
    units_per_cohort
        Units per cohort: one number for all, or one per cohort.
    n_never
        Never-treated units (cohort ``<NA>``).
    steps
        Increasing non-negative integer steps (checkpoints), at least two.
    att
        Treatment effect ``att(g, t, e) -> float``, vectorised over numpy arrays of equal
        shape; ``e`` is the event time in checkpoints. It is evaluated on every cohort × step
        cell and set to 0 before treatment. Default :func:`memorisation_att`.
    unit_sd
        Standard deviation of the unit effects.
    noise_sd
        Standard deviation of the idiosyncratic noise.
    trend
        Common time effect: a callable of the step array, an array with one value per step,
        or None for ``-log(1 + k)`` at the ``k``-th step (a falling loss curve).
    level_shift
        Mean unit effect per cohort rank (0 for never-treated units).
    covariate_effect
        Slope of ``x_i * k``; non-zero values break unconditional parallel trends.
    unbalanced_fraction
        Share of rows dropped at random, in ``[0, 1)``; every unit keeps at least one row.
    outcome
        Name of the outcome column.
    seed
        Seed or ``numpy.random.Generator``; the global RNG is never touched.

    Returns
    -------
    SimulatedPanel
        The frame, the true ATT(g, t) per cell and the parameters.

    Examples
    --------
    >>> sim = simulate_panel(seed=1)
    >>> sim.frame.shape, sim.truth.shape
    ((1500, 5), (18, 4))
    >>> sim.truth.query("group == 3 and time == 3")["att"].item()
    -2.5
    """
    step_grid, g_grid, sizes = _check_design(steps, cohorts, units_per_cohort, n_never)
    if not 0.0 <= unbalanced_fraction < 1.0:
        raise ValueError(f"unbalanced_fraction must be in [0, 1); got {unbalanced_fraction}.")
    if min(unit_sd, noise_sd) < 0:
        raise ValueError("unit_sd and noise_sd must be >= 0.")
    n_t, n_g = step_grid.size, g_grid.size

    rng = np.random.default_rng(seed)
    n = int(sizes.sum()) + int(n_never)
    # Cohort index per unit: 0..n_g-1 for treated, -1 for never (listed last).
    cidx = np.concatenate([np.repeat(np.arange(n_g), sizes), np.full(n_never, -1)])
    treated = cidx >= 0
    rank = (cidx + 1).astype(np.float64)  # 1-based cohort rank, 0 = never
    pos = np.arange(n_t, dtype=np.float64)
    lam = _trend_values(trend, step_grid, pos)
    G, T, E, tau = _true_att(att, g_grid, step_grid)

    x = rng.normal(rank / n_g, 1.0, size=n)
    alpha = rng.normal(level_shift * rank, unit_sd, size=n)
    eps = rng.normal(0.0, noise_sd, size=(n, n_t))
    effect = np.zeros((n, n_t))
    effect[treated] = tau[cidx[treated]]
    y = alpha[:, None] + lam[None, :] + covariate_effect * x[:, None] * pos[None, :]
    y = y + effect + eps

    unit_g = np.where(treated, g_grid[np.maximum(cidx, 0)], 0)
    frame = pd.DataFrame(
        {
            "unit": np.repeat(np.arange(n, dtype=np.int64), n_t),
            "step": np.tile(step_grid, n),
            "cohort": pd.arrays.IntegerArray(np.repeat(unit_g, n_t), np.repeat(~treated, n_t)),
            outcome: y.reshape(-1),
            "x": np.repeat(x, n_t),
        }
    )
    if unbalanced_fraction > 0:
        frame = _drop_rows(frame, rng, n, n_t, unbalanced_fraction)

    truth = pd.DataFrame(
        {
            "group": G.reshape(-1),
            "time": T.reshape(-1),
            "event_time": E.reshape(-1).astype(np.int64),
            "att": tau.reshape(-1),
        }
    )
    params: dict[str, Any] = {
        "cohorts": g_grid.tolist(),
        "units_per_cohort": sizes.tolist(),
        "n_never": int(n_never),
        "steps": step_grid.tolist(),
        "att": getattr(att, "__name__", repr(att)) if att is not None else "memorisation_att",
        "unit_sd": float(unit_sd),
        "noise_sd": float(noise_sd),
        "trend": "default" if trend is None else "custom",
        "level_shift": float(level_shift),
        "covariate_effect": float(covariate_effect),
        "unbalanced_fraction": float(unbalanced_fraction),
        "outcome": outcome,
        "seed": int(seed) if isinstance(seed, int | np.integer) else None,
    }
    return SimulatedPanel(frame=frame, truth=truth, params=params)
