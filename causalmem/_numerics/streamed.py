"""Mergeable cohort sufficient statistics for streamed and distributed ATT(g, t).

The structured engine (:mod:`causalmem._numerics.structured`) needs, per cohort block ``k``,
only ``sum Z``, ``sum Z Z'``, ``sum omega Z``, ``sum omega``, ``sum omega^2`` and the unit count
of the rows' weighted outcomes ``Z_i = w_i Y_i`` (globally centred), plus, for the multiplier
bootstrap, the per-block multiplier sums ``R[k, t, b] = sum_i v_ib Z_i(t)`` and
``O[k, b] = sum_i v_ib omega_i`` with multipliers keyed by unit id
(:mod:`causalmem._numerics.keyed`). :class:`CohortMoments` accumulates them over batches of
units in any order and merges partial results (a map-reduce), on *shifted* outcomes
``Z - omega c`` (``c``: a per-period shift near the mean, for numerical accuracy); shifting is
exact algebra, so :meth:`CohortMoments.recentre` gives the moments of the globally centred
outcomes the in-memory engine uses. :class:`StreamedIF` is the structured engine built from them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from causalmem._numerics.cells import CellLayout
from causalmem._numerics.keyed import cell_draws, multiplier_sums
from causalmem._numerics.structured import CohortRows, StructuredIF, _Moments
from causalmem._types import Float64Array

__all__ = ["CohortMoments", "StreamedIF"]


@dataclass
class CohortMoments:
    """Sufficient statistics per slot (cohort block) of shifted weighted outcomes.

    Attributes
    ----------
    shift : float64[T]
        ``c``: statistics are of ``Z - omega c``.
    s1, s2 : float64[S, T]
        ``sum Z~``, ``sum omega Z~`` per slot.
    mm : float64[S, T, T]
        ``sum Z~ Z~'``.
    w, w2, cnt : float64[S]
        ``sum omega``, ``sum omega^2``, number of units.
    rk : float64[S, T, B] or None
        Multiplier sums ``sum v Z~`` (bootstrap only).
    ok : float64[S, B] or None
        ``sum v omega``.
    """

    shift: Float64Array
    s1: Float64Array
    s2: Float64Array
    mm: Float64Array
    w: Float64Array
    w2: Float64Array
    cnt: Float64Array
    rk: Float64Array | None = None
    ok: Float64Array | None = None

    @classmethod
    def zeros(cls, n_slots: int, t_len: int, biters: int, shift: Float64Array) -> CohortMoments:
        """Empty statistics (``biters = 0``: no bootstrap sums)."""
        return cls(
            shift=np.asarray(shift, dtype=np.float64).copy(),
            s1=np.zeros((n_slots, t_len)),
            s2=np.zeros((n_slots, t_len)),
            mm=np.zeros((n_slots, t_len, t_len)),
            w=np.zeros(n_slots),
            w2=np.zeros(n_slots),
            cnt=np.zeros(n_slots),
            rk=np.zeros((n_slots, t_len, biters)) if biters else None,
            ok=np.zeros((n_slots, biters)) if biters else None,
        )

    @property
    def n_slots(self) -> int:
        """Number of slots."""
        return int(self.w.size)

    def add(
        self,
        z: Float64Array,
        omega: Float64Array,
        slot: np.ndarray,
        ids_hash: np.ndarray | None = None,
        key: int = 0,
    ) -> None:
        """Accumulate a batch of units: ``z = w y`` ``[n, T]``, ``omega = w``, slot per unit."""
        zs = z - omega[:, None] * self.shift[None, :]
        n_s = self.n_slots
        order = np.argsort(slot, kind="stable")
        bounds = np.searchsorted(slot[order], np.arange(n_s + 1))
        zs_o, om_o = zs[order], omega[order]
        for k in np.flatnonzero(np.diff(bounds)):
            a, b = bounds[k], bounds[k + 1]
            zk, ok = zs_o[a:b], om_o[a:b]
            self.s1[k] += zk.sum(axis=0)
            self.s2[k] += ok @ zk
            self.mm[k] += zk.T @ zk
            self.w[k] += ok.sum()
            self.w2[k] += ok @ ok
            self.cnt[k] += b - a
        if self.rk is not None and self.ok is not None:
            if ids_hash is None:
                raise ValueError("bootstrap sums need the units' id hashes.")
            multiplier_sums(
                zs_o,
                om_o,
                slot[order],
                ids_hash[order],
                key,
                self.rk.shape[2],
                n_s,
                out_z=self.rk,
                out_w=self.ok,
            )

    def reshift(self, new: Float64Array, *, inplace: bool = False) -> CohortMoments:
        """Return the statistics of ``Z - omega new`` (exact algebra); ``inplace`` reuses arrays."""
        d = np.asarray(new, dtype=np.float64) - self.shift
        out = (
            self
            if inplace
            else CohortMoments(
                shift=self.shift.copy(),
                s1=self.s1.copy(),
                s2=self.s2.copy(),
                mm=self.mm.copy(),
                w=self.w.copy(),
                w2=self.w2.copy(),
                cnt=self.cnt.copy(),
                rk=None if self.rk is None else self.rk.copy(),
                ok=None if self.ok is None else self.ok.copy(),
            )
        )
        cross = out.s2[:, :, None] * d[None, None, :]
        out.mm -= cross
        out.mm -= np.swapaxes(cross, 1, 2)
        out.mm += out.w2[:, None, None] * np.outer(d, d)[None, :, :]
        out.s1 -= out.w[:, None] * d[None, :]
        out.s2 -= out.w2[:, None] * d[None, :]
        if out.rk is not None and out.ok is not None:
            for k in range(out.rk.shape[0]):  # one block at a time: no [S, T, B] temporary
                out.rk[k] -= d[:, None] * out.ok[k][None, :]
        out.shift = np.asarray(new, dtype=np.float64).copy()
        return out

    def merge(self, other: CohortMoments) -> CohortMoments:
        """Sum of two partial statistics (``other`` is re-shifted onto ``self.shift``)."""
        o = other if np.array_equal(other.shift, self.shift) else other.reshift(self.shift)
        rk = ok = None
        if self.rk is not None and o.rk is not None and self.ok is not None and o.ok is not None:
            rk, ok = self.rk + o.rk, self.ok + o.ok
        return CohortMoments(
            shift=self.shift.copy(),
            s1=self.s1 + o.s1,
            s2=self.s2 + o.s2,
            mm=self.mm + o.mm,
            w=self.w + o.w,
            w2=self.w2 + o.w2,
            cnt=self.cnt + o.cnt,
            rk=rk,
            ok=ok,
        )

    def select(self, slots: Sequence[np.ndarray], periods: np.ndarray) -> CohortMoments:
        """Blocks ``slots`` (each an index array summed into one block) on ``periods``."""
        p = np.asarray(periods, dtype=np.int64)
        first = np.array([int(ix[0]) for ix in slots], dtype=np.int64)
        rest = [
            (h, np.asarray(ix[1:], dtype=np.int64)) for h, ix in enumerate(slots) if len(ix) > 1
        ]

        def pick(a: np.ndarray) -> np.ndarray:
            out = a[first]
            for h, ix in rest:
                out[h] += a[ix].sum(axis=0)
            return out

        full = p.size == self.s1.shape[1] and np.array_equal(p, np.arange(p.size))
        rk = ok = None
        if self.rk is not None and self.ok is not None:
            rk = pick(self.rk) if full else pick(self.rk)[:, p]
            ok = pick(self.ok)
        mm = pick(self.mm)
        return CohortMoments(
            shift=self.shift[p].copy(),
            s1=pick(self.s1)[:, p],
            s2=pick(self.s2)[:, p],
            mm=mm if full else mm[:, p][:, :, p],
            w=pick(self.w),
            w2=pick(self.w2),
            cnt=pick(self.cnt),
            rk=rk,
            ok=ok,
        )

    def recentre(self) -> CohortMoments:
        """Statistics of the globally centred outcomes (the in-memory engine's ``Z``); in place."""
        tot = self.w.sum()
        mu = self.shift + (self.s1.sum(axis=0) / tot if tot > 0 else 0.0)
        return self.reshift(mu, inplace=True)

    def as_moments(self) -> _Moments:
        """Return the structured engine's moment arrays."""
        return _Moments(s1=self.s1, w=self.w, mm=self.mm, s2=self.s2, w2=self.w2, cnt=self.cnt)


_NO_ROWS = (
    "A streamed att_gt result keeps cohort statistics, not per-unit rows, so {what} is not "
    "available; fit the panel in memory (att_gt on a DataFrame) for it."
)


class StreamedIF:
    """The structured engine on reduced statistics (no per-unit rows are kept).

    Estimates, analytic SEs, aggregation sums of squares and (with the multiplier sums)
    bootstrap draws equal the in-memory :class:`StructuredIF` up to summation rounding; the
    algebra is :class:`StructuredIF`'s, applied to the statistics. :meth:`combine` returns
    *pseudo-rows*: ``(K + 1)(T + 1)`` rows whose cross-products ``r' r`` equal those of the
    per-unit influence functions (enough for SEs, covariances and Wald tests), not one row per
    unit. There is deliberately no ``rows`` attribute (code needing per-unit rows, e.g. the
    structured covariance of the Bayesian cell models, gets an ``AttributeError``) and no
    ``draws`` with external multipliers.

    Parameters
    ----------
    mom
        Recentred statistics, one block per cohort of ``cells`` plus the never treated (last).
    cells
        The cell layout.
    n_units
        Units in the sample (R ``did``'s ``n``).
    """

    def __init__(self, mom: CohortMoments, cells: CellLayout, n_units: int) -> None:
        kb, t_len = mom.s1.shape
        core = StructuredIF.__new__(StructuredIF)  # the algebra, without per-unit rows
        core.rows = CohortRows(
            Z=np.zeros((0, t_len)),
            omega=np.zeros(0),
            counts=np.zeros(0),
            block=np.zeros(kb + 1, dtype=np.int64),
            n_units=n_units,
            keys=None,
        )
        core.cells = cells
        core._mom = mom.as_moments()
        core.est = core._estimate()
        self._core = core
        self.cells = cells
        self.stats = mom
        self.n_units = n_units
        self.n_blocks = kb
        self.est = core.est

    @property
    def never_only(self) -> bool:
        """Comparison units are the never treated in every cell."""
        return self._core.never_only

    @property
    def rows(self) -> CohortRows:
        """Not available (raises ``AttributeError``): no per-unit rows are kept."""
        raise AttributeError(_NO_ROWS.format(what="the per-unit rows"))

    def keyed_draws(self) -> tuple[Float64Array, Float64Array]:
        """Bootstrap draws ``([J, B], [K + 1, B])`` from the reduced multiplier sums."""
        m, e = self.stats, self.est
        if m.rk is None or m.ok is None:
            raise ValueError("these statistics were accumulated without the bootstrap sums.")
        zb = cell_draws(m.rk, m.ok, self.cells, e.att, e.m_treat, e.m_ctrl, e.w_treat, e.w_ctrl)
        return zb, m.ok

    def draws(self, multipliers: object, biters: int) -> tuple[Float64Array, Float64Array]:
        """Not available: external multipliers need per-unit rows (see :meth:`keyed_draws`)."""
        raise NotImplementedError(_NO_ROWS.format(what="a bootstrap with external multipliers"))

    def _coefficients(
        self, weights: sp.csr_matrix, h: Float64Array
    ) -> tuple[Float64Array, Float64Array]:
        return self._core._coefficients(weights, h)

    def sum_squares(self, weights: sp.csr_matrix, h: Float64Array) -> Float64Array:
        """``sum_c r_cp^2`` per column from the block moments."""
        wt = sp.csc_matrix(weights)
        out = np.zeros(wt.shape[1])
        m = self._core._mom
        step = 256
        for p0 in range(0, wt.shape[1], step):
            cols = slice(p0, min(p0 + step, wt.shape[1]))
            coef, const = self._coefficients(wt[:, cols], np.asarray(h)[:, cols])
            acc = np.zeros(coef.shape[2])
            nz = np.any(coef != 0, axis=1) | (const != 0)
            for k in range(self.n_blocks):
                active = np.flatnonzero(nz[k])
                if m.cnt[k] == 0 or active.size == 0:
                    continue
                ck, kk = coef[k][:, active], const[k][active]
                quad = np.einsum("tp,tp->p", m.mm[k] @ ck, ck)
                acc[active] += quad - 2.0 * kk * (m.s2[k] @ ck) + kk**2 * m.w2[k]
            out[cols] = np.maximum(acc, 0.0)
        return out

    def combine(self, weights: sp.csr_matrix, h: Float64Array) -> Float64Array:
        """Pseudo-rows ``[(K + 1)(T + 1), P]`` with the influence functions' ``r' r``."""
        wt = sp.csc_matrix(weights)
        m = self._core._mom
        kb, t_len = m.s1.shape
        coef, const = self._coefficients(wt, np.asarray(h))
        out = np.zeros((kb * (t_len + 1), wt.shape[1]))
        for k in range(kb):
            gram = np.zeros((t_len + 1, t_len + 1))
            gram[:t_len, :t_len] = m.mm[k]
            gram[:t_len, t_len] = gram[t_len, :t_len] = m.s2[k]
            gram[t_len, t_len] = m.w2[k]
            lam, vec = np.linalg.eigh(0.5 * (gram + gram.T))
            root = vec * np.sqrt(np.maximum(lam, 0.0))[None, :]
            lin = np.vstack([coef[k], -const[k][None, :]])
            out[k * (t_len + 1) : (k + 1) * (t_len + 1)] = root.T @ lin
        return out
