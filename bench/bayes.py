"""Benchmark: the hierarchical Bayesian model (``bayes_did``) on a paper-scale profile.

Run by hand::

    .venv/bin/python bench/bayes.py                    # 143 cohorts x 154 checkpoints
    .venv/bin/python bench/bayes.py --draws 1000 --tune 1000 --sampler pymc
    .venv/bin/python bench/bayes.py --stride 4         # a quarter-size profile, for a quick look

Panel shape (Lesci et al. 2024, Pythia), as in ``bench/did_vs_peers.py``: 16,300 units x 154
checkpoints (143 cohorts of 100 units, 2,000 never treated; steps 0, 1, 2, 4, ..., 512, 1000,
2000, ..., 143000), simulated by :func:`causalmem.simulate_panel` with its default
memorisation-like effect ``-(2 exp(-e/2) + 0.5)`` (``e`` in checkpoints), so the truth is known.
``att_gt`` (never-treated controls, varying base period, analytic SEs) gives 21,879 cells, of
which the 10,296 post-treatment ones are modelled (``include_pre=False``).

Measured: wall time of ``bayes_did`` (``time.perf_counter``), split into building the model
(covariance factors, eigendecompositions, preconditioner), compiling (nutpie's numba
compilation; included in sampling for PyMC's sampler), sampling, the conditional draws of the
cells and the diagnostics. The goal is <= 60 s on this project's 2-core machine with healthy
diagnostics (max R-hat <= 1.01 and min bulk ESS >= 400 over the reported quantities, no
divergences). Also printed: the nuisance coordinates' diagnostics, 90% HDI coverage of the true
ATT(g, c) over the post cells and the RMSE of the posterior means against the raw cells.

The default is the cells model with each cohort's own decay (``cohort_decay`` on: level plus
two log-time decay loadings per cohort, zero-sum, integrated out exactly in one compiled Op);
``--level-only`` drops the decay loadings (``cohort_decay=False``, cohort levels only).
Measured 2026-12-01 ~20:30 UTC, nothing else running (two chains on the two cores): decay
56.3 s with Numba's cache warm (build 1.5, compile 14.9, sample 29.8, cell draws 4.0,
diagnostics 4.6), 62.4 s on the first run after the Op changed (compile 22.6); level-only 50.6 s.
Both healthy, 15 leapfrog steps per iteration (``reports/bayes_calibration.md``, section 5).

Defaults: 2 chains x 1,500 draws after 500 tuning steps (nutpie adapts quickly; PyMC's sampler
wants ``--tune 1000``). BLAS pools are pinned to one thread (the two chains run on the two
cores); the 1-minute load average before and after is printed because the machine is shared.
"""

from __future__ import annotations

import os

