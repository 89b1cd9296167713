"""Violation path of the Bayesian sensitivity model (NumPy part; see :mod:`.sensitivity`)."""

from __future__ import annotations

from dataclasses import dataclass

from causalmem._types import Float64Array


@dataclass(frozen=True)
class _Violation:
    """A Gaussian violation path ``delta`` on period event times with a fixed prior."""

    grid: Float64Array  # period event times of delta's free values
    design: Float64Array  # [n_cells, n_grid]: delta(e_t) - delta(e_b) per cell (unitless)
    precision: Float64Array  # prior precision of delta, data units^-2
    scale: float  # prior SD s of the second differences, data units
    text: str
