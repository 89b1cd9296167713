"""Aggregation weights of ATT(g, t) and the estimated-weights term (R ``did::compute.aggte``).

Each aggregated parameter ``p`` is ``theta_p = sum_j A[j, p] att_j`` with a sparse weight matrix
``A`` over cells; its influence function is ``sum_j A[j, p] psi_j + wif_p``. With group shares
``pg_j = mean_i w_i 1{G_i = g_j}`` over a keeper set ``S_p``, R's ``wif`` simplifies to a per-unit
term ``w_i h[G_i, p]`` with
``h[k, p] = (sum_{j in S_p: g_j = k} att_j - theta_p n_kp) / sum_{j in S_p} pg_j`` with
``n_kp = |{j in S_p: g_j = k}|`` (the constants cancel), which is what :class:`AggSpec` stores.
"""

from __future__ import annotations

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


class _Builder:
    def __init__(self, n_cells: int, n_blocks: int) -> None:
        self.cols: list[tuple[Int64Array, Float64Array]] = []
        self.h: list[Float64Array] = []
        self.n_cells = n_cells
        self.n_blocks = n_blocks

    def add(self, idx: Int64Array, w: Float64Array, h: Float64Array | None = None) -> None:
        self.cols.append((idx, w))
        self.h.append(np.zeros(self.n_blocks) if h is None else h)

    def add_combo(self, cols: list[int], coef: Float64Array, h: Float64Array | None = None) -> None:
        idx = np.concatenate([self.cols[c][0] for c in cols]) if cols else np.zeros(0, np.int64)
        w = (
            np.concatenate([self.cols[c][1] * a for c, a in zip(cols, coef, strict=True)])
            if cols
            else np.zeros(0)
        )
        hh = sum((self.h[c] * a for c, a in zip(cols, coef, strict=True)), np.zeros(self.n_blocks))
        if h is not None:
            hh = hh + h
        self.add(idx, w, hh)

    def matrix(self) -> tuple[sp.csr_matrix, Float64Array]:
        rows = np.concatenate([c[0] for c in self.cols]) if self.cols else np.zeros(0, np.int64)
        vals = np.concatenate([c[1] for c in self.cols]) if self.cols else np.zeros(0)
        colid = np.concatenate([np.full(c[0].size, i) for i, c in enumerate(self.cols)])
        mat = sp.csr_matrix((vals, (rows, colid)), shape=(self.n_cells, len(self.cols)))
        return mat, np.stack(self.h, axis=1) if self.h else np.zeros((self.n_blocks, 0))


def _wif(
    idx: Int64Array, g_idx: Int64Array, pg: Float64Array, att: Float64Array, n_blocks: int
) -> Float64Array:
    s = pg[idx].sum()
    theta = np.sum(pg[idx] * att[idx]) / s
    h = np.zeros(n_blocks)
    np.add.at(h, g_idx[idx], att[idx] - theta)
    return h / s


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
        Per-cell cohort, period, cohort index, estimate and post-treatment flag.
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
    b = _Builder(n_cells, kb)
    labels: list[float] = []

    def weighted(idx: Int64Array, with_wif: bool = True) -> None:
        wts = pg[idx] / pg[idx].sum()
        b.add(idx, wts, _wif(idx, g_idx, pg, att, kb) if with_wif else None)

    if kind == "simple":
        idx = np.flatnonzero(post & (e <= max_e))
        weighted(idx)
        labels.append(np.nan)
    elif kind == "group":
        cand = np.flatnonzero(post & (e <= max_e))
        cand = cand[np.argsort(g_idx[cand], kind="stable")]
        bounds = np.append(np.searchsorted(g_idx[cand], np.arange(glist.size)), cand.size)
        for k, _ in enumerate(glist):
            idx = cand[bounds[k] : bounds[k + 1]]
            b.add(idx, np.full(idx.size, 1.0 / idx.size) if idx.size else np.zeros(0))
            labels.append(float(glist[k]))
        pgg = pg_cohort
        ests = np.array([att[c[0]] @ c[1] if c[0].size else np.nan for c in b.cols])
        s = pgg.sum()
        theta = np.sum(pgg * ests) / s
        h = np.zeros(kb)
        h[: glist.size] = (ests - theta) / s
        b.add_combo(list(range(glist.size)), pgg / s, h)
        labels.append(np.nan)
    elif kind == "dynamic":
        include = np.ones(n_cells, dtype=bool)
        eseq = np.unique(e[~np.isnan(e)])
        if balance_e is not None:
            tmax, tmin = np.nanmax(time), np.nanmin(time)
            eseq = eseq[(eseq <= balance_e) & (eseq >= balance_e - tmax + tmin)]
            include = (tmax - group) >= balance_e
        eseq = eseq[(eseq >= min_e) & (eseq <= max_e)]
        cand = np.flatnonzero(include & np.isin(e, eseq))
        cand = cand[np.argsort(e[cand], kind="stable")]
        bounds = np.searchsorted(e[cand], eseq, side="left")
        bounds = np.append(bounds, cand.size)
        for i, ev in enumerate(eseq):
            weighted(cand[bounds[i] : bounds[i + 1]])
            labels.append(float(ev))
        pos = [i for i, ev in enumerate(eseq) if ev >= 0]
        b.add_combo(pos, np.full(len(pos), 1.0 / len(pos)) if pos else np.zeros(0))
        labels.append(np.nan)
    elif kind == "calendar":
        periods = np.unique(time[~np.isnan(time)])
        periods = periods[periods >= np.nanmin(group)]
        cand = np.flatnonzero(group <= time)
        cand = cand[np.argsort(time[cand], kind="stable")]
        bounds = np.append(np.searchsorted(time[cand], periods, side="left"), cand.size)
        for i, t1 in enumerate(periods):
            weighted(cand[bounds[i] : bounds[i + 1]])
            labels.append(float(t1))
        m = len(periods)
        b.add_combo(list(range(m)), np.full(m, 1.0 / m))
        labels.append(np.nan)
    else:  # pragma: no cover - validated upstream
        raise ValueError(kind)
    mat, h = b.matrix()
    est = np.asarray(mat.T @ np.nan_to_num(att)).ravel()
    # A column touching a NaN cell is NaN (R errors unless na.rm).
    bad = np.asarray(mat.T @ np.isnan(att).astype(float)).ravel() != 0
    empty = np.diff(mat.tocsc().indptr) == 0
    est[bad | empty] = np.nan
    return AggSpec(labels=np.array(labels), weights=mat, h=h, estimate=est)