for _var in (
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402

PYTHIA_EARLY = [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
PAPER_COHORTS = 143
PAPER_UNITS_PER_COHORT = 100
PAPER_NEVER = 2000
GOAL_SECONDS = 60.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--stride", type=int, default=1, help="keep every s-th 1k cohort/checkpoint")
    ap.add_argument("--draws", type=int, default=1500)
    ap.add_argument("--tune", type=int, default=500)
    ap.add_argument("--chains", type=int, default=2)
    ap.add_argument("--sampler", default="auto", choices=["auto", "pymc", "nutpie"])
    ap.add_argument("--pooling", default="rw", choices=["rw", "gp"])
    ap.add_argument("--include-pre", action="store_true")
    ap.add_argument(
        "--level-only",
        action="store_true",
        help="cohort levels only (cohort_decay=False; default: each cohort's own decay)",
    )
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)

    import causalmem as cm
    from causalmem.estimators.bayes import bayes_did

    cohorts = [1000 * k for k in range(args.stride, PAPER_COHORTS + 1, args.stride)]
    steps = [*PYTHIA_EARLY, *cohorts]
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    sim = cm.simulate_panel(
        cohorts=cohorts,
        units_per_cohort=PAPER_UNITS_PER_COHORT,
        n_never=PAPER_NEVER // args.stride,
        steps=steps,
        seed=0,
    )
    t_sim = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = cm.att_gt(sim.frame, "y", "step", "unit", "cohort", bstrap=False)
    t_att = time.perf_counter() - t0
    print(
        f"profile: {len(cohorts)} cohorts x {len(steps)} checkpoints, "
        f"{res.n_units:,} units, {res.cells.n_cells:,} cells ({int(res.cells.post.sum()):,} "
        f"post); simulate {t_sim:.1f} s, att_gt {t_att:.2f} s"
    )
    print(
        f"bayes_did(model='cells', pooling={args.pooling!r}, include_pre={args.include_pre}, "
        f"draws={args.draws}, tune={args.tune}, chains={args.chains}, "
        f"sampler={args.sampler!r}, seed={args.seed}, "
        f"cohort_decay={not args.level_only})"
    )
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", cm.errors.CausalmemWarning)
        post = bayes_did(
            res,
            pooling=args.pooling,
            include_pre=args.include_pre,
            draws=args.draws,
            tune=args.tune,
            chains=args.chains,
            sampler=args.sampler,
            seed=args.seed,
            cohort_decay=not args.level_only,
        )
    wall = time.perf_counter() - t0
    load1 = os.getloadavg()[0]
    tm = post.timing
    d = post.diagnostics
    print(
        "stack: "
        + ", ".join(f"{k} {v}" for k, v in post.provenance["bayes_versions"].items())
        + f"; container {type(post.idata).__name__}"
    )
    compile_txt = (
        "compile (inside sampling)"
        if np.isnan(tm["compile_s"])
        else f"compile {tm['compile_s']:.1f}"
    )
    print(
        f"wall {wall:.1f} s = build {tm['build_s']:.1f} + {compile_txt} + "
        f"sample {tm['sample_s']:.1f} + cell draws {tm['conditional_draws_s']:.1f} + "
        f"diagnostics {tm['diagnostics_s']:.1f} (+ bookkeeping); sampler "
        f"{post.spec.sampler_used}, {d['mean_n_steps']:.1f} leapfrog steps per iteration"
    )
    print(
        f"diagnostics (reported quantities): max r_hat {d['max_r_hat']:.4f} "
        f"({d['max_r_hat_var']}), min ess_bulk {d['min_ess_bulk']:.0f} "
        f"({d['min_ess_bulk_var']}), min ess_tail {d['min_ess_tail']:.0f}, "
        f"divergences {d['divergences']}"
    )
    print(
        f"diagnostics (nuisance: whitened coordinates, control path): max r_hat "
        f"{d['max_r_hat_nuisance']:.4f}, min ess_bulk {d['min_ess_bulk_nuisance']:.0f}"
    )
    for w in caught:
        print(f"warning: {w.message}")

    tidy = post.tidy(hdi_prob=0.9)
    truth = sim.truth.astype({"group": float, "time": float})
    m = tidy.merge(truth, on=["group", "time"], how="left")
    m = m[m["post"]]
    cover = float(((m["att"] >= m["conf_low"]) & (m["att"] <= m["conf_high"])).mean())
    rmse_b = float(np.sqrt(np.mean((m["estimate"] - m["att"]) ** 2)))
    rmse_r = float(np.sqrt(np.mean((m["raw_estimate"] - m["att"]) ** 2)))
    hp = post.hyperparameters().set_index("term")["estimate"]
    print(
        f"recovery over {len(m):,} post cells: 90% HDI coverage {cover:.3f}; RMSE posterior "
        f"mean {rmse_b:.4f} vs raw cells {rmse_r:.4f} (x{rmse_r / rmse_b:.1f}); "
        + ", ".join(f"{k} {v:.4f}" for k, v in hp.items())
    )
    prof = post.profile()
    print("posterior path mu(e) (first 5 event times):")
    print(
        prof[["event_time", "estimate", "std_error", "conf_low", "conf_high"]]
        .head()
        .to_string(index=False)
    )
    ok_time = wall <= GOAL_SECONDS
    print(
        f"goals: time {wall:.1f} s <= {GOAL_SECONDS:.0f} s: {'met' if ok_time else 'MISSED'}; "
        f"healthy diagnostics: {'met' if d['passed'] else 'MISSED'}; "
        f"1-min load average {load0:.2f} before, {load1:.2f} after (2 cores)"
    )
    return 0 if ok_time and d["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
