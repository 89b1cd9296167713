"""``DecayMarginal``: the per-cohort coefficients' exact marginal likelihood as a PyTensor Op.

The zero-sum cohort coefficients ``b_g = (alpha_g, beta_g1, ...)`` are integrated out exactly
(:mod:`._decay`'s formula). Written as a graph of small-matrix algebra, the gradient graph of
that formula took PyTensor's rewrites many minutes to compile; here the value and the gradient
are computed by one compiled loop over the cohort blocks (Numba; the same function serves
PyTensor's C/Python backends through ``perform``), and the gradient is exact by Fisher's
identity: with ``m_g`` and ``Vc_g`` the posterior mean and covariance of ``b_g`` given ``rho``
(zero-sum, by kriging), ``r_i = rho_i - F_i' m_g``::

    d(-2 log p)/d rho_i = 2 r_i / d_i
    d(-2 log p)/d d_i   = 1 / d_i - (r_i^2 + F_i' Vc_g F_i) / d_i^2
    d(-2 log p)/d s2_k  = (G - 1) / s2_k - sum_g (m_gk^2 + Vc_g[k, k]) / s2_k^2

(the last from ``-2 log p(b_k) = |b_k|^2 / s2_k + (G - 1) log s2_k`` on the zero-sum subspace).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from causalmem._types import Float64Array, Int64Array


def _chol_small(p: Any, k: int) -> Any:
    """Lower Cholesky factor of a small SPD matrix (loops: compiled by Numba)."""
    lo = np.zeros((k, k))
    for i in range(k):
        for j in range(i + 1):
            s = p[i, j]
            for m in range(j):
                s -= lo[i, m] * lo[j, m]
            if i == j:
                lo[i, i] = np.sqrt(s) if s > 0.0 else np.nan
            else:
                lo[i, j] = s / lo[j, j]
    return lo


def _chol_inverse(lo: Any, k: int) -> Any:
    """``(L L')^-1`` from the lower factor ``L`` (loops)."""
    inv_l = np.zeros((k, k))
    for c in range(k):
        for i in range(c, k):
            s = 1.0 if i == c else 0.0
            for m in range(c, i):
                s -= lo[i, m] * inv_l[m, c]
            inv_l[i, c] = s / lo[i, i]
    out = np.zeros((k, k))
    for i in range(k):
        for j in range(k):
            s = 0.0
            for m in range(max(i, j), k):
                s += inv_l[m, i] * inv_l[m, j]
            out[i, j] = s
    return out


def _decay_marginal_py(
    rho: Any, dvar: Any, f: Any, bounds: Any, s2: Any, grad: bool
) -> tuple[float, Any, Any, Any]:
    """``-2 log p(rho)`` (up to ``n log 2 pi``) and, if ``grad``, its gradients.

    ``rho``, ``dvar``: rotated residuals and their variances ``[n]``; ``f``: rotated loadings
    ``[n, K1]``; ``bounds``: block boundaries ``[G + 1]``; ``s2``: coefficient variances
    ``[K1]``. Returns ``(value, d/d rho, d/d dvar, d/d s2)`` (zeros when not ``grad``).
    """
    n, k1 = f.shape
    n_g = bounds.size - 1
    val = 0.0
    for i in range(n):
        val += rho[i] * rho[i] / dvar[i] + np.log(dvar[i])
    v_all = np.zeros((n_g, k1, k1))
    m0 = np.zeros((n_g, k1))
    big_w = np.zeros((k1, k1))
    big_m = np.zeros(k1)
    log_s2 = 0.0
    for k in range(k1):
        log_s2 += np.log(s2[k])
    for g in range(n_g):
        p = np.zeros((k1, k1))
        a = np.zeros(k1)
        for k in range(k1):
            p[k, k] = 1.0 / s2[k]
        for i in range(bounds[g], bounds[g + 1]):
            w = 1.0 / dvar[i]
            for r in range(k1):
                a[r] += f[i, r] * rho[i] * w
                for c in range(r + 1):
                    p[r, c] += f[i, r] * f[i, c] * w
        lo = _chol_small(p, k1)
        v = _chol_inverse(lo, k1)
        quad = 0.0
        for r in range(k1):
            s = 0.0
            for c in range(k1):
                s += v[r, c] * a[c]
            m0[g, r] = s
            quad += a[r] * s
            val += 2.0 * np.log(lo[r, r])
        val += log_s2 - quad
        v_all[g] = v
        big_w += v
        big_m += m0[g]
    # zero-sum constraint: M' W^-1 M + log det W - log det(G S)
    lw = _chol_small(big_w, k1)
    w_inv = _chol_inverse(lw, k1)
    corr = np.zeros(k1)
    for r in range(k1):
        s = 0.0
        for c in range(k1):
            s += w_inv[r, c] * big_m[c]
        corr[r] = s
    for r in range(k1):
        val += big_m[r] * corr[r] + 2.0 * np.log(lw[r, r]) - np.log(n_g * s2[r])
    g_rho = np.zeros(n)
    g_d = np.zeros(n)
    g_s2 = np.zeros(k1)
    if not grad:
        return val, g_rho, g_d, g_s2
    for k in range(k1):
        g_s2[k] = (n_g - 1) / s2[k]
    for g in range(n_g):
        v = v_all[g]
        mg = m0[g] - v @ corr  # posterior mean given sum_g b_g = 0
        vc = v - v @ w_inv @ v  # posterior covariance of b_g given sum_g b_g = 0
        for k in range(k1):
            g_s2[k] -= (mg[k] * mg[k] + vc[k, k]) / (s2[k] * s2[k])
        for i in range(bounds[g], bounds[g + 1]):
            fit = 0.0
            for r in range(k1):
                fit += f[i, r] * mg[r]
            quad_f = 0.0
            for r in range(k1):
                for c in range(k1):
                    quad_f += f[i, r] * vc[r, c] * f[i, c]
            resid = rho[i] - fit
            g_rho[i] = 2.0 * resid / dvar[i]
            g_d[i] = 1.0 / dvar[i] - (resid * resid + quad_f) / (dvar[i] * dvar[i])
    return val, g_rho, g_d, g_s2


_JIT: dict[str, Any] = {}


def decay_marginal(
    rho: Float64Array,
    dvar: Float64Array,
    f: Float64Array,
    bounds: Int64Array,
    s2: Float64Array,
    grad: bool = True,
) -> tuple[float, Float64Array, Float64Array, Float64Array]:
    """Compiled :func:`_decay_marginal_py` (Numba, compiled once per process)."""
    fn = _jitted()
    return fn(  # type: ignore[no-any-return]
        np.ascontiguousarray(rho, dtype=np.float64),
        np.ascontiguousarray(dvar, dtype=np.float64),
        np.ascontiguousarray(f, dtype=np.float64),
        np.ascontiguousarray(bounds, dtype=np.int64),
        np.ascontiguousarray(s2, dtype=np.float64),
        grad,
    )


def _jitted() -> Any:
    if "fn" not in _JIT:
        import numba

        # cache=True: compiled once per machine (numba's cache beside this file, or its
        # user-wide cache directory where this one is read-only), ~5 s saved per process.
        chol = numba.njit(cache=True)(_chol_small)
        inv = numba.njit(cache=True)(_chol_inverse)
        glb = dict(_decay_marginal_py.__globals__)
        glb.update(_chol_small=chol, _chol_inverse=inv)
        import types

        raw = types.FunctionType(_decay_marginal_py.__code__, glb, "_decay_marginal_py")
        _JIT["fn"] = numba.njit(cache=True)(raw)
    return _JIT["fn"]


def _decay_ops() -> Any:
    """Return the ``DecayMarginal`` Op class (built on first use: PyTensor is optional)."""
    global _OPS
    if _OPS is not None:
        return _OPS
    import pytensor.tensor as pt
    from pytensor.gradient import DisconnectedType, disconnected_type
    from pytensor.graph.basic import Apply
    from pytensor.graph.op import Op

    class DecayMarginal(Op):  # type: ignore[misc]
        """``-2 log p(rho | dvar, s2)``, the zero-sum cohort coefficients integrated out.

        Inputs ``rho`` ``[n]``, ``dvar`` ``[n]``, ``f`` ``[n, K1]`` (constant), ``bounds``
        ``int64[G + 1]`` (constant), ``s2`` ``[K1]``. Outputs the value (a scalar) and its
        gradients w.r.t. ``rho``, ``dvar`` and ``s2``, from one pass: the gradient graph
        refers to the outputs of the same node, so a compiled logp-and-gradient function
        evaluates the marginal once. Second derivatives are not implemented (NUTS needs
        none).
        """

        __props__ = ()

        def make_node(self, *inputs: Any) -> Any:
            rho, dvar, f, bounds, s2 = (pt.as_tensor_variable(v) for v in inputs)
            outs = [pt.dscalar(), rho.type(), dvar.type(), s2.type()]
            return Apply(self, [rho, dvar, f, bounds, s2], outs)

        def perform(self, node: Any, inputs: Any, output_storage: Any) -> None:
            rho, dvar, f, bounds, s2 = inputs
            val, g_rho, g_d, g_s2 = decay_marginal(rho, dvar, f, bounds, s2, grad=True)
            output_storage[0][0] = np.asarray(val, dtype=np.float64)
            output_storage[1][0] = g_rho
            output_storage[2][0] = g_d
            output_storage[3][0] = g_s2

        def infer_shape(self, *args: Any) -> Any:
            shapes = args[-1]
            return [(), shapes[0], shapes[1], shapes[4]]

        def connection_pattern(self, node: Any) -> list[list[bool]]:
            row = [True, True, True, True]
            off = [False, False, False, False]
            return [row, row, off, off, row]

        def grad(self, inputs: Any, grads: Any) -> list[Any]:
            if not all(isinstance(g.type, DisconnectedType) for g in grads[1:]):
                raise NotImplementedError(
                    "DecayMarginal: second derivatives of the cohort-coefficient marginal "
                    "are not implemented."
                )
            outs: Any = self(*inputs)
            gz = grads[0]
            return [
                gz * outs[1],
                gz * outs[2],
                disconnected_type(),
                disconnected_type(),
                gz * outs[3],
            ]

    DecayMarginal.__module__ = __name__
    DecayMarginal.__qualname__ = "_DecayMarginal"
    _register_numba(DecayMarginal)
    _OPS = DecayMarginal
    return _OPS


def _register_numba(op_class: Any) -> None:
    from causalmem.estimators.bayes._ops import register_numba

    def build(numba_njit: Any) -> Any:
        core = _jitted()

        @numba_njit  # type: ignore[misc]
        def decay_marginal_op(rho: Any, dvar: Any, f: Any, bounds: Any, s2: Any) -> Any:
            val, g_rho, g_d, g_s2 = core(
                np.ascontiguousarray(rho), np.ascontiguousarray(dvar), f, bounds, s2, True
            )
            return np.asarray(val), g_rho, g_d, g_s2

        return decay_marginal_op

    register_numba(op_class, build)


_OPS: Any = None


def __getattr__(name: str) -> Any:
    # Lets pickle (PyMC's worker processes) find the lazily built Op classes by name.
    if name == "_DecayMarginal":
        return _decay_ops()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
