"""Honest event-study inference (Rambachan & Roth 2023): restrictions Δ, ARP tests, hybrids.

Pure numerics behind :func:`causalmem.honest_did`. Conventions follow R ``HonestDiD``:
``betahat`` holds ``n_pre`` pre-period then ``n_post`` post-period event-study coefficients,
all relative to the omitted reference period ``e = -1`` (``δ_0 = 0``); a restriction is a
polyhedron ``Δ = {δ : A δ ≤ d}`` or a union of polyhedra (Δ^RM, Δ^SDRM: one per location
``s`` of the largest pre-period violation and its sign).

Confidence sets invert the conditional moment-inequality test of Andrews, Roth & Pakes (ARP,
2023) over a grid of ``θ`` (R's grid by default), as ``HonestDiD``'s ``.ARP_computeCI``:
the ``"ARP"`` (conditional), ``"LF"`` (conditional least-favourable hybrid) and ``"FLCI"``
(conditional-FLCI hybrid) tests, each with R's primal (non-degenerate) and dual (degenerate)
branches and ``hybrid_kappa = alp / 10``.

Speed (long event windows): the linear programme ``η(θ) = min_δ max_j (y_j(θ) - X_j δ)/σ_j``
has a data vector affine in ``θ``, so an optimal basis found at one grid point stays optimal on a
whole interval of ``θ`` that is computed in closed form; every quantity of the primal-branch test
is then affine in ``θ`` on that interval and is evaluated for all its grid points at once. The
least-favourable critical value needs only the top order statistics of the simulated ``η``:
cheap dual lower bounds and primal upper bounds leave a handful of exact LPs, each re-solved
from the previous draw's optimal basis (its dual has a fixed feasible set). Every other LP goes
to HiGHS through scipy's bundled binding with ``linprog``'s model and options (identical
results, without ``linprog``'s ~10 ms of per-call checks). In a union (Δ^RM, Δ^SDRM) the
polyhedra share ``X`` and ``a``, so the optimal duals of one polyhedron's first-stage LPs bound
where any other can accept (weak duality); polyhedra that cannot widen the union are skipped
without an LP, and critical values / first-stage intervals are cached across the re-runs on a
widened θ grid. The least-favourable simulation draws ξ ~ N(0, Σ) once and maps it to each
polyhedron's moments (A_r ξ, sparse rows), so no polyhedron factorises its own moment
covariance. Results equal the grid-point-by-grid-point computation (tested against the
``honestdid`` package).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from scipy.optimize import linprog
from scipy.special import ndtr, ndtri
from scipy.stats import truncnorm

from causalmem._types import BoolArray, Float64Array, Int64Array

__all__ = [
    "Piece",
    "arp_accept",
    "delta_pieces",
    "grid_bounds",
    "id_set",
    "least_favourable_cv",
]

_TOL_LAMBDA = 1e-6
_ROUNDEPS = float(np.finfo(float).eps ** 0.75)


# --------------------------------------------------------------------------- LP solver


@dataclass(frozen=True, slots=True)
class _LPResult:
    """The parts of ``scipy.optimize.linprog``'s result this module reads."""

    status: int
    x: Float64Array
    fun: float
    ineq_marginals: Float64Array


def _linprog(
    c: Float64Array,
    *,
    a_ub: Float64Array | None = None,
    b_ub: Float64Array | None = None,
    a_eq: Float64Array | None = None,
    b_eq: Float64Array | None = None,
    lower: float | Float64Array = -np.inf,
) -> _LPResult:
    """``linprog(method="highs")`` without its per-call overhead (~10 ms, 10× the solve).

    Builds the same HiGHS model as ``scipy.optimize.linprog`` — the sparse matrix
    ``csc(vstack(A_ub, A_eq))``, the same options (presolve on, dual simplex, no output) — and
    runs it through scipy's bundled binding, so results are identical; falls back to
    ``linprog`` where the binding is laid out differently (scipy < 1.15).
    """
    n = c.size
    a_ub_ = np.zeros((0, n)) if a_ub is None else a_ub
    b_ub_ = np.zeros(0) if b_ub is None else b_ub
    a_eq_ = np.zeros((0, n)) if a_eq is None else a_eq
    b_eq_ = np.zeros(0) if b_eq is None else b_eq
    lo = np.broadcast_to(np.asarray(lower, dtype=np.float64), (n,))
    try:
        from scipy.optimize._highspy import _core
    except ImportError:  # pragma: no cover
        res = linprog(
            c,
            A_ub=a_ub,
            b_ub=b_ub,
            A_eq=a_eq,
            b_eq=b_eq,
            bounds=[(None if not np.isfinite(v) else v, None) for v in lo],
            method="highs",
        )
        x = np.asarray(res.x, dtype=np.float64) if res.status == 0 else np.zeros(0)
        marg = res.ineqlin.marginals if res.status == 0 else None
        return _LPResult(
            int(res.status),
            x,
            float(res.fun) if res.status == 0 else math.nan,
            np.zeros(0) if marg is None else np.asarray(marg, dtype=np.float64),
        )
    inf = _core.kHighsInf
    start, index, value = _csc(np.vstack([a_ub_, a_eq_]))
    lp = _core.HighsLp()
    lp.num_col_ = n
    lp.num_row_ = a_ub_.shape[0] + a_eq_.shape[0]
    lp.col_cost_ = np.asarray(c, dtype=np.float64)
    lp.col_lower_ = np.where(np.isfinite(lo), lo, -inf)
    lp.col_upper_ = np.full(n, inf)
    lp.row_lower_ = np.r_[np.full(b_ub_.size, -inf), b_eq_]
    lp.row_upper_ = np.where(np.isfinite(np.r_[b_ub_, b_eq_]), np.r_[b_ub_, b_eq_], inf)
    lp.a_matrix_.format_ = _core.MatrixFormat.kColwise
    lp.a_matrix_.start_ = start
    lp.a_matrix_.index_ = index
    lp.a_matrix_.value_ = value
    h = _core._Highs()
    opts = _core.HighsOptions()
    opts.presolve = "on"
    opts.log_to_console = False
    opts.output_flag = False
    opts.simplex_strategy = 1  # dual simplex, as linprog(method="highs")
    h.passOptions(opts)
    h.passModel(lp)
    h.run()
    st = h.getModelStatus()
    ms = _core.HighsModelStatus
    status = {ms.kOptimal: 0, ms.kInfeasible: 2, ms.kUnbounded: 3, ms.kModelError: 2}.get(st, 4)
    if status != 0:
        return _LPResult(status, np.zeros(0), math.nan, np.zeros(0))
    sol = h.getSolution()
    return _LPResult(
        0,
        np.asarray(sol.col_value, dtype=np.float64),
        float(h.getInfo().objective_function_value),
        np.asarray(sol.row_dual, dtype=np.float64)[: b_ub_.size],
    )


def _csc(
    a: Float64Array,
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32], Float64Array]:
    """Compressed-column ``(start, index, value)`` of a dense matrix's non-zeros.

    The arrays ``scipy.sparse.csc_array(a)`` holds (``indptr``, ``indices``, ``data``: rows
    sorted within each column, explicit zeros dropped), without building the sparse object.
    """
    cols, rows = np.nonzero(a.T)
    start = np.zeros(a.shape[1] + 1, dtype=np.int32)
    np.cumsum(np.bincount(cols, minlength=a.shape[1]), out=start[1:])
    return start, rows.astype(np.int32), np.ascontiguousarray(a.T[cols, rows], dtype=np.float64)


# --------------------------------------------------------------------------- restrictions


