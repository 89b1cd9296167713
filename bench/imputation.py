"""Benchmark: imputation (BJS) and two-stage (Gardner) DiD on the paper-shaped panel vs peers.

Run by hand::

    .venv/bin/python bench/imputation.py                 # 16,300 units x 154 checkpoints
    .venv/bin/python bench/imputation.py --stride 4      # a quarter of the cohorts/checkpoints
    .venv/bin/python bench/imputation.py --stride 8      # every peer fits in memory here

Panel (Lesci et al. 2024, Pythia, as ``bench/did_vs_peers.py``): 143 cohorts of 100 instances
plus 2,000 never treated, checkpoints 0, 1, 2, 4, ..., 512, 1000, ..., 143000 (154), i.e.
2,510,200 rows, simulated by :func:`causalmem.simulate_panel` (known effect).

Timed in the same process, one after the other (``time.perf_counter``), each on the same frame:

* ours: ``did_imputation(horizon=True)`` (overall + 143 horizons, BJS variance),
  ``did2s(horizon=True)`` (143 horizons, GMM variance) and the static ``did2s``;
* diff-diff 3.13: ``ImputationDiD(cluster=unit).fit(aggregate="event_study")`` and
  ``TwoStageDiD(cluster=unit).fit(aggregate="event_study")``;
* pyfixest: ``did2s`` static (``~ 0 | unit + step``, ``~ i(treat, ref=False)``, cluster unit);
  its event study would need a dense 2.5M x 143 second-stage design, so it is not run.

Printed: seconds, our speed-up (peer / ours) and the largest absolute difference of estimates
and SEs against each peer (the numbers must agree; a benchmark of different answers is moot).
BLAS pools are pinned to one thread; the load average before and after is printed because the
machine is shared. The peers' memory grows much faster than ours (pyfixest's did2s holds the
dense ``rows x units`` first-stage design), so a peer whose estimated memory exceeds
``--max-peer-gb`` (default 6) is skipped with a message; compare them at ``--stride 2`` or 8.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402
from functools import partial  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

PYTHIA_EARLY = [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512]


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def _load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def _diff_diff_fit(peer: Any, dfd: pd.DataFrame) -> Any:
    """Fit a diff-diff estimator class (clustered by unit) with an event-study aggregation."""
    return peer(cluster="unit").fit(
        dfd,
        outcome="y",
        unit="unit",
        time="step",
        first_treat="first_treat",
        aggregate="event_study",
    )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--stride", type=int, default=1, help="keep every s-th 1k cohort/checkpoint")
    ap.add_argument("--skip-pyfixest", action="store_true")
    ap.add_argument("--skip-diff-diff", action="store_true")
    ap.add_argument(
        "--force-peers",
        action="store_true",
        help="run the peers even where their memory would exceed --max-peer-gb",
    )
    ap.add_argument("--max-peer-gb", type=float, default=6.0)
    args = ap.parse_args(argv)

    import causalmem as cm
    from causalmem.estimators.imputation import did2s, did_imputation

    cohorts = [1000 * k for k in range(args.stride, 144, args.stride)]
    steps = [*PYTHIA_EARLY, *cohorts]
    sim = cm.simulate_panel(
        cohorts=cohorts, units_per_cohort=100, n_never=2000, steps=steps, seed=0
    )
    df = sim.frame.copy()
    df["cohort"] = df["cohort"].astype("float64")
    print(f"panel: {df['unit'].nunique()} units x {len(steps)} checkpoints = {len(df):,} rows")
    print(f"load average before: {_load()}")
    rows: list[dict[str, Any]] = []

    imp, t_imp = _timed(lambda: did_imputation(df, "y", "step", "unit", "cohort", horizon=True))
    ts, t_ts = _timed(lambda: did2s(df, "y", "step", "unit", "cohort", horizon=True))
    st, t_st = _timed(lambda: did2s(df, "y", "step", "unit", "cohort"))
    rows += [
        {"method": "causalmem did_imputation (event study)", "seconds": t_imp},
        {"method": "causalmem did2s (event study)", "seconds": t_ts},
        {"method": "causalmem did2s (static)", "seconds": t_st},
    ]
    imp_t = imp.tidy().query("kind == 'post'").set_index("event_time")
    ts_t = ts.tidy().set_index("event_time")

    n_rows, n_units = len(df), int(df["unit"].nunique())
    # Measured on this machine: diff-diff used 1.6 GB at 746,200 rows and passed 12 GB at
    # 2,510,200 rows (killed); pyfixest's did2s builds the dense first-stage design
    # (rows x units doubles: 17.7 GB and an OOM kill at 253,000 rows x 5,500 units).
    dd_gb = 1.6 * (n_rows / 746_200) ** 2
    pf_gb = 13 * n_rows * n_units / 1e9  # ~13 bytes per cell measured
    for name, gb, skip in (
        ("diff-diff", dd_gb, "skip_diff_diff"),
        ("pyfixest", pf_gb, "skip_pyfixest"),
    ):
        if gb > args.max_peer_gb and not args.force_peers and not getattr(args, skip):
            print(f"{name}: skipped, needs ~{gb:.0f} GB (> --max-peer-gb); use --stride")
            setattr(args, skip, True)
    if not args.skip_diff_diff:
        import diff_diff as dd

        dfd = df.assign(first_treat=df["cohort"].fillna(0).astype("int64"))
        for name, peer, ours, t_ours in (
            ("ImputationDiD", dd.ImputationDiD, imp_t, t_imp),
            ("TwoStageDiD", dd.TwoStageDiD, ts_t, t_ts),
        ):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                m, t = _timed(partial(_diff_diff_fit, peer, dfd))
            es = pd.DataFrame(m.event_study_effects).T.loc[ours.index.astype(int)]
            rows.append(
                {
                    "method": f"diff-diff {name} (event study)",
                    "seconds": t,
                    "ratio": t / t_ours,
                    "max |d estimate|": np.abs(
                        ours["estimate"].to_numpy() - es["effect"].astype(float).to_numpy()
                    ).max(),
                    "max |d se|": np.abs(
                        ours["std_error"].to_numpy() - es["se"].astype(float).to_numpy()
                    ).max(),
                }
            )
    if not args.skip_pyfixest:
        import pyfixest as pf

        dfp = df.assign(treat=(df["step"] >= df["cohort"]).fillna(False))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit, t = _timed(
                lambda: pf.did2s(
                    dfp,
                    yname="y",
                    first_stage="~ 0 | unit + step",
                    second_stage="~ i(treat, ref=False)",
                    treatment="treat",
                    cluster="unit",
                )
            )
        ref = fit.tidy().iloc[0]
        rows.append(
            {
                "method": "pyfixest did2s (static)",
                "seconds": t,
                "ratio": t / t_st,
                "max |d estimate|": abs(float(ref["Estimate"]) - float(st.estimate[0])),
                "max |d se|": abs(float(ref["Std. Error"]) - float(st.std_error[0])),
            }
        )
    out = pd.DataFrame(rows)
    with pd.option_context("display.width", 160, "display.max_columns", 10):
        print(out.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print("ratio = peer seconds / causalmem seconds for the same estimand")
    tr = sim.truth[sim.truth["time"] >= sim.truth["group"]]
    n_g = df.loc[df["cohort"].notna()].groupby("cohort")["unit"].nunique()
    truth = float(np.average(tr["att"], weights=n_g.loc[tr["group"].astype(float)].to_numpy()))
    print(
        f"overall (BJS): {imp.estimate[0]:.4f} ({imp.std_error[0]:.4f}); "
        f"true average over treated observations: {truth:.4f}"
    )
    print(f"load average after: {_load()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
