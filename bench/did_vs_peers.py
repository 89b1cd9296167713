"""Benchmark: causalmem ``att_gt`` + ``aggte`` against ``differences`` and ``csdid``.

Run by hand::

    .venv/bin/python bench/did_vs_peers.py       # sizes 1/16 1/8 1/4 1/2 (with peers) and 1
    .venv/bin/python bench/did_vs_peers.py --sizes 1/8 1 --biters 1000 --peer-timeout 600

A default run takes about 6 minutes on this project's 2-core machine, most of it differences at
size 1/2 (~170 s); differences would need ~25 min at size 1 (``--peer-max-size 1``).

Panel shape (Lesci et al. 2024, Pythia): at size 1 there are 16,300 units x 154 checkpoints
(143 cohorts of 100 units, 2,000 never treated; steps 0, 1, 2, 4, ..., 512, 1000, 2000, ...,
143000; cohorts 1000 ... 143000), 2.51M rows, 21,879 ATT(g, t) cells (never-treated controls,
varying base period). Size ``1/s`` keeps every ``s``-th 1k checkpoint (and the early grid
0 ... 512), one cohort of 100 units per kept 1k checkpoint and ``2000 / s`` never-treated units:
units, cohorts and 1k checkpoints scale by ``1/s``; rows and cells by about ``1/s^2``. The data
come from :func:`causalmem.simulate_panel` (vectorised; 0.3 s at size 1), written once to parquet
and read by every tool.

Measurement: every tool runs in a fresh ``spawn`` subprocess; wall time is ``time.perf_counter``
around the estimator calls only (data loading and the peers' cohort re-encoding are excluded; the
peers' imports happen before the clock starts). Peak memory is the subprocess's
``getrusage(RUSAGE_SELF).ru_maxrss``: the whole process (interpreter, libraries, the panel) at
its high-water mark; ``base`` is the same figure just before the estimator runs. Ours is run
``--repeats`` times per process (best and first run are shown); each peer once, with a
``--peer-timeout`` (a run past it is killed and reported as "timeout").

What runs:

* ``ours``: ``att_gt(bstrap=False)`` + ``aggte`` simple/dynamic/group/calendar (analytic).
* ``ours+boot``: ``att_gt(bstrap=True, biters=B, cband=True)`` + the four ``aggte`` (one joint
  multiplier bootstrap, uniform bands).
* ``differences`` (0.3.0) as the paper's repository calls it: ``ATTgt(df.set_index([unit,
  step]), cohort_column="cohort").fit("y", est_method="dr", control_group="never_treated")``
  (base period "varying"), here without the bootstrap and with ``n_jobs=1`` (the paper used 8;
  this machine has 2 cores and loky workers would hold copies of the data outside the measured
  process), then ``aggregate("cohort" | "time" | "event" | "simple")``.
* ``csdid`` (0.4.3): ``ATTgt(...).fit(est_method="dr", bstrap=False)`` + ``aggte`` of the four
  types (analytic, no band). Not run at size 1 by default: it needs ~13 GB there.

Columns: ``wall s`` = att_gt + the four aggregations (ours: best run), ``(1st)`` ours' first run
in the process, ``x ours`` = peer wall / ours' wall (1 thread, analytic), ``max|dATT|`` and
``max|dSE|`` = largest absolute difference from ours over the ATT(g, t) cells and their analytic
SEs. ``Goals`` checks ours at size 1 (analytic <= 0.5 s, bootstrap <= 2 s, peak <= 2 GB; the
lowest CPU time, ``time.process_time``, of the runs is printed too: on a shared machine it is
steadier than wall time) and the speed-up over differences at the largest size it finished
(>= 1,000x).

Threads: BLAS/OpenMP pools are fixed per subprocess through ``OPENBLAS_NUM_THREADS``,
``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``, ``VECLIB_MAXIMUM_THREADS`` and ``NUMEXPR_NUM_THREADS``
(set in the parent before spawning). Ours is measured with 1 and 2 threads (``--threads``); the
peers run with 1 (their work is per-cell Python and pandas, not BLAS). The "x ours" ratio
compares each peer with ours at the first ``--threads`` value (1 by default), analytic vs
analytic. On this 2-core machine 2 threads gain ~5-10% at size 1 when it is idle and lose 2-10x
whenever another process holds a core (OpenBLAS threads spin), so 1 thread is the setting to use.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import multiprocessing as mp
import os
import resource
import shutil
import sys
import tempfile
import time
import traceback
import warnings
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

THREAD_VARS = (
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)
AGG_TYPES: tuple[Literal["simple", "dynamic", "group", "calendar"], ...] = (
    "simple",
    "dynamic",
    "group",
    "calendar",
)
PYTHIA_EARLY = (0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
PAPER_COHORTS = 143
PAPER_UNITS_PER_COHORT = 100
PAPER_NEVER = 2000
GOAL_ANALYTIC_S = 0.5
GOAL_BOOT_S = 2.0
GOAL_PEAK_MB = 2000.0
GOAL_SPEEDUP = 1000.0
# Our earlier measurements on this machine, printed for reference only (memorisation.md).
ANCHORS = (
    "anchor (memorisation.md, not re-run here): size 1, differences 25 min / 10.2 GiB, "
    "csdid 339 s / 12.7 GiB"
)


@dataclass(frozen=True)
class Shape:
    """A paper-shaped panel of size ``1/stride``."""

    stride: int

    @property
    def label(self) -> str:
        return "1" if self.stride == 1 else f"1/{self.stride}"

    @property
    def cohorts(self) -> list[int]:
        return [1000 * k for k in range(self.stride, PAPER_COHORTS + 1, self.stride)]

    @property
    def steps(self) -> list[int]:
        return [*PYTHIA_EARLY, *self.cohorts]

    @property
    def n_never(self) -> int:
        return PAPER_NEVER // self.stride

    @property
    def n_units(self) -> int:
        return PAPER_UNITS_PER_COHORT * len(self.cohorts) + self.n_never

    @property
    def n_cells(self) -> int:
        return len(self.cohorts) * (len(self.steps) - 1)

    @property
    def n_rows(self) -> int:
        return self.n_units * len(self.steps)


def build_panel(shape: Shape, path: Path, seed: int) -> None:
    """Simulate the panel (never treated: cohort <NA>) and write it to parquet."""
    import causalmem as cm

    sim = cm.simulate_panel(
        cohorts=shape.cohorts,
        units_per_cohort=PAPER_UNITS_PER_COHORT,
        n_never=shape.n_never,
        steps=shape.steps,
        seed=seed,
    )
    sim.frame.to_parquet(path, index=False)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


# --------------------------------------------------------------------------- child processes
def _ours(df: pd.DataFrame, opts: dict[str, Any]) -> dict[str, Any]:
    import causalmem as cm

    boot = opts["bootstrap"]
    runs: list[tuple[float, float]] = []
    cpus: list[float] = []
    res = aggs = None
    base = _rss_mb()
    for _ in range(opts["repeats"]):
        res = aggs = None
        c0 = time.process_time()
        t0 = time.perf_counter()
        res = cm.att_gt(
            df,
            "y",
            "step",
            "unit",
            "cohort",
            bstrap=boot,
            biters=opts["biters"],
            cband=True,
            seed=opts["seed"],
        )
        t1 = time.perf_counter()
        aggs = [cm.aggte(res, t) for t in AGG_TYPES]
        t2 = time.perf_counter()
        cpus.append(time.process_time() - c0)
        runs.append((t1 - t0, t2 - t1))
    assert res is not None and aggs is not None
    tot = [a + b for a, b in runs]
    best = int(np.argmin(tot))
    return {
        "wall": tot[best],
        "cpu": min(cpus),
        "first": tot[0],
        "fit": runs[best][0],
        "agg": runs[best][1],
        "base_mb": base,
        "cells": (res.group, res.time, res.att, res.se_analytic),
    }


def _differences(df: pd.DataFrame, opts: dict[str, Any]) -> dict[str, Any]:
    from differences import ATTgt

    d = df.assign(cohort=df["cohort"].astype("float64"))  # differences: NaN = never treated
    base = _rss_mb()
    t0 = time.perf_counter()
    model = ATTgt(d.set_index(["unit", "step"]), cohort_column="cohort")
    out = model.fit(
        "y",
        est_method="dr",
        control_group="never_treated",
        n_jobs=opts["jobs"],
        progress_bar=False,
    )
    t1 = time.perf_counter()
    for agg in ("cohort", "time", "event", "simple"):
        model.aggregate(agg)
    t2 = time.perf_counter()
    cells = out.to_pandas()
    cells.columns = cells.columns.get_level_values(-1)
    cells = cells.reset_index()
    return {
        "wall": t2 - t0,
        "first": t2 - t0,
        "fit": t1 - t0,
        "agg": t2 - t1,
        "base_mb": base,
        "cells": (
            cells["cohort"].to_numpy(float),
            cells["time"].to_numpy(float),
            cells["ATT"].to_numpy(float),
            cells["std_error"].to_numpy(float),
        ),
    }


def _csdid(df: pd.DataFrame, opts: dict[str, Any]) -> dict[str, Any]:
    from csdid.att_gt import ATTgt

    d = df.assign(cohort=df["cohort"].fillna(0).astype("int64"))  # csdid / R: 0 = never
    base = _rss_mb()
    t0 = time.perf_counter()
    model = ATTgt(yname="y", tname="step", idname="unit", gname="cohort", data=d)
    model.fit(est_method="dr", bstrap=False)
    t1 = time.perf_counter()
    for agg in AGG_TYPES:
        model.aggte(typec=agg, bstrap=False, cband=False)
    t2 = time.perf_counter()
    r = model.results
    return {
        "wall": t2 - t0,
        "first": t2 - t0,
        "fit": t1 - t0,
        "agg": t2 - t1,
        "base_mb": base,
        "cells": (
            np.asarray(r["group"], float),
            np.asarray(r["year"], float),
            np.asarray(r["att"], float),
            np.asarray(r["se"], float),
        ),
    }


TOOLS = {"ours": _ours, "ours+boot": _ours, "differences": _differences, "csdid": _csdid}


def _child(tool: str, path: str, opts: dict[str, Any], conn: Any) -> None:
    try:
        warnings.simplefilter("ignore")
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            df = pd.read_parquet(path)
            if tool in ("differences", "csdid"):
                __import__("differences" if tool == "differences" else "csdid.att_gt")
            else:
                import causalmem  # noqa: F401
            out = TOOLS[tool](df, opts)
        out["peak_mb"] = _rss_mb()
        conn.send(("ok", out))
    except BaseException:  # report any failure (ImportError, MemoryError, ...) to the parent
        conn.send(("error", traceback.format_exc(limit=3)))
    finally:
        conn.close()


def run_tool(
    tool: str, path: Path, opts: dict[str, Any], threads: int, timeout: float
) -> tuple[str, Any]:
    """Run one tool in a fresh spawned process; ('ok', result) | ('timeout'|'error', text)."""
    for var in THREAD_VARS:
        os.environ[var] = str(threads)
    ctx = mp.get_context("spawn")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(tool, str(path), opts, send), daemon=True)
    proc.start()
    send.close()
    try:
        if not recv.poll(timeout):
            proc.kill()
            proc.join()
            return "timeout", f"> {timeout:g} s"
        status, payload = recv.recv()
    except EOFError:
        status, payload = "error", f"process died (exit code {proc.exitcode}; out of memory?)"
    proc.join(timeout=30)
    if proc.is_alive():
        proc.kill()
    return status, payload


# ---------------------------------------------------------------------------------- report
def _cell_frame(cells: tuple[np.ndarray, ...]) -> pd.DataFrame:
    g, t, att, se = cells
    return pd.DataFrame({"g": g, "t": t, "att": att, "se": se}).set_index(["g", "t"])


def _max_diffs(ours: tuple[np.ndarray, ...], peer: tuple[np.ndarray, ...]) -> tuple[float, float]:
    j = pd.merge(
        _cell_frame(ours),
        _cell_frame(peer),
        how="outer",
        left_index=True,
        right_index=True,
        suffixes=("", "_p"),
    )
    if j["att"].isna().ne(j["att_p"].isna()).any():
        return float("nan"), float("nan")  # different cell sets
    return (
        float(np.nanmax(np.abs(j["att"] - j["att_p"]))),
        float(np.nanmax(np.abs(j["se"] - j["se_p"]))),
    )


HEADER = (
    f"{'size':>5} {'units':>6} {'steps':>5} {'cells':>6} {'rows':>9}  {'tool':<12}{'thr':>3} "
    f"{'wall s':>9} {'(1st)':>8} {'att_gt':>8} {'aggte':>7} {'peak MB':>8} {'base MB':>8} "
    f"{'x ours':>8} {'max|dATT|':>9} {'max|dSE|':>9}"
)


def _row(
    shape: Shape,
    tool: str,
    threads: int,
    status: str,
    r: Any,
    ratio: float | None,
    diffs: tuple[float, float] | None,
) -> str:
    lead = (
        f"{shape.label:>5} {shape.n_units:>6} {len(shape.steps):>5} {shape.n_cells:>6} "
        f"{shape.n_rows:>9,}  {tool:<12}{threads:>3} "
    )
    if status != "ok":
        return lead + f"{status}: {str(r).strip().splitlines()[-1][:80]}"
    ratio_s = f"{ratio:>7,.0f}x" if ratio is not None else f"{'':>8}"
    d_s = f"{diffs[0]:>9.1e} {diffs[1]:>9.1e}" if diffs is not None else ""
    return lead + (
        f"{r['wall']:>9.3f} {r['first']:>8.3f} {r['fit']:>8.3f} {r['agg']:>7.3f} "
        f"{r['peak_mb']:>8.0f} {r['base_mb']:>8.0f} {ratio_s} {d_s}"
    )


def _parse_size(text: str) -> Shape:
    frac = Fraction(text)
    if frac <= 0 or frac > 1 or frac.numerator != 1:
        raise argparse.ArgumentTypeError(f"size must be 1/s with an integer s >= 1, got {text}")
    return Shape(stride=frac.denominator)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--sizes",
        nargs="+",
        type=_parse_size,
        default=[_parse_size(s) for s in ("1/16", "1/8", "1/4", "1/2", "1")],
    )
    p.add_argument("--biters", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=3, help="runs of ours per process (best shown)")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="BLAS threads for ours")
    p.add_argument("--peer-timeout", type=float, default=600.0, help="seconds per peer run")
    p.add_argument(
        "--peer-max-size",
        type=_parse_size,
        default=_parse_size("1/2"),
        help="largest size at which the peers run (differences: 25 min at size 1)",
    )
    p.add_argument(
        "--csdid-max-size",
        type=_parse_size,
        default=_parse_size("1/2"),
        help="largest size for csdid (it needs ~13 GB at size 1)",
    )
    p.add_argument("--differences-jobs", type=int, default=1)
    p.add_argument("--skip-peers", action="store_true")
    p.add_argument("--seed", type=int, default=2024)
    args = p.parse_args(argv)

    print(
        f"python {sys.version.split()[0]}, numpy {np.__version__}, pandas {pd.__version__}, "
        f"{os.cpu_count()} CPUs; ours: best of {args.repeats} runs (first run in parentheses); "
        f"bootstrap {args.biters} draws; peers: 1 run, {args.peer_timeout:g} s limit, "
        f"differences n_jobs={args.differences_jobs}"
    )
    print(ANCHORS)
    print(HEADER)
    tmp = Path(tempfile.mkdtemp(prefix="did_bench_"))
    goals: dict[str, Any] = {}
    try:
        for shape in sorted(args.sizes, key=lambda s: -s.stride):
            path = tmp / f"panel_{shape.stride}.parquet"
            build_panel(shape, path, args.seed)
            base_opts = {"biters": args.biters, "seed": args.seed, "repeats": args.repeats}
            ours_ref: dict[str, Any] | None = None
            for threads in args.threads:
                for tool, boot in (("ours", False), ("ours+boot", True)):
                    status, r = run_tool(
                        tool, path, {**base_opts, "bootstrap": boot}, threads, timeout=3600
                    )
                    print(_row(shape, tool, threads, status, r, None, None), flush=True)
                    if status == "ok" and shape.stride == 1:
                        goals.setdefault(tool, []).append((threads, r))
                    if status == "ok" and tool == "ours" and threads == args.threads[0]:
                        ours_ref = r
            if args.skip_peers or ours_ref is None:
                continue
            csdid_limit = min(args.csdid_max_size, args.peer_max_size, key=lambda s: -s.stride)
            for tool, limit, flag in (
                ("differences", args.peer_max_size, "--peer-max-size"),
                ("csdid", csdid_limit, "--csdid-max-size"),
            ):
                if shape.stride < limit.stride:
                    print(
                        _row(shape, tool, 1, "skipped", f"size > {flag} {limit.label}", None, None)
                    )
                    continue
                status, r = run_tool(
                    tool, path, {"jobs": args.differences_jobs}, 1, timeout=args.peer_timeout
                )
                ratio = diffs = None
                if status == "ok":
                    ratio = r["wall"] / ours_ref["wall"]
                    diffs = _max_diffs(ours_ref["cells"], r["cells"])
                    if tool == "differences":
                        goals["differences"] = (shape, ratio)
                print(_row(shape, tool, 1, status, r, ratio, diffs), flush=True)
            path.unlink()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print("\nGoals")
    for tool, limit, what in (
        ("ours", GOAL_ANALYTIC_S, "analytic"),
        ("ours+boot", GOAL_BOOT_S, "bootstrap"),
    ):
        for threads, r in goals.get(tool, []):
            t_ok = "PASS" if r["wall"] <= limit else "FAIL"
            m_ok = "PASS" if r["peak_mb"] <= GOAL_PEAK_MB else "FAIL"
            print(
                f"  size 1, {what:<9} {threads} thread(s): {r['wall']:.3f} s "
                f"(goal <= {limit:g} s) {t_ok}; best CPU {r['cpu']:.3f} s; "
                f"peak {r['peak_mb']:.0f} MB "
                f"(goal <= {GOAL_PEAK_MB:g} MB) {m_ok}"
            )
    if not any(k in goals for k in ("ours", "ours+boot")):
        print("  size 1 not run: add 1 to --sizes for the time and memory goals")
    if "differences" in goals:
        shape, ratio = goals["differences"]
        print(
            f"  speed-up over differences at size {shape.label} (largest it finished): "
            f"{ratio:,.0f}x (goal >= {GOAL_SPEEDUP:,.0f}x) "
            f"{'PASS' if ratio >= GOAL_SPEEDUP else 'FAIL'}"
        )
    else:
        print("  differences did not finish at any size (or was skipped)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
