"""Validate the re-exposure estimators against the lab's counterfactual-retraining truth.

For each replicate seed: a multi-epoch lab run A and its counterfactual B with the second
exposure of the sampled re-exposed instances removed
(:func:`causalmem.lab.ground_truth.reexposure_ground_truth`); every estimator variant of
:func:`causalmem.estimators.reexposure.reexposure_att` is fitted on run A alone and compared with
the truth, cell by cell (``ATT₂(g1, g2, c)``) and on the event path (by checkpoints since the
second exposure). Metrics as the first-exposure validation
(:mod:`causalmem.workflows.estimator_validation`): bias, bias relative to the mean truth, RMSE,
coverage of the pointwise 95 % intervals (analytic influence-function SEs), mean width; the goal
is ``|bias| ≤ 10 %`` of the mean truth and coverage in ``[0.90, 0.99]``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy.stats import norm

from causalmem.results.base import provenance
from lmecon.atomic import atomic_write_text
from lmecon.result import ResultMixin, frozen_mapping

if TYPE_CHECKING:
    from causalmem.lab.config import LabConfig
    from causalmem.lab.ground_truth import ReexposureTruth

__all__ = [
    "REEXPOSURE_ESTIMATORS",
    "ReexposureValidation",
    "compare_replicate",
    "reexposure_metrics",
    "validate_reexposure",
]

GOAL_BIAS = 0.10
GOAL_COVERAGE = (0.90, 0.99)

REEXPOSURE_ESTIMATORS: Mapping[str, Mapping[str, Any]] = {
    "notyet": {"control": "notyet", "se_correction": False},
    "once": {"control": "once", "se_correction": False},
    "notyet_welch": {"control": "notyet", "se_correction": True},
    "once_welch": {"control": "once", "se_correction": True},
}
"""Estimator variants (second-exposure estimand): control group and Welch SE correction."""

LABELS = {
    "notyet": "CS re-exposure, not-yet-re-exposed controls (plug-in SE)",
    "once": "CS re-exposure, once-trained controls (plug-in SE)",
    "notyet_welch": "CS re-exposure, not-yet-re-exposed controls (Welch SE)",
    "once_welch": "CS re-exposure, once-trained controls (Welch SE)",
}

Log = Callable[[str], None]


def compare_replicate(
    truth: ReexposureTruth,
    *,
    estimators: Sequence[str] = tuple(REEXPOSURE_ESTIMATORS),
    alp: float = 0.05,
    replicate: Any = None,
) -> pd.DataFrame:
    """Fit the estimator variants on run A of one replicate and attach the truth.

    Returns
    -------
    pandas.DataFrame
        One row per (estimator, level, label): ``level`` (``cell`` or ``event``), ``g1, g2,
        time`` (cells), ``event_period``, ``phase``, ``estimate``, ``std_error``, ``conf_low``,
        ``conf_high`` (pointwise, level ``1 − alp``), ``truth``, ``truth_adjusted``,
        ``replicate``.
    """
    from causalmem.estimators.reexposure import reexposure_att

    unknown = sorted(set(estimators) - set(REEXPOSURE_ESTIMATORS))
    if unknown:
        raise ValueError(
            f"unknown estimators {unknown}; use some of {list(REEXPOSURE_ESTIMATORS)}."
        )
    z = float(norm.ppf(1 - alp / 2))
    frame = truth.frame.assign(_y=truth.sign * truth.frame[truth.outcome])
    t = truth.tidy()[["g1", "g2", "time", "estimate", "estimate_adjusted"]].rename(
        columns={"estimate": "truth", "estimate_adjusted": "truth_adjusted"}
    )
    parts = []
    for name in estimators:
        res = reexposure_att(frame, "_y", bstrap=False, **REEXPOSURE_ESTIMATORS[name])
        cells = res.tidy().merge(t, on=["g1", "g2", "time"], how="left", validate="one_to_one")
        cells = cells[np.isfinite(cells["estimate"].to_numpy(np.float64))]
        cells = cells.assign(level="cell", estimator=name)
        w = cells["n_treated"].astype(np.float64)
        ev = []
        for phase in ("pre", "post"):
            agg = res.aggregate("event", phase=phase).tidy()
            sub = cells[cells["phase"] == phase].assign(_w=w)
            tr = sub.groupby("event_period").apply(
                lambda d: pd.Series(
                    {
                        "truth": float(np.average(d["truth"], weights=d["_w"])),
                        "truth_adjusted": float(np.average(d["truth_adjusted"], weights=d["_w"])),
                    }
                ),
                include_groups=False,
            )
            agg = agg.merge(tr.reset_index(), on="event_period", how="left")
            ev.append(agg.assign(phase=phase))
        events = pd.concat(ev, ignore_index=True).assign(level="event", estimator=name)
        parts.append(pd.concat([cells, events], ignore_index=True))
    out = pd.concat(parts, ignore_index=True)
    out["conf_low"] = out["estimate"] - z * out["std_error"]
    out["conf_high"] = out["estimate"] + z * out["std_error"]
    out["replicate"] = replicate
    cols = [
        "replicate", "estimator", "level", "g1", "g2", "time", "event_period", "phase",
        "estimate", "std_error", "conf_low", "conf_high", "truth", "truth_adjusted", "n_treated",
    ]  # fmt: skip
    return out.reindex(columns=cols)


def reexposure_metrics(comparisons: pd.DataFrame, *, adjusted: bool = False) -> pd.DataFrame:
    """Bias, relative bias, RMSE, coverage and width per (estimator, level, phase)."""
    tcol = "truth_adjusted" if adjusted else "truth"
    rows = []
    for (est, level, phase), d in comparisons.groupby(["estimator", "level", "phase"], sort=False):
        d = d[np.isfinite(d["std_error"].to_numpy(np.float64))]
        err = d["estimate"] - d[tcol]
        cover = (d["conf_low"] <= d[tcol]) & (d[tcol] <= d["conf_high"])
        mean_truth = float(d[tcol].mean())
        bias = float(err.mean())
        rel = bias / mean_truth if phase == "post" and mean_truth != 0 else float("nan")
        cov = float(cover.mean())
        meets = (
            bool(abs(rel) <= GOAL_BIAS and GOAL_COVERAGE[0] <= cov <= GOAL_COVERAGE[1])
            if phase == "post"
            else bool(GOAL_COVERAGE[0] <= cov <= GOAL_COVERAGE[1])
        )
        rows.append(
            {
                "estimator": est,
                "level": level,
                "period": phase,
                "n": len(d),
                "mean_truth": mean_truth,
                "bias": bias,
                "rel_bias": rel,
                "rmse": float(np.sqrt((err**2).mean())),
                "coverage": cov,
                "mean_width": float((d["conf_high"] - d["conf_low"]).mean()),
                "corr": float(np.corrcoef(d["estimate"], d[tcol])[0, 1]) if len(d) > 2 else np.nan,
                "meets_goal": meets,
            }
        )
    return pd.DataFrame(rows)


@dataclass(frozen=True, eq=False)
class ReexposureValidation(ResultMixin):
    """Re-exposure estimators vs the counterfactual truth over replicates (immutable).

    Attributes
    ----------
    comparisons
        Every estimate with its truth (:func:`compare_replicate`), all replicates.
    metrics, metrics_adjusted
        :func:`reexposure_metrics` against the raw and the control-shift-adjusted truth.
    replicates
        One row per replicate: seed, checks passed, groups, re-exposed instances, first swapped
        step, mean instantaneous truth, seconds.
    """

    comparisons: pd.DataFrame = field(repr=False)
    metrics: pd.DataFrame = field(repr=False)
    metrics_adjusted: pd.DataFrame = field(repr=False)
    replicates: pd.DataFrame = field(repr=False)
    provenance: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def spec(self) -> Mapping[str, Any]:
        """Seeds and estimators (frozen)."""
        return frozen_mapping(
            {
                "seeds": tuple(self.replicates["seed"].tolist()),
                "estimators": tuple(self.metrics["estimator"].unique().tolist()),
            }
        )

    def tidy(self) -> pd.DataFrame:
        """Return the metrics (raw truth), a new frame."""
        return self.metrics.copy()

    def glance(self) -> pd.DataFrame:
        """One-row summary: replicates, checks, the best estimator on post cells."""
        m = self.metrics[(self.metrics["level"] == "cell") & (self.metrics["period"] == "post")]
        ok = m[m["meets_goal"]]
        return pd.DataFrame(
            [
                {
                    "n_replicates": len(self.replicates),
                    "checks_passed": bool(self.replicates["checks_passed"].all()),
                    "n_meeting_goal": len(ok),
                    "best": ok.iloc[0]["estimator"] if len(ok) else None,
                }
            ]
        )

    def summary(self) -> str:
        """Return the metrics table as text."""
        return (
            f"Re-exposure validation over {len(self.replicates)} replicates\n\n"
            + self.metrics.to_string(index=False)
        )

    def _table(self) -> pd.DataFrame:
        return self.metrics

    def _caption(self) -> str | None:
        return "Re-exposure estimators vs the counterfactual truth"

    def plot(self, estimator: str = "once_welch", **options: Any) -> Any:
        """Estimated vs true event path by checkpoints since the second exposure (Altair)."""
        import altair as alt

        c = self.comparisons
        d = c[(c["estimator"] == estimator) & (c["level"] == "event")]
        g = d.groupby("event_period")
        path = pd.DataFrame(
            {
                "estimate": g["estimate"].mean(),
                "truth": g["truth"].mean(),
                "conf_low": g["conf_low"].mean(),
                "conf_high": g["conf_high"].mean(),
            }
        ).reset_index()
        base = alt.Chart(path)
        x = alt.X("event_period:Q", title="checkpoints since the second exposure")
        band = base.mark_area(opacity=0.25, color="#2c7fb8").encode(
            x=x, y=alt.Y("conf_low:Q", title="memorisation"), y2="conf_high:Q"
        )
        est = base.mark_line(point=True, color="#2c7fb8").encode(x=x, y="estimate:Q")
        tru = base.mark_line(point=True, color="#d95f02", strokeDash=[4, 2]).encode(
            x=x, y="truth:Q"
        )
        title = options.get(
            "title",
            f"{LABELS.get(estimator, estimator)}: mean estimate (blue, mean 95% interval) vs "
            "truth (orange), over replicates",
        )
        return alt.layer(band, est, tru, title=title).properties(width=460, height=260)


def validate_reexposure(
    out_dir: str | os.PathLike[str],
    cfg: LabConfig,
    seeds: Sequence[int],
    *,
    estimators: Sequence[str] = tuple(REEXPOSURE_ESTIMATORS),
    alp: float = 0.05,
    log: Log | None = None,
) -> tuple[ReexposureValidation, list[ReexposureTruth]]:
    """Run the replicates (resumable) and score the estimators against the truth.

    Each seed's paired runs live in ``out_dir/seed<N>`` (rerunning reuses finished training
    and scoring); ``out_dir/seed<N>/comparisons.csv`` is written when a seed is done.
    """
    import time

    from causalmem.lab.ground_truth import reexposure_ground_truth, replicate_config

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    say = log or (lambda _m: None)
    comps, reps, truths = [], [], []
    for seed in seeds:
        t0 = time.perf_counter()
        rc = replicate_config(cfg, seed)
        truth = reexposure_ground_truth(out / f"seed{seed}", rc)
        comp = compare_replicate(truth, estimators=estimators, alp=alp, replicate=seed)
        atomic_write_text(out / f"seed{seed}" / "comparisons.csv", comp.to_csv(index=False))
        g = truth.glance().iloc[0]
        reps.append(
            {
                "seed": int(seed),
                "checks_passed": bool(g["checks_passed"]),
                "n_groups": int(g["n_groups"]),
                "n_sampled": int(g["n_sampled"]),
                "n_reexposed": int(g["n_reexposed"]),
                "first_swap_step": g["first_swap_step"],
                "instantaneous_mean": float(g["instantaneous_mean"]),
                "seconds": time.perf_counter() - t0,
            }
        )
        comps.append(comp)
        truths.append(truth)
        say(
            f"seed {seed}: {g['n_reexposed']} re-exposed instances in {g['n_groups']} groups, "
            f"mean instantaneous truth {g['instantaneous_mean']:.3f} "
            f"({reps[-1]['seconds']:.0f} s)"
        )
    comparisons = pd.concat(comps, ignore_index=True)
    prov = provenance(
        method="re-exposure estimators vs counterfactual retraining (second exposure removed)",
        seeds=[int(s) for s in seeds],
        estimators=list(estimators),
        alp=alp,
        goal={"bias": GOAL_BIAS, "coverage": GOAL_COVERAGE},
    )
    res = ReexposureValidation(
        comparisons=comparisons,
        metrics=reexposure_metrics(comparisons),
        metrics_adjusted=reexposure_metrics(comparisons, adjusted=True),
        replicates=pd.DataFrame(reps),
        provenance=prov,
    )
    return res, truths
