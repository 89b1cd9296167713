"""The scoring stage: checkpoints × instances → a long panel, stored as resumable parquet shards.

Layout of an output folder::

    out_dir/
      manifest.json                    index of the finished shards (rebuilt from them)
      shards/step-000001000.parquet    one shard per checkpoint, metadata inside

Each shard holds one row per scored instance (``unit, step, cohort`` + the metrics of
:mod:`causalmem.scoring.metrics` + ``n_tokens``) and, as parquet key-value metadata under
``b"causalmem.scores"``, the checkpoint (model, revision, step, label), its weights hash, the
row count, the instances' fingerprint, the scoring-plan hash, device, dtype, batch size and
timings, a content checksum of its rows and a fingerprint of the checkpoint folder's files.
Shards are written to a temporary file, flushed and renamed, so a shard either exists
completely or not at all; the manifest is rewritten the same way after every shard, so an
interrupted run resumes without losing or duplicating rows: finished checkpoints are skipped,
the interrupted one is scored again.

Integrity (nothing is trusted silently):

* only files the manifest lists, under canonical names inside ``shards/``, are read; a name
  from a manifest or from a shard's metadata can never point outside the folder. Other files
  are ignored; a finished shard of this run missing from the manifest (crash between the two
  renames) is adopted; a shard of another run is never overwritten.
* :func:`read_scores` checks every listed shard (present, readable, metadata = manifest entry,
  row count, content checksum, finite scores) and raises :class:`ShardIntegrityError` naming
  each unusable one instead of returning fewer checkpoints. Manifests of older versions (no
  checksums) are read with a warning saying what could not be checked.
* a resumed :func:`score` does not trust a shard that fails those checks, nor one whose local
  checkpoint's files changed and whose weights hash differs from the recorded one: it warns
  and scores that checkpoint again.
* before the first checkpoint is scored, every checkpoint's vocabulary and context are
  compared with the instances (:func:`~causalmem.scoring.integrity.check_compatibility`); NaN
  or ``+inf`` logits fail the checkpoint (:class:`~causalmem.errors.NonFiniteScoresError`)
  and no shard is written for it.

Execution: batches of whole instances in a fixed order (so the result of a row does not
depend on where the run was interrupted); ``torch.inference_mode``; bfloat16 weights with SDPA
attention on CUDA, float32 on CPU; metric arithmetic in float32, sums in float64. The batch
size is chosen from free memory (``"auto"``) and halved on a CUDA out-of-memory error; the
batch size used is recorded per shard. For bitwise-reproducible reruns keep the batch size,
device and dtype fixed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from causalmem._types import BatchSize
from causalmem.errors import CausalmemError, CausalmemWarning, ShardIntegrityError
from causalmem.instances import Instances
from causalmem.panel.panel import Panel
from causalmem.scoring.checkpoints import Checkpoint, DuplicateWeightsError
from causalmem.scoring.integrity import (
    SHARD_RE,
    check_compatibility,
    check_finite_logits,
    check_finite_scores,
    check_model_fits,
    content_checksum,
    shard_path,
    source_fingerprint,
)
from lmecon.atomic import atomic_write_bytes
from lmecon.provenance import versions

if TYPE_CHECKING:
    import torch

__all__ = [
    "METADATA_KEY",
    "ScoreRunMismatchError",
    "ShardRecord",
    "auto_batch_size",
    "read_manifest",
    "read_scores",
    "score",
    "ScoringMethod",
    "resolve_method",
    "score_instances",
    "scoring_plan",
]

METADATA_KEY = b"causalmem.scores"
_FORMAT = "causalmem.scores"
_FORMAT_VERSION = 1
_SHARDS = "shards"
_MANIFEST = "manifest.json"
_COLUMNS = ("logprob", "sup_seq", "acc_seq", "entr_seq", "avg_rank")

Log = Callable[[str], None]
ScoringMethod = Literal["auto", "fused", "logits"]
"""How metrics are computed: see :func:`score_instances`."""


class ScoreRunMismatchError(CausalmemError, ValueError):
    """An output folder holds shards of a different scoring run (instances, plan or model)."""


# ----------------------------------------------------------------------------- records
@dataclass(frozen=True, slots=True)
class ShardRecord:
    """What one shard holds; stored inside the shard and listed in the manifest."""

    checkpoint: Checkpoint
    weights_hash: str
    rows: int
    shard: str
    instances: str
    plan: str
    device: str
    dtype: str
    batch_size: int
    tokens: int
    seconds_load: float
    seconds_score: float
    scored_at: str
    versions: Mapping[str, str]
    checksum: str | None = None
    source: str | None = None
    method: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable mapping."""
        return {
            "checkpoint": self.checkpoint.to_dict(),
            "weights_hash": self.weights_hash,
            "rows": self.rows,
            "shard": self.shard,
            "instances": self.instances,
            "plan": self.plan,
            "device": self.device,
            "dtype": self.dtype,
            "batch_size": self.batch_size,
            "tokens": self.tokens,
            "seconds_load": self.seconds_load,
            "seconds_score": self.seconds_score,
            "scored_at": self.scored_at,
            "versions": dict(self.versions),
            "checksum": self.checksum,
            "source": self.source,
            "method": self.method,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ShardRecord:
        """Inverse of :meth:`to_dict`."""
        kw = {k: v for k, v in d.items() if k in _RECORD_FIELDS}
        kw["checkpoint"] = Checkpoint.from_dict(kw["checkpoint"])
        kw["versions"] = dict(kw.get("versions", {}))
        return cls(**kw)


_RECORD_FIELDS = frozenset(ShardRecord.__dataclass_fields__)


def shard_name(step: int) -> str:
    """File name of the shard of ``step`` (metadata lives inside the file, not in the name)."""
    return f"step-{int(step):09d}.parquet"


# ----------------------------------------------------------------------------- plans
def scoring_plan(
    instances: Instances,
    steps: Sequence[int] | npt.ArrayLike,
    *,
    pre_periods: int | None = 2,
) -> dict[int, npt.NDArray[np.bool_]]:
    """Which instances to score at which checkpoint: each cohort only where it is needed.

    A cohort ``g`` needs its base period (the checkpoint before ``g``), every later
    checkpoint, and ``pre_periods`` earlier ones (for placebo cells); never-trained instances
    are needed everywhere. On the lab's grid this roughly halves scoring. The resulting panel
    is unbalanced; ``att_gt(..., allow_unbalanced_panel=True)`` uses, per cell, the units
    observed at both of its periods.

    Parameters
    ----------
    instances
        The instances.
    steps
        Checkpoint steps to be scored.
    pre_periods
        Checkpoints before the base period to keep (None: all, i.e. a balanced panel).

    Returns
    -------
    dict
        ``step -> boolean mask over instances``.
    """
    grid = np.unique(np.asarray(steps, dtype=np.int64))
    never = instances.never
    coh = np.asarray(instances.cohort.fillna(-1), dtype=np.int64)
    out: dict[int, npt.NDArray[np.bool_]] = {}
    if pre_periods is None:
        return {int(s): np.ones(instances.n, dtype=bool) for s in grid}
    # Position of each cohort on the grid; cohorts off the grid start at their insertion point.
    pos = np.searchsorted(grid, coh, side="left")
    first = pos - 1 - int(pre_periods)
    for j, s in enumerate(grid):
        out[int(s)] = never | (~never & (j >= first))
    return out


def _plan_hash(instances: Instances, mask: npt.NDArray[np.bool_]) -> str:
    return hashlib.sha256(np.ascontiguousarray(instances.unit[mask]).tobytes()).hexdigest()[:32]


# ----------------------------------------------------------------------------- execution
def auto_batch_size(
    model: Any,
    seq_len: int,
    device: str | torch.device,
    *,
    max_batch: int | None = None,
    fused: bool = False,
) -> int:
    """Pick a batch size from free memory (CUDA: ``mem_get_info``; CPU: ``MemAvailable``).

    Counts the logits plus the float32 intermediates of the metrics (about five
    ``seq_len × vocab`` arrays per sequence; with ``fused`` only the hidden states, the chunk
    buffers are fixed) and the activations; uses 60% of free GPU memory
    or 25% of available RAM. Capped at ``max_batch`` (default 256 on CUDA, 32 on CPU: larger
    CPU batches were slower on a 2-core machine, cache misses).

    Returns
    -------
    int
        At least 1.
    """
    import torch

    dev = torch.device(device)
    cfg = model.config
    vocab = int(model.get_output_embeddings().weight.shape[0])
    hidden = int(getattr(cfg, "hidden_size", 1024))
    layers = int(getattr(cfg, "num_hidden_layers", 12))
    elem = next(model.parameters()).element_size()
    per_token_logits = 0 if fused else vocab * (elem + 4 * 5)
    per_seq = seq_len * per_token_logits + seq_len * hidden * layers * elem * 16
    if dev.type == "cuda":
        free = torch.cuda.mem_get_info(dev)[0]
        budget = 0.6 * free
        cap = 256 if max_batch is None else max_batch
    else:
        budget = 0.25 * _available_ram()
        cap = 32 if max_batch is None else max_batch
    return int(max(1, min(cap, budget // max(per_seq, 1))))


def _available_ram() -> int:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:  # pragma: no cover - non-Linux
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover
        return 4 << 30


@contextlib.contextmanager
def torch_settings(num_threads: int | None = None) -> Iterator[None]:
    """Temporarily set torch's intra-op thread count; restored on exit (no lasting change)."""
    import torch

    prev = torch.get_num_threads()
    try:
        if num_threads is not None:
            torch.set_num_threads(int(num_threads))
        yield
    finally:
        if num_threads is not None:
            torch.set_num_threads(prev)


def _is_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


def resolve_method(model: Any, method: str) -> Literal["fused", "logits"]:
    """Return the method :func:`score_instances` uses for ``model`` (``"auto"`` resolved).

    Raises
    ------
    ValueError
        ``method`` is unknown, or ``"fused"`` for an architecture the fused path cannot score.
    """
    from causalmem.scoring.fused import supports_fused

    if method not in ("auto", "fused", "logits"):
        raise ValueError(f"method={method!r}; use 'auto', 'fused' or 'logits'.")
    if method == "logits":
        return "logits"
    why = supports_fused(model)
    if why is None:
        return "fused"
    if method == "fused":
        raise ValueError(f"method='fused' cannot score this model: {why}; use method='logits'.")
    return "logits"


def _score_fused(
    model: Any,
    instances: Instances,
    bs: int,
    advance: Callable[[int], None] | None,
    label: str,
    vocab_chunk: int | None,
    compile: bool = False,
) -> dict[str, npt.NDArray[Any]]:
    """Score by the fused path of :func:`score_instances` (length buckets, chunked head)."""
    import torch

    from causalmem.scoring.fused import (
        fused_head,
        fused_sequence_scores,
        length_buckets,
        raise_nonfinite,
    )

    device = next(model.parameters()).device
    head = fused_head(model)
    lengths = instances.lengths
    order = np.concatenate(length_buckets(lengths, instances.n))
    n = instances.n
    out: dict[str, npt.NDArray[Any]] = {}
    start = 0
    with torch.inference_mode():
        while start < n:
            rows = order[start : start + bs]
            width = int(lengths[rows].max())
            ids = torch.tensor(instances.tokens[rows, :width], dtype=torch.long, device=device)
            mask = None
            if bool((lengths[rows] != width).any()):
                m = (np.arange(width)[None, :] < lengths[rows, None]).astype(np.int64)
                mask = torch.tensor(m, device=device)
            try:
                scores, bad = fused_sequence_scores(
                    model, ids, mask, head=head, vocab_chunk=vocab_chunk, compile=compile
                )
            except (RuntimeError, MemoryError) as exc:
                if device.type == "cuda" and _is_oom(exc) and bs > 1:
                    del exc
                    torch.cuda.empty_cache()
                    bs = max(1, bs // 2)
                    continue
                raise
            units = instances.unit[rows]
            raise_nonfinite(label, units, bad.cpu().numpy())
            arrays = {k: v.cpu().numpy() for k, v in scores.as_dict().items()}
            check_finite_scores(arrays, label, units)
            for k, v in arrays.items():
                if k not in out:
                    out[k] = np.zeros(n, dtype=v.dtype)
                out[k][rows] = v
            if advance is not None:
                advance(rows.size)
            start += rows.size
    return out


def score_instances(
    model: Any,
    instances: Instances,
    *,
    batch_size: BatchSize = "auto",
    advance: Callable[[int], None] | None = None,
    label: str = "the model",
    method: ScoringMethod = "auto",
    vocab_chunk: int | None = None,
    compile: bool = False,
) -> tuple[dict[str, npt.NDArray[Any]], int]:
    """Score instances under an already-loaded causal LM (the model is not modified).

    Parameters
    ----------
    model
        A transformers causal LM in eval mode (as :func:`load_causal_lm` returns it).
    instances
        What to score, in this order.
    batch_size
        Sequences per forward pass, or ``"auto"`` (:func:`auto_batch_size`). On a CUDA
        out-of-memory error the batch is halved and retried.
    advance
        Called with the number of sequences finished after each batch (progress bars).
    label
        Name of the checkpoint in error messages.
    method
        ``"fused"``: metrics from the final hidden states, one vocabulary chunk at a time, no
        ``[batch, length, vocab]`` logits, batches of similar length trimmed to their longest
        sequence (:mod:`~causalmem.scoring.fused`); ``"logits"``: the full logits then
        :func:`~causalmem.scoring.metrics.sequence_scores` (the path before 0.x, bit-identical
        to a plain forward); ``"auto"`` (default): fused when the architecture supports it.
        Both agree to float32 rounding, ranks exactly.
    vocab_chunk
        Vocabulary entries per chunk of the fused path (default 512 on CPU, 8192 on GPU).
    compile
        Fused path: fuse the per-chunk element-wise work with ``torch.compile`` (GPU).

    Returns
    -------
    (dict, int)
        Metric columns (:data:`~causalmem.scoring.metrics.METRICS` + ``n_tokens``) as numpy
        arrays in instance order, and the batch size finally used.

    Raises
    ------
    CheckpointCompatibilityError
        Token ids at or past the model's vocabulary, or instances longer than its context
        (checked before the first forward pass).
    NonFiniteScoresError
        The model produced NaN or ``+inf`` logits (corrupted weights, float16 overflow) or a
        non-finite score.
    """
    import torch

    from causalmem.scoring.metrics import sequence_scores

    if getattr(model, "training", False):
        import warnings

        from causalmem.errors import CausalmemWarning

        warnings.warn(
            "the model is in training mode (dropout active): scores are not deterministic; "
            "call model.eval() first (score_instances does not change the caller's model).",
            CausalmemWarning,
            stacklevel=2,
        )
    check_model_fits(model, instances, label)
    device = next(model.parameters()).device
    fused = resolve_method(model, method) == "fused"
    bs = (
        auto_batch_size(model, instances.seq_len, device, fused=fused)
        if batch_size == "auto"
        else int(batch_size)
    )
    if bs < 1:
        raise ValueError(f"batch_size must be positive; got {bs}.")
    if fused:
        return _score_fused(model, instances, bs, advance, label, vocab_chunk, compile), bs
    tokens = instances.tokens
    lengths = instances.lengths
    ragged = bool((lengths != instances.seq_len).any())
    out: dict[str, list[npt.NDArray[Any]]] = {}
    start = 0
    n = instances.n
    with torch.inference_mode():
        while start < n:
            stop = min(n, start + bs)
            ids = torch.tensor(tokens[start:stop], dtype=torch.long, device=device)
            mask = None
            if ragged:
                pos = np.arange(instances.seq_len)[None, :]
                m = (pos < lengths[start:stop, None]).astype(np.int64)
                mask = torch.tensor(m, device=device)
            try:
                # one full pass per batch: no KV cache to build (its keys and values for every
                # layer would only hold memory; the logits are the same)
                logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
                check_finite_logits(logits, label, instances.unit[start:stop])
                cols = sequence_scores(logits, ids, mask).as_dict()
            except (RuntimeError, MemoryError) as exc:
                if device.type == "cuda" and _is_oom(exc) and bs > 1:
                    del exc
                    torch.cuda.empty_cache()
                    bs = max(1, bs // 2)
                    continue
                raise
            arrays = {k: v.cpu().numpy() for k, v in cols.items()}
            check_finite_scores(arrays, label, instances.unit[start:stop])
            for k, v in arrays.items():
                out.setdefault(k, []).append(v)
            del logits, cols
            if advance is not None:
                advance(stop - start)
            start = stop
    return {k: np.concatenate(v) for k, v in out.items()}, bs


def score_checkpoint(
    checkpoint: Checkpoint,
    instances: Instances,
    *,
    plan_hash: str,
    fingerprint: str,
    device: str | None = None,
    dtype: str | None = None,
    batch_size: BatchSize = "auto",
    local_files_only: bool | None = None,
    known_hashes: Mapping[str, str] | None = None,
    allow_duplicate_weights: bool = False,
    advance: Callable[[int], None] | None = None,
    method: ScoringMethod = "auto",
    vocab_chunk: int | None = None,
) -> tuple[ShardRecord, pd.DataFrame]:
    """Load one checkpoint, refuse duplicate weights, score the instances; no file is written.

    Used by :func:`score` and by the Ray backend (one call per task).

    Parameters
    ----------
    checkpoint
        The checkpoint.
    instances
        The instances to score at this checkpoint.
    plan_hash
        Fingerprint of the unit subset (recorded in the shard).
    fingerprint
        :meth:`Instances.fingerprint` of the whole run's instances (recorded in the shard).
    device, dtype
        Default: CUDA if available else CPU; bfloat16 on CUDA, float32 on CPU.
    batch_size
        See :func:`score_instances`.
    local_files_only
        See :func:`~causalmem.scoring.checkpoints.load_causal_lm`.
    known_hashes
        ``weights_hash -> label`` of checkpoints already scored.
    allow_duplicate_weights
        Score even if the weights equal a known checkpoint's.
    advance
        Progress callback.
    method, vocab_chunk
        See :func:`score_instances`; the method used is recorded in the shard.

    Returns
    -------
    (ShardRecord, pandas.DataFrame)
    """
    import torch

    from causalmem.scoring.checkpoints import load_causal_lm, weights_hash

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    tdtype = _torch_dtype(dtype, dev)
    source = source_fingerprint(checkpoint)  # before loading: a later change is noticed
    t0 = time.perf_counter()
    model = load_causal_lm(checkpoint, device=dev, dtype=tdtype, local_files_only=local_files_only)
    digest = weights_hash(model)
    seconds_load = time.perf_counter() - t0
    other = (known_hashes or {}).get(digest)
    if other is not None and other != checkpoint.label and not allow_duplicate_weights:
        raise DuplicateWeightsError(
            f"checkpoint {checkpoint.label!r} (step {checkpoint.step}) has exactly the same "
            f"weights as {other!r} (sha256 {digest[:16]}…). Published checkpoints can be "
            "mislabelled copies (EleutherAI/pythia#205: 86 pythia-2.8b branches serve "
            "final-era weights; #206: pythia-12b step50000/58000). Drop it, or pass "
            "allow_duplicate_weights=True if the repetition is intended."
        )
    t1 = time.perf_counter()
    label = f"{checkpoint.label} (step {checkpoint.step})"
    used_method = resolve_method(model, method)
    cols, used_bs = score_instances(
        model,
        instances,
        batch_size=batch_size,
        advance=advance,
        label=label,
        method=used_method,
        vocab_chunk=vocab_chunk,
    )
    seconds_score = time.perf_counter() - t1
    del model
    frame = pd.DataFrame(
        {
            "unit": instances.unit.astype(np.int64),
            "step": np.full(instances.n, checkpoint.step, dtype=np.int64),
            "cohort": instances.cohort,
        }
    )
    for k in (*_COLUMNS, "n_tokens"):
        frame[k] = cols[k].astype(np.int64 if k == "n_tokens" else np.float64)
    record = ShardRecord(
        checkpoint=checkpoint,
        weights_hash=digest,
        rows=len(frame),
        shard=shard_name(int(checkpoint.step or 0)),
        instances=fingerprint,
        plan=plan_hash,
        device=str(dev),
        dtype=str(tdtype).replace("torch.", ""),
        batch_size=int(used_bs),
        tokens=int(cols["n_tokens"].sum()),
        seconds_load=round(seconds_load, 4),
        seconds_score=round(seconds_score, 4),
        scored_at=datetime.now(UTC).isoformat(timespec="seconds"),
        versions=versions(("causalmem", "torch", "transformers")),
        checksum=content_checksum(frame),
        source=source,
        method=used_method,
    )
    return record, frame


def _torch_dtype(name: str | None, dev: torch.device) -> torch.dtype:
    import torch

    if name is None:
        return torch.bfloat16 if dev.type == "cuda" else torch.float32
    table = {
        "float32": torch.float32,
        "fp32": torch.float32,
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
        "float16": torch.float16,
        "fp16": torch.float16,
    }
    if name not in table:
        raise ValueError(f"dtype={name!r}; use one of {sorted(table)}.")
    return table[name]


# ----------------------------------------------------------------------------- storage
def _atomic_write_bytes(data: bytes, target: Path) -> None:
    atomic_write_bytes(target, data)


def write_shard(out_dir: str | os.PathLike[str], record: ShardRecord, frame: pd.DataFrame) -> Path:
    """Write one shard atomically (temporary file, fsync, rename) with its record inside."""
    shards = Path(out_dir) / _SHARDS
    shards.mkdir(parents=True, exist_ok=True)
    target = shards / record.shard
    table = pa.Table.from_pandas(frame, preserve_index=False)
    blob = json.dumps(
        {"format": _FORMAT, "version": _FORMAT_VERSION, "record": record.to_dict()},
        sort_keys=True,
    ).encode()
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), METADATA_KEY: blob})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    _atomic_write_bytes(sink.getvalue().to_pybytes(), target)
    return target


@dataclass(frozen=True)
class _Checked:
    """One shard checked against what is expected of it (its manifest entry)."""

    step: int
    name: str
    record: ShardRecord | None
    frame: pd.DataFrame | None
    problem: str | None  # None: the shard can be trusted
    checksum_checked: bool = False


def _load_shard(path: Path) -> tuple[ShardRecord, pd.DataFrame]:
    """Parse a shard file; ``ValueError`` says in words why it cannot be used."""
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise ValueError(
            f"cannot be read as parquet ({type(exc).__name__}: truncated or damaged)"
        ) from None
    try:
        payload = json.loads((table.schema.metadata or {})[METADATA_KEY])
        if payload.get("format") != _FORMAT:
            raise ValueError(payload.get("format"))
        rec = ShardRecord.from_dict(payload["record"])
    except (KeyError, ValueError, TypeError, AttributeError):
        raise ValueError(
            "has no causalmem shard metadata (not written by the scoring runner)"
        ) from None
    if rec.shard != path.name or shard_name(int(rec.checkpoint.step or 0)) != path.name:
        raise ValueError(
            f"its metadata names shard {rec.shard!r} of step {rec.checkpoint.step}, not this file"
        )
    if table.num_rows != rec.rows:
        raise ValueError(f"holds {table.num_rows:,} rows where its metadata says {rec.rows:,}")
    return rec, table.to_pandas()


def _check_content(
    rec: ShardRecord, frame: pd.DataFrame, expected: str | None
) -> tuple[str | None, bool]:
    """(problem or None, whether a content checksum was compared)."""
    missing = [c for c in (*_COLUMNS, "unit", "step") if c not in frame.columns]
    if missing:
        return f"lacks the columns {missing}", False
    bad = ~np.isfinite(frame[list(_COLUMNS)].to_numpy(dtype=np.float64)).all(axis=1)
    if bad.any():
        return f"holds non-finite scores in {int(bad.sum()):,} of {len(frame):,} rows", False
    sums = {s for s in (expected, rec.checksum) if s}
    if not sums:
        return None, False
    if {content_checksum(frame)} != sums:
        return "has contents that differ from the checksum recorded when it was written", True
    return None, True


def _entry_step(entry: Mapping[str, Any]) -> int:
    try:
        return int(entry["checkpoint"]["step"])
    except (KeyError, TypeError, ValueError):
        return -1


def _check_entry(out: Path, entry: Mapping[str, Any]) -> _Checked:
    """Check the shard a manifest entry lists: name, presence, metadata, rows, checksum."""
    name, step = entry.get("shard"), _entry_step(entry)
    path = shard_path(out, name, _SHARDS)
    if path is None:
        refused = f"is not a shard file name inside {out / _SHARDS} (refused, never read)"
        return _Checked(step, repr(name), None, None, refused)
    if not path.is_file():
        return _Checked(step, str(name), None, None, "is missing")
    try:
        rec, frame = _load_shard(path)
    except ValueError as exc:
        return _Checked(step, str(name), None, None, str(exc))
    same = (
        rec.checkpoint.step == step
        and rec.weights_hash == entry.get("weights_hash")
        and rec.rows == entry.get("rows")
        and rec.instances == entry.get("instances")
    )
    if not same:
        differs = "does not match its manifest entry (checkpoint, weights, rows or instances)"
        return _Checked(step, str(name), rec, frame, differs)
    problem, checked = _check_content(rec, frame, entry.get("checksum"))
    return _Checked(step, str(name), rec, frame, problem, checked)


def _manifest_body(out: Path) -> tuple[dict[str, Any] | None, str]:
    """Return the parsed manifest, or (None, why) when it is missing or unreadable."""
    path = out / _MANIFEST
    if not path.exists():
        return None, "missing"
    try:
        body = json.loads(path.read_text())
        entries = body["checkpoints"]
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise TypeError("checkpoints")
    except (OSError, ValueError, KeyError, TypeError):
        return None, "unreadable"
    return dict(body), ""


def _rebuilt_entries(out: Path) -> list[dict[str, Any]]:
    """Manifest entries rebuilt from the canonical shard files (their own metadata)."""
    shards = out / _SHARDS
    entries: list[dict[str, Any]] = []
    if not shards.is_dir():
        return entries
    for p in sorted(shards.iterdir()):
        if shard_path(out, p.name, _SHARDS) is None:
            continue
        try:
            entries.append(_load_shard(p)[0].to_dict())
        except ValueError:  # listed anyway so that checking it reports why it is unusable
            m = SHARD_RE.fullmatch(p.name)
            entries.append({"shard": p.name, "checkpoint": {"step": int(m.group(1)) if m else -1}})
    return entries


def _remove_leftovers(out: Path) -> None:
    shards = out / _SHARDS
    if shards.is_dir():
        for p in shards.iterdir():
            if p.name.startswith(".") and p.name.endswith(".tmp"):
                p.unlink(missing_ok=True)  # an interrupted write: never a finished shard


def _warn(message: str, log: Log | None) -> None:
    warnings.warn(message, CausalmemWarning, stacklevel=3)
    if log:
        log(message)


def _adopt_unlisted(
    out: Path, listed: set[str], records: dict[int, ShardRecord], fingerprint: str, log: Log | None
) -> list[ShardRecord]:
    """Finished shards missing from the manifest (crash before its update) of this very run.

    Files with other names are never read; shards of another run are returned so the caller
    can refuse to overwrite them.
    """
    foreign: list[ShardRecord] = []
    for p in sorted((out / _SHARDS).iterdir()):
        if p.name in listed or (p.name.startswith(".") and p.name.endswith(".tmp")):
            continue
        if shard_path(out, p.name, _SHARDS) is None:
            if log:
                log(f"ignoring {p.name} in {out / _SHARDS}: not a shard listed in the manifest")
            continue
        try:
            rec, frame = _load_shard(p)
        except ValueError as exc:
            if log:
                log(f"ignoring unlisted shard {p.name}: it {exc}")
            continue
        step = int(rec.checkpoint.step or 0)
        if rec.instances != fingerprint:
            foreign.append(rec)
        elif _check_content(rec, frame, None)[0] is None and step not in records:
            records[step] = rec
            if log:
                log(f"adopting finished shard {p.name} (written before the manifest was updated)")
    return foreign


def _trusted_records(
    out: Path, fingerprint: str, log: Log | None
) -> tuple[dict[int, ShardRecord], list[ShardRecord]]:
    """Shards a resumed run may keep: the manifest's entries that pass every check.

    A listed shard that is missing, damaged, changed or holds non-finite scores is not used
    (a warning says so) and its checkpoint is scored again; unlisted files are ignored unless
    they are finished shards of this run. Returns the trusted records and the unlisted shards
    of other runs.
    """
    _remove_leftovers(out)
    body, _why = _manifest_body(out)
    entries = body["checkpoints"] if body is not None else _rebuilt_entries(out)
    records: dict[int, ShardRecord] = {}
    for entry in entries:
        c = _check_entry(out, entry)
        if c.problem is None and c.record is not None and c.frame is not None:
            rec = c.record  # shards of older versions get their checksum recorded now
            if rec.checksum is None:
                rec = dataclasses.replace(rec, checksum=content_checksum(c.frame))
            records.setdefault(c.step, rec)
        elif c.problem is not None:
            _warn(
                f"{out}: the shard {c.name} of step {c.step} {c.problem}; it is not used "
                f"and its checkpoint is scored again when it is part of this run "
                f"({entry.get('rows', '?')} rows).",
                log,
            )
    listed = {str(e.get("shard")) for e in entries}
    foreign = _adopt_unlisted(out, listed, records, fingerprint, log)
    return records, foreign


def _write_manifest(
    out_dir: Path, records: Mapping[int, ShardRecord], extra: Mapping[str, Any]
) -> None:
    body = {
        "format": _FORMAT,
        "version": _FORMAT_VERSION,
        **extra,
        "n_shards": len(records),
        "rows": int(sum(r.rows for r in records.values())),
        "checkpoints": [records[s].to_dict() for s in sorted(records)],
    }
    _atomic_write_bytes(json.dumps(body, indent=1).encode(), out_dir / _MANIFEST)


def read_manifest(out_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Return the manifest of a scoring folder (rebuilt from the shards if missing)."""
    out = Path(out_dir)
    path = out / _MANIFEST
    if path.exists():
        return dict(json.loads(path.read_text()))
    entries = [e for e in _rebuilt_entries(out) if "weights_hash" in e]
    return {
        "format": _FORMAT,
        "version": _FORMAT_VERSION,
        "n_shards": len(entries),
        "rows": int(sum(int(e["rows"]) for e in entries)),
        "checkpoints": entries,
    }


def _check_duplicates(records: Mapping[int, ShardRecord]) -> None:
    seen: dict[str, str] = {}
    for s in sorted(records):
        r = records[s]
        if r.weights_hash in seen and seen[r.weights_hash] != r.checkpoint.label:
            raise DuplicateWeightsError(
                f"checkpoints {seen[r.weights_hash]!r} and {r.checkpoint.label!r} have identical "
                "weights; pass allow_duplicate_weights=True to use both."
            )
        seen.setdefault(r.weights_hash, r.checkpoint.label)


def _listed_entries(out: Path) -> list[dict[str, Any]]:
    """Return the manifest's entries (checked for consistency) or entries rebuilt from shards."""
    body, why = _manifest_body(out)
    if body is None:
        entries = _rebuilt_entries(out)
        if entries:
            _warn(
                f"{out}: manifest.json is {why}; the panel is assembled from the {len(entries)} "
                "shard files found, checked against their own metadata only (shards lost "
                "before this cannot be noticed). Rerun score() on the folder to rewrite it.",
                None,
            )
        return entries
    entries = list(body["checkpoints"])
    total = sum(int(e.get("rows", 0) or 0) for e in entries)
    if body.get("n_shards", len(entries)) != len(entries) or body.get("rows", total) != total:
        raise ShardIntegrityError(
            f"{out / _MANIFEST} is inconsistent: it counts {body.get('n_shards')} shards and "
            f"{body.get('rows')} rows but lists {len(entries)} shards with {total} rows (edited "
            "by hand?). Delete manifest.json and rerun score() with the same checkpoints: it "
            "is rebuilt from the shards and damaged ones are scored again."
        )
    return entries


def _verified(out: Path, entries: Sequence[Mapping[str, Any]]) -> list[_Checked]:
    """Check every listed shard; refuse with one error naming each unusable one."""
    checked = [_check_entry(out, e) for e in entries]
    steps = [c.step for c in checked]
    dup = sorted({s for s in steps if steps.count(s) > 1})
    bad = [c for c in checked if c.problem is not None]
    if bad or dup:
        lines = [f"step {c.step} ({_SHARDS}/{c.name}) {c.problem}" for c in bad[:10]]
        if dup:
            lines.append(f"steps {dup} are listed more than once")
        good = sorted({c.step for c in checked if c.problem is None})
        raise ShardIntegrityError(
            f"{out}: {len(bad) + len(dup)} of the {len(entries)} shards listed in the manifest "
            f"cannot be used: {'; '.join(lines)}. Nothing was returned, so no checkpoint is "
            "silently missing. Rerun score() on this folder with the same checkpoints (unusable "
            f"shards are scored again), or read the intact ones with steps={good[:10]}"
            f"{'…' if len(good) > 10 else ''}."
        )
    unchecked = [c for c in checked if not c.checksum_checked]
    if unchecked:
        _warn(
            f"{out}: {len(unchecked)} of {len(checked)} shards have no content checksum "
            "(written by an older causalmem): their row counts and metadata were verified, "
            "their values could not be. Rerun score() on the folder to record checksums.",
            None,
        )
    return checked


@overload
def read_scores(
    out_dir: str | os.PathLike[str],
    *,
    steps: Sequence[int] | None = ...,
    allow_duplicate_weights: bool = ...,
    as_frame: Literal[False] = ...,
) -> Panel: ...
@overload
def read_scores(
    out_dir: str | os.PathLike[str],
    *,
    steps: Sequence[int] | None = ...,
    allow_duplicate_weights: bool = ...,
    as_frame: Literal[True],
) -> pd.DataFrame: ...
def read_scores(
    out_dir: str | os.PathLike[str],
    *,
    steps: Sequence[int] | None = None,
    allow_duplicate_weights: bool = False,
    as_frame: bool = False,
) -> Panel | pd.DataFrame:
    """Assemble the finished shards of a scoring folder into a :class:`~causalmem.Panel`.

    Parameters
    ----------
    out_dir
        Folder written by :func:`score` (or the Ray backend).
    steps
        Only these checkpoints (default: all finished shards).
    allow_duplicate_weights
        Accept shards whose checkpoints have identical weights.
    as_frame
        Return the long DataFrame (with ``n_tokens``) instead of a validated Panel (a panel
        needs at least two checkpoints).

    Returns
    -------
    Panel or pandas.DataFrame
        Columns ``unit, step, cohort`` and the outcomes ``logprob, sup_seq, acc_seq, entr_seq,
        avg_rank``, sorted by unit then step; unbalanced when a scoring plan skipped cells.
        ``meta["user"]`` holds the shard records.

    Raises
    ------
    ShardIntegrityError
        A shard the manifest lists is missing, unreadable, has other rows or metadata than its
        entry, fails its content checksum, holds non-finite scores or names a file outside the
        folder; or the manifest's totals disagree with its list. Nothing is returned then.
    FileNotFoundError
        No finished shard (for ``steps``).

    Warns
    -----
    CausalmemWarning
        The manifest is missing or unreadable (the panel is assembled from the shard files), or
        shards lack a content checksum (written by an older version).
    """
    out = Path(out_dir)
    entries = _listed_entries(out)
    if steps is not None:
        wanted = {int(s) for s in steps}
        missing = sorted(wanted - {_entry_step(e) for e in entries})
        if missing:
            raise FileNotFoundError(f"{out}: no finished shard for steps {missing[:10]}.")
        entries = [e for e in entries if _entry_step(e) in wanted]
    if not entries:
        raise FileNotFoundError(f"{out} has no finished shards.")
    checked = {c.step: c for c in _verified(out, entries)}
    records = {s: c.record for s, c in checked.items() if c.record is not None}
    fps = {r.instances for r in records.values()}
    if len(fps) > 1:
        raise ScoreRunMismatchError(f"{out} mixes shards of {len(fps)} different instance sets.")
    if not allow_duplicate_weights:
        _check_duplicates(records)
    frames = [checked[s].frame for s in sorted(checked)]
    frame = pd.concat(frames, ignore_index=True)
    frame["cohort"] = frame["cohort"].astype("Int64")
    if as_frame:
        return frame.sort_values(["unit", "step"], ignore_index=True)
    n_units = frame["unit"].nunique()
    balanced = len(frame) == n_units * len(records)
    meta = {
        "source": "causalmem.scoring",
        "instances": next(iter(fps)),
        "checkpoints": [records[s].to_dict() for s in sorted(records)],
    }
    return Panel.from_frame(
        frame,
        unit="unit",
        step="step",
        cohort="cohort",
        outcomes=_COLUMNS,
        allow_unbalanced_panel=not balanced,
        meta=meta,
    )


# ----------------------------------------------------------------------------- driver
def _as_checkpoints(checkpoints: Sequence[Checkpoint | str]) -> list[Checkpoint]:
    out: list[Checkpoint] = []
    for c in checkpoints:
        if isinstance(c, Checkpoint):
            out.append(c)
        elif isinstance(c, str | os.PathLike):
            s = os.fspath(c)
            model, _, rev = s.partition("@") if "@" in s and not Path(s).exists() else (s, "", "")
            out.append(Checkpoint(model, rev or None))
        else:
            raise TypeError(f"checkpoints must be Checkpoint or str; got {type(c).__name__}.")
    steps = [c.step for c in out]
    if len(set(steps)) != len(steps):
        raise ValueError("checkpoint steps must be distinct (the step is the panel's time).")
    labels = [c.label for c in out]
    if len(set(labels)) != len(labels):
        raise ValueError("checkpoint labels must be distinct.")
    return sorted(out, key=lambda c: c.step or 0)


@dataclass(frozen=True)
class _Prepared:
    out: Path
    checkpoints: list[Checkpoint]
    masks: dict[int, npt.NDArray[np.bool_]]
    plan_hashes: dict[int, str]
    done: dict[int, ShardRecord]
    todo: list[Checkpoint]
    fingerprint: str
    extra: dict[str, Any]


def _plan_masks(
    ckpts: Sequence[Checkpoint], instances: Instances, plan: Mapping[int, npt.ArrayLike] | None
) -> dict[int, npt.NDArray[np.bool_]]:
    masks: dict[int, npt.NDArray[np.bool_]] = {}
    for c in ckpts:
        step = int(c.step or 0)
        if plan is None or step not in plan:
            masks[step] = np.ones(instances.n, dtype=bool)
            continue
        sel = np.asarray(plan[step])
        if sel.dtype == bool:
            if sel.shape != (instances.n,):
                raise ValueError(f"plan mask for step {step} must have {instances.n} entries.")
            masks[step] = sel.copy()
        else:
            masks[step] = np.isin(instances.unit, sel.astype(np.int64))
    return masks


def _check_resumable(
    out: Path,
    done: Mapping[int, ShardRecord],
    foreign: Sequence[ShardRecord],
    wanted: Mapping[int, Checkpoint],
    plan_hashes: Mapping[int, str],
    fingerprint: str,
    log: Log | None,
) -> None:
    """Refuse a folder whose trusted shards belong to another run; never overwrite one."""
    for rec in foreign:
        step = int(rec.checkpoint.step or 0)
        if step in wanted:
            raise ScoreRunMismatchError(
                f"{out / _SHARDS / rec.shard} is a shard of another scoring run (other instances) "
                "that is not listed in the manifest; this run would overwrite it. Move it out "
                "of the folder, or use a new output folder."
            )
        if log:
            log(f"ignoring {rec.shard}: a shard of another run, not listed in the manifest")
    for step, rec in done.items():
        if rec.instances != fingerprint:
            raise ScoreRunMismatchError(
                f"{out} holds shards scored on other instances (step {step}); use a new "
                "output folder or delete the old shards."
            )
        if step in wanted:
            c = wanted[step]
            if (rec.checkpoint.model, rec.checkpoint.revision) != (c.model, c.revision):
                raise ScoreRunMismatchError(
                    f"{out}: the shard of step {step} was scored from "
                    f"{rec.checkpoint.label!r}, not {c.label!r}."
                )
            if rec.plan != plan_hashes[step]:
                raise ScoreRunMismatchError(
                    f"{out}: the shard of step {step} scored a different set of instances "
                    "(scoring plan changed); use a new output folder."
                )


def _recheck_weights(
    out: Path,
    done: dict[int, ShardRecord],
    wanted: Mapping[int, Checkpoint],
    log: Log | None,
    local_files_only: bool | None = None,
) -> None:
    """Drop finished shards whose local checkpoint's weights changed since they were scored.

    :func:`~causalmem.scoring.integrity.source_fingerprint` (a local folder's file names, sizes
    and times; a hub revision's cached commit) is compared with the one recorded in the shard;
    only when it differs are the weights loaded and hashed again. A local folder without a
    recorded fingerprint (shards of older versions) is re-hashed once; a hub revision only when
    both fingerprints are known (re-downloading every checkpoint would be too costly).
    """
    from causalmem.scoring.checkpoints import load_causal_lm, weights_hash

    for step in sorted(done):
        rec, ck = done[step], wanted.get(step)
        if ck is None:
            continue
        now = source_fingerprint(ck)
        if now == rec.source or (not ck.is_local and (now is None or rec.source is None)):
            continue
        dtype = _torch_dtype(rec.dtype, _cpu())
        model = load_causal_lm(ck, device="cpu", dtype=dtype, local_files_only=local_files_only)
        digest = weights_hash(model)
        del model
        if digest == rec.weights_hash:
            done[step] = dataclasses.replace(rec, source=now)
            continue
        del done[step]
        _warn(
            f"{out}: the weights of checkpoint {ck.label!r} (step {step}) changed since its "
            f"shard was written (sha256 {rec.weights_hash[:12]}… → {digest[:12]}…); its "
            f"{rec.rows:,} rows are scored again.",
            log,
        )


def _cpu() -> torch.device:
    import torch

    return torch.device("cpu")


def _prepare(
    checkpoints: Sequence[Checkpoint | str],
    instances: Instances,
    out_dir: str | os.PathLike[str],
    plan: Mapping[int, npt.ArrayLike] | None,
    log: Log | None,
    local_files_only: bool | None = None,
) -> _Prepared:
    """Validate the run, check every checkpoint fits the instances, find what is left to do."""
    if not isinstance(instances, Instances):
        raise TypeError(f"instances must be causalmem.lab.Instances; got {type(instances)}.")
    ckpts = _as_checkpoints(checkpoints)
    if not ckpts:
        raise ValueError("no checkpoints to score.")
    masks = _plan_masks(ckpts, instances, plan)
    check_compatibility(ckpts, instances, local_files_only=local_files_only)
    out = Path(out_dir)
    (out / _SHARDS).mkdir(parents=True, exist_ok=True)
    plan_hashes = {s: _plan_hash(instances, m) for s, m in masks.items()}
    fp = instances.fingerprint()
    done, foreign = _trusted_records(out, fp, log)
    wanted = {int(c.step or 0): c for c in ckpts}
    _check_resumable(out, done, foreign, wanted, plan_hashes, fp, log)
    _recheck_weights(out, done, wanted, log, local_files_only)
    todo = [c for c in ckpts if int(c.step or 0) not in done]
    extra = {"instances": fp, "n_instances": instances.n, "seq_len": instances.seq_len}
    return _Prepared(out, ckpts, masks, plan_hashes, done, todo, fp, extra)


def _progress(enabled: bool) -> Any:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        Task,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class TokenRate(ProgressColumn):  # type: ignore[misc]
        """Tokens per second of a task whose items carry ``tokens_per_item`` tokens."""

        def render(self, task: Task) -> Text:
            per = task.fields.get("tokens_per_item")
            if not per or task.speed is None:
                return Text("")
            return Text(f"{task.speed * per:,.0f} tok/s")

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TokenRate(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
        transient=True,
    )


def _duration(seconds: float) -> str:
    """``1 h 02 min``, ``3 min 05 s`` or ``12 s``."""
    sec = int(round(seconds))
    if sec >= 3600:
        return f"{sec // 3600} h {sec % 3600 // 60:02d} min"
    if sec >= 60:
        return f"{sec // 60} min {sec % 60:02d} s"
    return f"{sec} s"


def _advance(bar: Any, task: Any, n: int) -> None:
    bar.advance(task, n)


def score(
    checkpoints: Sequence[Checkpoint | str],
    instances: Instances,
    out_dir: str | os.PathLike[str],
    *,
    plan: Mapping[int, npt.ArrayLike] | None = None,
    batch_size: BatchSize = "auto",
    device: str | None = None,
    dtype: str | None = None,
    num_threads: int | None = None,
    allow_duplicate_weights: bool = False,
    local_files_only: bool | None = None,
    progress: bool = True,
    log: Log | None = None,
    as_frame: bool = False,
    method: ScoringMethod = "auto",
    vocab_chunk: int | None = None,
) -> Panel | pd.DataFrame:
    """Score every instance at every checkpoint and return the long panel.

    Each checkpoint becomes one parquet shard in ``out_dir/shards`` (written atomically); a
    rerun on the same folder skips finished checkpoints (resumption), so an interrupted run
    neither loses nor duplicates rows.

    Parameters
    ----------
    checkpoints
        :class:`~causalmem.scoring.Checkpoint` values, local folders, or ``"model@revision"``
        strings; steps must be distinct.
    instances
        What to score (:class:`~causalmem.lab.Instances`).
    out_dir
        Output folder (created).
    plan
        Optional ``step -> boolean mask or unit ids``: score only those instances at that
        step (see :func:`scoring_plan`); steps absent from the plan score every instance.
    batch_size
        Sequences per forward pass or ``"auto"``.
    device
        ``"cuda"``, ``"cpu"``, … (default: CUDA when available).
    dtype
        ``"bfloat16"`` / ``"float32"`` / ``"float16"`` (default: bf16 on CUDA, fp32 on CPU).
    num_threads
        torch intra-op threads during the call (restored afterwards). On a busy 2-core machine
        one thread was faster than two; default: leave torch's setting.
    allow_duplicate_weights
        Score checkpoints whose weights equal another's (refused by default; Pythia
        #205/#206).
    local_files_only
        Never touch the network (default: follow ``HF_HUB_OFFLINE``).
    progress
        Show rich progress bars.
    log
        Message callback (one line per finished checkpoint).
    as_frame
        Return the long DataFrame instead of a Panel (needed for a single checkpoint).
    method
        ``"auto"`` (fused where supported), ``"fused"`` or ``"logits"``; see
        :func:`score_instances`.
    vocab_chunk
        Vocabulary chunk of the fused path.

    Returns
    -------
    Panel or pandas.DataFrame
        See :func:`read_scores`.

    Raises
    ------
    DuplicateWeightsError
        A checkpoint's weights equal another's and ``allow_duplicate_weights`` is False.
    ScoreRunMismatchError
        ``out_dir`` holds shards of a different run.
    CheckpointCompatibilityError
        A checkpoint's vocabulary or context does not fit the instances, or the checkpoints
        have different vocabularies (checked before anything is scored).
    NonFiniteScoresError
        A checkpoint produced NaN / ``+inf`` logits; no shard is written for it.

    Warns
    -----
    CausalmemWarning
        A finished shard is not trusted on resume (damaged, changed, non-finite, or the
        weights of its local checkpoint changed) and its checkpoint is scored again.

    Examples
    --------
    >>> from causalmem.scoring import score, pythia_checkpoints
    >>> cks = pythia_checkpoints("EleutherAI/pythia-70m-deduped", steps=[0, 1000, 2000])
    >>> panel = score(cks, instances, "scores/70m")  # doctest: +SKIP
    """
    prep = _prepare(checkpoints, instances, out_dir, plan, log, local_files_only)
    records = dict(prep.done)
    known = {r.weights_hash: r.checkpoint.label for r in records.values()}
    if not allow_duplicate_weights:
        _check_duplicates(records)
    if prep.done and log:
        log(f"resuming: {len(prep.done)} of {len(prep.checkpoints)} checkpoints already scored")
    _write_manifest(prep.out, records, prep.extra)
    t_start, n_done = time.perf_counter(), 0
    with torch_settings(num_threads), _progress(progress) as bar:
        ck_task = bar.add_task("checkpoints", total=len(prep.checkpoints))
        bar.update(ck_task, completed=len(prep.checkpoints) - len(prep.todo))
        for ck in prep.todo:
            step = int(ck.step or 0)
            sub = instances.take(prep.masks[step])
            seq_task = bar.add_task(
                f"step {step}", total=sub.n, tokens_per_item=float(np.mean(sub.lengths - 1))
            )
            rec, frame = score_checkpoint(
                ck,
                sub,
                plan_hash=prep.plan_hashes[step],
                fingerprint=prep.fingerprint,
                device=device,
                dtype=dtype,
                batch_size=batch_size,
                local_files_only=local_files_only,
                known_hashes=known,
                allow_duplicate_weights=allow_duplicate_weights,
                advance=functools.partial(_advance, bar, seq_task),
                method=method,
                vocab_chunk=vocab_chunk,
            )
            write_shard(prep.out, rec, frame)
            records[step] = rec
            known.setdefault(rec.weights_hash, ck.label)
            _write_manifest(prep.out, records, prep.extra)
            bar.remove_task(seq_task)
            bar.advance(ck_task)
            n_done += 1
            if log:
                rate = rec.tokens / max(rec.seconds_score, 1e-9)
                left = len(prep.todo) - n_done
                eta = (time.perf_counter() - t_start) / n_done * left
                log(
                    f"step {step}: {rec.rows:,} rows in {rec.seconds_score:.1f} s "
                    f"({rate:,.0f} tokens/s, batch {rec.batch_size}, {rec.device} {rec.dtype}, "
                    f"{rec.method}); {left} checkpoints left, ETA {_duration(eta)}"
                )
    return read_scores(  # type: ignore[call-overload,no-any-return]
        prep.out,
        steps=[int(c.step or 0) for c in prep.checkpoints],
        allow_duplicate_weights=allow_duplicate_weights,
        as_frame=as_frame,
    )
