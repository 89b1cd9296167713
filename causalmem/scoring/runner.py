"""The scoring stage: checkpoints × instances → a long panel, stored as resumable parquet shards.

Layout of an output folder::

    out_dir/
      manifest.json                    index of the finished shards (rebuilt from them)
      shards/step-000001000.parquet    one shard per checkpoint, metadata inside

Each shard holds one row per scored instance (``unit, step, cohort`` + the metrics of
:mod:`causalmem.scoring.metrics` + ``n_tokens``) and, as parquet key-value metadata under
``b"causalmem.scores"``, the checkpoint (model, revision, step, label), its weights hash, the
row count, the instances' fingerprint, the scoring-plan hash, device, dtype, batch size and
timings. Shards are written to a temporary file, flushed and renamed, so a shard either exists
completely or not at all; the manifest is rewritten the same way after every shard and is
always rebuilt from the shards, so an interrupted run resumes without losing or duplicating
rows: finished checkpoints are skipped, the interrupted one is scored again.

Execution: batches of whole instances in a fixed order (so the result of a row does not
depend on where the run was interrupted); ``torch.inference_mode``; bfloat16 weights with SDPA
attention on CUDA, float32 on CPU; metric arithmetic in float32, sums in float64. The batch
size is chosen from free memory (``"auto"``) and halved on a CUDA out-of-memory error; the
batch size used is recorded per shard. For bitwise-reproducible reruns keep the batch size,
device and dtype fixed.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import time
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
from causalmem.errors import CausalmemError
from causalmem.instances import Instances
from causalmem.panel.panel import Panel
from causalmem.scoring.checkpoints import Checkpoint, DuplicateWeightsError
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
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ShardRecord:
        """Inverse of :meth:`to_dict`."""
        kw = dict(d)
        kw["checkpoint"] = Checkpoint.from_dict(kw["checkpoint"])
        kw["versions"] = dict(kw.get("versions", {}))
        return cls(**kw)


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
) -> int:
    """Pick a batch size from free memory (CUDA: ``mem_get_info``; CPU: ``MemAvailable``).

    Counts the logits plus the float32 intermediates of the metrics (about five
    ``seq_len × vocab`` arrays per sequence) and the activations; uses 60% of free GPU memory
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
    per_seq = seq_len * vocab * (elem + 4 * 5) + seq_len * hidden * layers * elem * 16
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


