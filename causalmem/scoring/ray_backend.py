"""Score many checkpoints on a Ray cluster: one checkpoint per task, same shards as :func:`score`.

Each task loads one checkpoint on its worker (GPU when the cluster has them), hashes its
weights, scores the instances and returns the rows; the driver writes every shard atomically
and keeps the manifest, so the output folder needs to exist only on the driver (no shared file
system) and is interchangeable with the sequential runner's: a run started with one backend can
be resumed with the other. Workers must be able to load the checkpoints (hub access, a shared
Hugging Face cache, or the same local folders) and import causalmem.

Duplicate weights: a task refuses a checkpoint identical to one already finished when it
starts; checkpoints scored concurrently are compared when they return, and a duplicate's rows
are not written. :class:`~causalmem.scoring.DuplicateWeightsError` is raised after the other
shards are stored (unless ``allow_duplicate_weights``).

Integrity checks are those of :func:`~causalmem.scoring.score`: every checkpoint's vocabulary
and context are checked against the instances on the driver before any task starts (and again
by each task on the loaded model), a task whose checkpoint gives NaN / ``+inf`` logits fails
with :class:`~causalmem.errors.NonFiniteScoresError` and its shard is not written, and a resumed
run re-verifies the manifest's shards and the weights of changed checkpoints.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from causalmem.instances import Instances
from causalmem.panel.panel import Panel
from causalmem.scoring.checkpoints import Checkpoint, DuplicateWeightsError
from causalmem.scoring.runner import (
    BatchSize,
    ScoringMethod,
    ShardRecord,
    _check_duplicates,
    _duration,
    _prepare,
    _progress,
    _write_manifest,
    read_scores,
    score_checkpoint,
    torch_settings,
    write_shard,
)

__all__ = ["score_ray"]

Log = Callable[[str], None]


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - optional dependency
        raise ImportError(
            "the Ray backend needs the 'ray' package: pip install 'ray>=2.9'"
        ) from exc
    return ray


def _task(
    checkpoint: dict[str, Any],
    instances: Instances,
    mask: npt.NDArray[np.bool_],
    plan_hash: str,
    fingerprint: str,
    device: str | None,
    dtype: str | None,
    batch_size: BatchSize,
    local_files_only: bool | None,
    known_hashes: dict[str, str],
    allow_duplicate_weights: bool,
    num_threads: int | None,
    method: ScoringMethod = "auto",
    vocab_chunk: int | None = None,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Body of one Ray task: score one checkpoint, return its record and rows."""
    with torch_settings(num_threads):
        rec, frame = score_checkpoint(
            Checkpoint.from_dict(checkpoint),
            instances.take(mask),
            plan_hash=plan_hash,
            fingerprint=fingerprint,
            device=device,
            dtype=dtype,
            batch_size=batch_size,
            local_files_only=local_files_only,
            known_hashes=known_hashes,
            allow_duplicate_weights=allow_duplicate_weights,
            method=method,
            vocab_chunk=vocab_chunk,
        )
    return rec.to_dict(), frame


