"""Imputation (Borusyak, Jaravel & Spiess 2024) and two-stage (Gardner 2022) DiD numerics.

Both estimators fit ``Y_it(0) = alpha_a(i) + lambda_t + e_it`` by OLS on the untreated
observations ``Omega_0`` (``a`` is the unit fixed effect, or any coarser level such as a
state), and work with ``Ytilde_it = Y_it - alpha_a - lambda_t``. Everything here uses the cell
structure of the two-way design, never an ``n x (levels)`` design matrix:

* The normal equations ``Z0'Z0 [alpha; lambda] = r`` are solved through the Schur complement
  on the (few) periods: ``(D_t - N' D_a^{-1} N) lambda = r_t - N' D_a^{-1} r_a`` with ``N`` the
  ``levels x periods`` count matrix of untreated observations (built in chunks of levels),
  ``D_a``/``D_t`` its row/column sums; one Cholesky-type factorisation of a ``T x T`` matrix
  serves every right-hand side.
* The BJS implied weights of the untreated observations, ``v = -Z0 (Z0'Z0)^{-1} Z1' w1``, are
  ``gamma_a + gamma_t`` for a solution ``gamma`` of the same system, so per-cluster sums
  ``sum_{it in c} v_it e_it`` are ``P_a gamma_a + P_t gamma_t`` with ``P`` the sparse sums of
  residuals by (cluster, level) and (cluster, period).
* Gardner's GMM correction ``(X2'X1)(X10'X10)^{-1} X10_c' u1_c`` has the same form, with
  ``gamma`` solving the system for the count matrix ``X1'X2``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from causalmem._types import Float64Array, Int64Array

_CHUNK = 20_000


@dataclass(frozen=True)
class TwoWaySolver:
    """Factorised normal equations of the two-way model on the untreated observations.

    Attributes
    ----------
    n_a, n_t
        Numbers of levels of the first fixed effect and of periods.
    count_a, count_t : float64
        Untreated observations per level / per period.
    n_mat : scipy.sparse.csr_matrix
        ``n_a x n_t`` counts of untreated observations.
    """

    n_a: int
    n_t: int
    count_a: Float64Array
    count_t: Float64Array
    n_mat: sp.csr_matrix
    _chol: tuple[Float64Array, bool]
    _free: Int64Array

    @classmethod
    def build(cls, a: Int64Array, t: Int64Array, n_a: int, n_t: int) -> TwoWaySolver:
        """Factorise the system for untreated observations with codes ``a`` and ``t``.

        Every level and period must have at least one untreated observation and the
        bipartite level-period graph must be connected (checked by the caller through
        :meth:`connected`); the first period's effect is normalised to zero.
        """
        n_mat = sp.csr_matrix((np.ones(a.size), (a, t)), shape=(n_a, n_t), dtype=np.float64)
        n_mat.sum_duplicates()
        count_a = np.asarray(n_mat.sum(axis=1)).ravel()
        count_t = np.asarray(n_mat.sum(axis=0)).ravel()
        schur = np.diag(count_t)
        inv_a = 1.0 / count_a
        for s in range(0, n_a, _CHUNK):
            blk = n_mat[s : s + _CHUNK].toarray()
            schur -= blk.T @ (blk * inv_a[s : s + _CHUNK, None])
        free = np.arange(1, n_t, dtype=np.int64)
        red = schur[np.ix_(free, free)]
        chol = sla.cho_factor(red, lower=True, check_finite=False)
        return cls(n_a, n_t, count_a, count_t, n_mat, (chol[0], chol[1]), free)

    def solve(self, r_a: Float64Array, r_t: Float64Array) -> tuple[Float64Array, Float64Array]:
        """Solve ``Z0'Z0 [alpha; lambda] = [r_a; r_t]`` (columns are separate right-hand sides).

        Parameters
        ----------
        r_a : float64[n_a] or [n_a, k]
        r_t : float64[n_t] or [n_t, k]

        Returns
        -------
        (alpha, lambda)
            Shapes as the inputs; ``lambda[0] = 0``.
        """
        vec = r_a.ndim == 1
        ra = r_a[:, None] if vec else r_a
        rt = r_t[:, None] if vec else r_t
        ra_scaled = ra / self.count_a[:, None]
        rhs = rt - np.asarray(self.n_mat.T @ ra_scaled)
        lam = np.zeros((self.n_t, ra.shape[1]))
        if self._free.size:
            lam[self._free] = sla.cho_solve(self._chol, rhs[self._free], check_finite=False)
        alpha = ra_scaled - np.asarray(self.n_mat @ lam) / self.count_a[:, None]
        return (alpha[:, 0], lam[:, 0]) if vec else (alpha, lam)


def connected(a: Int64Array, t: Int64Array, n_a: int, n_t: int) -> bool:
    """Whether the level-period graph of the untreated observations is connected."""
    from scipy.sparse.csgraph import connected_components

    g = sp.csr_matrix((np.ones(a.size), (a, n_a + t)), shape=(n_a + n_t, n_a + n_t))
    n_comp, _ = connected_components(g, directed=False)
    return bool(n_comp == 1)


def sum_by(
    rows: Int64Array, cols: Int64Array, values: Float64Array, shape: tuple[int, int]
) -> sp.csr_matrix:
    """Sparse ``shape`` matrix of ``values`` summed by ``(rows, cols)``."""
    m = sp.csr_matrix((values, (rows, cols)), shape=shape)
    m.sum_duplicates()
    return m


@dataclass(frozen=True)
class FirstStage:
    """Two-way fit on the untreated observations and the residualised outcome of every row.

    ``ytilde`` is ``Y - alpha_a - lambda_t`` for every row: the first-stage residual ``e`` on
    untreated rows, the imputed effect ``tau_hat`` on treated rows.
    """

    solver: TwoWaySolver
    alpha: Float64Array
    lam: Float64Array
    ytilde: Float64Array


def first_stage(
    y: Float64Array, a: Int64Array, t: Int64Array, untreated: np.ndarray, n_a: int, n_t: int
) -> FirstStage:
    """Fit the two-way model on the untreated rows; residualise every row."""
    au, tu, yu = a[untreated], t[untreated], y[untreated]
    solver = TwoWaySolver.build(au, tu, n_a, n_t)
    r_a = np.bincount(au, weights=yu, minlength=n_a).astype(np.float64)
    r_t = np.bincount(tu, weights=yu, minlength=n_t).astype(np.float64)
    alpha, lam = solver.solve(r_a, r_t)
    return FirstStage(solver, alpha, lam, y - alpha[a] - lam[t])


def correction(
    fs: FirstStage,
    gamma_a: Float64Array,
    gamma_t: Float64Array,
    cl: Int64Array,
    a: Int64Array,
    t: Int64Array,
    untreated: np.ndarray,
    n_cl: int,
) -> Float64Array:
    """Per-cluster ``sum_{it in c, untreated} (gamma_a[a] + gamma_t[t]) e_it`` (``[n_cl, k]``)."""
    e = fs.ytilde[untreated]
    cu, au, tu = cl[untreated], a[untreated], t[untreated]
    p_a = sum_by(cu, au, e, (n_cl, fs.solver.n_a))
    p_t = sum_by(cu, tu, e, (n_cl, fs.solver.n_t))
    return np.asarray(p_a @ gamma_a) + np.asarray(p_t @ gamma_t)


def rhs_counts(
    w: sp.csr_matrix, a: Int64Array, t: Int64Array, n_a: int, n_t: int
) -> tuple[Float64Array, Float64Array]:
    """``Z'W`` for row weights ``w`` (``[n_rows, k]`` sparse): sums by level and by period."""
    n = a.size
    za = sp.csr_matrix((np.ones(n), (a, np.arange(n))), shape=(n_a, n))
    zt = sp.csr_matrix((np.ones(n), (t, np.arange(n))), shape=(n_t, n))
    return np.asarray((za @ w).todense()), np.asarray((zt @ w).todense())


