"""Sampling covariance of the ATT(g, t) cell estimates, in a structured (factored) form.

Callaway & Sant'Anna (2021) cells with never-treated comparison units and no covariates are
differences of weighted cohort means. On the engine's rows ``c`` (units, or clusters nested in
cohorts) with weighted outcomes ``Z_c(t) = sum_{i in c} w_i Y_it`` and weights
``omega_c = sum_{i in c} w_i``, block ``k`` (a treated cohort, or ``C`` = never treated) has the
weighted per-period mean ``m_k(t) = sum_{c in k} Z_c(t) / W_k`` with ``W_k = sum_{c in k}
omega_c``, and a cell ``j = (g, t)`` with base period ``b`` is::

    ATT_j = [m_g(t) - m_g(b)] - [m_C(t) - m_C(b)].

Its r-scale influence function (:mod:`causalmem._numerics.structured`) is, for a row ``c`` of
block ``k``, with the within-block residual ``e_c(t) = Z_c(t) - omega_c m_k(t)``::

    r_cj = [e_c(t) - e_c(b)] / W_g    if k = g,
    r_cj = -[e_c(t) - e_c(b)] / W_C   if k = C,    and 0 otherwise,

because ``dZ_c - omega_c (m_k(t) - m_k(b)) = e_c(t) - e_c(b)``. Rows of different blocks are
disjoint, so the analytic covariance ``V = r' r`` of the cells is::

    V[j, j'] = 1{g = g'} a_j' P_g a_j'  +  a_j' P_C a_j',
    P_k = sum_{c in k} e_c e_c' / W_k^2          (T x T, "period covariance" of block k),

with ``a_j = e_t - e_b`` (a +1 / -1 row over periods). Equivalently, there are latent mean-path
errors ``u_k ~ N(0, P_k)``, independent across blocks, and
``ATT_j = theta_j + (u_g[t] - u_g[b]) - (u_C[t] - u_C[b])``: the covariance is block-diagonal
over cohorts plus one shared low-rank (rank <= T) term from the never-treated path. At paper
scale (143 cohorts x 154 checkpoints, ~21,900 cells) the dense ``V`` would hold ~480M numbers;
the factors hold ``(K + 1) T^2`` (~3.4M).

Small cohorts make ``P_g`` singular (rank ``n_g - 1`` < number of periods), so the model uses a
regularised version (:func:`structured_factors` options): an ``n / (n - 1)`` rescaling
(``ddof=1``), per-period variances moderated towards the pooled within-block variances
(``variance_df``), and the correlation matrix shrunk towards the correlation pooled over all
blocks (:func:`shrink_correlation`) with weight ``lambda = p / (p + n_rows - 1)`` by default
(``p`` periods, ``n_rows - 1`` degrees of freedom). ``shrinkage=0, ddof=0, variance_df=0``
reproduces ``r' r`` exactly.

Other settings (not-yet-treated comparisons, covariates, unbalanced panels, clusters spanning
cohorts) have no such factorisation here: :func:`dense_factors` takes an explicit ``r`` matrix.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from causalmem._numerics.cells import CellLayout
from causalmem._numerics.structured import CohortRows
from causalmem._types import Float64Array, Int64Array


@dataclass(frozen=True, slots=True)
class PeriodCovariance:
    """Within-block scatter of the rows' weighted outcomes, per cohort block.

    Attributes
    ----------
    scatter : float64[K + 1, T, T]
        ``S_k = sum_{c in k} e_c e_c'`` (block ``K`` = never treated).
    w : float64[K + 1]
        Weight totals ``W_k``.
    w2 : float64[K + 1]
        ``sum_{c in k} omega_c^2``.
    n_rows : int64[K + 1]
        Rows (units or clusters) per block.
    """

    scatter: Float64Array
    w: Float64Array
    w2: Float64Array
    n_rows: Int64Array

    @property
    def n_blocks(self) -> int:
        """``K + 1`` blocks including the never treated."""
        return int(self.w.size)

    def period_cov(self, k: int) -> Float64Array:
        """``P_k = S_k / W_k^2``: covariance of block ``k``'s weighted mean path (r scale)."""
        return self.scatter[k] / self.w[k] ** 2

    def unit_cov(self, k: int) -> Float64Array:
        """``S_k / sum omega^2``: per-unit covariance, ``P_k = unit_cov * w2 / W^2``."""
        return self.scatter[k] / self.w2[k]

    def n_eff(self, k: int) -> float:
        """Kish effective size ``W_k^2 / sum omega^2`` (the number of rows when unweighted)."""
        return float(self.w[k] ** 2 / self.w2[k])

    def pooled_unit_cov(self) -> Float64Array:
        """Per-unit covariance pooled over every block: ``sum_k S_k / sum_k sum omega^2``."""
        return self.scatter.sum(axis=0) / self.w2.sum()


