"""Benchmark (issue 15): out-of-core att_gt at 1M+ units, and in-memory against diff-diff.

Run by hand::

    .venv/bin/python bench/scale.py                          # 1M x 154 stream + peers
    .venv/bin/python bench/scale.py --units 10000000 --cases stream_analytic
    .venv/bin/python bench/scale.py --units 200000 --cases all --biters 1000

Data: a paper-shaped panel (Pythia grid of 154 checkpoints: 0, 1, 2, 4, ..., 512, 1000, ...,
143000; 143 cohorts 1000 ... 143000 plus never-treated units, a quarter of the units) written by a
streaming generator as parquet shards of ``--shard-units`` units each, sorted by unit (it never
holds more than one shard). Outcome: unit effect + step trend + ATT(g, t) = 0.1 (t - g >= 0) +
N(0, 0.5) noise.

Cases (each in a fresh subprocess; wall time is ``time.perf_counter`` around the estimator and
aggregation calls; peak memory is the child's ``getrusage(RUSAGE_SELF).ru_maxrss``, the whole
process high-water mark including the interpreter and libraries):

* ``stream_analytic``: ``att_gt(folder, bstrap=False)`` + ``aggte`` simple/dynamic/group/calendar.
* ``stream_boot``: the same with ``biters`` keyed multiplier draws and uniform bands.
* ``ray_boot``: ``att_gt_ray`` on a local 2-CPU Ray instance (driver RSS only; workers are
  separate processes, their peak is reported from the tasks).
* ``paper_ours`` / ``paper_diffdiff``: the paper panel (16,300 units x 154) in memory, analytic,
  ours (+4 aggregations) vs diff-diff 3.13 ``CallawaySantAnna`` (+ its simple/event_study/group).
* ``paper_ours_boot``: ours with 1,000 draws + uniform bands.
* ``md_ours`` / ``md_diffdiff``: moderndid's benchmark shape (1M units x 10 periods, 5 cohorts,
  analytic) in memory, ours vs diff-diff.

Every figure is printed with the 1-minute load average at its start (the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from causalmem._types import AggType

ROOT = Path(__file__).resolve().parents[1]
PYTHIA_EARLY = [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
COHORTS = [1000 * k for k in range(1, 144)]
STEPS = PYTHIA_EARLY + COHORTS
AGG: tuple[AggType, ...] = ("simple", "dynamic", "group", "calendar")


def _rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB


def _load() -> float:
    return float(os.getloadavg()[0])


# ------------------------------------------------------------------------------ generator
def write_shards(
    folder: Path, n_units: int, shard_units: int, seed: int, steps: list[int], cohorts: list[int]
) -> None:
    """Stream a balanced panel to ``folder/part-XXXXX.parquet``, sorted by unit."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    t = np.asarray(steps, dtype=np.int64)
    t_len = t.size
    trend = np.linspace(0.0, 1.0, t_len)
    n_never = n_units // 4
    n_shards = -(-n_units // shard_units)
    for s in range(n_shards):
        path = folder / f"part-{s:05d}.parquet"
        if path.exists():
            continue
        u0, u1 = s * shard_units, min((s + 1) * shard_units, n_units)
        rng = np.random.default_rng([seed, s])
        units = np.arange(u0, u1, dtype=np.int64)
        # Unit i is never treated when i % 4 == 0, else cohort cohorts[hash(i) % K].
        coh = np.asarray(cohorts, dtype=np.int64)[(units * 2654435761) % len(cohorts)]
        never = units % 4 == 0
        n = units.size
        alpha = rng.normal(0.0, 1.0, n)
        tt = np.broadcast_to(t, (n, t_len))
        g = np.where(never, np.iinfo(np.int64).max, coh)[:, None]
        att = np.where(tt >= g, 0.1, 0.0)
        y = alpha[:, None] + trend[None, :] + att + rng.normal(0.0, 0.5, (n, t_len))
        table = pa.table(
            {
                "unit": np.repeat(units, t_len),
                "step": np.tile(t, n),
                "cohort": pa.array(np.repeat(coh, t_len), mask=np.repeat(never, t_len)),
                "y": y.ravel(),
            }
        )
        tmp = path.with_suffix(".tmp")
        pq.write_table(table, tmp, row_group_size=1 << 20)
        os.replace(tmp, path)
    del n_never


def _dataset_dir(
    args: argparse.Namespace, n_units: int, steps: list[int], cohorts: list[int], tag: str
) -> Path:
    folder = Path(args.data) / f"{tag}_{n_units}"
    t0 = time.perf_counter()
    write_shards(folder, n_units, args.shard_units, args.seed, steps, cohorts)
    gb = sum(f.stat().st_size for f in folder.glob("*.parquet")) / 1e9
    print(
        f"# data {folder}: {n_units:,} units x {len(steps)} steps, {gb:.2f} GB parquet "
        f"(ready in {time.perf_counter() - t0:.0f} s)",
        flush=True,
    )
    return folder


# ------------------------------------------------------------------------------ child cases
def _ours(data: Any, boot: bool, biters: int, **kw: Any) -> dict[str, Any]:
    import causalmem as cm
    from causalmem.estimators.streaming import att_gt_stream

    fit = att_gt_stream if kw else cm.att_gt
    agg = cm.aggte  # import before the clock starts, as for the peers
    c0 = time.process_time()
    t0 = time.perf_counter()
    res = fit(
        data, "y", "step", "unit", "cohort", bstrap=boot, biters=biters, cband=True, seed=1, **kw
    )
    t1 = time.perf_counter()
    aggs = [agg(res, k) for k in AGG]
    t2 = time.perf_counter()
    cpu = time.process_time() - c0
    _save(res, aggs)
    return {
        "fit_s": t1 - t0,
        "agg_s": t2 - t1,
        "wall_s": t2 - t0,
        "cpu_s": cpu,
        "cells": res.cells.n_cells,
        "band": [a.band for a in aggs],
        "overall": aggs[0].overall_estimate,
        "overall_se": aggs[0].overall_std_error,
    }


_SAVE: list[str] = []


def _save(res: Any, aggs: Any = None) -> None:
    """Keep the numbers of a run (for the stream-vs-Ray comparison)."""
    if not _SAVE:
        return
    arrays = {"att": res.att, "se": res.se, "se_analytic": res.se_analytic}
    for a in aggs or []:
        arrays[f"{a.spec.type}_est"] = np.append(a.estimate, a.overall_estimate)
        arrays[f"{a.spec.type}_se"] = np.append(a.std_error, a.overall_std_error)
    np.savez(_SAVE[0], **arrays)


def compare(a: Path, b: Path) -> float:
    """Largest relative difference over every saved cell, SE and aggregation."""
    x, y = np.load(a), np.load(b)
    worst = 0.0
    for k in x.files:
        u, v = x[k], y[k]
        ok = np.isfinite(u) & np.isfinite(v)
        if not np.array_equal(np.isfinite(u), np.isfinite(v)):
            return float("inf")
        if ok.any():
            worst = max(worst, float(np.max(np.abs(u[ok] - v[ok])) / np.max(np.abs(u[ok]))))
    return worst


def _diffdiff(df: Any) -> dict[str, Any]:
    import warnings

    from diff_diff import CallawaySantAnna

    d = df.assign(cohort=df["cohort"].astype("Float64").fillna(0).astype("int64"))
    c0 = time.process_time()
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = CallawaySantAnna(control_group="never_treated", estimation_method="dr").fit(
            d, "y", "unit", "step", "cohort"
        )
        t1 = time.perf_counter()
        for k in ("simple", "event_study", "group"):
            r.aggregate(k)
    t2 = time.perf_counter()
    return {
        "fit_s": t1 - t0,
        "agg_s": t2 - t1,
        "wall_s": t2 - t0,
        "cpu_s": time.process_time() - c0,
    }


def _paper_frame() -> Any:
    import causalmem as cm

    return cm.simulate_panel(
        cohorts=COHORTS, units_per_cohort=100, n_never=2000, steps=STEPS, seed=1
    ).frame


def _md_frame() -> Any:
    import causalmem as cm

    return cm.simulate_panel(
        cohorts=[3, 4, 5, 6, 7],
        units_per_cohort=150_000,
        n_never=250_000,
        steps=range(1, 11),
        seed=1,
    ).frame


def child(case: str, args: argparse.Namespace) -> dict[str, Any]:
    if case in ("stream_analytic", "stream_boot"):
        return _ours(args.folder, case == "stream_boot", args.biters, batch_rows=args.batch_rows)
    if case == "ray_boot":
        import ray

        import causalmem as cm
        from causalmem.estimators.ray_engine import att_gt_ray

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        c0 = time.process_time()
        t0 = time.perf_counter()
        res = att_gt_ray(
            args.folder,
            "y",
            "step",
            "unit",
            "cohort",
            biters=args.biters,
            seed=1,
            batch_rows=args.batch_rows,
        )
        aggs = [cm.aggte(res, k) for k in AGG]
        wall = time.perf_counter() - t0
        cpu = time.process_time() - c0
        _save(res, aggs)
        ray.shutdown()
        return {"wall_s": wall, "driver_cpu_s": cpu, "cells": res.cells.n_cells}
    if case.startswith("paper_") or case.startswith("md_"):
        df = _paper_frame() if case.startswith("paper_") else _md_frame()
        base = _rss_gb()
        if case.endswith("diffdiff"):
            out = _diffdiff(df)
        else:
            out = _ours(df, case.endswith("boot"), 1000)
            out2 = _ours(df, case.endswith("boot"), 1000)  # warm run
            out["wall_s_warm"] = out2["wall_s"]
            out["cpu_s_warm"] = out2["cpu_s"]
        out["base_gb"] = base
        return out
    raise ValueError(case)


def run_case(case: str, args: argparse.Namespace, folder: Path | None) -> dict[str, Any]:
    load = _load()
    cmd = [
        sys.executable,
        __file__,
        "--child",
        case,
        "--biters",
        str(args.biters),
        "--batch-rows",
        str(args.batch_rows),
    ]
    if folder is not None:
        cmd += [
            "--folder",
            str(folder),
            "--save",
            str(folder.parent / f"numbers_{folder.name}_{case}.npz"),
        ]
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout)
    if proc.returncode != 0:
        return {"case": case, "error": proc.stderr[-800:], "load": load}
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out.update(case=case, load=load, child_s=time.perf_counter() - t0)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--units", type=int, default=1_000_000)
    p.add_argument("--shard-units", type=int, default=50_000)
    p.add_argument("--biters", type=int, default=1000)
    p.add_argument("--batch-rows", type=int, default=1 << 20)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--data", default="/tmp/causalmem_scale")
    p.add_argument(
        "--cases",
        default="stream_analytic,stream_boot,paper_ours,paper_ours_boot,"
        "paper_diffdiff,md_ours,md_diffdiff",
    )
    p.add_argument("--timeout", type=int, default=1800)
    p.add_argument("--child", default=None)
    p.add_argument("--folder", default=None)
    p.add_argument("--save", default=None, help="(child) save the numbers to this .npz")
    args = p.parse_args(argv)
    if args.child:
        if args.save:
            _SAVE.append(args.save)
        out = child(args.child, args)
        out["peak_gb"] = _rss_gb()
        print(json.dumps(out, default=str))
        return 0
    cases = args.cases.split(",")
    folder = None
    if any(c.startswith(("stream", "ray")) for c in cases):
        folder = _dataset_dir(args, args.units, STEPS, COHORTS, "pythia")
    for case in cases:
        r = run_case(case, args, folder if case.startswith(("stream", "ray")) else None)
        print(json.dumps(r, default=str), flush=True)
    if folder is not None and {"stream_boot", "ray_boot"} <= set(cases):
        d = compare(
            folder.parent / f"numbers_{folder.name}_stream_boot.npz",
            folder.parent / f"numbers_{folder.name}_ray_boot.npz",
        )
        print(
            f"# stream vs Ray: largest relative difference over cells, SEs, aggregations: {d:.3g}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
