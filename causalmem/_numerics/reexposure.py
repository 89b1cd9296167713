"""Numerics of the re-exposure estimands: group-time DiD cells over (g1, g2) groups.

Pure functions on a balanced wide outcome matrix ``Y[n, T]`` (units × checkpoints). A unit has a
first-exposure cohort ``g1`` (NaN: never trained) and a second-exposure cohort ``g2`` (NaN: trained
once only). Cohorts are checkpoints: cohort ``g`` holds the instances trained in the macro-batch
``(c_{k-1}, c_k = g]``; its base period is the checkpoint before it (``c_{k-1}``).

Every cell is an unconditional DiD of means with a *universal* base period ``b`` (as R ``did``'s
``base_period = "universal"``): ``ATT = mean_T(Y_c − Y_b) − mean_C(Y_c − Y_b)``. Its influence
function on the r scale (``psi / n``, so that ``se = sqrt(sum r^2)``) is ``(ΔY_i − μ_T) / n_T``
for treated units, ``−(ΔY_i − μ_C) / n_C`` for controls and 0 otherwise. Clustered inference sums
``r`` within clusters. Aggregations are fixed-weight linear combinations (weights = treated-group
sizes, fixed by the sampling design), so their influence functions are ``R @ W``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from causalmem._numerics.inference import summarise_draws
from causalmem._numerics.keyed import bootstrap_key, hash_ids, keyed_chunks
from causalmem._types import BoolArray, Float64Array

__all__ = [
    "CellEstimates",
    "aggregation_weights",
    "bootstrap",
    "cluster_sum",
    "combined_cells",
    "second_exposure_cells",
]


@dataclass(frozen=True, slots=True)
class CellEstimates:
    """Cell table and r-scale influence functions (units × cells) of one estimand."""

    cells: pd.DataFrame
    influence: Float64Array


def _base_before(times: np.ndarray, g: float) -> int:
    """Index of the checkpoint before cohort ``g`` (its base period)."""
    pos = int(np.searchsorted(times, g, side="left"))
    if pos == 0:
        raise ValueError(f"cohort {g:g} has no checkpoint before it (no base period).")
    return pos - 1


def _did_block(
    y: Float64Array, base: int, treated: BoolArray, control: BoolArray, welch: bool = False
) -> tuple[Float64Array, Float64Array, Float64Array, Float64Array]:
    """DiD of means at every time for one treated group.

    Parameters
    ----------
    y : float64[n, T]
        Outcomes of the rows considered.
    base
        Column of the base period.
    treated : bool[n]
        Treated rows.
    control : bool[n, T]
        Control rows per time.
    welch
        Scale each arm's influence by ``sqrt(n_arm / (n_arm − 1))``: the variance becomes
        ``s²_T / n_T + s²_C / n_C`` with unbiased arm variances (Welch) instead of the
        plug-in (HC0, R ``did``) variance.

    Returns
    -------
    (estimate[T], r[n, T], n_treated[T], n_control[T])
    """
    d = y - y[:, [base]]
    nt = float(treated.sum())
    mu_t = d[treated].mean(axis=0)
    cf = control.astype(np.float64)
    nc = cf.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        mu_c = (cf * d).sum(axis=0) / nc
    est = mu_t - mu_c
    r = np.zeros_like(d)
    r[treated] = (d[treated] - mu_t) / nt
    with np.errstate(divide="ignore", invalid="ignore"):
        rc = -(d - mu_c) / nc
    if welch:
        with np.errstate(divide="ignore", invalid="ignore"):
            r *= np.sqrt(nt / (nt - 1)) if nt > 1 else np.nan
            rc *= np.sqrt(nc / (nc - 1))[None, :]
    r = np.where(control, rc, r)
    est = np.where(nc > 0, est, np.nan)
    return est, r, np.full(d.shape[1], nt), nc


def _assemble(
    blocks: list[tuple[dict[str, object], Float64Array, Float64Array, Float64Array, Float64Array]],
    times: np.ndarray,
    rows: list[np.ndarray],
    n: int,
) -> CellEstimates:
    """Stack per-group blocks into the cell table and the (units × cells) influence matrix."""
    frames, cols = [], []
    for (meta, est, r, nt, nc), idx in zip(blocks, rows, strict=True):
        g2 = float(meta["g2"])  # type: ignore[arg-type]
        base = int(meta["base"])  # type: ignore[call-overload]
        pos_g = int(np.searchsorted(times, g2 if np.isfinite(g2) else meta["g1"]))  # type: ignore[call-overload]
        keep = np.arange(times.size) != base
        f = pd.DataFrame(
            {
                "g1": float(meta["g1"]),  # type: ignore[arg-type]
                "g2": g2,
                "time": times[keep].astype(np.float64),
                "base": float(times[base]),
                "event_period": (np.arange(times.size) - pos_g)[keep],
                "phase": np.where(
                    times[keep] < times[base],
                    "pre",
                    np.where(
                        times[keep] >= (g2 if np.isfinite(g2) else meta["g1"]), "post", "between"
                    ),  # type: ignore[operator]
                ),
                "estimate": est[keep],
                "n_treated": nt[keep].astype(np.int64),
                "n_control": nc[keep].astype(np.int64),
            }
        )
        frames.append(f)
        full = np.zeros((n, int(keep.sum())))
        full[idx] = r[:, keep]
        cols.append(full)
    if not frames:
        raise ValueError("no (g1, g2) group to estimate.")
    cells = pd.concat(frames, ignore_index=True)
    infl = np.concatenate(cols, axis=1)
    infl[:, ~np.isfinite(cells["estimate"].to_numpy())] = 0.0
    return CellEstimates(cells=cells, influence=infl)


def second_exposure_cells(
    y: Float64Array,
    times: np.ndarray,
    g1: Float64Array,
    g2: Float64Array,
    *,
    control: str = "notyet",
    welch: bool = False,
) -> CellEstimates:
    """ATT of the second exposure per (g1, g2, c): re-exposed vs once-exposed so far, same g1.

    Parameters
    ----------
    y : float64[n, T]
        Balanced outcomes (memorisation scale or raw; the DiD is linear).
    times : int[T]
        Sorted checkpoints.
    g1, g2 : float64[n]
        First- and second-exposure cohorts (NaN: never / not re-exposed).
    control
        ``"notyet"``: controls at ``c`` are same-``g1`` units trained once only or re-exposed
        after ``max(c, b)`` (not yet re-exposed); ``"once"``: same-``g1`` units trained once only.
    welch
        Small-sample (Welch) scaling of the influence functions (see :func:`_did_block`).

    Returns
    -------
    CellEstimates
        Columns ``g1, g2, time, base, event_period, estimate, n_treated, n_control``.
    """
    n, _ = y.shape
    blocks, rows = [], []
    groups = np.unique(np.column_stack([g1, g2])[np.isfinite(g1) & np.isfinite(g2)], axis=0)
    for a, b in groups:
        base = _base_before(times, b)
        idx = np.flatnonzero(g1 == a)
        sub2 = g2[idx]
        treated = sub2 == b
        once = np.isnan(sub2)
        if control == "once":
            ctrl = np.repeat(once[:, None], times.size, axis=1)
        else:
            limit = np.maximum(times, times[base]).astype(np.float64)
            later = (sub2[:, None] > limit[None, :]) & (sub2 != b)[:, None]
            ctrl = once[:, None] | np.nan_to_num(later, nan=0).astype(bool)
        est, r, nt, nc = _did_block(y[idx], base, treated, ctrl, welch)
        blocks.append(({"g1": a, "g2": b, "base": base}, est, r, nt, nc))
        rows.append(idx)
    return _assemble(blocks, np.asarray(times), rows, n)


def combined_cells(
    y: Float64Array,
    times: np.ndarray,
    g1: Float64Array,
    g2: Float64Array,
    *,
    control: str = "never",
    welch: bool = False,
) -> CellEstimates:
    """ATT of both exposures per (g1, g2, c) relative to never trained (base before ``g1``).

    ``control="never"``: never-trained units; ``"notyet"``: also units first trained after
    ``max(c, b1)``; ``welch`` as in :func:`second_exposure_cells`. Groups trained once only
    (``g2`` NaN) are estimated too (their path is the first-exposure effect without
    re-exposure); their ``event_period`` counts from ``g1``.
    """
    n, _ = y.shape
    blocks, rows = [], []
    key2 = np.where(np.isfinite(g2), g2, np.inf)
    groups = np.unique(np.column_stack([g1, key2])[np.isfinite(g1)], axis=0)
    never = np.isnan(g1)
    for a, b in groups:
        base = _base_before(times, a)
        treated = (g1 == a) & (key2 == b)
        if control == "never":
            ctrl = np.repeat(never[:, None], times.size, axis=1)
        else:
            limit = np.maximum(times, times[base]).astype(np.float64)
            later = np.nan_to_num(g1[:, None] > limit[None, :], nan=0).astype(bool)
            ctrl = never[:, None] | later
        idx = np.flatnonzero(treated | ctrl.any(axis=1))
        est, r, nt, nc = _did_block(y[idx], base, treated[idx], ctrl[idx], welch)
        blocks.append(
            ({"g1": a, "g2": b if np.isfinite(b) else np.nan, "base": base}, est, r, nt, nc)
        )
        rows.append(idx)
    return _assemble(blocks, np.asarray(times), rows, n)


def cluster_sum(influence: Float64Array, codes: np.ndarray | None) -> Float64Array:
    """Sum r-scale influence rows within clusters (``codes``: 0 … G−1; None: units)."""
    if codes is None:
        return influence
    out = np.zeros((int(codes.max()) + 1, influence.shape[1]))
    np.add.at(out, codes, influence)
    return out


def aggregation_weights(cells: pd.DataFrame, keys: list[str]) -> tuple[pd.DataFrame, Float64Array]:
    """Weights (cells × labels) averaging cells within ``keys``, weights ∝ ``n_treated``.

    Cells with a NaN estimate get weight 0. Returns the label frame and ``W``.
    """
    ok = np.isfinite(cells["estimate"].to_numpy())
    lab = cells.loc[ok, keys].drop_duplicates().sort_values(keys).reset_index(drop=True)
    code = cells[keys].merge(lab.reset_index(), on=keys, how="left")["index"].to_numpy()
    w = np.zeros((len(cells), len(lab)))
    nt = cells["n_treated"].to_numpy(np.float64)
    sel = np.flatnonzero(ok)
    w[sel, code[sel].astype(np.int64)] = nt[sel]
    w /= w.sum(axis=0, keepdims=True)
    return lab, w


def bootstrap(
    r_cluster: Float64Array,
    *,
    keys: np.ndarray,
    n_units: int,
    biters: int,
    alp: float,
    seed: int,
) -> tuple[Float64Array, float]:
    """Multiplier (Rademacher) bootstrap SEs and the sup-t critical value over columns.

    The multipliers are keyed by (seed, the unit or cluster id of each row of ``r_cluster``:
    ``keys``), as ``att_gt``'s are (:mod:`causalmem._numerics.keyed`), so the draws do not
    depend on the order of the rows.
    """
    g, k = r_cluster.shape
    zb = np.empty((k, biters))
    at = 0
    for v in keyed_chunks(hash_ids(keys), bootstrap_key(seed), biters):
        zb[:, at : at + v.shape[1]] = r_cluster.T @ v.astype(np.float64)
        at += v.shape[1]
    s = summarise_draws(zb, n_units=n_units, n_clusters=g, alp=alp)
    return s.se, s.crit_val