def period_covariance(rows: CohortRows) -> PeriodCovariance:
    """Per-block within scatter of the rows (``O(n T^2)``, one product per block).

    Parameters
    ----------
    rows
        The structured engine's cohort-blocked rows.

    Returns
    -------
    PeriodCovariance

    Examples
    --------
    >>> import numpy as np
    >>> from causalmem._numerics.structured import CohortRows
    >>> z = np.array([[0., 1.], [2., 1.], [1., 0.], [1., 2.]])
    >>> rows = CohortRows(Z=z, omega=np.ones(4), counts=np.ones(4),
    ...                   block=np.array([0, 2, 4]), n_units=4)
    >>> period_covariance(rows).period_cov(0).tolist()
    [[0.5, 0.0], [0.0, 0.0]]
    """
    kb = rows.n_blocks
    t_len = rows.Z.shape[1]
    scatter = np.zeros((kb, t_len, t_len))
    w = np.zeros(kb)
    w2 = np.zeros(kb)
    n_rows = np.zeros(kb, dtype=np.int64)
    for k in range(kb):
        a, b = rows.block[k], rows.block[k + 1]
        if a == b:
            continue
        z, om = rows.Z[a:b], rows.omega[a:b]
        w[k] = om.sum()
        w2[k] = om @ om
        n_rows[k] = b - a
        e = z - om[:, None] * (z.sum(axis=0) / w[k])[None, :]
        scatter[k] = e.T @ e
    return PeriodCovariance(scatter=scatter, w=w, w2=w2, n_rows=n_rows)


def shrink_correlation(cov: Float64Array, target_corr: Float64Array, lam: float) -> Float64Array:
    """Keep the variances of ``cov`` and shrink its correlation towards ``target_corr``.

    ``D^(1/2) [(1 - lam) R + lam R_target] D^(1/2)`` with ``D = diag(cov)``,
    ``R = D^(-1/2) cov D^(-1/2)``. Periods with zero variance keep zero rows and columns.

    Parameters
    ----------
    cov : float64[p, p]
    target_corr : float64[p, p]
        A correlation matrix (unit diagonal).
    lam
        Shrinkage weight in ``[0, 1]``; 0 returns ``cov``.

    Returns
    -------
    float64[p, p]

    Examples
    --------
    >>> import numpy as np
    >>> shrink_correlation(np.array([[4., 2.], [2., 1.]]), np.eye(2), 0.5).tolist()
    [[4.0, 1.0], [1.0, 1.0]]
    """
    if lam <= 0.0:
        return cov
    sd = np.sqrt(np.maximum(np.diag(cov), 0.0))
    outer = np.outer(sd, sd)
    return (1.0 - lam) * cov + lam * target_corr * outer


def auto_shrinkage(n_periods: int, n_rows: int) -> float:
    """Default weight ``p / (p + n_rows - 1)``: the sample correlation has ``n_rows - 1`` df."""
    dof = max(n_rows - 1, 0)
    return float(n_periods / (n_periods + dof)) if n_periods + dof > 0 else 1.0


