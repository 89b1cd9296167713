"""Benchmark: TWFE diagnostics and pre-trend power on the paper-shaped panel (issue 14).

Run by hand::

    .venv/bin/python bench/twfe_diagnostics.py            # 16,300 units x 154 checkpoints
    .venv/bin/python bench/twfe_diagnostics.py --no-peer  # skip diff-diff
    .venv/bin/python bench/twfe_diagnostics.py --stride 4 # a quarter of the cohorts

Panel shape (Lesci et al. 2024, Pythia), as in ``bench/bayes.py``: 143 cohorts of 100 units
and 2,000 never-treated units observed at 154 checkpoints (steps 0, 1, 2, 4, ..., 512, 1000,
2000, ..., 143000), simulated by :func:`causalmem.simulate_panel`.

Measured (``time.perf_counter``, best of ``--repeat``):
:func:`causalmem.estimators.diagnostics.bacon_decomposition` (20,449 2x2 comparisons: 143
against the never treated, 2 x 10,153 timing pairs) and :func:`twfe_weights` on the balanced
panel, :func:`twfe_weights` on an unbalanced copy (10 % of rows dropped at random), the package's
``twfe`` for the same coefficient, and the peer diff-diff 3.13 ``BaconDecomposition`` (exact
weights) in the same run; then :func:`causalmem.analysis.pretrends.pretrends_power` on a CS
dynamic event study with +-20 event times (universal base period, analytic covariance). The
1-minute load average is printed because the machine is shared.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

PYTHIA_EARLY = [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
PAPER_COHORTS = 143
PAPER_UNITS_PER_COHORT = 100
PAPER_NEVER = 2000


def _best(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print one line per measurement."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--stride", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-peer", action="store_true")
    ap.add_argument("--no-pretrends", action="store_true")
    args = ap.parse_args(argv)

    import causalmem as cm
    from causalmem.analysis.pretrends import pretrends_power
    from causalmem.estimators.diagnostics import bacon_decomposition, twfe_weights

    print(f"load average (1 min) before: {os.getloadavg()[0]:.2f}")
    cohorts = [1000 * k for k in range(args.stride, PAPER_COHORTS + 1, args.stride)]
    steps = [*PYTHIA_EARLY, *cohorts]
    sim = cm.simulate_panel(
        cohorts=cohorts,
        units_per_cohort=PAPER_UNITS_PER_COHORT,
        n_never=PAPER_NEVER // args.stride,
        steps=steps,
        seed=0,
    )
    df = sim.frame
    n_units = df["unit"].nunique()
    print(f"panel: {n_units:,} units x {len(steps)} checkpoints, {len(cohorts)} cohorts")

    t_b, bac = _best(lambda: bacon_decomposition(df, "y", "step", "unit", "cohort"), args.repeat)
    g = bac.glance().iloc[0]
    print(
        f"bacon_decomposition: {t_b:.3f} s, {int(g.n_comparisons):,} comparisons, "
        f"TWFE {bac.twfe_estimate:.6f}, |sum - TWFE| = "
        f"{abs(g.decomposition_sum - bac.twfe_estimate):.1e}, forbidden weight "
        f"{g.forbidden_weight:.4f}"
    )
    t_w, w = _best(lambda: twfe_weights(df, "y", "step", "unit", "cohort"), args.repeat)
    gw = w.glance().iloc[0]
    print(
        f"twfe_weights (balanced): {t_w:.3f} s, {int(gw.n_cells):,} cells, "
        f"{int(gw.n_negative):,} negative (sum {gw.sum_negative:.4f}), beta_fe {w.beta_fe:.6f}"
    )
    rng = np.random.default_rng(0)
    dfu = df[rng.random(len(df)) > 0.1]
    t_u, wu = _best(lambda: twfe_weights(dfu, "y", "step", "unit", "cohort"), args.repeat)
    gu = wu.glance().iloc[0]
    print(
        f"twfe_weights (unbalanced, 10% rows dropped): {t_u:.3f} s, {int(gu.n_negative):,} "
        f"negative (sum {gu.sum_negative:.4f}), beta_fe {wu.beta_fe:.6f}"
    )
    dd = df.assign(d=(df["step"] >= df["cohort"]).fillna(False).astype(float))
    t_f, fit = _best(lambda: cm.twfe("y ~ d | unit + step", dd), 1)
    print(f"causalmem.twfe (coefficient only, for scale): {t_f:.3f} s, {float(fit.coef[0]):.6f}")

    if not args.no_peer:
        try:
            import diff_diff
        except ImportError:
            print("peer diff-diff: not installed")
        else:
            ddf = df.assign(first_treat=df["cohort"].fillna(0).astype(np.int64))
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                peer = diff_diff.BaconDecomposition().fit(
                    ddf, outcome="y", unit="unit", time="step", first_treat="first_treat"
                )
            t_p = time.perf_counter() - t0
            print(
                f"peer diff-diff {diff_diff.__version__} BaconDecomposition (one run): "
                f"{t_p:.3f} s, TWFE {peer.twfe_estimate:.6f}, {len(peer.comparisons):,} "
                "comparisons"
            )

    if not args.no_pretrends:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            fit_cs = cm.att_gt(
                df, "y", "step", "unit", "cohort", base_period="universal", bstrap=False
            )
            dyn = cm.aggte(
                fit_cs, type="dynamic", min_e=-20, max_e=20, bstrap=False, event_time="periods"
            )
            t_cs = time.perf_counter() - t0
        t_p, pt = _best(lambda: pretrends_power(dyn, target_power=0.8), 1)
        gp = pt.glance().iloc[0]
        print(
            f"pretrends_power (+-20 event times; CS fit {t_cs:.1f} s not counted): {t_p:.2f} s, "
            f"slope50 {gp.slope_power_50:.4g}, slope80 {gp.slope_power_80:.4g}, "
            f"power at slope80 {gp.power:.4f}"
        )
    print(f"load average (1 min) after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
