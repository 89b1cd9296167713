"""Aggregation weights of ATT(g, t) and the estimated-weights term (R ``did::compute.aggte``).

Each aggregated parameter ``p`` is ``theta_p = sum_j A[j, p] att_j`` with a sparse weight matrix
``A`` over cells; its influence function is ``sum_j A[j, p] psi_j + wif_p``. With group shares
``pg_j = mean_i w_i 1{G_i = g_j}`` over a keeper set ``S_p``, R's ``wif`` simplifies to a per-unit
term ``w_i h[G_i, p]`` with
``h[k, p] = (sum_{j in S_p: g_j = k} att_j - theta_p n_kp) / sum_{j in S_p} pg_j`` with
``n_kp = |{j in S_p: g_j = k}|`` (the constants cancel), which is what :class:`AggSpec` stores.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from causalmem._types import BoolArray, Float64Array, Int64Array


@dataclass(frozen=True, slots=True)
class AggSpec:
    """Columns of an aggregation.

    labels : float64[P]
        Event time, group or period of each column (NaN for the overall column).
    weights : sparse[J, P]
    h : float64[K + 1, P]
        Weight-estimation term per cohort block (psi scale, multiplied by ``w_i``).
    estimate : float64[P]
    """

    labels: Float64Array
    weights: sp.csr_matrix
    h: Float64Array
    estimate: Float64Array


def _segments(
    cells: Int64Array,
    seg: Int64Array,
    n_seg: int,
    *,
    pg: Float64Array,
    att: Float64Array,
    g_idx: Int64Array,
    n_cells: int,
    n_blocks: int,
    wif: bool,
) -> tuple[sp.csr_matrix, Float64Array, Float64Array]:
    """Columns ``p`` averaging cells ``cells[seg == p]`` with weights ``pg / sum(pg)``.

    Returns the sparse weights ``[J, n_seg]``, the weight-estimation term ``[K + 1, n_seg]``
    (zero unless ``wif``) and the estimates (NaN for empty segments).
    """
    pgc = pg[cells]
    tot = np.bincount(seg, weights=pgc, minlength=n_seg)
    with np.errstate(invalid="ignore", divide="ignore"):
        w = pgc / tot[seg]
    mat = sp.csr_matrix((w, (cells, seg)), shape=(n_cells, n_seg))
    est = np.bincount(seg, weights=w * att[cells], minlength=n_seg).astype(np.float64)
    est[np.bincount(seg, minlength=n_seg) == 0] = np.nan
    h = np.zeros(n_blocks * n_seg)
    if wif and cells.size:
        vals = (att[cells] - est[seg]) / tot[seg]
        h += np.bincount(g_idx[cells] * n_seg + seg, weights=vals, minlength=n_blocks * n_seg)
    return mat, h.reshape(n_blocks, n_seg), est


def _grouped(keys: Float64Array, cand: Int64Array, labels: Float64Array) -> Int64Array:
    """Segment id (position in ``labels``) of each candidate cell's key."""
    return np.searchsorted(labels, keys[cand]).astype(np.int64)


def build_aggregation(
    kind: str,
    *,
    group: Float64Array,
    time: Float64Array,
    g_idx: Int64Array,
    att: Float64Array,
    post: BoolArray,
    pg_cohort: Float64Array,
    glist: Float64Array,
    min_e: float,
    max_e: float,
    balance_e: float | None,
) -> AggSpec:
    """Weights and weight-estimation terms of an R ``did`` aggregation.

    Parameters
    ----------
    kind
        ``"simple"``, ``"dynamic"``, ``"group"`` or ``"calendar"``.
    group, time, g_idx, att, post
        Per-cell cohort, period, cohort index, estimate and post-treatment flag (cells to leave
        out have NaN ``group``/``time`` and ``post`` False).
    pg_cohort : float64[K]
        ``mean_i w_i 1{G_i = g}`` per cohort.
    glist
        Cohorts.
    min_e, max_e, balance_e
        Event-time window and balancing (R ``aggte``).

    Returns
    -------
    AggSpec
        The last column is the overall parameter (for ``simple`` it is the only one).
    """
    n_cells = att.size
    kb = glist.size + 1
    pg = pg_cohort[g_idx]
    e = time - group
    segments = functools.partial(
        _segments, pg=pg, att=att, g_idx=g_idx, n_cells=n_cells, n_blocks=kb
    )

    if kind == "simple":
        cand = np.flatnonzero(post & (e <= max_e))
        mat, h, est = segments(cand, np.zeros(cand.size, np.int64), 1, wif=True)
        return AggSpec(labels=np.array([np.nan]), weights=mat, h=h, estimate=est)

    if kind == "group":
        labels = glist.astype(np.float64)
        cand = np.flatnonzero(post & (e <= max_e))
        seg = g_idx[cand].astype(np.int64)
        # Within a cohort pg is constant, so pg-weights are R's equal weights.
        mat, h, est = segments(cand, seg, labels.size, wif=False)
        s = pg_cohort.sum()
        coef = pg_cohort / s
        theta = np.nansum(coef * est)
        h_over = np.zeros(kb)
        h_over[: glist.size] = (est - theta) / s  # correct wif over cohorts (R indexes cells)
    elif kind == "dynamic":
        include = np.ones(n_cells, dtype=bool)
        labels = np.unique(e[~np.isnan(e)])
        if balance_e is not None:
            tmax, tmin = np.nanmax(time), np.nanmin(time)
            labels = labels[(labels <= balance_e) & (labels >= balance_e - tmax + tmin)]
            include = (tmax - group) >= balance_e
        labels = labels[(labels >= min_e) & (labels <= max_e)]
        cand = np.flatnonzero(include & np.isin(e, labels))
        mat, h, est = segments(cand, _grouped(e, cand, labels), labels.size, wif=True)
        pos = labels >= 0
        coef = np.where(pos, 1.0 / max(int(pos.sum()), 1), 0.0)
        h_over = np.zeros(kb)
    elif kind == "calendar":
        labels = np.unique(time[~np.isnan(time)])
        labels = labels[labels >= np.nanmin(group)]
        cand = np.flatnonzero((group <= time) & np.isin(time, labels))
        mat, h, est = segments(cand, _grouped(time, cand, labels), labels.size, wif=True)
        coef = np.full(labels.size, 1.0 / max(labels.size, 1))
        h_over = np.zeros(kb)
    else:  # pragma: no cover - validated upstream
        raise ValueError(kind)
    over_w = sp.csr_matrix(mat @ coef[:, None])
    over_h = h @ coef + h_over
    over_est = float(np.sum(coef * est)) if coef.any() else np.nan
    return AggSpec(
        labels=np.append(labels, np.nan),
        weights=sp.hstack([mat, over_w], format="csr"),
        h=np.column_stack([h, over_h]),
        estimate=np.append(est, over_est),
    )