def score_instances(
    model: Any,
    instances: Instances,
    *,
    batch_size: BatchSize = "auto",
    advance: Callable[[int], None] | None = None,
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

    Returns
    -------
    (dict, int)
        Metric columns (:data:`~causalmem.scoring.metrics.METRICS` + ``n_tokens``) as numpy
        arrays in instance order, and the batch size finally used.
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
    device = next(model.parameters()).device
    bs = (
        auto_batch_size(model, instances.seq_len, device)
        if batch_size == "auto"
        else int(batch_size)
    )
    if bs < 1:
        raise ValueError(f"batch_size must be positive; got {bs}.")
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
                logits = model(input_ids=ids, attention_mask=mask).logits
                cols = sequence_scores(logits, ids, mask).as_dict()
            except (RuntimeError, MemoryError) as exc:
                if device.type == "cuda" and _is_oom(exc) and bs > 1:
                    del exc
                    torch.cuda.empty_cache()
                    bs = max(1, bs // 2)
                    continue
                raise
            for k, v in cols.items():
                out.setdefault(k, []).append(v.cpu().numpy())
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

    Returns
    -------
    (ShardRecord, pandas.DataFrame)
    """
    import torch

    from causalmem.scoring.checkpoints import load_causal_lm, weights_hash

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    tdtype = _torch_dtype(dtype, dev)
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
    cols, used_bs = score_instances(model, instances, batch_size=batch_size, advance=advance)
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


def _read_record(path: Path) -> ShardRecord | None:
    try:
        meta = pq.read_schema(path).metadata or {}
        payload = json.loads(meta[METADATA_KEY])
        if payload.get("format") != _FORMAT:
            return None
        rec = ShardRecord.from_dict(payload["record"])
        if pq.ParquetFile(path).metadata.num_rows != rec.rows:
            return None
        return rec
    except (OSError, KeyError, ValueError, TypeError, pa.ArrowException):
        return None


def _scan_shards(out_dir: Path, log: Log | None = None) -> dict[int, ShardRecord]:
    """Finished shards by step; removes leftovers of interrupted writes."""
    shards = out_dir / _SHARDS
    found: dict[int, ShardRecord] = {}
    if not shards.is_dir():
        return found
    for p in sorted(shards.iterdir()):
        if p.name.startswith(".") and p.name.endswith(".tmp"):
            p.unlink(missing_ok=True)  # an interrupted write: never a finished shard
            continue
        if p.suffix != ".parquet":
            continue
        rec = _read_record(p)
        if rec is None:
            if log:
                log(f"ignoring unreadable shard {p.name}; its checkpoint will be scored again")
            continue
        found[int(rec.checkpoint.step or 0)] = rec
    return found


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
    records = _scan_shards(out)
    return {
        "format": _FORMAT,
        "version": _FORMAT_VERSION,
        "n_shards": len(records),
        "rows": int(sum(r.rows for r in records.values())),
        "checkpoints": [records[s].to_dict() for s in sorted(records)],
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
    """
    out = Path(out_dir)
    records = _scan_shards(out)
    if steps is not None:
        wanted = {int(s) for s in steps}
        missing = sorted(wanted - set(records))
        if missing:
            raise FileNotFoundError(f"{out}: no finished shard for steps {missing[:10]}.")
        records = {s: r for s, r in records.items() if s in wanted}
    if not records:
        raise FileNotFoundError(f"{out} has no finished shards.")
    fps = {r.instances for r in records.values()}
    if len(fps) > 1:
        raise ScoreRunMismatchError(f"{out} mixes shards of {len(fps)} different instance sets.")
    if not allow_duplicate_weights:
        _check_duplicates(records)
    frames = [pq.read_table(out / _SHARDS / records[s].shard).to_pandas() for s in sorted(records)]
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


def _prepare(
    checkpoints: Sequence[Checkpoint | str],
    instances: Instances,
    out_dir: str | os.PathLike[str],
    plan: Mapping[int, npt.ArrayLike] | None,
    log: Log | None,
) -> _Prepared:
    if not isinstance(instances, Instances):
        raise TypeError(f"instances must be causalmem.lab.Instances; got {type(instances)}.")
    ckpts = _as_checkpoints(checkpoints)
    if not ckpts:
        raise ValueError("no checkpoints to score.")
    out = Path(out_dir)
    (out / _SHARDS).mkdir(parents=True, exist_ok=True)
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
    plan_hashes = {s: _plan_hash(instances, m) for s, m in masks.items()}
    fp = instances.fingerprint()
    done = _scan_shards(out, log)
    wanted = {int(c.step or 0): c for c in ckpts}
    for step, rec in done.items():
        if rec.instances != fp:
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
    todo = [c for c in ckpts if int(c.step or 0) not in done]
    extra = {"instances": fp, "n_instances": instances.n, "seq_len": instances.seq_len}
    return _Prepared(out, ckpts, masks, plan_hashes, done, todo, fp, extra)


def _progress(enabled: bool) -> Any:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
        transient=True,
    )


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

    Examples
    --------
    >>> from causalmem.scoring import score, pythia_checkpoints
    >>> cks = pythia_checkpoints("EleutherAI/pythia-70m-deduped", steps=[0, 1000, 2000])
    >>> panel = score(cks, instances, "scores/70m")  # doctest: +SKIP
    """
    prep = _prepare(checkpoints, instances, out_dir, plan, log)
    records = dict(prep.done)
    known = {r.weights_hash: r.checkpoint.label for r in records.values()}
    if not allow_duplicate_weights:
        _check_duplicates(records)
    if prep.done and log:
        log(f"resuming: {len(prep.done)} of {len(prep.checkpoints)} checkpoints already scored")
    _write_manifest(prep.out, records, prep.extra)
    with torch_settings(num_threads), _progress(progress) as bar:
        ck_task = bar.add_task("checkpoints", total=len(prep.checkpoints))
        bar.update(ck_task, completed=len(prep.checkpoints) - len(prep.todo))
        for ck in prep.todo:
            step = int(ck.step or 0)
            sub = instances.take(prep.masks[step])
            seq_task = bar.add_task(f"step {step}", total=sub.n)
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
            )
            write_shard(prep.out, rec, frame)
            records[step] = rec
            known.setdefault(rec.weights_hash, ck.label)
            _write_manifest(prep.out, records, prep.extra)
            bar.remove_task(seq_task)
            bar.advance(ck_task)
            if log:
                rate = rec.tokens / max(rec.seconds_score, 1e-9)
                log(
                    f"step {step}: {rec.rows:,} rows in {rec.seconds_score:.1f} s "
                    f"({rate:,.0f} tokens/s, batch {rec.batch_size}, {rec.device} {rec.dtype})"
                )
    return read_scores(  # type: ignore[call-overload,no-any-return]
        prep.out,
        steps=[int(c.step or 0) for c in prep.checkpoints],
        allow_duplicate_weights=allow_duplicate_weights,
        as_frame=as_frame,
    )