def _a_sd(n_pre: int, n_post: int) -> Float64Array:
    t = n_pre + n_post
    at = np.zeros((t - 1, t + 1))
    for r in range(t - 1):
        at[r, r : r + 3] = (1.0, -2.0, 1.0)
    at = np.delete(at, n_pre, axis=1)
    return np.vstack([at, -at])


def _a_b(n_pre: int, n_post: int, bias: str) -> Float64Array:
    ab = -np.eye(n_pre + n_post)[n_pre:, :]
    return -ab if bias == "negative" else ab


def _a_m(n_pre: int, n_post: int, monotone: str) -> Float64Array:
    n = n_pre + n_post
    am = np.zeros((n, n))
    for r in range(n_pre - 1):
        am[r, r], am[r, r + 1] = 1.0, -1.0
    am[n_pre - 1, n_pre - 1] = 1.0
    if n_post > 0:
        am[n_pre, n_pre] = -1.0
        for r in range(n_pre + 1, n):
            am[r, r - 1], am[r, r] = 1.0, -1.0
    return -am if monotone == "decreasing" else am


def _union_rows(
    n_pre: int,
    n_post: int,
    diff: tuple[float, ...],
    n_first: int,
    mbar: float,
    s_col: int,
    max_positive: bool,
) -> sp.csr_matrix:
    """Sparse rows ``[D - w v'; -D - w v']`` of a Δ^RM / Δ^SDRM polyhedron, as R builds them.

    ``D``: the ``t + 1 - len(diff) + 1`` difference rows (``diff`` = (-1, 1) first, (1, -2, 1)
    second differences) over the ``t + 1`` periods including the reference; ``v``: the same
    difference at column ``s_col`` (negated unless ``max_positive``); ``w`` = 1 on the first
    ``n_first`` rows, ``M̄`` after. Rows of (near-)zero norm are dropped and the reference
    column removed, as R's ``.create_A_RM`` / ``.create_A_SDRM`` do densely (the same values:
    each entry is at most one difference of two terms; tested against a dense transcription).
    """
    t = n_pre + n_post
    k = len(diff)
    n_rows = t + 1 - k + 1
    dv = np.asarray(diff, dtype=np.float64)
    vv = dv if max_positive else -dv
    w = np.r_[np.ones(n_first), np.full(n_rows - n_first, mbar)]
    r = np.arange(n_rows)
    parts_r, parts_c, parts_v = [], [], []
    for sign, off in ((1.0, 0), (-1.0, n_rows)):
        parts_r += [np.repeat(r + off, k), np.repeat(r + off, k)]
        parts_c += [
            (r[:, None] + np.arange(k)[None, :]).ravel(),
            np.tile(s_col + np.arange(k), n_rows),
        ]
        parts_v += [np.tile(sign * dv, n_rows), -(w[:, None] * vv[None, :]).ravel()]
    a = sp.csr_matrix(
        (np.concatenate(parts_v), (np.concatenate(parts_r), np.concatenate(parts_c))),
        shape=(2 * n_rows, t + 1),
    )
    a.sum_duplicates()
    norm2 = np.asarray(a.multiply(a).sum(axis=1)).ravel()
    a = a[np.flatnonzero(norm2 > 1e-10)]
    keep = np.r_[np.arange(n_pre), np.arange(n_pre + 1, t + 1)]
    out = a[:, keep].tocsr()
    out.eliminate_zeros()
    return out


@dataclass(frozen=True, slots=True)
class Piece:
    """One polyhedron ``{δ : A δ ≤ d}`` of a restriction (a union has several).

    ``sparse``: ``A`` as a CSR matrix where the constructor has it (Δ^RM, Δ^SDRM).
    """

    A: Float64Array
    d: Float64Array
    label: str = ""
    sparse: sp.csr_matrix | None = field(default=None, compare=False, repr=False)


def delta_pieces(
    restriction: str,
    n_pre: int,
    n_post: int,
    m: float,
    *,
    bias: str | None = None,
    monotone: str | None = None,
) -> list[Piece]:
    """Return the polyhedra of Δ^SD(M), Δ^RM(M̄) or Δ^SDRM(M̄), optionally sign/shape-restricted.

    ``bias`` (``"positive"``/``"negative"``) adds ``δ_post ≥ 0`` / ``≤ 0`` (R's ``DeltaSDB``,
    ``DeltaRMB``, ...); ``monotone`` (``"increasing"``/``"decreasing"``) adds a monotone ``δ``
    (R's ``DeltaSDM``, ...). Matrices follow R ``HonestDiD``'s ``.create_A_*`` exactly.
    """
    extra_a = np.zeros((0, n_pre + n_post))
    if bias is not None:
        extra_a = _a_b(n_pre, n_post, bias)
    elif monotone is not None:
        extra_a = _a_m(n_pre, n_post, monotone)
    extra_d = np.zeros(extra_a.shape[0])
    if restriction == "SD":
        a = _a_sd(n_pre, n_post)
        return [Piece(np.vstack([a, extra_a]), np.r_[np.full(a.shape[0], m), extra_d], "SD")]
    out: list[Piece] = []
    if restriction == "RM":
        s_range = range(-(n_pre - 1), 1)
        diff: tuple[float, ...] = (-1.0, 1.0)
        n_first, shift = n_pre, 1
    elif restriction == "SDRM":
        s_range = range(-(n_pre - 2), 1)
        diff = (1.0, -2.0, 1.0)
        n_first, shift = n_pre - 1, 2
    else:
        raise ValueError(f"unknown restriction {restriction!r}")
    extra_sp = sp.csr_matrix(extra_a)
    for s in s_range:
        for pos in (True, False):
            a = _union_rows(n_pre, n_post, diff, n_first, m, n_pre + s - shift, pos)
            full = sp.vstack([a, extra_sp], format="csr")
            out.append(
                Piece(
                    full.toarray(),
                    np.zeros(full.shape[0]),
                    f"s={s}{'+' if pos else '-'}",
                    full,
                )
            )
    return out


def id_set(piece: Piece, beta_pre: Float64Array, l_vec: Float64Array) -> tuple[float, float]:
    """Return the identified set of ``l'τ`` at ``β = (beta_pre, 0)`` (R ``.compute_IDset_*``)."""
    n_pre = beta_pre.size
    n = piece.A.shape[1]
    f = np.r_[np.zeros(n_pre), l_vec]
    a_eq = np.eye(n_pre, n)
    lo = _linprog(f, a_ub=piece.A, b_ub=piece.d, a_eq=a_eq, b_eq=beta_pre)
    hi = _linprog(-f, a_ub=piece.A, b_ub=piece.d, a_eq=a_eq, b_eq=beta_pre)
    ub = -lo.fun if lo.status == 0 else 0.0
    lb = hi.fun if hi.status == 0 else 0.0
    return float(lb), float(ub)


def grid_bounds(
    restriction: str,
    pieces: list[Piece],
    sigma: Float64Array,
    n_pre: int,
    l_vec: Float64Array,
) -> tuple[float, float]:
    """R's default θ grid for the ARP / LF tests: identified set at β = 0, ± 20 SD of l'β̂."""
    sd = float(np.sqrt(l_vec @ sigma[n_pre:, n_pre:] @ l_vec))
    if restriction == "SD":
        lb, ub = id_set(pieces[0], np.zeros(n_pre), l_vec)
        return lb - 20.0 * sd, ub + 20.0 * sd
    return -20.0 * sd, 20.0 * sd


# --------------------------------------------------------------------------- LP pieces


