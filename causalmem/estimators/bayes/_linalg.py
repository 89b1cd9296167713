"""Small dense/sparse linear-algebra helpers of the cells model."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from causalmem._types import Float64Array, Int64Array


def _psd_sqrt(a: Float64Array) -> Float64Array:
    """Return a factor ``L`` with ``L L' = a`` for a symmetric PSD matrix (eigen-based)."""
    lam, q = np.linalg.eigh(0.5 * (a + a.T))
    return q * np.sqrt(np.maximum(lam, 0.0))[None, :]


def _segment_matrix(bounds: Int64Array, n: int) -> sp.csr_matrix:
    """``[G, J]`` indicator of the blocks ``bounds[h]:bounds[h + 1]`` (per-block sums)."""
    lengths = np.diff(bounds)
    rows = np.repeat(np.arange(lengths.size), lengths)
    return sp.csr_matrix((np.ones(n), (rows, np.arange(n))), shape=(lengths.size, n))


def _zero_sum_basis(k: int) -> Float64Array:
    """Orthonormal ``[k, k - 1]`` basis of the vectors summing to zero (Helmert contrasts)."""
    if k < 2:
        return np.zeros((k, 0))
    q, _ = np.linalg.qr(np.eye(k) - 1.0 / k)
    return np.asarray(q[:, : k - 1])


def _block_diag_dense(mats: list[Float64Array]) -> Float64Array:
    n = sum(m.shape[0] for m in mats)
    out = np.zeros((n, n))
    i = 0
    for m in mats:
        k = m.shape[0]
        out[i : i + k, i : i + k] = m
        i += k
    return out