@dataclass(frozen=True)
class LinearEstimates:
    """Estimates with their per-cluster influence sums ``psi`` (``var = psi' psi``)."""

    estimate: Float64Array
    psi: Float64Array  # [n_cl, k]

    @property
    def vcov(self) -> Float64Array:
        """Cluster-robust covariance ``psi' psi``."""
        return np.asarray(self.psi.T @ self.psi)

    @property
    def se(self) -> Float64Array:
        """Standard errors."""
        return np.sqrt(np.einsum("ck,ck->k", self.psi, self.psi))


def imputation_estimates(
    fs: FirstStage,
    weights: sp.csr_matrix,
    cell: Int64Array,
    n_cells: int,
    cl: Int64Array,
    a: Int64Array,
    t: Int64Array,
    untreated: np.ndarray,
    n_cl: int,
    leave_out: bool,
) -> tuple[LinearEstimates, int]:
    """BJS estimates ``sum_treated w_it tau_hat_it`` and their conservative variance.

    Parameters
    ----------
    weights : sparse float64[n_rows, k]
        Estimand weights of every row (zero on untreated rows), constant within the
        auxiliary cells ``cell`` (cohort x event time) so that BJS's ``v^2``-weighted cell
        average (didimputation's ``tau_et``) is the plain cell mean.
    cell : int64[n_rows]
        Auxiliary cell of each treated row (-1 on untreated rows).
    leave_out
        Average ``tau_hat`` in each cell leaving out the row's own cluster (BJS Section 4.3);
        cells with a single cluster fall back to the plain mean. Returns how many fell back.

    Returns
    -------
    (LinearEstimates, n_fallback)
    """
    tr = ~untreated
    tau = fs.ytilde
    est = np.asarray(weights.T @ tau).ravel()
    # v for untreated rows: gamma = -(Z0'Z0)^{-1} Z1'w1
    r_a, r_t = rhs_counts(weights, a, t, fs.solver.n_a, fs.solver.n_t)
    g_a, g_t = fs.solver.solve(r_a, r_t)
    psi = -correction(fs, g_a, g_t, cl, a, t, untreated, n_cl)
    # treated rows: w (tau_hat - tau_bar_cell)
    ct, cc, tt = cl[tr], cell[tr], tau[tr]
    n_c = np.bincount(cc, minlength=n_cells).astype(np.float64)
    s_c = np.bincount(cc, weights=tt, minlength=n_cells)
    bar = s_c[cc] / n_c[cc]
    n_fallback = 0
    if leave_out:
        key = cc.astype(np.int64) * n_cl + ct
        uk, inv = np.unique(key, return_inverse=True)
        n_k = np.bincount(inv).astype(np.float64)[inv]
        s_k = np.bincount(inv, weights=tt)[inv]
        rest = n_c[cc] - n_k
        ok = rest > 0
        bar = np.where(ok, (s_c[cc] - s_k) / np.where(ok, rest, 1.0), bar)
        n_fallback = int(np.unique(cc[~ok]).size)
    resid = tt - bar
    wt = sp.csr_matrix(weights)[np.flatnonzero(tr)]
    cmat = sp.csr_matrix((resid, (ct, np.arange(ct.size))), shape=(n_cl, ct.size))
    psi = psi + np.asarray((cmat @ wt).todense())
    return LinearEstimates(est, psi), n_fallback


