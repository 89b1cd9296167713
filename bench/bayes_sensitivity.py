"""Benchmark and chart: ``bayes_sensitivity`` on a simulated panel with a planted violation.

Run by hand::

    .venv/bin/python bench/bayes_sensitivity.py                 # chart to reports/figures/
    .venv/bin/python bench/bayes_sensitivity.py --slope 0       # no violation

Panel: :func:`causalmem.simulate_panel` with 4 cohorts x 40 units, 60 never treated, 10
checkpoints and the default memorisation-like effect ``-(2 exp(-e/2) + 0.5)`` (instantaneous
effect -2.5), plus a planted linear violation of parallel trends: treated units drift away from
the never treated by ``--slope`` per period (``y += slope * (step - 1)`` for treated units, before
and after treatment alike; ``simulate_panel``'s ``covariate_effect`` is no violation, its
unit-level term is differenced out). The Bayesian sensitivity model (cells model,
placebo cells included, universal base period) is fitted over a grid of prior scales ``s``;
its 95% HDIs of the instantaneous effect and of the window average over event times 0..2 are
charted against ``M = 1.96 s`` with the Delta^SD FLCI sets of the same targets from the
``honestdid`` package (the PyPI port of R ``HonestDiD``, used here as an independent
reference; not a dependency of causalmem) on the dynamic event study (``aggte``) of the same
fit, as the frequentist overlay (a tidy frame ``M, lower, upper, method, restriction,
target``). Prints the table, the wall time of each fit and the 1-minute load average.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

SCALES = (0.0, 0.05, 0.15, 0.4)


def _honest_sets(res: object, targets: dict[str, list[int]], m_grid: np.ndarray) -> pd.DataFrame:
    """Delta^SD FLCI sets (honestdid) of each target on the dynamic event study."""
    import honestdid

    from causalmem.estimators.aggte import aggte

    dyn = aggte(res, "dynamic", na_rm=True)  # type: ignore[arg-type]
    e = np.asarray(dyn.labels)
    keep = e != -1  # the universal reference period (0 by construction)
    inf = np.asarray(dyn.influence)[:, : e.size][:, keep]
    beta = np.asarray(dyn.estimate)[keep]
    sigma = inf.T @ inf
    ek = e[keep]
    n_pre, n_post = int((ek < 0).sum()), int((ek >= 0).sum())
    rows = []
    for name, es in targets.items():
        l_vec = np.zeros(n_post)
        l_vec[[int(v) for v in es]] = 1.0 / len(es)
        out = honestdid.createSensitivityResults(
            beta, sigma, n_pre, n_post, method="FLCI", Mvec=m_grid, l_vec=l_vec
        )
        out = pd.DataFrame(out)
        rows.append(
            pd.DataFrame(
                {
                    "M": out["M"].to_numpy(float),
                    "lower": out["lb"].to_numpy(float),
                    "upper": out["ub"].to_numpy(float),
                    "method": "FLCI (honestdid)",
                    "restriction": "Delta^SD",
                    "target": name,
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--slope", type=float, default=0.2, help="treated units' drift per period")
    ap.add_argument("--draws", type=int, default=400)
    ap.add_argument("--tune", type=int, default=400)
    ap.add_argument("--out", type=Path, default=Path("reports/figures/bayes_sensitivity"))
    ap.add_argument("--seed", type=int, default=3)
    args = ap.parse_args(argv)

    import causalmem as cm
    from causalmem.estimators.bayes import bayes_sensitivity
    from lmecon.charts import save_chart

    sim = cm.simulate_panel(
        cohorts=(4, 5, 6, 7),
        units_per_cohort=40,
        n_never=60,
        steps=range(1, 11),
        noise_sd=0.5,
        seed=args.seed,
    )
    frame = sim.frame.copy()
    treated = frame["cohort"].notna().to_numpy(dtype=bool)
    frame["y"] = frame["y"] + args.slope * (frame["step"] - 1) * treated
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cm.errors.CausalmemWarning)
        res = cm.att_gt(frame, "y", "step", "unit", "cohort", bstrap=False, base_period="universal")
    targets = {"instantaneous": [0], "window@0:2": [0, 1, 2]}
    freq = _honest_sets(res, targets, np.asarray(SCALES) * 1.959963984540054)
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cm.errors.CausalmemWarning)
        out = bayes_sensitivity(
            res,
            scales=SCALES,
            targets=list(targets),
            draws=args.draws,
            tune=args.tune,
            seed=1,
            frequentist=freq,
        )
    wall = time.perf_counter() - t0
    truth = {
        "instantaneous": -2.5,
        "window@0:2": float(np.mean([-(2 * np.exp(-e / 2) + 0.5) for e in (0, 1, 2)])),
    }
    t = out.tidy()
    t["truth"] = t["target"].map(truth)
    t["covers"] = (t["lower"] <= t["truth"]) & (t["truth"] <= t["upper"])
    pd.set_option("display.width", 160)
    print(
        t[
            [
                "target",
                "scale",
                "m_equivalent",
                "mean",
                "lower",
                "upper",
                "truth",
                "covers",
                "max_r_hat",
                "divergences",
            ]
        ].to_string(index=False)
    )
    print(freq.to_string(index=False))
    print(out.fits.to_string(index=False))
    save_chart(
        out.plot(title=f"Planted linear violation (slope {args.slope}): Bayes vs Delta^SD"),
        args.out,
        formats=("png",),
    )
    print(
        f"{len(SCALES)} fits in {wall:.1f} s; 1-min load average {load0:.2f} before, "
        f"{os.getloadavg()[0]:.2f} after (2 cores); chart {args.out}.png"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