def _solve_eta(y: Float64Array, x: Float64Array, sd: Float64Array) -> tuple[float, Float64Array]:
    """``min η s.t. y - X δ ≤ η sd``: ``(η, λ)``, dual ``λ ≥ 0`` (R ``.test_delta_lp_fn``)."""
    k = x.shape[1]
    c = np.zeros(1 + k)
    c[0] = 1.0
    res = _linprog(c, a_ub=np.column_stack([-sd, -x]), b_ub=-y)
    if res.status != 0:
        return math.nan, np.zeros(y.size)
    return float(res.x[0]), -res.ineq_marginals


def _norminvp(p: float, lo: Float64Array, hi: Float64Array) -> Float64Array:
    """Quantile ``p`` of N(0, 1) truncated to ``[lo, hi]`` (R ``.norminvp_generalized``)."""
    lo = np.asarray(lo, dtype=np.float64)
    hi = np.asarray(hi, dtype=np.float64)
    out = np.empty(lo.shape)
    degenerate = lo >= hi
    out[degenerate] = lo[degenerate]
    full = ~degenerate & np.isneginf(lo) & np.isposinf(hi)
    out[full] = ndtri(p)
    rest = ~degenerate & ~full
    if rest.any():
        out[rest] = _truncnorm_ppf(p, lo[rest], hi[rest])
    return out


def _truncnorm_ppf(p: float, lo: Float64Array, hi: Float64Array) -> Float64Array:
    """``scipy.stats.truncnorm.ppf(p, lo, hi)`` for ``lo < hi`` without its per-call overhead.

    Inverts the CDF on the side of 0 where most of the interval lies (the upper side by the
    survival function, ``sf(x) = Φ(-x)``), so no probability below 1e-16 is formed as ``1 - Φ``; far
    tails (mass below 1e-200) and intervals too narrow for the difference of two CDF values go
    to ``truncnorm.ppf``. Equal to it to 1e-10 relative for 1e-6 <= p <= 0.999 (tested).
    """
    upper = lo + hi > 0.0  # most of the interval above 0 (hi = inf: the upper side)
    a = np.where(upper, -hi, lo)  # mirrored to the lower side: quantile of N(0,1) in [a, b]
    b = np.where(upper, -lo, hi)
    q = np.where(upper, 1.0 - p, p)
    pa, pb = ndtr(a), ndtr(b)
    with np.errstate(invalid="ignore", divide="ignore"):
        x = ndtri(pa + q * (pb - pa))
    out = np.where(upper, -x, x)
    bad = ~np.isfinite(out) | (pb < 1e-200) | (pb - pa < 1e-9 * pb) | (out < lo) | (out > hi)
    if bad.any():
        out[bad] = truncnorm.ppf(p, lo[bad], hi[bad])
    return np.asarray(out, dtype=np.float64)


class _DualEta:
    """Warm-started ``η(ξ) = max {ξ'λ : λ ≥ 0, sd'λ = 1, X'λ = 0}`` for many draws ``ξ``.

    The LP dual of :func:`_solve_eta` (equal optimum by strong duality): its feasible set does
    not depend on ``ξ``, so one HiGHS model (scipy's bundled binding) is re-solved from the
    previous optimal basis after changing only the objective — a few simplex pivots per draw
    instead of a fresh ``linprog`` (about 15× faster). Returns ``None`` where the bundled
    binding is unavailable or a solve does not end optimal; the caller then uses ``linprog``.
    """

    def __init__(self, x: Float64Array, sd: Float64Array) -> None:
        self._h: object | None = None
        try:
            from scipy.optimize._highspy import _core
        except ImportError:  # pragma: no cover - scipy < 1.15 lays its binding out differently
            return
        m, k = x.shape
        a_eq = np.column_stack([sd, x]).T  # (k + 1) x m, columns are the λ_j
        lp = _core.HighsLp()
        lp.num_col_ = m
        lp.num_row_ = k + 1
        lp.col_cost_ = np.zeros(m)
        lp.col_lower_ = np.zeros(m)
        lp.col_upper_ = np.full(m, _core.kHighsInf)
        rhs = np.zeros(k + 1)
        rhs[0] = 1.0
        lp.row_lower_ = rhs
        lp.row_upper_ = rhs
        lp.a_matrix_.format_ = _core.MatrixFormat.kColwise
        lp.a_matrix_.start_ = np.arange(0, m * (k + 1) + 1, k + 1, dtype=np.int32)
        lp.a_matrix_.index_ = np.tile(np.arange(k + 1, dtype=np.int32), m)
        lp.a_matrix_.value_ = np.ascontiguousarray(a_eq.T).ravel()
        h = _core._Highs()
        h.setOptionValue("output_flag", False)
        h.setOptionValue("presolve", "off")
        h.passModel(lp)
        self._core = _core
        self._h = h
        self._idx = np.arange(m, dtype=np.int32)

    def solve(self, xi: Float64Array) -> tuple[float, Float64Array] | None:
        """``(η, λ)`` at ``ξ``, or ``None`` (use ``linprog``)."""
        h: Any = self._h
        if h is None:
            return None
        h.changeColsCost(self._idx.size, self._idx, -np.asarray(xi, dtype=np.float64))
        h.run()
        if h.getModelStatus() != self._core.HighsModelStatus.kOptimal:
            return None
        lam = np.maximum(np.asarray(h.getSolution().col_value, dtype=np.float64), 0.0)
        return float(lam @ xi), lam


def least_favourable_cv(
    x: Float64Array,
    sigma: Float64Array,
    kappa: float,
    *,
    sims: int = 1000,
    seed: int = 0,
    xi: Float64Array | None = None,
) -> float:
    """Least-favourable critical value: ``1 - κ`` quantile of ``η(ξ)``, ``ξ ~ N(0, Σ)``.

    As R ``.compute_least_favorable_cv`` (1000 draws, quantile type 7); the draws come from
    numpy, so values differ from R's by simulation noise: ``xi`` ``[sims, rows]`` if given (the
    confidence sets pass ``A_r ξ`` with ``ξ ~ N(0, Σ_β)`` drawn once for all polyhedra, see
    :func:`_lf_draws`), else ``RandomState(seed).multivariate_normal(0, Σ, sims)``. Only the
    order statistics the quantile uses are computed exactly (warm-started dual LPs,
    :class:`_DualEta`): every other draw is bounded by the dual vertices found so far (lower)
    and by primal candidates built from their binding rows (upper).
    """
    if xi is None:
        rng = np.random.RandomState(seed)
        xi = rng.multivariate_normal(np.zeros(sigma.shape[0]), sigma, size=sims)
    xi = np.ascontiguousarray(xi, dtype=np.float64)
    sims = xi.shape[0]
    sd = np.sqrt(np.diag(sigma))
    ub0 = (xi / sd).max(axis=1)
    if x.shape[1] == 0:
        return float(np.quantile(ub0, 1.0 - kappa))
    h = (sims - 1) * (1.0 - kappa)
    need = sims - int(math.floor(h))  # the top `need` order statistics fix the quantile
    w_mat = np.column_stack([sd, x])
    lb = np.full(sims, -np.inf)
    ub = ub0.copy()
    exact = np.zeros(sims, dtype=bool)
    seen: set[bytes] = set()
    dual = _DualEta(x, sd)

    def add_vertex(lam: Float64Array) -> None:
        nonlocal lb, ub
        b_idx = np.flatnonzero(lam > _TOL_LAMBDA)
        key = b_idx.tobytes()
        if key in seen:  # same binding rows: same vertex, same primal candidate
            return
        seen.add(key)
        lb = np.maximum(lb, xi @ lam)
        # Primal candidate from the vertex's binding rows: (η, δ) solving them (least squares
        # when degenerate); its largest normalised residual bounds η(ξ) from above.
        sol = xi[:, b_idx] @ np.linalg.pinv(w_mat[b_idx]).T
        resid = (xi - sol[:, 1:] @ x.T) / sd
        ub = np.minimum(ub, resid.max(axis=1))

    solved = 0
    order = list(np.argsort(-ub0)[:need])
    while True:
        for i in order:
            got = dual.solve(xi[i])
            eta, lam = got if got is not None else _solve_eta(xi[i], x, sd)
            solved += 1
            if np.isfinite(eta):
                add_vertex(lam)
                lb[i] = ub[i] = eta
            exact[i] = True
        tight = exact | (ub - lb <= 1e-10 * (1.0 + np.abs(ub)))
        thr = np.sort(lb)[::-1][need - 1]
        pending = np.flatnonzero(~tight & (ub >= thr - 1e-12))
        if pending.size == 0 or solved >= sims:
            break
        order = list(pending[np.argsort(-ub[pending])][:8])
    vals = np.sort(np.where(lb >= np.sort(lb)[::-1][need - 1], lb, -np.inf))[::-1][:need]
    full = np.concatenate([np.full(sims - need, -np.inf), vals[::-1]])
    lo_i = int(math.floor(h))
    frac = h - lo_i
    lo_v = full[lo_i]
    hi_v = full[min(lo_i + 1, sims - 1)]
    return float(lo_v + frac * (hi_v - lo_v)) if frac > 0 else float(lo_v)


