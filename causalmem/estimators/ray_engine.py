"""ATT(g, t) as a Ray map-reduce over parquet shards.

Map (one Ray task per parquet file): read the role columns in bounded batches, validate them and
accumulate the per-cohort sufficient statistics and keyed multiplier sums
(:func:`causalmem.estimators.streaming.scan_source`). Reduce (on the driver, in file order):
sum the statistics (:class:`~causalmem._numerics.streamed.CohortMoments.merge`) and finish as
:func:`~causalmem.estimators.streaming.att_gt_stream` does. A task is a pure function of its
file and the seed, and the reduce runs in file order, so retried tasks (``max_retries``), the
number of workers and the scheduling order do not change the result; the multipliers are keyed
by (seed, unit id), so neither does the sharding.

Contract: each unit's rows lie in one file, and files sorted by path hold units in increasing
id order (checked).

Multi-node use: start a cluster (``ray start --head`` on one machine, ``ray start
--address=HEAD:6379`` on the others), put the shards on storage every node reads at the same
path (NFS, or an ``s3://`` / ``gs://`` URI that pyarrow understands) and call
``att_gt_ray(path, ..., address="HEAD:6379")``. Only the statistics (``(T + 1) T (T + B)``
floats per task) travel back to the driver.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from causalmem._numerics.keyed import bootstrap_key
from causalmem._types import BasePeriod, ControlGroup, EstMethod
from causalmem.errors import OptionError
from causalmem.estimators.streaming import (
    DEFAULT_BATCH_ROWS,
    _merge_states,
    _Roles,
    _State,
    combine_states,
    parquet_files,
    scan_source,
)
from causalmem.results.attgt import AttGtResult, AttGtSpec

__all__ = ["att_gt_ray", "parquet_files"]


def _map_file(
    path: str,
    roles: _Roles,
    biters: int,
    key: int,
    drop_always_treated: bool,
    batch_rows: int,
    fail_marker: str | None,
) -> _State:
    """One map task; ``fail_marker`` (tests only) fails the first attempt on this file."""
    if fail_marker is not None:
        marker = Path(fail_marker + "." + Path(path).name)
        if not marker.exists():
            marker.write_text("failed once")
            raise RuntimeError(f"injected failure on {path} (first attempt)")
    return scan_source(
        path,
        roles,
        biters=biters,
        key=key,
        drop_always_treated=drop_always_treated,
        batch_rows=batch_rows,
    )


def att_gt_ray(
    source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    yname: str,
    tname: str,
    idname: str,
    gname: str,
    *,
    control_group: ControlGroup = "nevertreated",
    anticipation: int = 0,
    base_period: BasePeriod = "varying",
    est_method: EstMethod = "dr",
    weightsname: str | None = None,
    bstrap: bool = True,
    biters: int = 1000,
    cband: bool = True,
    alp: float = 0.05,
    seed: int | np.random.Generator | None = None,
    drop_always_treated: bool = False,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    address: str | None = None,
    max_retries: int = 3,
    num_cpus: float = 1.0,
    _fail_marker: str | None = None,
) -> AttGtResult:
    """ATT(g, t) over parquet shards with Ray tasks (same result as :func:`att_gt_stream`).

    Parameters
    ----------
    source
        A folder of parquet shards, one file, or a list of files (in unit order).
    yname, tname, idname, gname, control_group, anticipation, base_period, est_method
        As :func:`~causalmem.att_gt`.
    weightsname, bstrap, biters, cband, alp, seed, drop_always_treated
        As :func:`~causalmem.att_gt` (balanced panels, no covariates or cluster variables).
    batch_rows
        Rows per batch inside each task (the task's memory bound).
    address
        Ray cluster address (``"auto"``, ``"HOST:6379"``, ``"ray://..."``); ``None`` uses the
        running Ray instance or starts a local one.
    max_retries
        Retries of a failed task (worker crash or exception); results do not change.
    num_cpus
        CPUs reserved per task.

    Returns
    -------
    AttGtResult
    """
    import ray

    if not isinstance(max_retries, int) or max_retries < 0:
        raise OptionError(f"max_retries must be a non-negative integer, got {max_retries!r}.")
    files = parquet_files(source)
    kw: dict[str, Any] = dict(
        data=source,
        yname=yname,
        tname=tname,
        idname=idname,
        gname=gname,
        control_group=control_group,
        anticipation=anticipation,
        base_period=base_period,
        est_method=est_method,
        weightsname=weightsname,
        bstrap=bstrap,
        biters=biters,
        cband=cband,
        alp=alp,
        seed=seed,
        drop_always_treated=drop_always_treated,
    )
    spec = AttGtSpec.from_kwargs(kw)
    from causalmem.estimators.att_gt import _check_spec

    _check_spec(spec)
    key = bootstrap_key(spec.rng()) if spec.bstrap else 0
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    task = ray.remote(num_cpus=num_cpus, max_retries=max_retries, retry_exceptions=True)(_map_file)
    roles = _Roles(idname, tname, gname, yname, weightsname)
    refs = [
        task.remote(
            f,
            roles,
            spec.biters if spec.bstrap else 0,
            key,
            drop_always_treated,
            batch_rows,
            _fail_marker,
        )
        for f in files
    ]
    # Reduce in file order (whatever order the tasks finish in), one shard at a time, so the
    # driver holds two sets of statistics at most.
    merged: _State | None = None
    pending = list(reversed(refs))
    del refs
    while pending:
        part = ray.get(pending.pop())  # the popped reference is dropped: the store frees it
        if part.units:
            merged = part if merged is None else _merge_states([merged, part])
    return combine_states(spec, kw, [merged] if merged is not None else [])
