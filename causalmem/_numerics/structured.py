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
(``sum Z``, ``sum Z Z'``, ``sum omega Z``, ``sum omega``, ``sum omega^2``) and, for the
bootstrap, from per-cohort multiplier sums ``R_bk = sum_{c in k} v_bc Z_c``. The ``n x J``
influence matrix is never formed: memory is O(K T^2 + B K T + B J) and the bootstrap costs
one ``B x n x T`` product.
This requires every row (cluster) to lie within one cohort; :mod:`dense` handles the rest.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from causalmem._numerics.cells import CellLayout
from causalmem._types import Float32Array, Float64Array, FloatArray, Int64Array


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


# Multiplier-bootstrap draws are float32: Monte Carlo error (~1/sqrt(2 B)) dwarfs rounding, and
# halving memory traffic halves the cost of the J x B draw matrix.
_DRAW_DTYPE = np.float32


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
    keys : object[n_rows] or None
        Unit (or cluster) identifiers of the rows, for aligning joint bootstraps across models.
    """

    Z: Float64Array
    omega: Float64Array
    counts: Float64Array
    block: Int64Array
    n_units: int
    keys: np.ndarray | None = None

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


def _suffix(x: FloatArray) -> FloatArray:
    """``out[k] = sum_{k' >= k} x[k']`` with an extra all-zero slot at the end."""
    out = np.zeros((x.shape[0] + 1, *x.shape[1:]), dtype=x.dtype)
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
    def _estimate(self) -> CellEstimates:
        c, m = self.cells, self._mom
        g, t, b, k0 = c.g_idx, c.t_idx, c.b_idx, c.k0
        own = c.exclude_own.astype(np.float64)
        names = ("s1", "w", "mm", "s2", "w2", "cnt")
        if self.never_only:
            # Every k0 is K, the last block, and its suffix sum is the block itself.
            suf = {name: getattr(m, name) for name in names}
        else:
            suf = {name: _suffix(getattr(m, name)) for name in names}

        def treated(name: str, *idx: Int64Array) -> Float64Array:
            return getattr(m, name)[(g, *idx)]

        def control(name: str, *idx: Int64Array) -> Float64Array:
            # Comparison cohorts k >= k0, minus the cell's own cohort when it lies in that range.
            return suf[name][(k0, *idx)] - own * getattr(m, name)[(g, *idx)]

        def side(get: object) -> tuple[Float64Array, Float64Array, Float64Array]:
            assert callable(get)
            w = get("w")
            with np.errstate(invalid="ignore", divide="ignore"):
                mean = (get("s1", t) - get("s1", b)) / w
            q = get("mm", t, t) + get("mm", b, b) - 2.0 * get("mm", t, b)
            var = q - 2.0 * mean * (get("s2", t) - get("s2", b)) + mean**2 * get("w2")
            return mean, np.maximum(var, 0.0), w

        mt, vt, wt = side(treated)
        mc, vc, cw = side(control)
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
            n_control=control("cnt"),
            m_treat=mt,
            m_ctrl=mc,
            w_treat=wt,
            w_ctrl=cw,
        )

    # -------------------------------------------------------------- bootstrap
    @property
    def never_only(self) -> bool:
        """Comparison units are the never treated in every cell (no suffix sums needed)."""
        c = self.cells
        return bool(np.all(c.k0 == c.glist.size) and not c.exclude_own.any())

    def draws(
        self, multipliers: Iterable[Float32Array], biters: int
    ) -> tuple[Float32Array, Float32Array]:
        """Multiplier draws ``sum_c v_bc r_cj`` for given multipliers (rows x draws blocks).

        Returns
        -------
        cells : float32[J, biters]
            ``sum_c v_bc r_cj`` for every cell (0 for reference cells, NaN without controls).
        omega : float32[K + 1, biters]
            ``sum_{c in k} v_bc omega_c`` per cohort block (for the weight-estimation term).
        """
        rows, c, e = self.rows, self.cells, self.est
        kb, t_len, n_rows = rows.n_blocks, rows.Z.shape[1], rows.Z.shape[0]
        out = np.empty((c.n_cells, biters), dtype=_DRAW_DTYPE)
        om_out = np.empty((kb, biters), dtype=_DRAW_DTYPE)
        valid = ~(c.reference | np.isnan(e.att))
        with np.errstate(divide="ignore"):
            inv_t = np.where(valid, 1.0 / e.w_treat, 0.0)[:, None].astype(_DRAW_DTYPE)
            inv_c = np.where(valid, 1.0 / e.w_ctrl, 0.0)[:, None].astype(_DRAW_DTYPE)
        m_t = np.where(valid, e.m_treat, 0.0)[:, None].astype(_DRAW_DTYPE)
        m_c = np.where(valid, e.m_ctrl, 0.0)[:, None].astype(_DRAW_DTYPE)
        own = c.exclude_own[:, None].astype(_DRAW_DTYPE)
        never = self.never_only
        zt = np.ascontiguousarray(rows.Z.T, dtype=_DRAW_DTYPE)  # [T, n_rows]
        om_rows = rows.omega.astype(_DRAW_DTYPE)
        start = 0
        for v in multipliers:
            bsz = v.shape[1]
            if v.shape[0] != n_rows:
                raise ValueError(f"multipliers have {v.shape[0]} rows, the engine {n_rows}.")
            rk = np.empty((kb, t_len, bsz), dtype=_DRAW_DTYPE)  # per-cohort sums of v * Z
            ok = np.empty((kb, bsz), dtype=_DRAW_DTYPE)
            for k in range(kb):
                a, b = rows.block[k], rows.block[k + 1]
                rk[k] = zt[:, a:b] @ v[a:b]
                ok[k] = om_rows[a:b] @ v[a:b]
            del v
            rflat = rk.reshape(kb * t_len, bsz)
            if never:
                rc, oc = rk[kb - 1], ok[kb - 1]
            else:
                rs = _suffix(rk).reshape((kb + 1) * t_len, bsz)
                os_ = _suffix(ok)
            for j0 in range(0, c.n_cells, 4096):
                sl = slice(j0, min(j0 + 4096, c.n_cells))
                g, t, b = c.g_idx[sl], c.t_idx[sl], c.b_idx[sl]
                d_own = rflat[g * t_len + t] - rflat[g * t_len + b]
                treat = d_own - ok[g] * m_t[sl]
                if never:
                    ctrl = rc[t] - rc[b] - oc[None, :] * m_c[sl]
                else:
                    k0 = c.k0[sl]
                    ctrl = rs[k0 * t_len + t] - rs[k0 * t_len + b] - own[sl] * d_own
                    ctrl -= (os_[k0] - own[sl] * ok[g]) * m_c[sl]
                out[sl, start : start + bsz] = treat * inv_t[sl] - ctrl * inv_c[sl]
            om_out[:, start : start + bsz] = ok
            start += bsz
        if start != biters:
            raise ValueError(f"multipliers gave {start} draws, expected {biters}.")
        out[np.isnan(e.att)] = np.nan
        return out, om_out

    # ------------------------------------------------------------ aggregation
    def _coefficients(
        self, weights: sp.csr_matrix, h: Float64Array
    ) -> tuple[Float64Array, Float64Array]:
        """Per-block coefficients: ``r_c = Z_c @ coef[k] - omega_c * const[k]`` for rows of k."""
        rows, c, e = self.rows, self.cells, self.est
        kb, t_len = rows.n_blocks, rows.Z.shape[1]
        n_j = c.n_cells
        valid = ~(c.reference | np.isnan(e.att))
        at = np.where(valid, 1.0 / e.w_treat, 0.0)
        with np.errstate(divide="ignore"):
            ac = np.where(valid, 1.0 / e.w_ctrl, 0.0)
        amt = at * np.where(valid, e.m_treat, 0.0)
        amc = ac * np.where(valid, e.m_ctrl, 0.0)
        g, t, b, k0 = c.g_idx, c.t_idx, c.b_idx, c.k0
        wt = sp.csr_matrix(weights)
        p = wt.shape[1]
        rj = np.arange(n_j)
        r2 = np.concatenate([rj, rj])

        def pair(k: Int64Array, scale: Float64Array, nblk: int) -> Float64Array:
            """sum_j W[j] scale_j (e_{k_j, t_j} - e_{k_j, b_j}) as [nblk, T, P]."""
            m = sp.csr_matrix(
                (
                    np.concatenate([scale, -scale]),
                    (r2, np.concatenate([k * t_len + t, k * t_len + b])),
                ),
                shape=(n_j, nblk * t_len),
            )
            return (m.T @ wt).toarray().reshape(nblk, t_len, p)

        def block_sum(k: Int64Array, scale: Float64Array, nblk: int) -> Float64Array:
            m = sp.csr_matrix((scale, (rj, k)), shape=(n_j, nblk))
            return (m.T @ wt).toarray()

        coef = pair(g, at, kb)
        const = block_sum(g, amt, kb)
        if self.never_only:
            zero = np.zeros(n_j, np.int64)
            coef[kb - 1] -= pair(zero, ac, 1)[0]
            const[kb - 1] -= block_sum(zero, amc, 1)[0]
        else:
            coef -= np.cumsum(pair(k0, ac, kb + 1), axis=0)[:kb]
            const -= np.cumsum(block_sum(k0, amc, kb + 1), axis=0)[:kb]
            own = np.where(c.exclude_own, 1.0, 0.0)
            coef += pair(g, ac * own, kb)
            const += block_sum(g, amc * own, kb)
        const -= np.asarray(h) / rows.n_units
        return coef, const

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
        rows = self.rows
        wt = sp.csc_matrix(weights)
        out = np.empty((rows.Z.shape[0], wt.shape[1]))
        for p0 in range(0, wt.shape[1], _COL_CHUNK):
            cols = slice(p0, min(p0 + _COL_CHUNK, wt.shape[1]))
            coef, const = self._coefficients(wt[:, cols], np.asarray(h)[:, cols])
            for k in range(rows.n_blocks):
                a, bb = rows.block[k], rows.block[k + 1]
                out[a:bb, cols] = rows.Z[a:bb] @ coef[k]
                out[a:bb, cols] -= rows.omega[a:bb, None] * const[k]
        return out

    def sum_squares(self, weights: sp.csr_matrix, h: Float64Array) -> Float64Array:
        """``sum_c r_cp^2`` per column without forming the ``n x P`` matrix.

        Each cohort block only touches the columns whose coefficients involve it (for an event
        study, the event times its cells reach), so the cost is O(sum_k n_k T P_k), and columns
        are processed in chunks to bound memory.
        """
        rows = self.rows
        wt = sp.csc_matrix(weights)
        out = np.zeros(wt.shape[1])
        for p0 in range(0, wt.shape[1], _COL_CHUNK):
            cols = slice(p0, min(p0 + _COL_CHUNK, wt.shape[1]))
            coef, const = self._coefficients(wt[:, cols], np.asarray(h)[:, cols])
            acc = np.zeros(coef.shape[2])
            nz = np.any(coef != 0, axis=1) | (const != 0)  # [K+1, P_chunk]
            m = self._mom
            for k in range(rows.n_blocks):
                a, bb = rows.block[k], rows.block[k + 1]
                active = np.flatnonzero(nz[k])
                if a == bb or active.size == 0:
                    continue
                ck, kk = coef[k][:, active], const[k][active]
                if bb - a > ck.shape[0]:
                    # More rows than periods: sum_r (Z_r c - omega_r k)^2 from the block's moments
                    # = c'(Z'Z)c - 2 k (omega'Z) c + k^2 omega'omega, O(T^2 P) instead of O(n T P).
                    quad = np.einsum("tp,tp->p", m.mm[k] @ ck, ck)
                    acc[active] += quad - 2.0 * kk * (m.s2[k] @ ck) + kk**2 * m.w2[k]
                else:
                    r = rows.Z[a:bb] @ ck
                    r -= rows.omega[a:bb, None] * kk
                    acc[active] += np.einsum("ij,ij->j", r, r)
            out[cols] = np.maximum(acc, 0.0)
        return out


_COL_CHUNK = 256