# --------------------------------------------------------------------------- ARP test


@dataclass
class _Problem:
    """The test of ``H0: l'τ = θ`` for one polyhedron, in R's reparametrisation."""

    y0: Float64Array  # A β̂ - d (all rows)
    a1: Float64Array  # A_post Γ⁻¹ e_1 (all rows): y(θ) = y0 - a1 θ
    x: Float64Array  # A_post Γ⁻¹ (other columns), rows used by the LP
    a_rows: sp.csr_matrix  # A_r: the LP's rows r of A (sparse: a few non-zeros per row)
    beta_sigma: Float64Array  # Σ of β̂
    rows: Int64Array
    alp: float
    hybrid: str
    kappa: float
    lf_cv: float = math.inf
    flci_centre: float = math.nan  # f'β̂ of the FLCI used by the hybrid
    flci_hl: float = math.nan
    vbar: Float64Array = field(default_factory=lambda: np.zeros(0))
    vbar_d: float = 0.0
    vbar_a1: float = 0.0
    sigma_full: Float64Array = field(default_factory=lambda: np.zeros((0, 0)))  # FLCI hybrid

    _sigma_rows: Float64Array | None = None
    _sd: Float64Array | None = None

    @property
    def sigma(self) -> Float64Array:
        """``A_r Σ A_r'`` over the LP's rows, computed on first use.

        Polyhedra skipped by the screen never need it.
        """
        if self._sigma_rows is None:
            half = np.asarray(self.a_rows @ self.beta_sigma)  # A_r Σ
            self._sigma_rows = np.asarray(self.a_rows @ half.T)  # A_r (A_r Σ)' = A_r Σ A_r'
        return self._sigma_rows

    @property
    def sd(self) -> Float64Array:
        """Standard deviations of the moments ``sqrt(diag(A_r Σ A_r'))``."""
        if self._sd is None:
            self._sd = np.asarray(np.sqrt(np.diag(self.sigma)), dtype=np.float64)
        return self._sd

    @property
    def mod_size(self) -> float:
        if self.hybrid == "ARP":
            return self.alp
        return (self.alp - self.kappa) / (1.0 - self.kappa)


def _gamma(l_vec: Float64Array) -> Float64Array:
    """Invertible matrix with first row ``l'`` (R ``.construct_Gamma``: RREF pivots of [l, I])."""
    t = l_vec.size
    last = int(np.flatnonzero(l_vec)[-1])
    eye = np.eye(t)
    return np.vstack([l_vec[None, :], np.delete(eye, last, axis=0)])


_GAMMA_INV: dict[bytes, Float64Array] = {}


def _gamma_inv(l_vec: Float64Array) -> Float64Array:
    """``Γ⁻¹`` of :func:`_gamma`, cached by ``l`` (every polyhedron of a union shares it)."""
    key = np.ascontiguousarray(l_vec, dtype=np.float64).tobytes()
    if key not in _GAMMA_INV:
        if len(_GAMMA_INV) > 64:
            _GAMMA_INV.clear()
        inv = np.asarray(np.linalg.inv(_gamma(l_vec)), dtype=np.float64)
        inv.setflags(write=False)
        _GAMMA_INV[key] = inv
    return _GAMMA_INV[key]


def _flci_vlo_vup(
    pr: _Problem, theta: Float64Array, gamma_full: Float64Array, y_full: Float64Array
) -> tuple[Float64Array, Float64Array]:
    """Return the FLCI first stage's truncation bounds (R ``.FLCI_computeVloVup``), in θ.

    ``y_full`` is ``[n_rows, n_theta]``; ``gamma_full`` is fixed.
    """
    sg = pr.sigma_full @ gamma_full
    c = sg / float(gamma_full @ sg)
    s_mat = y_full - np.outer(c, gamma_full @ y_full)
    vb_c = float(pr.vbar @ c)
    vb_s = pr.vbar @ s_mat
    dbar1 = pr.flci_hl - pr.vbar_d + (1.0 - pr.vbar_a1) * theta
    dbar2 = pr.flci_hl + pr.vbar_d - (1.0 - pr.vbar_a1) * theta
    vlo = np.full(theta.size, -np.inf)
    vup = np.full(theta.size, np.inf)
    for sign, dbar in ((1.0, dbar1), (-1.0, dbar2)):
        den = sign * vb_c
        val = (dbar - sign * vb_s) / den if den != 0 else None
        if val is None:
            continue
        if den < 0:
            vlo = np.maximum(vlo, val)
        else:
            vup = np.minimum(vup, val)
    return vlo, vup


def _decide(pr: _Problem, maxstat: Float64Array, zlo: Float64Array, zup: Float64Array) -> BoolArray:
    """Accept where ``maxstat`` lies outside [zlo, zup] (R's convention) or below the cv."""
    inside = (zlo <= maxstat) & (maxstat <= zup)
    accept = np.ones(maxstat.size, dtype=bool)
    if inside.any():
        cval = np.maximum(0.0, _norminvp(1.0 - pr.mod_size, zlo[inside], zup[inside]))
        accept[inside] = ~(maxstat[inside] > cval)
    return accept


def _primal_block(
    pr: _Problem, b_idx: Int64Array, theta: Float64Array, eta: Float64Array
) -> BoolArray:
    """R's primal branch for a fixed binding set ``B``, vectorised over θ."""
    sig = pr.sigma
    x = pr.x
    sd = pr.sd
    n = sd.size
    bc_idx = np.setdiff1d(np.arange(n), b_idx)
    w_b = np.column_stack([sd[b_idx], x[b_idx]])
    w_bc = np.column_stack([sd[bc_idx], x[bc_idx]])
    w_inv = np.linalg.inv(w_b)
    y = pr.y0[pr.rows, None] - np.outer(pr.a1[pr.rows], theta)  # [n, n_theta]
    v_b = np.zeros(n)
    v_b[b_idx] = w_inv[0]
    sigma2_b = float(v_b @ sig @ v_b)
    sigma_b = math.sqrt(sigma2_b)
    g_y = w_bc @ (w_inv @ y[b_idx]) - y[bc_idx]  # Γ_B y
    # Γ_B Σ v_B
    sv = sig @ v_b
    rho = (w_bc @ (w_inv @ sv[b_idx]) - sv[bc_idx]) / sigma2_b
    vy = v_b @ y
    with np.errstate(divide="ignore", invalid="ignore"):
        mm = -g_y / rho[:, None] + vy[None, :]
    vlo = np.max(np.where(rho[:, None] > 0, mm, -np.inf), axis=0, initial=-np.inf)
    vup = np.min(np.where(rho[:, None] < 0, mm, np.inf), axis=0, initial=np.inf)
    if pr.hybrid == "LF":
        vup = np.minimum(vup, pr.lf_cv)
    elif pr.hybrid == "FLCI":
        gamma_full = np.zeros(pr.y0.size)
        gamma_full[pr.rows] = v_b
        y_full = pr.y0[:, None] - np.outer(pr.a1, theta)
        flo, fup = _flci_vlo_vup(pr, theta, gamma_full, y_full)
        vlo, vup = np.maximum(vlo, flo), np.minimum(vup, fup)
    return _decide(pr, eta / sigma_b, vlo / sigma_b, vup / sigma_b)


