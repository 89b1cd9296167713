"""Dense influence functions: covariates, unbalanced panels, clusters that span cohorts.

Each cell is a 2x2 DiD on the units observed at both its outcome and base periods
(``dr`` / ``reg`` / ``ipw`` with covariates, or the difference of means without). The unit-level
influence function ``psi = (n / n1) inf`` (R ``did`` scaling) is stored on the r scale
``r = psi / n = inf / n1``, summed within clusters: ``rc`` is ``[n_clusters, J]``.
Cost is O(n J) memory, so this path is for moderate panels; the structured path
(:mod:`causalmem._numerics.structured`) handles the large balanced case without covariates.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import scipy.sparse as sp

from causalmem._numerics.cells import CellLayout
from causalmem._numerics.drdid import ESTIMATORS, OVERLAP_LIMIT, FitError, logit_fit, mean_did
from causalmem._numerics.structured import CellEstimates
from causalmem._types import BoolArray, Float32Array, Float64Array, Int64Array


class DenseIF:
    """Cells, analytic SEs, bootstrap and aggregation IFs from an explicit IF matrix.

    Parameters
    ----------
    y : float64[n, T]
        Outcomes (NaN where a unit is not observed).
    cohort_idx : int64[n]
        Cohort block of each unit (``K`` = never treated).
    w : float64[n]
        Sampling weights (time-invariant).
    cluster : int64[n]
        Cluster code of each unit (``arange(n)`` for unit-level clustering).
    cells : CellLayout
    x : float64[n, T, k] or None
        Covariates with intercept (base-period values are used), or None for no covariates.
    est_method
        ``"dr"``, ``"reg"`` or ``"ipw"`` (ignored without covariates, where all coincide).
    on_fail
        Called with ``(cell_index, message)`` when a cell cannot be estimated.
    """

    def __init__(
        self,
        y: Float64Array,
        cohort_idx: Int64Array,
        w: Float64Array,
        cluster: Int64Array,
        cells: CellLayout,
        x: Float64Array | None,
        est_method: str,
        on_fail: Callable[[int, str], None],
        keys: np.ndarray | None = None,
    ) -> None:
        n = y.shape[0]
        self.keys = keys
        self.n_units = n
        self.cells = cells
        n_c = int(cluster.max()) + 1 if n else 0
        self.n_clusters = n_c
        kb = cells.glist.size + 1
        self._cmat = sp.csr_matrix((np.ones(n), (cluster, np.arange(n))), shape=(n_c, n))
        self.omega_c = np.asarray(
            (self._cmat @ sp.csr_matrix((w, (np.arange(n), cohort_idx)), shape=(n, kb))).todense()
        )
        j_n = cells.n_cells
        r = np.zeros((n, j_n))
        att = np.full(j_n, np.nan)
        n_t = np.zeros(j_n)
        n_ctl = np.zeros(j_n)
        observed = ~np.isnan(y)
        k_of_unit = cohort_idx
        est = ESTIMATORS[est_method] if x is not None else None
        for j in range(j_n):
            g, t, b, k0 = cells.g_idx[j], cells.t_idx[j], cells.b_idx[j], cells.k0[j]
            treat = k_of_unit == g
            ctrl = (k_of_unit >= k0) & ~treat
            both = observed[:, t] & observed[:, b]
            treat &= both
            ctrl &= both
            n_t[j], n_ctl[j] = treat.sum(), ctrl.sum()
            if cells.reference[j]:
                att[j] = 0.0
                continue
            if n_t[j] == 0 or n_ctl[j] == 0:
                on_fail(j, "no treated units" if n_t[j] == 0 else "no comparison units")
                continue
            sub: BoolArray = treat | ctrl
            dy = y[sub, t] - y[sub, b]
            d = treat[sub].astype(np.float64)
            ws = w[sub]
            try:
                if est is None:
                    res = mean_did(dy, d, ws)
                else:
                    assert x is not None
                    xb = x[sub, b]
                    if est_method in ("dr", "ipw"):
                        why = overlap_violation(d, xb)
                        if why is not None:
                            on_fail(j, why)
                            continue
                    res = est(dy, d, xb, ws)
            except (FitError, np.linalg.LinAlgError) as exc:
                on_fail(j, str(exc))
                continue
            att[j] = res.att
            r[sub, j] = res.inf / sub.sum()
        self.rc = np.asarray(self._cmat @ r) if n_c != n or not _is_identity(cluster) else r
        with np.errstate(invalid="ignore"):
            se = np.sqrt(np.sum(self.rc**2, axis=0))
        se[np.isnan(att) | cells.reference] = np.nan
        self.est = cell_estimates(att, se, n_t, n_ctl)

    def draws(
        self, multipliers: Iterable[Float32Array], biters: int
    ) -> tuple[Float32Array, Float32Array]:
        """Draws for given multipliers (``[n_clusters, bsz]`` blocks)."""
        out = np.empty((self.cells.n_cells, biters), dtype=np.float32)
        om = np.empty((self.omega_c.shape[1], biters), dtype=np.float32)
        rt = self._rc_transposed()
        start = 0
        for v in multipliers:
            bsz = v.shape[1]
            out[:, start : start + bsz] = rt @ v
            om[:, start : start + bsz] = self.omega_c.T @ v
            start += bsz
        if start != biters:
            raise ValueError(f"multipliers gave {start} draws, expected {biters}.")
        out[np.isnan(self.est.att)] = np.nan
        return out, om

    def _rc_transposed(self) -> Any:
        """``rc.T`` as the draws multiply it (a subclass may keep it sparse)."""
        return self.rc.T

    def combine(self, weights: sp.csr_matrix, h: Float64Array) -> Float64Array:
        """Cluster-level r-scale IF of ``cells @ weights`` plus the weight-estimation term."""
        rc = np.nan_to_num(self.rc)
        return np.asarray(sp.csr_matrix(weights).T @ rc.T).T + self.omega_c @ h / self.n_units

    def sum_squares(self, weights: sp.csr_matrix, h: Float64Array) -> Float64Array:
        """``sum_c r_cp^2`` per column of :meth:`combine`."""
        r = self.combine(weights, h)
        return np.einsum("ij,ij->j", r, r)


def overlap_violation(d: Float64Array, x: Float64Array) -> str | None:
    """Why a cell violates overlap, or ``None`` (the check of R did's ``compute.att_gt``).

    An unweighted preliminary logit of ``d`` on ``x``; a cell whose largest propensity score
    reaches 0.999 violates overlap and is NA.
    """
    pre = logit_fit(d, x, np.ones_like(d))
    if pre.p.max() >= OVERLAP_LIMIT:
        return f"overlap condition violated (max p-score {pre.p.max():.4f} >= {OVERLAP_LIMIT})"
    return None


def cell_estimates(att: Float64Array, se: Float64Array, n_t: Any, n_ctl: Any) -> CellEstimates:
    """Cell estimates of an IF engine without per-cell means and weights (those are NaN)."""
    j_n = att.size
    return CellEstimates(
        att=att,
        se=se,
        n_treated=n_t,
        n_control=n_ctl,
        m_treat=np.full(j_n, np.nan),
        m_ctrl=np.full(j_n, np.nan),
        w_treat=np.full(j_n, np.nan),
        w_ctrl=np.full(j_n, np.nan),
    )


def _is_identity(cluster: Int64Array) -> bool:
    return bool(np.array_equal(cluster, np.arange(cluster.size)))