@dataclass(frozen=True, slots=True)
class CellCovFactors:
    """Factored sampling covariance ``V = blockdiag_g(B_g) + A P_C A'`` of selected cells.

    Attributes
    ----------
    order : int64[J]
        Indices (into the cell layout) of the modelled cells, grouped in cohort blocks.
    bounds : int64[G + 1]
        Block ``h`` is ``order[bounds[h]:bounds[h + 1]]``.
    blocks : tuple of float64[p_h, p_h]
        ``B_h`` (treated part; the whole covariance for the dense form).
    periods : int64[P]
        Period indices (into ``tlist``) that the control term uses (empty for the dense form).
    ctrl_cov : float64[P, P] or None
        ``P_C`` on ``periods`` (None: no separate control term).
    t_pos, b_pos : int64[J]
        Positions of each cell's outcome and base period in ``periods`` (-1 for the dense form).
    shrinkage : float64[G + 1]
        Weight used for each block (last entry: the control block; NaN when absent).
    """

    order: Int64Array
    bounds: Int64Array
    blocks: tuple[Float64Array, ...]
    periods: Int64Array
    ctrl_cov: Float64Array | None
    t_pos: Int64Array
    b_pos: Int64Array
    shrinkage: Float64Array

    @property
    def n_cells(self) -> int:
        """Number of modelled cells ``J``."""
        return int(self.order.size)

    def control_design(self) -> Float64Array:
        """Return ``A`` as a dense ``[J, P]`` array (+1 at ``t``, -1 at ``b``); for small ``J``."""
        a = np.zeros((self.n_cells, self.periods.size))
        rows = np.arange(self.n_cells)
        a[rows, self.t_pos] += 1.0
        a[rows, self.b_pos] -= 1.0
        return a

    def dense(self) -> Float64Array:
        """Return the full ``[J, J]`` covariance in ``order`` (for tests and small problems)."""
        j = self.n_cells
        out = np.zeros((j, j))
        for h, blk in enumerate(self.blocks):
            sl = slice(self.bounds[h], self.bounds[h + 1])
            out[sl, sl] += blk
        if self.ctrl_cov is not None:
            a = self.control_design()
            out += a @ self.ctrl_cov @ a.T
        return out