def _dual_vlo_vup(
    eta: float, s_t: Float64Array, b_vec: Float64Array, w_t: Float64Array
) -> tuple[float, float]:
    """Return the dual branch's truncation bounds exactly, by two linear-fractional programmes.

    ARP (App. D) define ``[vlo, vup]`` as the values ``c`` for which ``c`` stays the optimum
    of ``g(c) = max {λ'(s + b c) : λ ≥ 0, W'λ = e_1}``; R finds them by bisection on ``c``
    (tolerance ``1e-6``). Since ``g(c) = c`` iff ``λ_v's ≤ (1 - λ_v'b) c`` at every vertex
    ``λ_v``, ``vup = min λ's / (1 - λ'b)`` over ``λ'b > 1`` and ``vlo = max`` of the same over
    ``λ'b < 1``; the Charnes–Cooper substitution ``μ = λ t`` makes each one LP.
    """
    n, kp1 = w_t.shape
    e1 = np.zeros(kp1)
    e1[0] = 1.0
    out = []
    for up in (False, True):
        # variables (μ, t); W'μ - e1 t = 0; sign * (b'μ - t) = 1
        sign = 1.0 if up else -1.0
        a_eq = np.vstack([np.column_stack([w_t.T, -e1]), np.r_[sign * b_vec, -sign]])
        b_eq = np.r_[np.zeros(kp1), 1.0]
        res = _linprog(np.r_[-s_t, 0.0], a_eq=a_eq, b_eq=b_eq, lower=0.0)
        if res.status == 2:  # infeasible: no vertex on that side
            out.append(math.inf if up else -math.inf)
        elif res.status == 3:
            out.append(-math.inf if up else math.inf)
        elif res.status != 0:
            out.append(math.inf if up else -math.inf)
        else:
            val = float(res.x[:n] @ s_t)
            out.append(-val if up else val)
    vlo, vup = out
    # The programme's own optimum is η: keep the bounds on the right side of it.
    return min(vlo, eta), max(vup, eta)


def _single_test(pr: _Problem, theta: float, eta: float, lam: Float64Array) -> bool:
    """R's dual branch (degenerate LP or rank-deficient binding set) at one θ."""
    sig = pr.sigma
    sd = pr.sd
    y = pr.y0[pr.rows] - pr.a1[pr.rows] * theta
    w_t = np.column_stack([sd, pr.x])
    g = lam
    gsg = float(g @ sig @ g)
    sigma_b = math.sqrt(max(gsg, 0.0))
    if sigma_b < 1e-10:
        return not (eta > 0)
    b_vec = sig @ g / gsg
    s_t = y - b_vec * float(g @ y)
    vlo, vup = _dual_vlo_vup(eta, s_t, b_vec, w_t)
    th = np.array([theta])
    if pr.hybrid == "LF":
        vup = min(vup, pr.lf_cv)
    elif pr.hybrid == "FLCI":
        gamma_full = np.zeros(pr.y0.size)
        gamma_full[pr.rows] = g
        y_full = (pr.y0 - pr.a1 * theta)[:, None]
        flo, fup = _flci_vlo_vup(pr, th, gamma_full, y_full)
        vlo, vup = max(vlo, float(flo[0])), min(vup, float(fup[0]))
    return bool(
        _decide(
            pr, np.array([eta / sigma_b]), np.array([vlo / sigma_b]), np.array([vup / sigma_b])
        )[0]
    )


def _sweep(pr: _Problem, theta: Float64Array) -> BoolArray:
    """Test every θ of a sorted grid; one LP per change of optimal basis (see module doc)."""
    accept = np.zeros(theta.size, dtype=bool)
    sd = pr.sd
    x = pr.x
    k = x.shape[1]
    y0 = pr.y0[pr.rows]
    a1 = pr.a1[pr.rows]
    # First stages of the hybrids (vectorised): LF needs η, FLCI only θ.
    todo = np.ones(theta.size, dtype=bool)
    if pr.hybrid == "FLCI":
        # R's grid ends exactly on the FLCI bounds; a tie there is rejected (as R's rounding
        # does), so the set never reports the first-stage boundary itself.
        todo &= np.abs(pr.flci_centre - theta) < pr.flci_hl * (1.0 - 1e-10)
    i = 0
    n_t = theta.size
    while i < n_t:
        if not todo[i]:
            i += 1
            continue
        th = float(theta[i])
        eta, lam = _solve_eta(y0 - a1 * th, x, sd)
        if not math.isfinite(eta):
            i += 1  # R: LP failed -> do not reject
            accept[i - 1] = True
            continue
        b_mask = lam > _TOL_LAMBDA
        b_idx = np.flatnonzero(b_mask)
        degenerate = b_idx.size != k + 1
        if not degenerate and k > 0:
            degenerate = np.linalg.matrix_rank(x[b_idx]) != min(b_idx.size, k)
        if degenerate:
            if pr.hybrid == "LF" and eta > pr.lf_cv:
                accept[i] = False
            else:
                accept[i] = _single_test(pr, th, eta, lam)
            i += 1
            continue
        # Interval of grid points where basis B stays optimal: all other rows feasible.
        w_b = np.column_stack([sd[b_idx], x[b_idx]])
        rest = np.arange(i, n_t)
        rest = rest[todo[rest]]
        y_r = y0[:, None] - np.outer(a1, theta[rest])
        sol = np.linalg.solve(w_b, y_r[b_idx])  # (η, δ) per θ
        slack = y_r - np.column_stack([sd, x]) @ sol
        tol = 1e-9 * (1.0 + np.abs(y_r).max(axis=0))
        feasible = np.all(slack <= tol[None, :], axis=0)
        stop = int(np.argmin(feasible)) if not feasible.all() else feasible.size
        block = rest[: max(stop, 1)]
        etas = np.asarray(sol[0, : block.size], dtype=np.float64)
        acc = np.ones(block.size, dtype=bool)
        if pr.hybrid == "LF":
            first = etas > pr.lf_cv
            acc[first] = False
            live = ~first
        else:
            live = np.ones(block.size, dtype=bool)
        if live.any():
            acc[live] = _primal_block(pr, b_idx, theta[block[live]], etas[live])
        accept[block] = acc
        i = int(block[-1]) + 1
    return accept


def _test_point(pr: _Problem, theta: float) -> bool:
    """Run the (hybrid) ARP test at one θ (R ``.lp_conditional_test_fn``): True = accept."""
    if pr.hybrid == "FLCI" and not abs(pr.flci_centre - theta) < pr.flci_hl * (1.0 - 1e-10):
        return False
    sd = pr.sd
    x = pr.x
    k = x.shape[1]
    eta, lam = _solve_eta(pr.y0[pr.rows] - pr.a1[pr.rows] * theta, x, sd)
    if not math.isfinite(eta):
        return True
    if pr.hybrid == "LF" and eta > pr.lf_cv:
        return False
    b_idx = np.flatnonzero(lam > _TOL_LAMBDA)
    degenerate = b_idx.size != k + 1
    if not degenerate and k > 0:
        degenerate = np.linalg.matrix_rank(x[b_idx]) != min(b_idx.size, k)
    if degenerate:
        return _single_test(pr, theta, eta, lam)
    th, et = np.array([theta], dtype=np.float64), np.array([eta], dtype=np.float64)
    return bool(_primal_block(pr, b_idx, th, et)[0])