def score_ray(
    checkpoints: Sequence[Checkpoint | str],
    instances: Instances,
    out_dir: str | os.PathLike[str],
    *,
    plan: Mapping[int, npt.ArrayLike] | None = None,
    batch_size: BatchSize = "auto",
    device: str | None = None,
    dtype: str | None = None,
    num_cpus_per_task: float = 1,
    num_gpus_per_task: float | None = None,
    address: str | None = None,
    ray_init_kwargs: Mapping[str, Any] | None = None,
    allow_duplicate_weights: bool = False,
    local_files_only: bool | None = None,
    progress: bool = True,
    log: Log | None = None,
    as_frame: bool = False,
    method: ScoringMethod = "auto",
    vocab_chunk: int | None = None,
) -> Panel | pd.DataFrame:
    """Like :func:`~causalmem.scoring.score`, with one Ray task per checkpoint.

    Parameters
    ----------
    checkpoints, instances, out_dir, plan, batch_size, dtype, allow_duplicate_weights, \
local_files_only, progress, log, as_frame, method, vocab_chunk
        As in :func:`~causalmem.scoring.score`.
    device
        Device inside each task (default: CUDA when the task got a GPU, else CPU).
    num_cpus_per_task
        CPUs reserved per task (also the task's torch thread count when it is a whole number).
    num_gpus_per_task
        GPUs per task; default 1 when the cluster has GPUs, else 0.
    address
        Ray cluster address (``"auto"`` to join a running cluster). If Ray is not initialised,
        ``ray.init(address, **ray_init_kwargs)`` is called and shut down at the end.
    ray_init_kwargs
        Extra ``ray.init`` arguments (default ``include_dashboard=False``).

    Returns
    -------
    Panel or pandas.DataFrame
        As :func:`~causalmem.scoring.read_scores`.
    """
    ray = _import_ray()
    started = False
    if not ray.is_initialized():
        kwargs = {"include_dashboard": False, **dict(ray_init_kwargs or {})}
        ray.init(address=address, **kwargs)
        started = True
    try:
        prep = _prepare(checkpoints, instances, out_dir, plan, log, local_files_only)
        records: dict[int, ShardRecord] = dict(prep.done)
        if not allow_duplicate_weights:
            _check_duplicates(records)
        known = {r.weights_hash: r.checkpoint.label for r in records.values()}
        _write_manifest(prep.out, records, prep.extra)
        gpus = num_gpus_per_task
        if gpus is None:
            gpus = 1 if ray.cluster_resources().get("GPU", 0) > 0 else 0
        threads = int(num_cpus_per_task) if float(num_cpus_per_task).is_integer() else None
        remote = ray.remote(_task).options(num_cpus=num_cpus_per_task, num_gpus=gpus)
        inst_ref = ray.put(instances)
        pending: dict[Any, Checkpoint] = {}
        for ck in prep.todo:
            step = int(ck.step or 0)
            ref = remote.remote(
                ck.to_dict(),
                inst_ref,
                prep.masks[step],
                prep.plan_hashes[step],
                prep.fingerprint,
                device,
                dtype,
                batch_size,
                local_files_only,
                dict(known),
                allow_duplicate_weights,
                threads,
                method,
                vocab_chunk,
            )
            pending[ref] = ck
        duplicates: list[str] = []
        t_start, n_done = time.perf_counter(), 0
        with _progress(progress) as bar:
            task_id = bar.add_task("checkpoints (ray)", total=len(prep.checkpoints))
            bar.update(task_id, completed=len(prep.done))
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                ck = pending.pop(ready[0])
                try:
                    rec_dict, frame = ray.get(ready[0])
                except Exception as exc:
                    for ref in pending:
                        ray.cancel(ref)
                    cause = getattr(exc, "cause", None)
                    if isinstance(cause, BaseException):
                        raise cause from exc
                    raise
                rec = ShardRecord.from_dict(rec_dict)
                other = known.get(rec.weights_hash)
                if other is not None and other != ck.label and not allow_duplicate_weights:
                    duplicates.append(f"{ck.label!r} = {other!r}")
                    bar.advance(task_id)
                    continue
                write_shard(prep.out, rec, frame)
                records[int(ck.step or 0)] = rec
                known.setdefault(rec.weights_hash, ck.label)
                _write_manifest(prep.out, records, prep.extra)
                bar.advance(task_id)
                if log:
                    n_done += 1
                    rate = rec.tokens / max(rec.seconds_score, 1e-9)
                    eta = (time.perf_counter() - t_start) / n_done * len(pending)
                    log(
                        f"step {ck.step}: {rec.rows:,} rows in {rec.seconds_score:.1f} s on "
                        f"{rec.device} ({rate:,.0f} tokens/s, {rec.dtype}, batch "
                        f"{rec.batch_size}, {rec.method}); {len(pending)} checkpoints left, "
                        f"ETA {_duration(eta)}"
                    )
        if duplicates:
            raise DuplicateWeightsError(
                "checkpoints with identical weights were not stored: "
                + "; ".join(duplicates)
                + ". Published checkpoints can be mislabelled copies (EleutherAI/pythia#205, "
                "#206); pass allow_duplicate_weights=True if the repetition is intended."
            )
        return read_scores(  # type: ignore[call-overload,no-any-return]
            prep.out,
            steps=[int(c.step or 0) for c in prep.checkpoints],
            allow_duplicate_weights=allow_duplicate_weights,
            as_frame=as_frame,
        )
    finally:
        if started:
            ray.shutdown()
