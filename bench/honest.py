"""Benchmark: HonestDiD sensitivity (``honest_did``) against the ``honestdid`` package.

Run by hand::

    OMP_NUM_THREADS=1 .venv/bin/python bench/honest.py                 # size 1, +-20 and full
    OMP_NUM_THREADS=1 .venv/bin/python bench/honest.py --peer-timeout 300 --skip-full

Panel: the paper shape of ``bench/did_vs_peers.py`` (16,300 units x 154 checkpoints: 143
cohorts of 100 units, 2,000 never trained; :func:`causalmem.simulate_panel`). The event study is
``att_gt(base_period="universal", bstrap=False)`` + ``aggte(type="dynamic",
event_time="periods")`` (positions on the checkpoint grid), windowed to ``-20 <= e <= 20`` and
unwindowed (all event times: the "full window"); the target is the instantaneous effect
(``e = 0``).

What is timed (``time.perf_counter`` around the call only; the event study is fitted before the
clock starts): ``honest_did`` with a 10-value grid of ``M`` for Δ^SD (FLCI) and of ``M̄`` for Δ^RM
(conditional-least-favourable hybrid, R's default), with ``breakdown="grid"`` (the sets only)
and R's 1000-point θ grid. The peer is the PyPI ``honestdid`` package (a port of R HonestDiD on
cvxpy): ``createSensitivityResults`` (FLCI) and ``createSensitivityResults_relativeMagnitudes``
(C-LF) on the same ``betahat``/``sigma``, each in a spawned subprocess killed after
``--peer-timeout`` seconds. The CPU column (``os.times``: this process and its workers) is the
fairer figure on a shared machine, where wall time grows with the load average. Goals (issue
14): +-20 window, both grids within 5 s; full window within 60 s.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import time
import warnings
from typing import Any

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402

PYTHIA_EARLY = (0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
PAPER_COHORTS = 143
PAPER_UNITS_PER_COHORT = 100
PAPER_NEVER = 2000


def event_study(window: int | None, seed: int = 0) -> tuple[np.ndarray, np.ndarray, int]:
    """``(betahat, sigma, n_pre)`` of the paper-shaped CS event study (reference e = -1 out)."""
    import causalmem as cm
    from causalmem.analysis.sensitivity import event_study_inputs

    cohorts = [1000 * k for k in range(1, PAPER_COHORTS + 1)]
    sim = cm.simulate_panel(
        cohorts=cohorts,
        units_per_cohort=PAPER_UNITS_PER_COHORT,
        n_never=PAPER_NEVER,
        steps=[*PYTHIA_EARLY, *cohorts],
        seed=seed,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = cm.att_gt(
            sim.frame,
            "y",
            "step",
            "unit",
            "cohort",
            base_period="universal",
            bstrap=False,
            seed=seed,
        )
        kw: dict[str, Any] = {"event_time": "periods"}
        if window is not None:
            kw.update(min_e=-window, max_e=window)
        agg = cm.aggte(res, "dynamic", **kw)
    inp = event_study_inputs(agg)
    return inp.betahat, inp.sigma, inp.n_pre


def _ours(
    b: np.ndarray, s: np.ndarray, n_pre: int, restriction: str, n_jobs: int = 1
) -> tuple[float, float, Any]:
    """``(wall s, CPU s of this process and its workers, result)``."""
    from causalmem.analysis.sensitivity import honest_did

    t0 = time.perf_counter()
    c0 = os.times()
    r = honest_did(
        betahat=b, sigma=s, num_pre=n_pre, restriction=restriction, breakdown="grid", n_jobs=n_jobs
    )
    c1 = os.times()
    cpu = (c1.user - c0.user) + (c1.system - c0.system)
    cpu += (c1.children_user - c0.children_user) + (c1.children_system - c0.children_system)
    return time.perf_counter() - t0, cpu, r


def _peer_child(b: np.ndarray, s: np.ndarray, n_pre: int, restriction: str, q: Any) -> None:
    warnings.simplefilter("ignore")
    try:
        import honestdid

        n_post = b.size - n_pre
        t0 = time.perf_counter()
        if restriction == "SD":
            out = honestdid.createSensitivityResults(b, s, n_pre, n_post, method="FLCI")
        else:
            out = honestdid.createSensitivityResults_relativeMagnitudes(b, s, n_pre, n_post)
        q.put(("ok", time.perf_counter() - t0, out[["lb", "ub"]].to_numpy().tolist()))
    except Exception as exc:  # noqa: BLE001 - report whatever the peer raises
        q.put(("error", float("nan"), f"{type(exc).__name__}: {exc}"[:200]))


def _peer(b: np.ndarray, s: np.ndarray, n_pre: int, restriction: str, timeout: float) -> str:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_peer_child, args=(b, s, n_pre, restriction, q))
    t0 = time.perf_counter()
    p.start()
    p.join(timeout)
    if p.is_alive():
        p.terminate()
        p.join()
        return f"timeout (> {timeout:.0f} s)"
    if q.empty():
        return f"died after {time.perf_counter() - t0:.1f} s"
    status, dt, info = q.get()
    if status == "ok":
        return f"{dt:.2f} s"
    return "failed: " + str(info).splitlines()[0]


def main() -> None:
    """Run the benchmark and print a table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--peer-timeout", type=float, default=300.0)
    ap.add_argument("--skip-peer", action="store_true")
    ap.add_argument("--skip-full", action="store_true")
    ap.add_argument(
        "--n-jobs",
        type=int,
        default=1,
        help="worker processes over the M grid for Δ^RM (honest_did(n_jobs=...)); the CPU "
        "column adds the workers' time",
    )
    ap.add_argument(
        "--rm-full",
        action="store_true",
        help="also run Δ^RM (C-LF) on the full window (~150 pre periods give ~300 "
        "polyhedra: minutes of CPU)",
    )
    args = ap.parse_args()
    print(f"load average at start: {os.getloadavg()}")
    rows = []
    windows: list[int | None] = [20] + ([] if args.skip_full else [None])
    for window in windows:
        t0 = time.perf_counter()
        b, s, n_pre = event_study(window)
        fit_s = time.perf_counter() - t0
        label = "+-20" if window is not None else "full"
        print(
            f"[{label}] event study: {n_pre} pre + {b.size - n_pre} post coefficients "
            f"(att_gt + aggte + covariance {fit_s:.1f} s)"
        )
        for restriction, method in (("SD", "FLCI"), ("RM", "C-LF")):
            if restriction == "RM" and window is None and not args.rm_full:
                print("  RM C-LF on the full window: skipped (pass --rm-full)")
                continue
            dt, cpu, r = _ours(b, s, n_pre, restriction, args.n_jobs if restriction == "RM" else 1)
            peer = (
                "skipped" if args.skip_peer else _peer(b, s, n_pre, restriction, args.peer_timeout)
            )
            goal = 5.0 if window is not None else 60.0
            rows.append((label, restriction, method, dt, cpu, goal, peer, r))
            print(
                f"  {restriction:>4} {method:>5}: ours {dt:7.2f} s wall, {cpu:6.2f} s CPU "
                f"(goal {goal:g} s) | honestdid: {peer}"
            )
            print(
                "       "
                + "; ".join(
                    f"M={m:.3g}: [{lo:.6f}, {hi:.6f}]"
                    for m, lo, hi in zip(r.m[::3], r.lower[::3], r.upper[::3], strict=True)
                )
            )
    print(f"load average at end: {os.getloadavg()}")
    print(
        "\n| window | restriction | method | ours wall (s) | ours CPU (s) | goal (s) | met (wall) "
        "| honestdid |"
    )
    print("|---|---|---|---:|---:|---:|---|---|")
    for label, restriction, method, dt, cpu, goal, peer, _ in rows:
        print(
            f"| {label} | {restriction} | {method} | {dt:.2f} | {cpu:.2f} | {goal:g} | "
            f"{'yes' if dt <= goal else 'no'} | {peer} |"
        )


if __name__ == "__main__":
    main()
