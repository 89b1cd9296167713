"""Instances to score: Pythia-style sampling, validation packing and token indexes (numpy only).

An *instance* is one fixed-length token sequence with a treatment step: the checkpoint at which
the model has first been trained on it (its cohort), or never (``<NA>``, a held-out sequence).

Conventions, identical to :mod:`causalmem.panel.pythia`: position ``i`` of the training order
sits in batch ``b = i // batch_size``, consumed by optimizer step ``b + 1``. Checkpoint ``c``
has taken ``c`` steps. With checkpoints ``c_0 = 0 < c_1 < …``, the *macro-batch* ``k`` is the
steps ``(c_{k-1}, c_k]``, i.e. the batches ``c_{k-1} … c_k - 1``; its instances have cohort
``c_k`` and base period ``c_{k-1}``.

Token indexes
-------------
* :class:`MMapIndexedDataset` reads (and :func:`write_indexed_dataset` writes) the
  Megatron / GPT-NeoX ``.bin`` + ``.idx`` pair that Pythia's pre-shuffled training data uses:
  item ``i`` is sequence ``i`` of the training order (2 049 tokens for Pythia).
* :class:`NumpyTokenIndex` wraps a 2-D ``[n, seq_len]`` array, or a flat 1-D token array
  viewed as consecutive ``seq_len`` chunks (``.npy`` files are memory-mapped).

Validation packing (memorisation.md pitfall 12, EleutherAI/pythia#123): documents are
concatenated **without** an end-of-text token between them, cut into ``seq_len`` chunks and the
remainder is dropped (:func:`pack_documents`).
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
import pandas as pd

__all__ = [
    "Instances",
    "MMapIndexedDataset",
    "NumpyTokenIndex",
    "TokenIndex",
    "macro_batches",
    "open_token_index",
    "pack_documents",
    "sample_macro_batches",
    "training_instances",
    "validation_instances",
    "write_indexed_dataset",
]

IntArray = npt.NDArray[np.integer[Any]]

_IDX_MAGIC = b"MMIDIDX\x00\x00"
_IDX_DTYPES: dict[int, type[np.generic]] = {
    1: np.uint8,
    2: np.int8,
    3: np.int16,
    4: np.int32,
    5: np.int64,
    6: np.float32,
    7: np.float64,
    8: np.uint16,
}
_IDX_CODES = {np.dtype(v): k for k, v in _IDX_DTYPES.items()}


# ----------------------------------------------------------------------------- the value
@dataclass(frozen=True, eq=False)
class Instances:
    """Token sequences to score, with their unit ids and treatment cohorts; immutable.

    Build with :meth:`from_arrays`, :func:`training_instances` or
    :func:`validation_instances`, and combine with :meth:`concat`.

    Attributes
    ----------
    tokens
        ``int64`` array ``[n, seq_len]`` (read-only). Shorter sequences are right-padded and
        described by ``lengths``.
    lengths
        ``int64`` array ``[n]``: real tokens per row (``seq_len`` for packed chunks).
    unit
        ``int64`` array ``[n]`` of distinct unit ids (the panel's ``unit`` column).
    cohort
        pandas ``Int64`` array ``[n]``: the checkpoint step at which the instance has been
        trained on, ``<NA>`` = never trained (validation).
    info
        Extra per-instance columns (e.g. ``seq_idx``, ``split``), one row per instance, in the
        same order; never contains the tokens.
    """

    tokens: npt.NDArray[np.int64]
    lengths: npt.NDArray[np.int64]
    unit: npt.NDArray[np.int64]
    cohort: pd.arrays.IntegerArray
    info: pd.DataFrame = field(repr=False)

    @classmethod
    def from_arrays(
        cls,
        tokens: npt.ArrayLike | Sequence[npt.ArrayLike],
        unit: npt.ArrayLike,
        cohort: npt.ArrayLike | Sequence[int | None],
        *,
        info: pd.DataFrame | None = None,
        pad_id: int = 0,
    ) -> Instances:
        """Validate and copy arrays into an :class:`Instances` value.

        Parameters
        ----------
        tokens
            A 2-D integer array ``[n, seq_len]``, or a sequence of 1-D token arrays of possibly
            different lengths (right-padded with ``pad_id``; at least 2 tokens each).
        unit
            Distinct integer unit ids, one per sequence.
        cohort
            Treatment step per sequence; ``None`` / ``NaN`` / ``<NA>`` = never trained.
        info
            Optional extra columns (one row per sequence); copied.
        pad_id
            Padding token id for ragged input (never scored).

        Returns
        -------
        Instances

        Examples
        --------
        >>> ins = Instances.from_arrays([[1, 2, 3], [4, 5, 6]], unit=[0, 1], cohort=[10, None])
        >>> ins.n, ins.seq_len, ins.cohort.tolist()
        (2, 3, [10, <NA>])
        """
        if isinstance(tokens, np.ndarray) and tokens.ndim == 2:
            tok = np.array(tokens, dtype=np.int64, copy=True)
            lengths = np.full(tok.shape[0], tok.shape[1], dtype=np.int64)
        else:
            rows = [np.asarray(r, dtype=np.int64).reshape(-1) for r in tokens]  # type: ignore[union-attr]
            if not rows:
                raise ValueError("tokens is empty; pass at least one sequence.")
            lengths = np.array([r.size for r in rows], dtype=np.int64)
            tok = np.full((len(rows), int(lengths.max())), pad_id, dtype=np.int64)
            for i, r in enumerate(rows):
                tok[i, : r.size] = r
        if tok.ndim != 2 or tok.shape[0] == 0:
            raise ValueError(f"tokens must be a non-empty [n, seq_len] array; got {tok.shape}.")
        if (lengths < 2).any():
            raise ValueError("every sequence needs at least 2 tokens (one is predicted).")
        if (tok < 0).any():
            raise ValueError("token ids must be non-negative.")
        n = tok.shape[0]
        units = np.array(unit, dtype=np.int64, copy=True).reshape(-1)
        if units.size != n:
            raise ValueError(f"unit has {units.size} values for {n} sequences.")
        if np.unique(units).size != n:
            raise ValueError("unit ids must be distinct.")
        coh = pd.array(  # type: ignore[call-overload]  # pandas-stubs lacks Series -> "Int64"
            pd.Series(list(np.asarray(cohort, dtype=object).reshape(-1))), "Int64"
        )
        if len(coh) != n:
            raise ValueError(f"cohort has {len(coh)} values for {n} sequences.")
        if bool((coh.fillna(1) < 0).any()):
            raise ValueError("cohorts must be non-negative steps (or <NA> for never trained).")
        extra = pd.DataFrame(index=range(n)) if info is None else info.reset_index(drop=True)
        if len(extra) != n:
            raise ValueError(f"info has {len(extra)} rows for {n} sequences.")
        if {"unit", "cohort", "tokens"} & set(extra.columns):
            raise ValueError("info must not repeat 'unit', 'cohort' or 'tokens'.")
        for arr in (tok, lengths, units):
            arr.setflags(write=False)
        return cls(tokens=tok, lengths=lengths, unit=units, cohort=coh, info=extra.copy())

    # ------------------------------------------------------------------ views
    @property
    def n(self) -> int:
        """Number of instances."""
        return int(self.tokens.shape[0])

    @property
    def seq_len(self) -> int:
        """Padded sequence length (tokens per row)."""
        return int(self.tokens.shape[1])

    @property
    def never(self) -> npt.NDArray[np.bool_]:
        """Mask of never-trained (``<NA>`` cohort) instances."""
        return np.asarray(self.cohort.isna(), dtype=bool)

    def __len__(self) -> int:
        return self.n

    def to_frame(self) -> pd.DataFrame:
        """Per-instance frame (``unit``, ``cohort``, ``length`` and ``info``), without tokens."""
        out = pd.DataFrame({"unit": self.unit, "cohort": self.cohort, "length": self.lengths})
        return pd.concat([out, self.info.reset_index(drop=True)], axis=1)

    def fingerprint(self) -> str:
        """SHA-256 of the tokens, lengths, unit ids and cohorts (identifies a scoring run)."""
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.tokens).tobytes())
        h.update(self.lengths.tobytes())
        h.update(self.unit.tobytes())
        h.update(np.asarray(self.cohort.fillna(-1), dtype=np.int64).tobytes())
        return h.hexdigest()

    def take(self, rows: npt.ArrayLike) -> Instances:
        """Return the instances at positions ``rows`` (integer positions or a boolean mask)."""
        idx = np.asarray(rows)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        info = self.info.iloc[idx].reset_index(drop=True)
        return Instances(
            tokens=_readonly(self.tokens[idx]),
            lengths=_readonly(self.lengths[idx]),
            unit=_readonly(self.unit[idx]),
            cohort=self.cohort[idx],
            info=info,
        )

    @staticmethod
    def concat(parts: Iterable[Instances]) -> Instances:
        """Stack several instance sets (e.g. training + validation); unit ids must stay distinct.

        Sequences are right-padded to the longest ``seq_len`` with token 0.
        """
        items = list(parts)
        if not items:
            raise ValueError("concat needs at least one Instances value.")
        width = max(p.seq_len for p in items)
        tok = np.zeros((sum(p.n for p in items), width), dtype=np.int64)
        row = 0
        for p in items:
            tok[row : row + p.n, : p.seq_len] = p.tokens
            row += p.n
        lengths = np.concatenate([p.lengths for p in items])
        units = np.concatenate([p.unit for p in items])
        if np.unique(units).size != units.size:
            raise ValueError("unit ids overlap between the parts; make them distinct.")
        cohort = pd.array(  # type: ignore[call-overload]  # pandas-stubs lacks Series -> "Int64"
            pd.concat([pd.Series(p.cohort) for p in items], ignore_index=True), "Int64"
        )
        info = pd.concat([p.info for p in items], ignore_index=True)
        return Instances(
            tokens=_readonly(tok),
            lengths=_readonly(lengths),
            unit=_readonly(units),
            cohort=cohort,
            info=info,
        )


def _readonly(a: np.ndarray) -> np.ndarray:
    out = np.array(a, copy=True)
    out.setflags(write=False)
    return out


# ----------------------------------------------------------------------------- packing
def pack_documents(
    documents: Iterable[npt.ArrayLike],
    seq_len: int,
    *,
    eos_id: int | None = None,
    dtype: npt.DTypeLike = np.int64,
) -> npt.NDArray[Any]:
    """Concatenate tokenised documents and cut the stream into ``seq_len`` chunks.

    Mirrors Pythia's validation preparation: no end-of-text token between documents (unless
    ``eos_id`` is given), fixed-length chunks, the incomplete last chunk dropped.

    Parameters
    ----------
    documents
        Token-id sequences, in order.
    seq_len
        Tokens per chunk (2 049 for Pythia: 2 048 predicted tokens + 1).
    eos_id
        If given, appended after every document (Pythia's *training* data does this; its
        validation set as used by the paper does not).
    dtype
        Output dtype.

    Returns
    -------
    numpy.ndarray
        ``[n_chunks, seq_len]``.

    Examples
    --------
    >>> pack_documents([[1, 2, 3], [4, 5], [6, 7, 8, 9]], seq_len=4).tolist()
    [[1, 2, 3, 4], [5, 6, 7, 8]]
    """
    if seq_len < 2:
        raise ValueError(f"seq_len must be >= 2; got {seq_len}.")
    parts: list[np.ndarray] = []
    eos = None if eos_id is None else np.array([eos_id], dtype=np.int64)
    for doc in documents:
        arr = np.asarray(doc, dtype=np.int64).reshape(-1)
        parts.append(arr)
        if eos is not None:
            parts.append(eos)
    stream = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    n = stream.size // seq_len
    return stream[: n * seq_len].reshape(n, seq_len).astype(dtype, copy=False)


# ----------------------------------------------------------------------------- token indexes
@runtime_checkable
class TokenIndex(Protocol):
    """A random-access sequence of token arrays (item ``i`` = sequence ``i``)."""

    def __len__(self) -> int: ...

    def __getitem__(self, i: int) -> npt.NDArray[Any]: ...


class MMapIndexedDataset:
    r"""Reader of the Megatron / GPT-NeoX ``.bin`` + ``.idx`` token index (Pythia's format).

    The ``.idx`` file holds the magic ``MMIDIDX\x00\x00``, version 1 (``<Q``), a dtype code
    (``<B``; 1 uint8, 2 int8, 3 int16, 4 int32, 5 int64, 8 uint16), the number of sequences and
    of documents (``<Q`` each), then ``sizes`` (int32), byte ``pointers`` into ``.bin`` (int64)
    and ``doc_idx`` (int64). The ``.bin`` file is memory-mapped; nothing is read eagerly.

    Parameters
    ----------
    prefix
        Path without extension (``…/document`` for ``document.bin`` / ``document.idx``); a
        path ending in ``.bin`` or ``.idx`` is accepted too.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = write_indexed_dataset(pathlib.Path(d) / "doc", [[1, 2, 3], [4, 5]])
    ...     ds = MMapIndexedDataset(p)
    ...     len(ds), ds[1].tolist(), ds.sizes.tolist()
    (2, [4, 5], [3, 2])
    """

    def __init__(self, prefix: str | os.PathLike[str]) -> None:
        p = Path(prefix)
        if p.suffix in (".bin", ".idx"):
            p = p.with_suffix("")
        self.prefix = p
        idx_path, bin_path = _idx_bin(p)
        with open(idx_path, "rb") as fh:
            magic = fh.read(9)
            if magic != _IDX_MAGIC:
                raise ValueError(
                    f"{idx_path} is not a Megatron/GPT-NeoX mmap index (magic {magic!r})."
                )
            (version,) = struct.unpack("<Q", fh.read(8))
            if version != 1:
                raise ValueError(f"{idx_path}: unsupported index version {version}.")
            (code,) = struct.unpack("<B", fh.read(1))
            if code not in _IDX_DTYPES:
                raise ValueError(f"{idx_path}: unknown dtype code {code}.")
            self.dtype = np.dtype(_IDX_DTYPES[code])
            (n,) = struct.unpack("<Q", fh.read(8))
            (n_docs,) = struct.unpack("<Q", fh.read(8))
            offset = fh.tell()
        buf = np.memmap(idx_path, mode="r", order="C")
        self.sizes = np.frombuffer(buf, dtype=np.int32, count=n, offset=offset)
        self.pointers = np.frombuffer(buf, dtype=np.int64, count=n, offset=offset + 4 * n)
        self.doc_idx = np.frombuffer(buf, dtype=np.int64, count=n_docs, offset=offset + 12 * n)
        self._bin = np.memmap(bin_path, mode="r", dtype=np.uint8, order="C")

    def __len__(self) -> int:
        return int(self.sizes.size)

    def __getitem__(self, i: int) -> npt.NDArray[Any]:
        """Return sequence ``i`` (a read-only view into the memory map)."""
        n = len(self)
        j = int(i)
        if j < 0:
            j += n
        if not 0 <= j < n:
            raise IndexError(f"sequence {i} out of range for an index of {n} sequences.")
        return np.frombuffer(
            self._bin, dtype=self.dtype, count=int(self.sizes[j]), offset=int(self.pointers[j])
        )

    def get(self, i: int, offset: int = 0, length: int | None = None) -> npt.NDArray[Any]:
        """Return ``length`` tokens of sequence ``i`` starting at ``offset``."""
        seq = self[i]
        end = seq.size if length is None else offset + length
        return seq[offset:end]

    def __repr__(self) -> str:
        return f"MMapIndexedDataset({str(self.prefix)!r}, n={len(self)}, dtype={self.dtype})"


def _idx_bin(prefix: Path) -> tuple[Path, Path]:
    return prefix.with_name(prefix.name + ".idx"), prefix.with_name(prefix.name + ".bin")


def write_indexed_dataset(
    prefix: str | os.PathLike[str],
    sequences: Iterable[npt.ArrayLike],
    *,
    dtype: npt.DTypeLike = np.uint16,
) -> Path:
    """Write sequences as a Megatron / GPT-NeoX ``.bin`` + ``.idx`` pair, atomically.

    One document per sequence (``doc_idx = 0 … n``), as in Pythia's pre-shuffled files.

    Parameters
    ----------
    prefix
        Output path without extension.
    sequences
        Token arrays, in order.
    dtype
        Token dtype (``uint16`` when the vocabulary has fewer than 65 536 entries).

    Returns
    -------
    pathlib.Path
        ``prefix`` (open it with :class:`MMapIndexedDataset`).
    """
    p = Path(prefix)
    dt = np.dtype(dtype)
    if dt not in _IDX_CODES or dt.kind == "f":
        raise ValueError(f"dtype {dt} is not an integer dtype of the index format.")
    idx_path, bin_path = _idx_bin(p)
    tmp_bin = bin_path.with_name(f".{bin_path.name}.tmp")
    tmp_idx = idx_path.with_name(f".{idx_path.name}.tmp")
    sizes: list[int] = []
    info = np.iinfo(dt)
    try:
        with open(tmp_bin, "wb") as fh:
            for seq in sequences:
                arr = np.asarray(seq).reshape(-1)
                if arr.size and (arr.min() < info.min or arr.max() > info.max):
                    raise ValueError(f"token ids do not fit in {dt}.")
                fh.write(arr.astype(dt).tobytes(order="C"))
                sizes.append(int(arr.size))
            fh.flush()
            os.fsync(fh.fileno())
        size_arr = np.asarray(sizes, dtype=np.int32)
        pointers = np.zeros(size_arr.size, dtype=np.int64)
        if size_arr.size > 1:
            pointers[1:] = np.cumsum(size_arr[:-1].astype(np.int64)) * dt.itemsize
        doc_idx = np.arange(size_arr.size + 1, dtype=np.int64)
        with open(tmp_idx, "wb") as fh:
            fh.write(_IDX_MAGIC)
            fh.write(struct.pack("<Q", 1))
            fh.write(struct.pack("<B", _IDX_CODES[dt]))
            fh.write(struct.pack("<Q", size_arr.size))
            fh.write(struct.pack("<Q", doc_idx.size))
            fh.write(size_arr.tobytes(order="C"))
            fh.write(pointers.tobytes(order="C"))
            fh.write(doc_idx.tobytes(order="C"))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_bin, bin_path)
        os.replace(tmp_idx, idx_path)
    finally:
        tmp_bin.unlink(missing_ok=True)
        tmp_idx.unlink(missing_ok=True)
    return p


class NumpyTokenIndex:
    """A token index over a numpy array: ``[n, seq_len]``, or flat tokens cut into chunks.

    Parameters
    ----------
    data
        A 2-D array, a 1-D array (then ``seq_len`` is required and the remainder dropped), or
        a path to a ``.npy`` file (memory-mapped, read-only).
    seq_len
        Chunk length for flat data.

    Examples
    --------
    >>> idx = NumpyTokenIndex(np.arange(10), seq_len=4)
    >>> len(idx), idx[1].tolist()
    (2, [4, 5, 6, 7])
    """

    def __init__(
        self, data: npt.ArrayLike | str | os.PathLike[str], seq_len: int | None = None
    ) -> None:
        if isinstance(data, str | os.PathLike):
            arr = np.load(Path(data), mmap_mode="r")
        else:
            arr = np.asarray(data)
        if arr.ndim == 1:
            if seq_len is None or seq_len < 1:
                raise ValueError("a flat token array needs seq_len.")
            n = arr.size // seq_len
            arr = arr[: n * seq_len].reshape(n, seq_len)
        elif arr.ndim != 2:
            raise ValueError(f"token array must be 1-D or 2-D; got shape {arr.shape}.")
        elif seq_len is not None and arr.shape[1] != seq_len:
            raise ValueError(f"array has rows of {arr.shape[1]} tokens, not seq_len={seq_len}.")
        if arr.dtype.kind not in "iu":
            raise ValueError(f"tokens must be integers; got {arr.dtype}.")
        self._arr = arr

    def __len__(self) -> int:
        return int(self._arr.shape[0])

    def __getitem__(self, i: int) -> npt.NDArray[Any]:
        """Return sequence ``i``."""
        return np.asarray(self._arr[int(i)])


def open_token_index(path: str | os.PathLike[str], seq_len: int | None = None) -> TokenIndex:
    """Open a token index: ``.npy`` (:class:`NumpyTokenIndex`) or ``.bin``/``.idx`` prefix.

    Parameters
    ----------
    path
        A ``.npy`` file, or a Megatron index prefix (with or without ``.bin`` / ``.idx``).
    seq_len
        Chunk length for a flat ``.npy`` token array.

    Returns
    -------
    TokenIndex
    """
    p = Path(path)
    if p.suffix == ".npy":
        return NumpyTokenIndex(p, seq_len)
    return MMapIndexedDataset(p)


# ----------------------------------------------------------------------------- sampling
def macro_batches(checkpoint_steps: npt.ArrayLike) -> pd.DataFrame:
    """Return the macro-batches between consecutive checkpoints.

    Parameters
    ----------
    checkpoint_steps
        Checkpoint steps (sorted or not); step 0 (the initialisation) is added if absent.

    Returns
    -------
    pandas.DataFrame
        One row per cohort: ``cohort`` (``c_k``), ``base`` (``c_{k-1}``), ``first_batch``
        (``c_{k-1}``) and ``last_batch`` (``c_k - 1``), 0-indexed batches.

    Examples
    --------
    >>> macro_batches([0, 1, 2, 4, 50]).to_dict("list")["first_batch"]
    [0, 1, 2, 4]
    """
    steps = np.unique(np.append(np.asarray(checkpoint_steps, dtype=np.int64), 0))
    if (steps < 0).any():
        raise ValueError("checkpoint steps must be non-negative.")
    return pd.DataFrame(
        {
            "cohort": steps[1:],
            "base": steps[:-1],
            "first_batch": steps[:-1],
            "last_batch": steps[1:] - 1,
        }
    )


def sample_macro_batches(
    checkpoint_steps: npt.ArrayLike,
    batch_size: int,
    *,
    k: int = 10,
    m: int = 10,
    seed: int = 1994,
    cohorts: npt.ArrayLike | None = None,
) -> pd.DataFrame:
    """Pythia-style sample of training positions: per macro-batch, ``k`` batches × ``m`` sequences.

    The reference repo draws 10 batches at random from each 1 000-step macro-batch and 10
    sequences from each (14 300 instances for Pythia). A macro-batch with fewer than ``k``
    batches (the log-spaced early checkpoints) contributes all of its batches. Each cohort has
    its own generator, ``default_rng([seed, cohort])``, so adding checkpoints does not change
    the draws of the others.

    Parameters
    ----------
    checkpoint_steps
        Checkpoint steps of the run (step 0 added if absent).
    batch_size
        Sequences per optimizer step.
    k, m
        Batches per macro-batch and sequences per batch (``m <= batch_size``).
    seed
        Base seed (the reference repo's ``TRAIN_SEED`` is 1994).
    cohorts
        Restrict to these cohorts (default: every macro-batch).

    Returns
    -------
    pandas.DataFrame
        ``seq_idx`` (position in the training order), ``batch``, ``step`` (``batch + 1``),
        ``cohort`` and ``base``, sorted by ``seq_idx``.

    Examples
    --------
    >>> s = sample_macro_batches([0, 1, 2, 4], batch_size=8, k=10, m=2, seed=0)
    >>> s.groupby("cohort").size().to_dict()
    {1: 2, 2: 2, 4: 4}
    """
    if batch_size < 1 or k < 1 or m < 1:
        raise ValueError("batch_size, k and m must be positive.")
    if m > batch_size:
        raise ValueError(f"m={m} sequences per batch exceeds batch_size={batch_size}.")
    mb = macro_batches(checkpoint_steps)
    if cohorts is not None:
        wanted = set(np.asarray(cohorts, dtype=np.int64).tolist())
        unknown = wanted - set(mb["cohort"].tolist())
        if unknown:
            raise ValueError(f"cohorts {sorted(unknown)} are not checkpoint steps.")
        mb = mb[mb["cohort"].isin(wanted)]
    out: list[pd.DataFrame] = []
    plan = mb[["cohort", "first_batch", "last_batch", "base"]].to_numpy(np.int64)
    for cohort_step, first_batch, last_batch, base in plan:  # one row per cohort, not per unit
        rng = np.random.default_rng([int(seed), int(cohort_step)])
        batches = np.arange(first_batch, last_batch + 1, dtype=np.int64)
        chosen = np.sort(rng.choice(batches, size=min(k, batches.size), replace=False))
        for b in chosen:
            offsets = np.sort(rng.choice(batch_size, size=m, replace=False))
            seq = b * batch_size + offsets
            out.append(
                pd.DataFrame(
                    {
                        "seq_idx": seq.astype(np.int64),
                        "batch": np.int64(b),
                        "step": np.int64(b + 1),
                        "cohort": np.int64(cohort_step),
                        "base": np.int64(base),
                    }
                )
            )
    cols = ["seq_idx", "batch", "step", "cohort", "base"]
    if not out:
        return pd.DataFrame({c: pd.Series(dtype=np.int64) for c in cols})
    return pd.concat(out, ignore_index=True).sort_values("seq_idx", ignore_index=True)


def training_instances(
    index: TokenIndex,
    sample: pd.DataFrame,
    *,
    seq_len: int | None = None,
) -> Instances:
    """Read sampled training sequences from a token index.

    Parameters
    ----------
    index
        The training order (item ``i`` = sequence ``i``), e.g. :class:`MMapIndexedDataset`.
    sample
        Output of :func:`sample_macro_batches` (``seq_idx`` and ``cohort`` are used).
    seq_len
        Truncate every sequence to its first ``seq_len`` tokens (default: keep all; sequences
        must then have equal length).

    Returns
    -------
    Instances
        ``unit = seq_idx``; ``info`` keeps ``seq_idx``, ``batch``, ``step``, ``base`` and
        ``split = "train"``.
    """
    seqs = [np.asarray(index[int(i)]) for i in sample["seq_idx"]]
    if seq_len is not None:
        seqs = [s[:seq_len] for s in seqs]
    lens = {s.size for s in seqs}
    if len(lens) > 1:
        raise ValueError(f"sequences have different lengths {sorted(lens)[:5]}; pass seq_len.")
    tok = np.stack(seqs).astype(np.int64) if seqs else np.zeros((0, seq_len or 2), np.int64)
    info = sample.drop(columns=["cohort"]).reset_index(drop=True)
    info["split"] = "train"
    return Instances.from_arrays(
        tok, unit=sample["seq_idx"].to_numpy(), cohort=sample["cohort"].to_numpy(), info=info
    )


def validation_instances(
    chunks: TokenIndex | npt.ArrayLike,
    n: int | None = None,
    *,
    seed: int = 1234,
) -> Instances:
    """Never-trained instances: ``n`` chunks drawn without replacement (all when ``n`` is None).

    Parameters
    ----------
    chunks
        Held-out chunks (``[n_chunks, seq_len]`` array or a token index), e.g. from
        :func:`pack_documents`; they must never be trained on.
    n
        Number to draw (the reference repo uses 2 000 with seed 1234).
    seed
        Seed of the draw.

    Returns
    -------
    Instances
        ``cohort = <NA>``; ``unit = -1 - i`` for chunk ``i`` (negative ids mark held-out
        sequences, as the reference repo's ``-100 - i``); ``info`` has ``chunk`` and
        ``split = "validation"``.
    """
    idx: TokenIndex = chunks if isinstance(chunks, TokenIndex) else NumpyTokenIndex(chunks)
    total = len(idx)
    if n is None or n >= total:
        pick = np.arange(total, dtype=np.int64)
    else:
        rng = np.random.default_rng(seed)
        pick = np.sort(rng.choice(total, size=n, replace=False)).astype(np.int64)
    tok = np.stack([np.asarray(idx[int(i)]) for i in pick]).astype(np.int64)
    info = pd.DataFrame({"chunk": pick, "split": "validation"})
    return Instances.from_arrays(tok, unit=-1 - pick, cohort=[None] * pick.size, info=info)