def _first_stage_interval(
    pr: _Problem, cv: float, certificates: list[Float64Array] | None = None
) -> tuple[float, float]:
    """``{θ : η(θ) ≤ cv}`` (an interval: η is convex in θ), by two LPs; NaN if empty.

    The optimal duals ``μ ≥ 0`` of the two LPs (``X'μ = 0``, ``a'μ = ±1``) are appended to
    ``certificates``: they bound the interval of any problem with the same ``X`` and ``a``
    (:func:`_outer_interval`).
    """
    sd = pr.sd
    x = pr.x
    k = x.shape[1]
    a_ub = np.column_stack([-pr.a1[pr.rows], -x])  # variables (θ, δ)
    b_ub = cv * sd - pr.y0[pr.rows]
    out = []
    for sign in (1.0, -1.0):
        c = np.zeros(1 + k)
        c[0] = sign
        res = _linprog(c, a_ub=a_ub, b_ub=b_ub)
        if res.status == 2:
            return math.nan, math.nan
        out.append(-sign * math.inf if res.status == 3 else float(res.x[0]))
        if res.status == 0 and certificates is not None:
            certificates.append(np.maximum(-res.ineq_marginals, 0.0))
    return out[0], out[1]


def _outer_interval(
    pr: _Problem, cv: float, certificates: list[Float64Array]
) -> tuple[float, float]:
    """Return an interval containing ``{θ : η(θ) ≤ cv}`` from dual certificates (no LP).

    For ``μ ≥ 0`` with ``X'μ = 0``, weak duality gives ``η(θ) sd'μ ≥ μ'(y₀ - a θ)``, so
    ``η(θ) ≤ cv`` implies ``(μ'a) θ ≥ μ'y₀ - cv sd'μ``: a lower bound of θ where ``μ'a > 0``,
    an upper one where ``μ'a < 0``. Certificates whose ``X'μ`` is not zero to rounding are
    skipped.
    """
    sd = pr.sd
    y0 = pr.y0[pr.rows]
    a1 = pr.a1[pr.rows]
    lo, hi = -math.inf, math.inf
    x_scale = 1.0 + float(np.abs(pr.x).max(initial=0.0))
    for mu in certificates:
        if mu.size != y0.size:
            continue
        ma = float(mu @ a1)
        scale = float(mu.sum())
        if scale <= 0 or abs(ma) < 1e-8 * scale * (1.0 + float(np.abs(a1).max())):
            continue
        if np.abs(mu @ pr.x).max(initial=0.0) > 1e-9 * scale * x_scale:
            continue
        bound = (float(mu @ y0) - cv * float(mu @ sd)) / ma
        if ma > 0:
            lo = max(lo, bound)
        else:
            hi = min(hi, bound)
    return lo, hi


def _hull_search(test: Callable[[int], bool], idx: Int64Array) -> tuple[int, int] | None:
    """Outermost accepted entries of ``idx`` (sorted grid indices) by a coarse scan + bisection.

    Up to 128 candidates are all tested; beyond, 32 coarse points, then bisection between the
    outermost accepted coarse point and its rejected neighbour on each side. Exact unless an
    accepted island narrower than the coarse step (1/32 of the candidates) lies beyond the
    outermost accepted coarse point (``exhaustive=True`` in :func:`conditional_set` tests all).
    """
    n = idx.size
    if n == 0:
        return None
    if n <= 128:
        # Every candidate counts: scan inwards from each end and stop at the first accepted
        # one (the same end points as testing all of them, without testing the interior).
        first_i = next((j for j in range(n) if test(int(idx[j]))), None)
        if first_i is None:
            return None
        last_i = next(j for j in range(n - 1, first_i - 1, -1) if j == first_i or test(int(idx[j])))
        return int(idx[first_i]), int(idx[last_i])
    stride = n // 32
    coarse = np.unique(np.r_[np.arange(0, n, stride), n - 1])
    acc = {int(c): test(int(idx[c])) for c in coarse}
    hits = [c for c in coarse if acc[int(c)]]
    if not hits:
        return None
    first, last = int(hits[0]), int(hits[-1])
    pos = int(np.searchsorted(coarse, first))
    lo = int(coarse[pos - 1]) if pos > 0 else None
    if lo is not None:
        a, b = lo, first  # a rejected, b accepted
        while b - a > 1:
            mid = (a + b) // 2
            if test(int(idx[mid])):
                b = mid
            else:
                a = mid
        first = b
    pos = int(np.searchsorted(coarse, last))
    hi = int(coarse[pos + 1]) if pos + 1 < coarse.size else None
    if hi is not None:
        a, b = last, hi  # a accepted, b rejected
        while b - a > 1:
            mid = (a + b) // 2
            if test(int(idx[mid])):
                a = mid
            else:
                b = mid
        last = a
    return int(idx[first]), int(idx[last])


def _problem(
    betahat: Float64Array,
    sigma: Float64Array,
    n_pre: int,
    l_vec: Float64Array,
    piece: Piece,
    *,
    alp: float,
    hybrid: str,
    kappa: float,
    rows: Int64Array | None,
    flci_weights: Float64Array | None,
    flci_hl: float,
    a_sparse: sp.csr_matrix | None = None,
) -> _Problem:
    """R's reparametrisation ``y(θ) = A β̂ - d - a θ``, ``X = A_post Γ⁻¹[:, 1:]`` (no LF cv).

    ``a_sparse``: ``piece.A`` as a CSR matrix, if the caller has it (rows of Δ have a few
    non-zeros: the products below cost O(non-zeros), not O(rows × periods²)).
    """
    a_mat, d = piece.A, piece.d
    a_sp = sp.csr_matrix(a_mat) if a_sparse is None else a_sparse
    gam_inv = _gamma_inv(l_vec)
    ag = np.asarray(a_sp[:, n_pre:] @ gam_inv)
    rows_ = np.arange(a_mat.shape[0]) if rows is None else np.asarray(rows, dtype=np.int64)
    pr = _Problem(
        y0=np.asarray(a_sp @ betahat) - d,
        a1=ag[:, 0],
        x=ag[rows_][:, 1:],
        a_rows=a_sp[rows_],
        beta_sigma=sigma,
        rows=rows_,
        alp=alp,
        hybrid=hybrid,
        kappa=kappa,
    )
    if hybrid == "FLCI":
        if flci_weights is None:
            raise ValueError("the FLCI hybrid needs flci_weights")
        pr.sigma_full = a_mat @ sigma @ a_mat.T
        vbar = np.asarray(np.linalg.lstsq(a_mat.T, flci_weights, rcond=None)[0], dtype=np.float64)
        pr.vbar = vbar
        pr.vbar_d = float(vbar @ d)
        pr.vbar_a1 = float(vbar @ pr.a1)
        pr.flci_centre = float(flci_weights @ betahat)
        pr.flci_hl = flci_hl
    return pr


