"""Instances from a training run's data order, stored as one parquet *instance table*.

Sources of the training order (item ``i`` = sequence ``i`` consumed, in batches of
``batch_size``, by optimizer step ``i // batch_size + 1``):

* Pythia's pre-shuffled Megatron index (``document.idx`` + ``document.bin``), also while its
  ``.bin`` is still split in byte pieces as published (``document-00000-of-00020.bin`` …;
  :class:`ShardedIndexedDataset`, no need to merge 600 GB first);
* a numpy token array (``.npy``, ``[n, seq_len]`` or flat with ``seq_len``);
* a lab run's recorded order (``data/train.bin``; read by the command line).

:func:`sample_training` draws ``k`` batches × ``m`` sequences per macro-batch of the checkpoint
grid (:func:`causalmem.instances.sample_macro_batches`, the reference repo's design), keeping
only cohorts up to the epoch cut-off; :func:`sample_validation` draws never-trained chunks.

The instance table (:func:`write_instance_table`) holds one row per instance (``unit``,
``cohort``, ``length``, the info columns and the tokens as a list column) and, as parquet
key-value metadata, its provenance: source files (path, size, SHA-256 — full for files up to
``full_hash_limit``, else of their first and last MiB), seeds, arguments, the instances'
fingerprint and package versions. :func:`read_instance_table` checks the fingerprint.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from causalmem.instances import (
    Instances,
    MMapIndexedDataset,
    NumpyTokenIndex,
    TokenIndex,
    sample_macro_batches,
    training_instances,
    validation_instances,
)
from lmecon.atomic import atomic_write_bytes
from lmecon.provenance import versions

__all__ = [
    "INSTANCES_METADATA_KEY",
    "ShardedIndexedDataset",
    "file_provenance",
    "open_order",
    "read_instance_table",
    "sample_training",
    "sample_validation",
    "write_instance_table",
]

INSTANCES_METADATA_KEY = b"causalmem.instances"
_FORMAT = "causalmem.instances"
_PIECE_RE = re.compile(r"^(?P<base>.+)-(?P<i>\d{5})-of-(?P<n>\d{5})\.bin$")
_MIB = 1 << 20


class ShardedIndexedDataset:
    """A Megatron index whose ``.bin`` is split into byte pieces (Pythia's published form).

    EleutherAI publishes ``document.idx`` and ``document-00000-of-00020.bin`` …
    ``document-00020-of-00020.bin``: consecutive byte ranges of one ``document.bin``. Each
    piece is memory-mapped; a sequence that straddles two pieces is joined. The ``.idx`` is
    read as by :class:`causalmem.instances.MMapIndexedDataset`.

    Parameters
    ----------
    idx
        The ``.idx`` file.
    pieces
        The ``.bin`` pieces in order (default: the ``<stem>-NNNNN-of-MMMMM.bin`` files next to
        ``idx``).
    """

    def __init__(
        self, idx: str | os.PathLike[str], pieces: Sequence[str | os.PathLike[str]] | None = None
    ) -> None:
        idx_path = Path(idx)
        if pieces is None:
            pieces = sorted(idx_path.parent.glob(f"{idx_path.stem}-*-of-*.bin"))
        paths = [Path(p) for p in pieces]
        if not paths:
            raise FileNotFoundError(f"no .bin pieces named {idx_path.stem}-NNNNN-of-MMMMM.bin.")
        counts = {int(m.group("n")) for p in paths if (m := _PIECE_RE.match(p.name))}
        if len(counts) == 1 and len(paths) != next(iter(counts)) + 1:
            raise FileNotFoundError(
                f"{len(paths)} pieces of {idx_path.stem}.bin found next to {idx_path}, but their "
                f"names announce {next(iter(counts)) + 1}; download every piece."
            )
        self.prefix = idx_path.with_suffix("")
        self.piece_paths = paths
        self.dtype, self.sizes, self.pointers = _read_idx(idx_path)
        self._pieces = [np.memmap(p, mode="r", dtype=np.uint8) for p in paths]
        self._bounds = np.cumsum([0, *(int(p.size) for p in self._pieces)])

    def __len__(self) -> int:
        return int(self.sizes.size)

    def __getitem__(self, i: int) -> npt.NDArray[Any]:
        """Return sequence ``i`` (joined across pieces when it straddles a boundary)."""
        n = len(self)
        j = int(i) + (n if int(i) < 0 else 0)
        if not 0 <= j < n:
            raise IndexError(f"sequence {i} out of range for an index of {n} sequences.")
        start = int(self.pointers[j])
        nbytes = int(self.sizes[j]) * self.dtype.itemsize
        bounds = self._bounds
        if start + nbytes > bounds[-1]:
            raise IndexError(f"sequence {i} lies past the end of the .bin pieces (missing piece?).")
        out = bytearray()
        k = int(np.searchsorted(bounds, start, side="right") - 1)
        pos = start
        while len(out) < nbytes:
            piece = self._pieces[k]
            off = pos - int(bounds[k])
            take = min(nbytes - len(out), piece.size - off)
            out += piece[off : off + take].tobytes()
            pos += take
            k += 1
        return np.frombuffer(bytes(out), dtype=self.dtype)


def _read_idx(
    idx_path: Path,
) -> tuple[np.dtype[Any], npt.NDArray[np.int32], npt.NDArray[np.int64]]:
    """Dtype, sizes and byte pointers of a Megatron ``.idx`` (format of MMapIndexedDataset)."""
    from causalmem.instances import _IDX_DTYPES, _IDX_MAGIC

    with open(idx_path, "rb") as fh:
        head = fh.read(34)
    if head[:9] != _IDX_MAGIC or struct.unpack("<Q", head[9:17])[0] != 1:
        raise ValueError(f"{idx_path} is not a version-1 Megatron/GPT-NeoX mmap index.")
    code = head[17]
    if code not in _IDX_DTYPES:
        raise ValueError(f"{idx_path}: unknown dtype code {code}.")
    n = struct.unpack("<Q", head[18:26])[0]
    buf = np.memmap(idx_path, mode="r", dtype=np.uint8)
    sizes = np.frombuffer(buf, dtype=np.int32, count=n, offset=34)
    pointers = np.frombuffer(buf, dtype=np.int64, count=n, offset=34 + 4 * n)
    return np.dtype(_IDX_DTYPES[code]), sizes, pointers


def open_order(path: str | os.PathLike[str], seq_len: int | None = None) -> TokenIndex:
    """Open a training order: ``.npy``, a ``.bin``/``.idx`` prefix, or Pythia's first piece.

    Parameters
    ----------
    path
        ``tokens.npy``; ``…/document`` (or ``document.idx`` / ``document.bin``); or
        ``…/document-00000-of-00020.bin`` (the pieces and ``document.idx`` next to it).
    seq_len
        Chunk length of a flat ``.npy`` token array.

    Raises
    ------
    FileNotFoundError
        The files are not there (the message names what was looked for).
    """
    p = Path(path)
    if p.suffix == ".npy":
        if not p.is_file():
            raise FileNotFoundError(f"{p} does not exist.")
        return NumpyTokenIndex(p, seq_len)
    m = _PIECE_RE.match(p.name)
    if m:
        idx = p.with_name(m.group("base") + ".idx")
        if not idx.is_file():
            raise FileNotFoundError(f"{idx} (the index of the pieces of {p.name}) does not exist.")
        return ShardedIndexedDataset(idx)
    prefix = p.with_suffix("") if p.suffix in (".bin", ".idx") else p
    missing = [
        str(prefix.with_name(prefix.name + s))
        for s in (".idx", ".bin")
        if not prefix.with_name(prefix.name + s).is_file()
    ]
    if missing:
        raise FileNotFoundError(
            f"training order {p}: missing {', '.join(missing)} (pass a .npy token array, a "
            "Megatron .bin/.idx prefix, or Pythia's document-00000-of-00020.bin)."
        )
    return MMapIndexedDataset(prefix)


def _sha256(path: Path, limit: int) -> tuple[str, str]:
    h = hashlib.sha256()
    size = path.stat().st_size
    with open(path, "rb") as fh:
        if size <= limit:
            for block in iter(lambda: fh.read(8 * _MIB), b""):
                h.update(block)
            return "sha256", h.hexdigest()
        h.update(fh.read(_MIB))
        fh.seek(max(size - _MIB, 0))
        h.update(fh.read(_MIB))
    return "sha256_head_tail", h.hexdigest()


def file_provenance(
    paths: Sequence[str | os.PathLike[str]], *, full_hash_limit: int = 1 << 30
) -> list[dict[str, Any]]:
    """Path, size and SHA-256 of each file (of its first and last MiB when larger than the limit).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> with tempfile.TemporaryDirectory() as d:
    ...     f = pathlib.Path(d) / "x"; _ = f.write_bytes(b"abc")
    ...     file_provenance([f])[0]["sha256"][:12]
    'ba7816bf8f01'
    """
    out = []
    for raw in paths:
        p = Path(raw)
        kind, digest = _sha256(p, int(full_hash_limit))
        out.append({"path": str(p), "size": p.stat().st_size, kind: digest})
    return out


def order_files(index: TokenIndex) -> list[Path]:
    """Return the files behind a token index (for provenance)."""
    if isinstance(index, ShardedIndexedDataset):
        return [index.prefix.with_suffix(".idx"), *index.piece_paths]
    if isinstance(index, MMapIndexedDataset):
        pre = index.prefix
        return [pre.with_name(pre.name + ".idx"), pre.with_name(pre.name + ".bin")]
    return []


def sample_training(
    index: TokenIndex,
    checkpoint_steps: npt.ArrayLike,
    batch_size: int,
    *,
    k: int = 10,
    m: int = 10,
    seed: int = 1994,
    epoch_cutoff: int | None = None,
    seq_len: int | None = None,
) -> Instances:
    """Trained instances: ``k`` batches × ``m`` sequences per macro-batch of the grid.

    Parameters
    ----------
    index
        The training order.
    checkpoint_steps
        The checkpoint grid (cohorts are its steps after 0).
    batch_size
        Sequences per optimizer step (Pythia 1 024).
    k, m, seed
        See :func:`causalmem.instances.sample_macro_batches` (the reference repo: 10, 10, 1994).
    epoch_cutoff
        Keep only cohorts ``<=`` this step (the paper: 95 000); None keeps every cohort.
    seq_len
        Keep the first ``seq_len`` tokens of each sequence.

    Raises
    ------
    ValueError
        A sampled position lies past the end of the order (the grid or batch size does not
        match this order).
    """
    steps = np.unique(np.asarray(checkpoint_steps, dtype=np.int64))
    cohorts = steps[steps > 0]
    if epoch_cutoff is not None:
        cohorts = cohorts[cohorts <= int(epoch_cutoff)]
    if cohorts.size == 0:
        raise ValueError("no cohort to sample: the grid has no step after 0 within the cut-off.")
    sample = sample_macro_batches(steps, batch_size, k=k, m=m, seed=seed, cohorts=cohorts)
    last = int(sample["seq_idx"].max())
    if last >= len(index):
        raise ValueError(
            f"the grid up to step {int(cohorts.max())} with batch_size={batch_size} needs "
            f"sequence {last:,} of the training order, which has {len(index):,}; check "
            "--batch-size and the checkpoint steps."
        )
    return training_instances(index, sample, seq_len=seq_len)


def sample_validation(
    source: TokenIndex | npt.ArrayLike,
    n: int | None,
    *,
    seed: int = 1234,
    seq_len: int | None = None,
) -> Instances:
    """Never-trained instances: ``n`` chunks of held-out data (all when None).

    ``seq_len`` truncates each chunk (it must not exceed the chunks' length).
    """
    ins = validation_instances(source, n, seed=seed)
    if seq_len is not None and seq_len < ins.seq_len:
        ins = Instances.from_arrays(
            np.ascontiguousarray(ins.tokens[:, :seq_len]), ins.unit, ins.cohort, info=ins.info
        )
    return ins


# ----------------------------------------------------------------------------- the table
def write_instance_table(
    path: str | os.PathLike[str], instances: Instances, provenance: Mapping[str, Any]
) -> Path:
    """Write instances and their provenance as one parquet file, atomically.

    Returns
    -------
    pathlib.Path
    """
    frame = instances.to_frame()
    table = pa.Table.from_pandas(frame, preserve_index=False)
    width = instances.seq_len
    tok_dtype = np.int32 if int(instances.tokens.max(initial=0)) < 2**31 else np.int64
    flat = pa.array(np.ascontiguousarray(instances.tokens, dtype=tok_dtype).reshape(-1))
    table = table.append_column("tokens", pa.FixedSizeListArray.from_arrays(flat, width))
    meta = {
        **dict(provenance),
        "format": _FORMAT,
        "version": 1,
        "fingerprint": instances.fingerprint(),
        "n": instances.n,
        "seq_len": width,
        "n_never": int(instances.never.sum()),
        "versions": versions(("causalmem", "numpy", "pyarrow")),
    }
    blob = json.dumps(meta, sort_keys=True, default=str).encode()
    table = table.replace_schema_metadata(
        {**(table.schema.metadata or {}), INSTANCES_METADATA_KEY: blob}
    )
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return atomic_write_bytes(Path(path), sink.getvalue().to_pybytes())


def read_instance_table(path: str | os.PathLike[str]) -> tuple[Instances, dict[str, Any]]:
    """Read an instance table written by :func:`write_instance_table` (fingerprint checked).

    Raises
    ------
    ValueError
        Not an instance table, or its rows differ from what was written (fingerprint).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p} does not exist; write it with `causalmem sample`.")
    table = pq.read_table(p)
    raw = (table.schema.metadata or {}).get(INSTANCES_METADATA_KEY)
    if raw is None:
        raise ValueError(f"{p} is not a causalmem instance table (no provenance metadata).")
    meta = dict(json.loads(raw))
    width = int(meta["seq_len"])
    col = table.column("tokens").combine_chunks()
    tokens = np.asarray(col.flatten(), dtype=np.int64).reshape(-1, width)
    frame = table.drop(["tokens"]).to_pandas()
    info = frame.drop(columns=["unit", "cohort", "length"])
    lengths = frame["length"].to_numpy(np.int64)
    if bool((lengths == width).all()):
        ins = Instances.from_arrays(
            tokens, frame["unit"].to_numpy(), frame["cohort"].astype("Int64"), info=info
        )
    else:
        rows = [t[:n] for t, n in zip(tokens, lengths, strict=True)]
        ins = Instances.from_arrays(
            rows, frame["unit"].to_numpy(), frame["cohort"].astype("Int64"), info=info
        )
    if ins.fingerprint() != meta.get("fingerprint"):
        raise ValueError(
            f"{p}: its rows differ from those it was written with (fingerprint mismatch); "
            "write it again with `causalmem sample`."
        )
    return ins, meta
