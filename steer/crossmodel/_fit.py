"""Closed-form linear fits shared by the embedding and the context map (float64)."""

from __future__ import annotations

import numpy as np


def _r2(y: np.ndarray, pred: np.ndarray) -> float:
    """``1 - SS_res / SS_tot`` pooled over columns (``SS_tot`` around the column means)."""
    if len(y) == 0:
        return float("nan")
    ss_res = float(((y - pred) ** 2).sum())
    ss_tot = float(((y - y.mean(axis=0)) ** 2).sum())
    return 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")


def _held_out(n: int, share: float, seed: int) -> np.ndarray:
    """Boolean mask of ``round(share * n)`` rows drawn at random (``seed``) to hold out."""
    rng = np.random.default_rng(seed)
    held = np.zeros(n, dtype=bool)
    n_held = int(round(float(share) * n))
    if n_held:
        held[rng.choice(n, size=n_held, replace=False)] = True
    return held


def _least_squares(x: np.ndarray, y: np.ndarray, ridge: float) -> np.ndarray:
    """``argmin_B ||Y - X B||_F^2 + ridge ||B||_F^2`` (normal equations when ``ridge > 0``)."""
    if ridge > 0:
        return np.asarray(np.linalg.solve(x.T @ x + ridge * np.eye(x.shape[1]), x.T @ y))
    return np.asarray(np.linalg.lstsq(x, y, rcond=None)[0])
