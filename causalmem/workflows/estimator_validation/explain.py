"""Findings of a validation: one diagnosed sentence per estimator, and placebo failures."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from causalmem.workflows.estimator_validation.estimates import ESTIMATOR_LABELS
from causalmem.workflows.estimator_validation.metrics import GOAL_BIAS, GOAL_COVERAGE

if TYPE_CHECKING:
    from causalmem.workflows.estimator_validation.result import EstimatorValidation

_WHY = {
    "twfe": (
        "dynamic TWFE pools cohorts with implicit weights and uses already-treated instances as "
        "controls (forbidden comparisons); with effects that change with event time (decaying "
        "memorisation) and across cohorts (the LR schedule), those comparisons contaminate each "
        "event-time coefficient (Sun & Abraham 2021; Goodman-Bacon 2021)"
    ),
    "diff": (
        "the difference estimator compares levels, Ȳ_c(g) − Ȳ_c(∞), so it is unbiased only under "
        "random assignment (true in the lab by construction, not for Pythia's validation split) "
        "and carries the instance-level spread of log p(x) in its variance (DiD differences it "
        "out); any level difference between a cohort's sample and the held-out pool is read as "
        "memorisation"
    ),
    "bayes": (
        "the Bayesian model shrinks every cell towards a pooled event-time path plus each "
        "cohort's own level and log-time decay (partially pooled); where few, noisy cells inform "
        "the path (long event times) the random walk extrapolates it flat while memorisation "
        "still decays, and when the cells look smooth (a small cell-deviation scale) the HDIs, "
        "narrower than the CS intervals, do not absorb that shrinkage bias"
    ),
    "cs_notyet": (
        "not-yet-trained controls are later cohorts' instances before their training step; "
        "they add comparison units (smaller SEs) but inherit any spill-over of earlier training "
        "onto them, and the latest cells have few or no such controls"
    ),
    "cs_never": (
        "the CS estimator with held-out controls identifies τ(g, c) under parallel trends and "
        "no anticipation; departures come from the truth's own run-level noise (run B's "
        "trajectory after the first swap) and finite-sample SE error"
    ),
    "sunab": (
        "Sun & Abraham uses a universal base period (g − 1) and the never-trained controls; it "
        "is the CS event path with cohort-share weights, so it inherits CS's behaviour"
    ),
}


def _goal_text(r: Mapping[Hashable, Any]) -> str:
    """Give the headline numbers and whether they meet the goal (why not, when they do not)."""
    k = r["estimator"]
    lvl = "cells" if r["level"] == "cell" else "event-time path"
    txt = (
        f"{ESTIMATOR_LABELS[k]} ({lvl}): bias {r['bias']:+.3f} "
        f"({100 * r['rel_bias']:+.1f}% of the mean truth {r['mean_truth']:.3f}), RMSE "
        f"{r['rmse']:.3f}, coverage {r['coverage']:.2f} over {r['n']} comparisons"
    )
    if r["meets_goal"]:
        return txt + " — meets the goal."
    fails = []
    if not (np.isfinite(r["rel_bias"]) and abs(r["rel_bias"]) <= GOAL_BIAS):
        fails.append("bias above 10%")
    if r["coverage"] < GOAL_COVERAGE[0]:
        fails.append("under-coverage")
    if r["coverage"] > GOAL_COVERAGE[1]:
        fails.append("over-coverage (intervals too wide)")
    return txt + f" — fails ({', '.join(fails)}): {_WHY[k]}."


def _error_pattern_text(r: Mapping[Hashable, Any], comparisons: pd.DataFrame) -> str:
    """Where the errors sit: early vs late event periods and, for cells, the worst cohort."""
    c = comparisons
    c = c[(c["estimator"] == r["estimator"]) & (c["level"] == r["level"]) & (c["period"] == "post")]
    txt = ""
    err = (c["estimate"] - c["truth"]).groupby(c["event_period"]).mean()
    if len(err) >= 6:
        txt += (
            f" Mean error by event period: {err.iloc[:3].mean():+.2f} at the first three, "
            f"{err.iloc[-3:].mean():+.2f} at the last three."
        )
    if r["level"] == "cell":
        by_g = (c["estimate"] - c["truth"]).groupby(c["group"]).mean()
        worst = by_g.abs().idxmax()
        txt += f" Largest cohort mean error: {by_g[worst]:+.2f} (cohort {worst:g})."
    return txt


def _versus_recommended_text(
    r: Mapping[Hashable, Any], head: pd.DataFrame, recommended: str
) -> str:
    """RMSE and width relative to the recommended estimator (when notably larger), or its mark."""
    k = r["estimator"]
    txt = ""
    rec = head[head["estimator"] == recommended]
    if k != recommended and len(rec) and r["level"] == rec["level"].iloc[0]:
        ratio = r["rmse"] / float(rec["rmse"].iloc[0])
        wid = r["mean_width"] / float(rec["mean_width"].iloc[0])
        if ratio > 1.2 or wid > 1.2:
            txt += (
                f" RMSE {ratio:.2f}× and interval width {wid:.2f}× those of the recommended "
                "estimator."
            )
    if k == recommended:
        txt += " Recommended."
    return txt


def _placebo_findings(metrics: pd.DataFrame) -> list[str]:
    """One sentence per estimator and level whose placebo intervals miss 0 too often."""
    out = []
    pre = metrics[(metrics["period"] == "pre")]
    for r in pre.to_dict("records"):
        if r["coverage"] < GOAL_COVERAGE[0]:
            out.append(
                f"{ESTIMATOR_LABELS[r['estimator']]} ({r['level']}): placebo (pre-treatment) "
                f"intervals contain 0 in only {r['coverage']:.0%} of {r['n']} cases (mean "
                f"{r['bias']:+.3f}): a violation of parallel trends or no anticipation as seen "
                "by this estimator."
            )
    return out


def _findings(res: EstimatorValidation) -> list[str]:
    head = res.headline()
    out = [
        _goal_text(r)
        + _error_pattern_text(r, res.comparisons)
        + _versus_recommended_text(r, head, res.recommended)
        for r in head.to_dict("records")
    ]
    return out + _placebo_findings(res.metrics)