def two_stage_estimates(
    fs: FirstStage,
    x2: sp.csr_matrix,
    cl: Int64Array,
    a: Int64Array,
    t: Int64Array,
    untreated: np.ndarray,
    n_cl: int,
) -> LinearEstimates:
    """Gardner's second stage on indicator columns ``x2`` and its GMM-corrected variance.

    ``x2`` (sparse ``[n_rows, k]``) holds mutually exclusive 0/1 indicators (treatment or
    event-time dummies; rows in none of them are the reference). The coefficient of column
    ``k`` is the mean of ``Ytilde`` over its rows and the influence of cluster ``c`` is
    ``(X2'X2)^{-1} [X2_c' u2_c - (X2'X1)(X10'X10)^{-1} X10_c' u1_c]`` (R ``did2s``).
    """
    n_k = np.asarray(x2.sum(axis=0)).ravel()
    beta = np.asarray(x2.T @ fs.ytilde).ravel() / n_k
    u2 = fs.ytilde - np.asarray(x2 @ beta).ravel()
    n = u2.size
    cmat = sp.csr_matrix((u2, (cl, np.arange(n))), shape=(n_cl, n))
    score = np.asarray((cmat @ x2).todense())
    r_a, r_t = rhs_counts(sp.csr_matrix(x2), a, t, fs.solver.n_a, fs.solver.n_t)
    g_a, g_t = fs.solver.solve(r_a, r_t)
    score -= correction(fs, g_a, g_t, cl, a, t, untreated, n_cl)
    return LinearEstimates(beta, score / n_k[None, :])