def structured_factors(
    rows: CohortRows,
    cells: CellLayout,
    select: Int64Array,
    shrinkage: float | None = None,
    *,
    ddof: int = 0,
    variance_df: float = 0.0,
) -> CellCovFactors:
    """Factored covariance of cells with never-treated comparison units.

    Parameters
    ----------
    rows
        The structured engine's rows (block ``k`` = cohort ``k`` of ``cells``; block ``K`` =
        never treated).
    cells
        The cell layout; every cell must use the never-treated units only (``k0 == K``).
    select : int64[J]
        Cells to model (no reference cells).
    shrinkage
        Correlation-shrinkage weight for every block, or None for :func:`auto_shrinkage` per
        block. ``0`` gives the exact analytic covariance ``r' r``.
    ddof
        1 rescales each block's covariance by ``n_rows / (n_rows - 1)`` (and the pooled one by
        ``N / (N - blocks)``): the influence-function variance divides by ``n``, which
        understates small cohorts' sampling variance. 0 keeps ``r' r``.
    variance_df
        Prior degrees of freedom ``nu`` of the per-period variances: each block's variance is
        ``(nu v_pooled + (n_rows - 1) v_own) / (nu + n_rows - 1)`` (as in limma's moderated
        variances). 0 keeps the block's own variances.

    Returns
    -------
    CellCovFactors
        Cells regrouped by cohort (stable within cohort).

    Raises
    ------
    ValueError
        When a selected cell uses not-yet-treated comparison units.
    """
    k_never = cells.glist.size
    select = np.asarray(select, dtype=np.int64)
    if np.any(cells.k0[select] != k_never) or np.any(cells.exclude_own[select]):
        raise ValueError(
            "structured_factors needs never-treated comparison units in every cell "
            "(control_group='nevertreated')."
        )
    if np.any(cells.reference[select]):
        raise ValueError("reference (structural-zero) cells have no sampling variance.")
    pc = period_covariance(rows)
    order = select[np.argsort(cells.g_idx[select], kind="stable")]
    g_of = cells.g_idx[order]
    cohorts, starts = np.unique(g_of, return_index=True)
    bounds = np.append(starts, order.size).astype(np.int64)
    pooled = pc.pooled_unit_cov()
    if ddof:
        n_all, n_blk = int(pc.n_rows.sum()), int(np.count_nonzero(pc.n_rows))
        pooled = pooled * n_all / max(n_all - n_blk, 1)
    psd = np.sqrt(np.maximum(np.diag(pooled), 0.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        pooled_corr = np.where(np.outer(psd, psd) > 0, pooled / np.outer(psd, psd), 0.0)
    np.fill_diagonal(pooled_corr, 1.0)

    def regularised(k: int, per: Int64Array) -> tuple[Float64Array, float]:
        """``P_k`` on periods ``per`` after shrinkage; the weight used."""
        n_rows = int(pc.n_rows[k])
        lam = auto_shrinkage(per.size, n_rows) if shrinkage is None else float(shrinkage)
        lam = min(max(lam, 0.0), 1.0)
        scale = pc.w2[k] / pc.w[k] ** 2 if pc.w[k] > 0 else 0.0
        if n_rows < 2 and lam > 0:
            # One row has no within-block variance: borrow the pooled per-unit covariance.
            return pooled[np.ix_(per, per)] * scale, 1.0
        own = pc.unit_cov(k)[np.ix_(per, per)] if pc.w2[k] > 0 else np.zeros((per.size,) * 2)
        if ddof and n_rows > 1:
            own = own * n_rows / (n_rows - 1)
        if variance_df > 0:
            sd_own = np.sqrt(np.maximum(np.diag(own), 0.0))
            v_mod = (variance_df * np.diag(pooled)[per] + (n_rows - 1) * sd_own**2) / (
                variance_df + n_rows - 1
            )
            with np.errstate(invalid="ignore", divide="ignore"):
                ratio = np.where(sd_own > 0, np.sqrt(v_mod) / sd_own, 0.0)
            own = own * np.outer(ratio, ratio)
            own[np.diag_indices_from(own)] = np.where(sd_own > 0, v_mod, 0.0)
        return shrink_correlation(own, pooled_corr[np.ix_(per, per)], lam) * scale, lam

    blocks = []
    lams = []
    for h, k in enumerate(cohorts):
        sl = order[bounds[h] : bounds[h + 1]]
        t, b = cells.t_idx[sl], cells.b_idx[sl]
        per = np.unique(np.concatenate([t, b]))
        pk, lam = regularised(int(k), per)
        ti, bi = np.searchsorted(per, t), np.searchsorted(per, b)
        blk = pk[np.ix_(ti, ti)] - pk[np.ix_(ti, bi)] - pk[np.ix_(bi, ti)] + pk[np.ix_(bi, bi)]
        blocks.append(0.5 * (blk + blk.T))
        lams.append(lam)
    t_all, b_all = cells.t_idx[order], cells.b_idx[order]
    periods = np.unique(np.concatenate([t_all, b_all])).astype(np.int64)
    ctrl, lam_c = regularised(k_never, periods)
    lams.append(lam_c)
    return CellCovFactors(
        order=order,
        bounds=bounds,
        blocks=tuple(blocks),
        periods=periods,
        ctrl_cov=0.5 * (ctrl + ctrl.T),
        t_pos=np.searchsorted(periods, t_all).astype(np.int64),
        b_pos=np.searchsorted(periods, b_all).astype(np.int64),
        shrinkage=np.asarray(lams, dtype=np.float64),
    )


def dense_factors(
    r: Float64Array, select: Int64Array, shrinkage: float | None = None
) -> CellCovFactors:
    """One dense block ``r' r`` (correlation shrunk towards the identity) for any engine.

    Parameters
    ----------
    r : float64[n_rows, J]
        r-scale influence functions of the selected cells (``engine.combine`` with an identity
        weight matrix), columns in the order of ``select``.
    select : int64[J]
        Cell indices the columns refer to.
    shrinkage
        Weight towards the identity correlation, or None for ``J / (J + n_rows - 1)``.

    Returns
    -------
    CellCovFactors
        A single block and no separate control term.
    """
    v = r.T @ r
    lam = auto_shrinkage(v.shape[0], r.shape[0]) if shrinkage is None else float(shrinkage)
    lam = min(max(lam, 0.0), 1.0)
    v = shrink_correlation(v, np.eye(v.shape[0]), lam)
    j = v.shape[0]
    return CellCovFactors(
        order=np.asarray(select, dtype=np.int64),
        bounds=np.array([0, j], dtype=np.int64),
        blocks=(0.5 * (v + v.T),),
        periods=np.zeros(0, dtype=np.int64),
        ctrl_cov=None,
        t_pos=np.full(j, -1, dtype=np.int64),
        b_pos=np.full(j, -1, dtype=np.int64),
        shrinkage=np.array([lam, np.nan]),
    )
