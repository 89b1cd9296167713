"""Shard-invariant multiplier bootstrap: Rademacher multipliers keyed by (seed, id, draw).

The multiplier of row ``c`` (a unit, or a cluster) in draw ``b`` is a pure function of the
bootstrap key (derived from the seed), the row's identifier and ``b``::

    k_c      = splitmix64(hash(id_c) XOR splitmix64(key))
    word     = splitmix64(k_c + (b // 64) * 0xD1B54A32D192ED03)
    v_{c,b}  = +1 if bit (b mod 64) of word is set else -1

(``splitmix64`` is Steele, Lea & Flood's 64-bit finaliser, "Fast splittable pseudorandom number
generators", OOPSLA 2014; the word index is a counter, as in counter-based generators, Salmon et
al. 2011). Nothing depends on the order of the rows, on how they are split into batches, files
or workers, or on how many draws are generated at once, so the per-cohort multiplier sums
``sum_c v_bc Z_c`` and hence bootstrap SEs, sup-t bands and p-values are identical whatever the
shard layout. Identifiers are hashed by value: integers (and integer-valued floats) by their
int64 value, strings with pandas' SipHash (fixed key) of their UTF-8 bytes, so ``1``, ``1.0``
and an Arrow ``int32`` 1 get the same multipliers, and ``"1"`` a different one.

The cell draws are then formed from per-cohort sums in float64 (:func:`cell_draws`), so a
streamed estimate equals the in-memory one up to summation rounding.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from causalmem._numerics.cells import CellLayout
from causalmem._types import Float64Array

__all__ = [
    "DRAW_CHUNK",
    "BlockSums",
    "bootstrap_key",
    "cell_draws",
    "hash_ids",
    "keyed_chunks",
    "keyed_multipliers",
    "multiplier_sums",
]

_U64 = np.uint64
_GOLDEN = _U64(0x9E3779B97F4A7C15)
_M1 = _U64(0xBF58476D1CE4E5B9)
_M2 = _U64(0x94D049BB133111EB)
_WORD = _U64(0xD1B54A32D192ED03)
_SIP_KEY = "causalmem-mboot1"  # 16 bytes: pandas' SipHash key for string ids
#: Draws generated per block (a multiple of 64: one hashed word gives 64 multipliers).
DRAW_CHUNK = 256
#: Rows per block when generating multipliers (bounds the ``rows x DRAW_CHUNK`` scratch).
_ROW_CHUNK = 1 << 15


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """Vectorised splitmix64 finaliser on uint64 (wrap-around arithmetic)."""
    z = x + _GOLDEN
    z = (z ^ (z >> _U64(30))) * _M1
    z = (z ^ (z >> _U64(27))) * _M2
    return np.asarray(z ^ (z >> _U64(31)), dtype=_U64)


def bootstrap_key(seed: int | np.random.Generator) -> int:
    """Return the 63-bit bootstrap key of a seed.

    It is one draw of ``numpy.random.default_rng(seed)`` (or of a caller's Generator), so a
    seed gives the same key in every engine, process and worker.
    """
    gen = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(int(seed))
    return int(gen.integers(0, 2**63))


def hash_ids(ids: Any) -> np.ndarray:
    """64-bit hash of every identifier (by value; independent of dtype width and order).

    Parameters
    ----------
    ids
        Unit or cluster identifiers: integers, integer-valued floats, other floats, strings
        (anything array-like: numpy, pandas, pyarrow).

    Returns
    -------
    uint64 array

    Examples
    --------
    >>> (hash_ids([1, 2]) == hash_ids(np.array([1.0, 2.0]))).all()
    np.True_
    """
    if hasattr(ids, "to_numpy") and not isinstance(ids, np.ndarray):
        try:
            ids = ids.to_numpy(zero_copy_only=False)  # pyarrow
        except TypeError:
            ids = ids.to_numpy()  # pandas / polars
    arr = np.asarray(ids)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64, copy=False).view(_U64)
    if arr.dtype.kind == "f":
        f = arr.astype(np.float64, copy=False)
        whole = np.isfinite(f) & (f == np.floor(f)) & (np.abs(f) < 2.0**63)
        if whole.all():
            return f.astype(np.int64).view(_U64)
        out = np.where(whole, np.where(whole, f, 0).astype(np.int64).view(_U64), f.view(_U64))
        return np.asarray(out, dtype=_U64)
    if arr.dtype.kind == "b":
        return arr.astype(np.int64).view(_U64)
    obj = arr.astype(object) if arr.dtype.kind != "O" else arr
    kind = pd.api.types.infer_dtype(obj, skipna=False)
    if kind == "integer":
        return np.asarray(obj, dtype=np.int64).view(_U64)
    if kind == "floating":
        return hash_ids(np.asarray(obj, dtype=np.float64))
    if kind != "string":
        obj = np.asarray([str(v) for v in obj], dtype=object)
    return np.asarray(
        pd.util.hash_array(obj, encoding="utf8", hash_key=_SIP_KEY, categorize=False),
        dtype=_U64,
    )


def _row_keys(ids_hash: np.ndarray, key: int) -> np.ndarray:
    k = _splitmix64(np.array([key % (2**64)], dtype=_U64))[0]
    return _splitmix64(np.asarray(ids_hash, dtype=_U64) ^ k)


def _bits(row_keys: np.ndarray, start: int, stop: int) -> np.ndarray:
    """uint8 {0, 1} bits ``[n, stop - start]`` for draws ``start:stop`` (``start % 64 == 0``)."""
    w0, w1 = start // 64, -(-stop // 64)
    words = np.arange(w0, w1, dtype=_U64) * _WORD
    h = _splitmix64(row_keys[:, None] + words[None, :])
    h = h.astype("<u8", copy=False)
    bits = np.unpackbits(h.view(np.uint8), axis=1, bitorder="little")
    return bits[:, start - w0 * 64 : stop - w0 * 64]


def keyed_multipliers(
    ids_hash: np.ndarray, key: int, start: int, stop: int, dtype: Any = np.float64
) -> np.ndarray:
    """Rademacher multipliers ``[n, stop - start]`` (+1/-1) for draws ``start:stop``.

    Parameters
    ----------
    ids_hash
        :func:`hash_ids` of the rows' identifiers.
    key
        :func:`bootstrap_key`.
    start, stop
        Draw range; ``start`` must be a multiple of 64.
    dtype
        Output float dtype.

    Returns
    -------
    array
        ``v[c, b - start]``; row ``c`` depends on ``ids_hash[c]`` only.
    """
    if start % 64:
        raise ValueError(f"start={start} must be a multiple of 64.")
    bits = _bits(_row_keys(ids_hash, key), start, stop)
    v = bits.astype(dtype)
    v *= 2
    v -= 1
    return v


def keyed_chunks(
    ids_hash: np.ndarray, key: int, biters: int, dtype: Any = np.float32
) -> Iterator[np.ndarray]:
    """Keyed multipliers in ``[n, <= DRAW_CHUNK]`` blocks, ``biters`` draws in all."""
    for start in range(0, biters, DRAW_CHUNK):
        yield keyed_multipliers(ids_hash, key, start, min(start + DRAW_CHUNK, biters), dtype)


class BlockSums:
    """Per-block multiplier sums of one set of rows, for any range of draws.

    The rows are sorted into blocks, transposed and keyed once; :meth:`add` then accumulates
    ``R[k, t, b] = sum_{c in k} v_bc z_c(t)`` and ``O[k, b] = sum_{c in k} v_bc omega_c`` for
    draws ``start:stop``, one float64 GEMM ``[z, omega]' v`` per block and chunk of draws, with
    the multipliers of every row generated once per chunk into a reused buffer (so a bootstrap
    in chunks of draws touches no fresh memory per chunk). The sums of a ``(block, draw)`` do
    not depend on how the draws are chunked.
    """

    def __init__(
        self,
        z: Float64Array,
        omega: Float64Array,
        block_of_row: np.ndarray,
        ids_hash: np.ndarray,
        key: int,
        n_blocks: int,
    ) -> None:
        n, t_len = z.shape
        if n and np.any(np.diff(block_of_row) < 0):
            order = np.argsort(block_of_row, kind="stable")
            z, omega, ids_hash, block_of_row = (
                z[order],
                omega[order],
                ids_hash[order],
                block_of_row[order],
            )
        self.n, self.t_len, self.n_blocks = n, t_len, n_blocks
        self.bounds = np.searchsorted(block_of_row, np.arange(n_blocks + 1))
        self.present = np.flatnonzero(np.diff(self.bounds))
        self.row_keys = _row_keys(ids_hash, key)
        self.zt = np.empty((t_len + 1, n))  # [T + 1, n]: outcomes and weights, one GEMM per block
        self.zt[:t_len] = z.T
        self.zt[t_len] = omega
        self._v = np.empty((min(n, _ROW_CHUNK), DRAW_CHUNK))

    def add(self, start: int, stop: int, out_z: Float64Array, out_w: Float64Array) -> None:
        """Add the sums of draws ``start:stop`` (``start % 64 == 0``) to the outputs.

        ``out_z`` is ``[n_blocks, T, stop - start]`` and ``out_w`` ``[n_blocks, stop - start]``
        (views are fine).
        """
        n, t_len, bounds, present = self.n, self.t_len, self.bounds, self.present
        for r0 in range(0, n, _ROW_CHUNK):
            r1 = min(r0 + _ROW_CHUNK, n)
            blocks = present[(bounds[present] < r1) & (bounds[present + 1] > r0)]
            for s in range(start, stop, DRAW_CHUNK):
                e = min(s + DRAW_CHUNK, stop)
                v = self._v[: r1 - r0, : e - s]
                np.multiply(_bits(self.row_keys[r0:r1], s, e), 2.0, out=v)
                v -= 1.0  # the multipliers of every row, once per chunk
                for k in blocks:
                    a, b = max(int(bounds[k]), r0), min(int(bounds[k + 1]), r1)
                    prod = self.zt[:, a:b] @ v[a - r0 : b - r0]
                    out_z[k, :, s - start : e - start] += prod[:t_len]
                    out_w[k, s - start : e - start] += prod[t_len]


def multiplier_sums(
    z: Float64Array,
    omega: Float64Array,
    block_of_row: np.ndarray,
    ids_hash: np.ndarray,
    key: int,
    biters: int,
    n_blocks: int,
    out_z: Float64Array | None = None,
    out_w: Float64Array | None = None,
    start: int = 0,
) -> tuple[Float64Array, Float64Array]:
    """Per-block multiplier sums ``R[k, t, b] = sum_{c in k} v_bc z_c(t)``, ``O[k, b]``.

    Rows may come in any order and any batch: the sums are accumulated into ``out_z``
    (``[n_blocks, T, biters]``) and ``out_w`` (``[n_blocks, biters]``) when given. Each block
    of rows is one float64 GEMM ``[z, omega]' v`` per chunk of draws; the multipliers of a row
    are generated once per chunk. ``start`` (a multiple of 64) offsets the draws: the sums
    are of draws ``start : start + biters`` (see :class:`BlockSums`).
    """
    n, t_len = z.shape
    if out_z is None:
        out_z = np.zeros((n_blocks, t_len, biters))
    if out_w is None:
        out_w = np.zeros((n_blocks, biters))
    if n == 0:
        return out_z, out_w
    BlockSums(z, omega, block_of_row, ids_hash, key, n_blocks).add(
        start, start + biters, out_z, out_w
    )
    return out_z, out_w


def cell_draws(
    rk: Float64Array,
    ok: Float64Array,
    cells: CellLayout,
    att: Float64Array,
    m_treat: Float64Array,
    m_ctrl: Float64Array,
    w_treat: Float64Array,
    w_ctrl: Float64Array,
    out: Float64Array | None = None,
) -> Float64Array:
    """Cell draws ``sum_c v_bc r_cj`` ``[J, B]`` from per-block multiplier sums (float64).

    ``rk[k, t, b] = sum_{c in k} v_bc Z_c(t)`` on globally centred ``Z`` and
    ``ok[k, b] = sum_{c in k} v_bc omega_c`` (see :mod:`causalmem._numerics.structured`): the
    same algebra as :meth:`StructuredIF.draws`, done in float64 on the reduced sums.
    """
    kb, t_len, biters = rk.shape
    if out is None:
        out = np.empty((cells.n_cells, biters))
    valid = ~(cells.reference | np.isnan(att))
    with np.errstate(divide="ignore", invalid="ignore"):
        inv_t = np.where(valid, 1.0 / w_treat, 0.0)[:, None]
        inv_c = np.where(valid, 1.0 / w_ctrl, 0.0)[:, None]
    m_t = np.where(valid, m_treat, 0.0)[:, None]
    m_c = np.where(valid, m_ctrl, 0.0)[:, None]
    own = cells.exclude_own[:, None].astype(np.float64)
    never = bool(np.all(cells.k0 == cells.glist.size) and not cells.exclude_own.any())
    if never:
        out = _never_draws(rk, ok, cells, valid, w_treat, w_ctrl, m_t[:, 0], m_c[:, 0], out)
        out[np.isnan(att)] = np.nan
        return out
    rflat = rk.reshape(kb * t_len, biters)
    if never:
        rc, oc = rk[kb - 1], ok[kb - 1]
    else:
        rs = np.zeros((kb + 1, t_len, biters))
        rs[:-1] = np.flip(np.cumsum(np.flip(rk, axis=0), axis=0), axis=0)
        rs = rs.reshape((kb + 1) * t_len, biters)
        os_ = np.zeros((kb + 1, biters))
        os_[:-1] = np.flip(np.cumsum(np.flip(ok, axis=0), axis=0), axis=0)
    step = 256  # cells per block: keeps the [step, B] temporaries in cache
    buf1, buf2 = np.empty((step, biters)), np.empty((step, biters))
    for j0 in range(0, cells.n_cells, step):
        j1 = min(j0 + step, cells.n_cells)
        sl = slice(j0, j1)
        o, w, u = out[sl], buf1[: j1 - j0], buf2[: j1 - j0]
        g, t, b = cells.g_idx[sl], cells.t_idx[sl], cells.b_idx[sl]
        np.take(rflat, g * t_len + t, axis=0, out=o, mode="clip")
        np.take(rflat, g * t_len + b, axis=0, out=u, mode="clip")
        o -= u  # own-cohort difference
        if never:
            np.take(rc, t, axis=0, out=w, mode="clip")
            np.take(rc, b, axis=0, out=u, mode="clip")
            w -= u
            np.multiply(oc[None, :], m_c[sl], out=u)
            w -= u
        else:
            k0 = cells.k0[sl]
            np.take(rs, k0 * t_len + t, axis=0, out=w, mode="clip")
            np.take(rs, k0 * t_len + b, axis=0, out=u, mode="clip")
            w -= u
            w -= own[sl] * o
            w -= (os_[k0] - own[sl] * ok[g]) * m_c[sl]
        np.take(ok, g, axis=0, out=u, mode="clip")
        u *= m_t[sl]
        o -= u
        o *= inv_t[sl]
        w *= inv_c[sl]
        o -= w
    out[np.isnan(att)] = np.nan
    return out


def _never_draws(
    rk: Float64Array,
    ok: Float64Array,
    cells: CellLayout,
    valid: np.ndarray,
    w_treat: Float64Array,
    w_ctrl: Float64Array,
    m_t: Float64Array,
    m_c: Float64Array,
    out: Float64Array,
) -> Float64Array:
    """:func:`cell_draws` with never-treated controls, one cohort at a time.

    A valid cell ``(g, t, b)`` is ``D_g[t] - D_g[b] - m_t O_g / W_g + m_c O_C / W_C`` with
    ``D_g = R_g / W_g - R_C / W_C`` (``W_g``, ``W_C``: the same for every valid cell of cohort
    ``g``, resp. all cells). ``D_g`` (``[T, B]``) is formed once per cohort and stays in cache;
    the cohort's cells are row differences of it plus a rank-2 term (one small GEMM), so the
    ``[J, B]`` draws are written about once.
    """
    kb, t_len, biters = rk.shape
    if cells.n_cells == 0:
        return out
    inv = np.zeros(kb)
    g_valid = cells.g_idx[valid]
    inv[g_valid] = 1.0 / w_treat[valid]
    if valid.any():
        inv[kb - 1] = 1.0 / w_ctrl[valid][0]
    rc = rk[kb - 1] * inv[kb - 1]  # [T, B]
    os_ = ok * inv[:, None]
    # Per cell: the weights of (O_g / W_g, O_C / W_C) in the rank-2 term.
    lin = np.column_stack([-np.where(valid, m_t, 0.0), np.where(valid, m_c, 0.0)])
    g_all, t_all, b_all = cells.g_idx, cells.t_idx, cells.b_idx
    cuts = np.flatnonzero(np.diff(g_all)) + 1  # runs of cells of one cohort
    starts = np.concatenate([[0], cuts]).astype(np.int64)
    stops = np.concatenate([cuts, [cells.n_cells]]).astype(np.int64)
    d = np.empty((t_len, biters))
    pair = np.empty((2, biters))
    pair[1] = os_[kb - 1]
    all_valid = bool(valid.all())
    for j0, j1 in zip(starts.tolist(), stops.tolist(), strict=True):
        k = int(g_all[j0])
        np.multiply(rk[k], inv[k], out=d)
        d -= rc
        pair[0] = os_[k]
        o = out[j0:j1]
        t, b = t_all[j0:j1], b_all[j0:j1]
        if t[-1] - t[0] == j1 - j0 - 1 and (j1 - j0 == 1 or bool(np.all(np.diff(t) == 1))):
            np.subtract(d[t[0] : t[-1] + 1], d[b], out=o)  # outcome periods: a slice
        else:
            np.subtract(d[t], d[b], out=o)
        o += lin[j0:j1] @ pair
        if not all_valid:
            o *= valid[j0:j1, None]
    return out