@dataclass(frozen=True)
class PretrendFit:
    """BJS Test 1: lead coefficients on the untreated rows (with unit and period effects)."""

    coef: Float64Array
    vcov: Float64Array
    n_obs: int
    n_clusters: int


def pretrend_regression(
    y: Float64Array,
    leads: sp.csr_matrix,
    a: Int64Array,
    t: Int64Array,
    cl: Int64Array,
    n_a: int,
    n_t: int,
    n_cl: int,
    n_fe_params: int,
) -> PretrendFit:
    """OLS of ``y`` on lead indicators and two-way effects, cluster-robust (fixest CRV1).

    By Frisch-Waugh-Lovell, without materialising the residualised leads:
    ``X'MX = X'X - C_a' gamma_a - C_t' gamma_t`` with ``gamma`` the two-way fit of the leads.
    Small-sample factor as fixest's default ``ssc()``: ``G/(G-1) (n-1)/(n-K)``, ``K`` = leads +
    ``n_fe_params`` (fixed effects not nested in the clusters).
    """
    solver = TwoWaySolver.build(a, t, n_a, n_t)
    c_a, c_t = rhs_counts(leads, a, t, n_a, n_t)
    g_a, g_t = solver.solve(c_a, c_t)
    r_a = np.bincount(a, weights=y, minlength=n_a).astype(np.float64)
    r_t = np.bincount(t, weights=y, minlength=n_t).astype(np.float64)
    al, la = solver.solve(r_a, r_t)
    xx = np.diag(np.asarray(leads.sum(axis=0)).ravel()) - c_a.T @ g_a - c_t.T @ g_t
    xy = np.asarray(leads.T @ y).ravel() - c_a.T @ al - c_t.T @ la
    scale = np.sqrt(np.abs(np.diag(xx)))
    with np.errstate(divide="ignore", invalid="ignore"):
        cond = np.linalg.cond(xx / np.outer(scale, scale))
    if not np.isfinite(cond) or cond > 1e10:
        raise np.linalg.LinAlgError(
            "the lead indicators are collinear with the two-way fixed effects"
        )
    beta = np.asarray(np.linalg.solve(xx, xy), dtype=np.float64)
    # residuals of the full regression: M (y - X beta)
    u = y - al[a] - la[t] - np.asarray(leads @ beta).ravel() + (g_a @ beta)[a] + (g_t @ beta)[t]
    n = y.size
    cmat = sp.csr_matrix((u, (cl, np.arange(n))), shape=(n_cl, n))
    score = np.asarray((cmat @ leads).todense())
    q_a = sum_by(cl, a, u, (n_cl, n_a))
    q_t = sum_by(cl, t, u, (n_cl, n_t))
    score -= np.asarray(q_a @ g_a) + np.asarray(q_t @ g_t)
    bread = np.linalg.inv(xx)
    k = beta.size + n_fe_params
    adj = n_cl / (n_cl - 1) * (n - 1) / (n - k)
    vcov = np.asarray(adj * bread @ (score.T @ score) @ bread, dtype=np.float64)
    return PretrendFit(beta, vcov, n, n_cl)