def arp_accept(
    betahat: Float64Array,
    sigma: Float64Array,
    n_pre: int,
    l_vec: Float64Array,
    piece: Piece,
    theta: Float64Array,
    *,
    alp: float,
    hybrid: str,
    kappa: float,
    rows: Int64Array | None,
    flci_weights: Float64Array | None = None,
    flci_hl: float = math.nan,
    seed: int = 0,
) -> BoolArray:
    """Which θ of a sorted grid the (hybrid) ARP test of ``l'τ = θ, δ ∈ piece`` accepts.

    Every grid point is tested (R's ``.ARP_computeCI``); see :func:`conditional_set` for the
    fast search of the set's end points.

    Parameters
    ----------
    betahat, sigma, n_pre, l_vec
        Event-study coefficients and covariance, number of pre periods, target weights.
    piece
        The polyhedron.
    theta
        Sorted grid.
    alp, hybrid, kappa
        Level; ``"ARP"``, ``"LF"`` or ``"FLCI"``; first-stage size of the hybrids.
    rows
        Moments used by the LP (R's ``rowsForARP``: those involving post periods); ``None`` =
        all.
    flci_weights, flci_hl
        The level-κ FLCI (weights on β̂ and half-length) of the ``"FLCI"`` hybrid.
    seed
        Seed of the least-favourable simulation.

    Returns
    -------
    bool array
    """
    pr = _problem(
        betahat,
        sigma,
        n_pre,
        l_vec,
        piece,
        alp=alp,
        hybrid=hybrid,
        kappa=kappa,
        rows=rows,
        flci_weights=flci_weights,
        flci_hl=flci_hl,
    )
    if hybrid == "LF":
        pr.lf_cv = least_favourable_cv(pr.x, pr.sigma, kappa, xi=_lf_draws(pr, seed))
    return _sweep(pr, np.asarray(theta, dtype=np.float64))


def _looseness(
    betahat: Float64Array,
    sigma: Float64Array,
    piece: Piece,
    rows: Int64Array | None,
    a_sp: sp.csr_matrix,
) -> float:
    """Mean standardised moment ``(A β̂ - d)_j / sd_j`` over the LP's rows (sort key only)."""
    r_ = np.arange(piece.A.shape[0]) if rows is None else rows
    a = a_sp[r_]
    sd = np.sqrt(np.maximum(np.asarray(a.multiply(a @ sigma).sum(axis=1)).ravel(), 1e-300))
    return float(np.mean((np.asarray(a @ betahat) - piece.d[r_]) / sd))


# Draws of ξ ~ N(0, Σ) behind the least-favourable critical values: one set per (Σ, seed,
# sims), shared by every polyhedron of a union (each maps them to its moments, A_r ξ).
_BASE_DRAWS: dict[bytes, Float64Array] = {}


def _base_draws(sigma: Float64Array, seed: int, sims: int) -> Float64Array:
    """``RandomState(seed).multivariate_normal(0, Σ, sims)`` transposed, ``[T, sims]``, cached.

    C order, for the sparse products ``A_r ξ'`` of :func:`_lf_draws`.
    """
    import hashlib

    h = hashlib.blake2b(np.ascontiguousarray(sigma, dtype=np.float64).tobytes(), digest_size=20)
    h.update(np.array([float(seed), float(sims), float(sigma.shape[0])]).tobytes())
    key = h.digest()
    if key not in _BASE_DRAWS:
        if len(_BASE_DRAWS) > 8:
            _BASE_DRAWS.clear()
        rng = np.random.RandomState(seed)
        z = np.ascontiguousarray(rng.multivariate_normal(np.zeros(sigma.shape[0]), sigma, sims).T)
        z.setflags(write=False)
        _BASE_DRAWS[key] = z
    return _BASE_DRAWS[key]


def _lf_draws(pr: _Problem, seed: int, sims: int = 1000) -> Float64Array:
    """Draws of the LP's moments ``A_r ξ ~ N(0, A_r Σ A_r')``, ``[sims, rows]``."""
    z = _base_draws(pr.beta_sigma, seed, sims)
    return np.asarray(pr.a_rows @ z).T


# Least-favourable critical values and first-stage intervals of recent polyhedra: the θ grid
# is widened by re-running :func:`conditional_set` on the same polyhedra (and ``breakdown``
# revisits values of M), so each is simulated once. Keyed by a digest of everything they
# depend on; cleared when it grows past 4096 entries.
_LF_CACHE: dict[bytes, tuple[float, float]] = {}


def _context_key(
    betahat: Float64Array, sigma: Float64Array, l_vec: Float64Array, n_pre: int
) -> bytes:
    """Digest of the inputs every polyhedron of one :func:`conditional_set` call shares."""
    import hashlib

    h = hashlib.blake2b(digest_size=20)
    for arr in (betahat, sigma, l_vec):
        h.update(np.ascontiguousarray(arr, dtype=np.float64).tobytes())
        h.update(str(np.shape(arr)).encode())
    h.update(str(n_pre).encode())
    return h.digest()


def _cache_key(pr: _Problem, kappa: float, seed: int, context: bytes) -> bytes:
    """Digest of one polyhedron's problem: the shared inputs, its rows ``A_r`` and ``d_r``."""
    import hashlib

    if len(_LF_CACHE) > 4096:
        _LF_CACHE.clear()
    h = hashlib.blake2b(context, digest_size=20)
    a = pr.a_rows
    for arr in (a.indptr, a.indices, a.data, pr.y0[pr.rows]):
        h.update(np.ascontiguousarray(arr).tobytes())
        h.update(str(arr.shape).encode())
    h.update(np.array([kappa, float(seed)]).tobytes())
    return h.digest()


def _lf_cv_upper(pr: _Problem, kappa: float, seed: int, sims: int = 1000) -> float:
    """Upper bound of the LF critical value without LPs (``η(ξ) ≤ max_j ξ_j / σ_j``).

    The draws are those of :func:`least_favourable_cv` (:func:`_lf_draws`), so the bound holds
    draw by draw and therefore for the quantile.
    """
    xi_t = _lf_draws(pr, seed, sims).T  # [rows, sims], C order
    return float(np.quantile((xi_t / pr.sd[:, None]).max(axis=0), 1.0 - kappa))


# --------------------------------------------------------------------------- confidence sets


@dataclass(frozen=True, slots=True)
class ConditionalSet:
    """Accepted grid points of a conditional / hybrid confidence set."""

    theta: Float64Array
    accept: BoolArray

    @property
    def bounds(self) -> tuple[float, float]:
        """``(min, max)`` accepted θ (R: ``min/max(grid[accept == 1])``); NaN if empty."""
        if not self.accept.any():
            return math.nan, math.nan
        acc = self.theta[self.accept]
        return float(acc.min()), float(acc.max())

    @property
    def open_ended(self) -> bool:
        """Whether an end point of the grid is accepted (the set may extend beyond it)."""
        return bool(self.accept[0] or self.accept[-1])


def post_rows(a_mat: Float64Array, n_pre: int) -> Int64Array:
    """Rows of ``A`` that involve a post period (R's ``rowsForARP``)."""
    return np.flatnonzero(np.any(a_mat[:, n_pre:] != 0, axis=1)).astype(np.int64)


