"""Cohort-structured influence functions for unconditional group-time DiD (no covariates).

Without covariates every 2x2 estimator of Callaway & Sant'Anna (2021) (``dr``, ``ipw``, ``reg``)
reduces to a difference of weighted cohort means, and the unit-level influence function of cell
``j = (g, t)`` with base period ``b`` is (R ``did`` scaling, ``ATT_hat - ATT ~ mean_i psi_ij``)::

    psi_ij = n w_i [ D_i (dY_i - m_g) / W_g  -  C_i (dY_i - m_C) / W_C ],   dY_i = Y_it - Y_ib

with ``W_g`` / ``W_C`` the weight totals of the treated cohort / comparison units. We work on the
"r scale" ``r_ij = psi_ij / n`` summed within clusters ("rows"), so that
``se_j = sqrt(sum_c r_cj^2)`` and a multiplier-bootstrap draw is ``sum_c v_c r_cj``.

Because ``r`` is linear in a row's weighted outcomes ``Z_c = sum_{i in c} w_i Y_i`` and its weight
``omega_c = sum_{i in c} w_i``, everything follows from per-cohort sufficient statistics
(``sum Z``, ``sum Z Z'``, ``sum omega Z``, ``sum omega``, ``sum omega^2``) and, for the bootstrap, from
per-cohort multiplier sums ``R_bk = sum_{c in k} v_bc Z_c``. The ``n x J`` influence matrix is
never formed: memory is O(K T^2 + B K T + B J) and the bootstrap costs one ``B x n x T`` product.
This requires every row (cluster) to lie within one cohort; :mod:`dense` handles the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from causalmem._numerics.cells import CellLayout
from causalmem._types import Float64Array, Int64Array


@dataclass(frozen=True, slots=True)
class CellEstimates:
    """Point estimates and analytic standard errors of the cells.

    att, se, n_treated, n_control : float64[J]
        ``se`` is NaN for structural-zero (reference) cells and cells without comparison units.
    m_treat, m_ctrl, w_treat, w_ctrl : float64[J]
        Weighted mean outcome changes and weight totals (used to build aggregation IFs).
    """

    att: Float64Array
    se: Float64Array
    n_treated: Float64Array
    n_control: Float64Array
    m_treat: Float64Array
    m_ctrl: Float64Array
    w_treat: Float64Array
    w_ctrl: Float64Array


@dataclass(frozen=True, slots=True)
class CohortRows:
    """Rows (units, or clusters nested in cohorts) sorted in cohort blocks.

    Z : float64[n_rows, T]
        Weighted outcomes ``sum w_i Y_it`` per row, globally centred per period.
    omega : float64[n_rows]
        Weight totals per row.
    counts : float64[n_rows]
        Number of units per row.
    block : int64[K + 2]
        Rows of cohort ``k`` are ``block[k]:block[k + 1]``; block ``K`` is the never treated.
    n_units : int
        Number of units ``n`` (R ``did``'s ``n``).
    """

    Z: Float64Array
    omega: Float64Array
    counts: Float64Array
    block: Int64Array
    n_units: int

    @property
    def n_blocks(self) -> int:
        """``K + 1`` cohort blocks including the never treated."""
        return int(self.block.size - 1)


@dataclass(frozen=True, slots=True)
class _Moments:
    s1: Float64Array  # [K+1, T]   sum Z
    w: Float64Array  # [K+1]       sum omega
    mm: Float64Array  # [K+1, T, T] sum Z Z'
    s2: Float64Array  # [K+1, T]   sum omega Z
    w2: Float64Array  # [K+1]      sum omega^2
    cnt: Float64Array  # [K+1]     number of units


def _moments(rows: CohortRows) -> _Moments:
    kb = rows.n_blocks
    t = rows.Z.shape[1]
    s1 = np.empty((kb, t))
    s2 = np.empty((kb, t))
    mm = np.empty((kb, t, t))
    w = np.empty(kb)
    w2 = np.empty(kb)
    cnt = np.empty(kb)
    for k in range(kb):
        a, b = rows.block[k], rows.block[k + 1]
        z, om = rows.Z[a:b], rows.omega[a:b]
        s1[k] = z.sum(axis=0)
        s2[k] = om @ z
        mm[k] = z.T @ z
        w[k] = om.sum()
        w2[k] = om @ om
        cnt[k] = rows.counts[a:b].sum()
    return _Moments(s1=s1, w=w, mm=mm, s2=s2, w2=w2, cnt=cnt)


def _suffix(x: Float64Array) -> Float64Array:
    """``out[k] = sum_{k' >= k} x[k']`` with an extra all-zero slot at the end."""
    out = np.zeros((x.shape[0] + 1, *x.shape[1:]))
    out[:-1] = np.flip(np.cumsum(np.flip(x, axis=0), axis=0), axis=0)
    return out


class StructuredIF:
    """Cells, analytic SEs, multiplier bootstrap and aggregation IFs on cohort-structured rows.

    Parameters
    ----------
    rows
        The cohort-blocked rows.
    cells
        The cell layout (cohort ``k`` of the layout is block ``k`` of ``rows``).
    """

    def __init__(self, rows: CohortRows, cells: CellLayout) -> None:
        self.rows = rows
        self.cells = cells
        self._mom = _moments(rows)
        self.est = self._estimate()

    # ------------------------------------------------------------------ cells
    def _control_sum(self, x: Float64Array, suffix: Float64Array) -> Float64Array:
        c = self.cells
        own = np.where(c.exclude_own, 1.0, 0.0).reshape((-1,) + (1,) * (x.ndim - 1))
        return suffix[c.k0] - own * x[c.g_idx]

    def _estimate(self) -> CellEstimates:
        c, m = self.cells, self._mom
        j = np.arange(c.n_cells)
        t, b = c.t_idx, c.b_idx

        def side(
            s1: Float64Array, w: Float64Array, mm: Float64Array, s2: Float64Array, w2: Float64Array
        ) -> tuple[Float64Array, Float64Array]:
            with np.errstate(invalid="ignore", divide="ignore"):
                mean = (s1[j, t] - s1[j, b]) / w
            q = mm[j, t, t] + mm[j, b, b] - 2.0 * mm[j, t, b]
            var = q - 2.0 * mean * (s2[j, t] - s2[j, b]) + mean**2 * w2
            return mean, np.maximum(var, 0.0)

        g = c.g_idx
        mt, vt = side(m.s1[g], m.w[g], m.mm[g], m.s2[g], m.w2[g])
        cs1 = self._control_sum(m.s1, _suffix(m.s1))
        cw = self._control_sum(m.w, _suffix(m.w))
        cmm = self._control_sum(m.mm, _suffix(m.mm))
        cs2 = self._control_sum(m.s2, _suffix(m.s2))
        cw2 = self._control_sum(m.w2, _suffix(m.w2))
        ccnt = self._control_sum(m.cnt, _suffix(m.cnt))
        mc, vc = side(cs1, cw, cmm, cs2, cw2)
        wt = m.w[g]
        with np.errstate(invalid="ignore", divide="ignore"):
            att = mt - mc
            se = np.sqrt(vt / wt**2 + vc / cw**2)
        no_ctrl = cw <= 0
        att = np.where(no_ctrl, np.nan, att)
        se = np.where(no_ctrl, np.nan, se)
        att = np.where(c.reference, 0.0, att)
        se = np.where(c.reference, np.nan, se)
        return CellEstimates(
            att=att,
            se=se,
            n_treated=m.cnt[g],
            n_control=ccnt,
            m_treat=mt,
            m_ctrl=mc,
            w_treat=wt,
            w_ctrl=cw,
        )

    # -------------------------------------------------------------- bootstrap
    def bootstrap(
        self, biters: int, rng: np.random.Generator, chunk: int = 250
    ) -> tuple[Float64Array, Float64Array]:
        """Rademacher multiplier-bootstrap draws on the r scale.

        Returns
        -------
        cells : float64[biters, J]
            ``sum_c v_bc r_cj`` for every cell (0 for reference cells, NaN without controls).
        omega : float64[biters, K + 1]
            ``sum_{c in k} v_bc omega_c`` per cohort block (for the weight-estimation term).
        """
        rows, c, e = self.rows, self.cells, self.est
        kb, t_len, n_rows = rows.n_blocks, rows.Z.shape[1], rows.Z.shape[0]
        out = np.empty((biters, c.n_cells))
        om_out = np.empty((biters, kb))
        valid = ~(c.reference | np.isnan(e.att))
        inv_t = np.where(valid, 1.0 / e.w_treat, 0.0)
        with np.errstate(divide="ignore"):
            inv_c = np.where(valid, 1.0 / e.w_ctrl, 0.0)
        m_t = np.where(valid, e.m_treat, 0.0)
        m_c = np.where(valid, e.m_ctrl, 0.0)
        own = c.exclude_own.astype(np.float64)
        for start in range(0, biters, chunk):
            bsz = min(chunk, biters - start)
            v = rng.integers(0, 2, size=(bsz, n_rows), dtype=np.int8).astype(np.float64)
            v *= 2.0
            v -= 1.0
            rk = np.empty((bsz, kb, t_len))
            ok = np.empty((bsz, kb))
            for k in range(kb):
                a, b = rows.block[k], rows.block[k + 1]
                rk[:, k] = v[:, a:b] @ rows.Z[a:b]
                ok[:, k] = v[:, a:b] @ rows.omega[a:b]
            del v
            rs = _suffix(np.moveaxis(rk, 1, 0))  # [K+2, B, T]
            os_ = _suffix(ok.T)  # [K+2, B]
            rk_flat = rk.reshape(bsz, kb * t_len)
            rs_flat = np.moveaxis(rs, 0, 1).reshape(bsz, (kb + 1) * t_len)
            for j0 in range(0, c.n_cells, 4096):
                sl = slice(j0, min(j0 + 4096, c.n_cells))
                g, t, b, k0 = c.g_idx[sl], c.t_idx[sl], c.b_idx[sl], c.k0[sl]
                treat = (rk_flat[:, g * t_len + t] - rk_flat[:, g * t_len + b]) - ok[:, g] * m_t[sl]
                ctrl = (rs_flat[:, k0 * t_len + t] - rs_flat[:, k0 * t_len + b]) - own[sl] * (
                    rk_flat[:, g * t_len + t] - rk_flat[:, g * t_len + b]
                )
                ctrl -= (os_[k0].T - own[sl] * ok[:, g]) * m_c[sl]
                out[start : start + bsz, sl] = treat * inv_t[sl] - ctrl * inv_c[sl]
            om_out[start : start + bsz] = ok
        out[:, np.isnan(e.att)] = np.nan
        return out, om_out

    # ------------------------------------------------------------ aggregation
    def combine(self, weights: sp.csr_matrix, h: Float64Array) -> Float64Array:
        """Row-level (cluster-level) r-scale IF of linear combinations of the cells.

        Parameters
        ----------
        weights : sparse[J, P]
            Aggregation weights of the cells.
        h : float64[K + 1, P]
            Weight-estimation term per cohort block on the psi scale: a unit ``i`` of cohort ``k``
            contributes ``w_i h[k, p]`` (R ``did``'s ``wif``).

        Returns
        -------
        float64[n_rows, P]
            ``sum_j weights[j, p] r_cj + omega_c h[k(c), p] / n``.
        """
        rows, c, e = self.rows, self.cells, self.est
        kb, t_len = rows.n_blocks, rows.Z.shape[1]
        j = c.n_cells
        valid = ~(c.reference | np.isnan(e.att))
        at = np.where(valid, 1.0 / e.w_treat, 0.0)
        with np.errstate(divide="ignore"):
            ac = np.where(valid, 1.0 / e.w_ctrl, 0.0)
        g, t, b, k0 = c.g_idx, c.t_idx, c.b_idx, c.k0
        rj = np.arange(j)
        ncol_t = kb * t_len
        treat = sp.csr_matrix(
            (np.concatenate([at, -at]), (np.concatenate([rj, rj]),
             np.concatenate([g * t_len + t, g * t_len + b]))),
            shape=(j, ncol_t),
        )
        ctrl = sp.csr_matrix(
            (np.concatenate([-ac, ac]), (np.concatenate([rj, rj]),
             np.concatenate([k0 * t_len + t, k0 * t_len + b]))),
            shape=(j, (kb + 1) * t_len),
        )
        own = c.exclude_own
        ro = rj[own]
        ctrl_own = sp.csr_matrix(
            (np.concatenate([ac[own], -ac[own]]), (np.concatenate([ro, ro]),
             np.concatenate([g[own] * t_len + t[own], g[own] * t_len + b[own]]))),
            shape=(j, ncol_t),
        )
        wt = sp.csr_matrix(weights)
        p = wt.shape[1]
        coef = np.asarray((treat.T @ wt).todense()).reshape(kb, t_len, p)
        d = np.asarray((ctrl.T @ wt).todense()).reshape(kb + 1, t_len, p)
        coef += np.cumsum(d, axis=0)[:kb]
        coef += np.asarray((ctrl_own.T @ wt).todense()).reshape(kb, t_len, p)

        wd = np.asarray(wt.todense())
        const = np.zeros((kb, p))
        np.add.at(const, g, (at * np.where(valid, e.m_treat, 0.0))[:, None] * wd)
        cc = (ac * np.where(valid, e.m_ctrl, 0.0))[:, None] * wd
        dc = np.zeros((kb + 1, p))
        np.add.at(dc, k0, -cc)
        const += np.cumsum(dc, axis=0)[:kb]
        np.add.at(const, g[own], cc[own])
        const -= np.asarray(h) / rows.n_units

        out = np.empty((rows.Z.shape[0], p))
        for k in range(kb):
            a, bb = rows.block[k], rows.block[k + 1]
            out[a:bb] = rows.Z[a:bb] @ coef[k] - rows.omega[a:bb, None] * const[k]
        return out