def conditional_set(
    betahat: Float64Array,
    sigma: Float64Array,
    n_pre: int,
    l_vec: Float64Array,
    *,
    restriction: str,
    m: float,
    hybrid: str,
    alp: float,
    bias: str | None = None,
    monotone: str | None = None,
    grid_points: int = 1000,
    grid_lb: float | None = None,
    grid_ub: float | None = None,
    seed: int = 0,
    exhaustive: bool = False,
) -> ConditionalSet:
    """Conditional (``"ARP"``) or hybrid (``"LF"``, ``"FLCI"``) set (R ``computeConditionalCS_*``).

    The union over the polyhedra of Δ^RM / Δ^SDRM is taken on the θ grid, which is R's
    default unless ``grid_lb`` / ``grid_ub`` are given. ``exhaustive=True`` tests every grid
    point of every polyhedron, as R does; the default finds the end points of each
    polyhedron's set by a coarse scan and bisection (:func:`_hull_search`), skips polyhedra
    that cannot widen the union (C-LF: the least-favourable first stage bounds where a
    polyhedron can accept) and reports the accepted hull ``[min, max]`` — R's reported set.
    """
    from causalmem._numerics.honest_flci import flci

    n_post = l_vec.size
    kappa = alp / 10.0
    pieces = delta_pieces(restriction, n_pre, n_post, m, bias=bias, monotone=monotone)
    fl_w: Float64Array | None = None
    fl_hl = math.nan
    if hybrid == "FLCI":
        if restriction != "SD":
            raise ValueError("the FLCI hybrid exists for Δ^SD and its sign/shape variants only")
        fit = flci(betahat, sigma, n_pre, l_vec, np.array([m]), kappa)
        fl_w, fl_hl = fit.weights[0], float(fit.half_length[0])
        lo_d, hi_d = fit.centre[0] - fl_hl, fit.centre[0] + fl_hl
    else:
        lo_d, hi_d = grid_bounds(restriction, pieces, sigma, n_pre, l_vec)
        if restriction == "SD" and (bias is not None or monotone is not None):
            lb, ub = id_set(pieces[0], np.zeros(n_pre), l_vec)
            sd = float(np.sqrt(l_vec @ sigma[n_pre:, n_pre:] @ l_vec))
            lo_d, hi_d = lb - 20 * sd, ub + 20 * sd
    theta = np.linspace(
        lo_d if grid_lb is None else grid_lb, hi_d if grid_ub is None else grid_ub, grid_points
    )
    accept = np.zeros(theta.size, dtype=bool)
    lo_i, hi_i = theta.size, -1
    prepared = []
    for piece in pieces:
        a_mat, d = piece.A, piece.d
        if n_post == 1 and restriction != "SD":
            keep = np.flatnonzero(a_mat[:, -1] != 0)
            piece = Piece(a_mat[keep], d[keep], piece.label)
            rows = None
        elif n_post > 1:
            rows = post_rows(a_mat, n_pre)
        else:
            rows = None
        prepared.append((piece, rows))
    if hybrid != "FLCI":
        # The test sees a polyhedron only through its moment rows; at M̄ = 0 every location s
        # of Δ^RM gives the same post-period rows, so identical problems are tested once.
        seen: set[bytes] = set()
        unique = []
        for piece, rows in prepared:
            r_ = np.arange(piece.A.shape[0]) if rows is None else rows
            key = np.ascontiguousarray(np.column_stack([piece.A[r_], piece.d[r_]]) + 0.0).tobytes()
            if key not in seen:
                seen.add(key)
                unique.append((piece, rows))
        prepared = unique
    sparse = {
        id(piece): sp.csr_matrix(piece.A) if piece.sparse is None else piece.sparse
        for piece, _ in prepared
    }
    context = _context_key(betahat, sigma, l_vec, n_pre)
    if not exhaustive and len(prepared) > 1:
        # Most promising polyhedra first (smallest attainable η): the first ones set a wide
        # hull that most others cannot widen, so those are skipped or barely searched.
        # The polyhedra of a union share A_post (the same X and a), so their moments differ by
        # the pre-period terms of A β̂ - d: the mean standardised moment is a cheap proxy of
        # min_θ η(θ) (one LP per polyhedron: on long windows it was the main cost).
        prepared.sort(
            key=lambda pr_: _looseness(betahat, sigma, pr_[0], pr_[1], sparse[id(pr_[0])])
        )
    certificates: list[Float64Array] = []
    step = float(theta[1] - theta[0]) if theta.size > 1 else 0.0
    for piece, rows in prepared:
        if exhaustive:
            todo = ~accept
            if not todo.any():
                break
            acc = arp_accept(
                betahat,
                sigma,
                n_pre,
                l_vec,
                piece,
                theta[todo],
                alp=alp,
                hybrid=hybrid,
                kappa=kappa,
                rows=rows,
                flci_weights=fl_w,
                flci_hl=fl_hl,
                seed=seed,
            )
            accept[np.flatnonzero(todo)[acc]] = True
            continue
        pr = _problem(
            betahat,
            sigma,
            n_pre,
            l_vec,
            piece,
            alp=alp,
            hybrid=hybrid,
            kappa=kappa,
            rows=rows,
            flci_weights=fl_w,
            flci_hl=fl_hl,
            a_sparse=sparse[id(piece)],
        )
        cand = np.ones(theta.size, dtype=bool)
        if hybrid == "LF":
            # Screen: the first stage rejects every θ with η(θ) above the LF critical value;
            # an LP-free upper bound of that value bounds where the piece can accept.
            key = _cache_key(pr, kappa, seed, context)
            if key + b"screen" not in _LF_CACHE:
                if key + b"up" not in _LF_CACHE:
                    up = _lf_cv_upper(pr, kappa, seed)
                    _LF_CACHE[key + b"up"] = (up, up)
                cv_up = _LF_CACHE[key + b"up"][0]
                if hi_i >= 0 and certificates:
                    # Dual certificates of earlier polyhedra (same X and a) bound where this one
                    # can accept; skip it without an LP when that stays inside the hull.
                    a, b = _outer_interval(pr, cv_up, certificates)
                    pad = 2.0 * step
                    reach = (theta >= a - pad) & (theta <= b + pad)
                    if not reach.any() or (
                        theta[reach][0] >= theta[lo_i] and theta[reach][-1] <= theta[hi_i]
                    ):
                        continue
                _LF_CACHE[key + b"screen"] = _first_stage_interval(pr, cv_up, certificates)
            a, b = _LF_CACHE[key + b"screen"]
            if math.isnan(a):
                continue
            reach = (theta >= a) & (theta <= b)
            if not reach.any() or (
                hi_i >= 0 and theta[reach][0] >= theta[lo_i] and theta[reach][-1] <= theta[hi_i]
            ):
                continue
            if key + b"exact" not in _LF_CACHE:
                cv = least_favourable_cv(pr.x, pr.sigma, kappa, xi=_lf_draws(pr, seed))
                _LF_CACHE[key + b"cv"] = (cv, cv)
                _LF_CACHE[key + b"exact"] = _first_stage_interval(
                    replace(pr, lf_cv=cv), cv, certificates
                )
            pr.lf_cv = _LF_CACHE[key + b"cv"][0]
            a, b = _LF_CACHE[key + b"exact"]
            if math.isnan(a):
                continue
            cand = (theta >= a - 1e-12 * (1 + abs(a))) & (theta <= b + 1e-12 * (1 + abs(b)))
        elif hybrid == "FLCI":
            cand = np.abs(pr.flci_centre - theta) < pr.flci_hl * (1.0 - 1e-10)

        def test(i: int, pr: _Problem = pr) -> bool:
            return _test_point(pr, float(theta[i]))

        if hi_i < 0:
            found = _hull_search(test, np.flatnonzero(cand))
            if found is not None:
                lo_i, hi_i = found
            continue
        # Only θ outside the current hull can widen the union.
        below = np.flatnonzero(cand[:lo_i])
        above = lo_i + 1 + np.flatnonzero(cand[lo_i + 1 :])
        above = above[above > hi_i]
        f_lo = _hull_search(test, below) if below.size else None
        if f_lo is not None:
            lo_i = f_lo[0]
        f_hi = _hull_search(test, above) if above.size else None
        if f_hi is not None:
            hi_i = f_hi[1]
    if not exhaustive and hi_i >= 0:
        accept[lo_i : hi_i + 1] = True
    return ConditionalSet(theta=theta, accept=accept)
