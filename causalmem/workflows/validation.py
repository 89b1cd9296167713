"""Validate the memorisation estimators against the true profile of counterfactual lab runs.

For each replicate (a pair of lab runs A/B from :func:`causalmem.lab.ground_truth.ground_truth`),
every estimator is fitted on run A's panel alone and compared with the truth τ(g, c) computed
from both runs:

========== ===================================================== ======================
key        estimator                                             compared at
========== ===================================================== ======================
cs_never   Callaway & Sant'Anna ATT(g, c), never-trained controls cells + event path
cs_notyet  the same, not-yet-trained controls                    cells + event path
twfe       dynamic two-way fixed-effects event study             event path
sunab      Sun & Abraham interaction-weighted event study        event path
diff       the paper's difference estimator Ȳ_c(g) − Ȳ_c(∞)      cells + event path
bayes      hierarchical Bayesian model over the CS cells         cells + event path
========== ===================================================== ======================

Everything is on the memorisation scale (sign-adjusted outcome), intervals are pointwise at
``level`` (posterior HDIs for the Bayesian model). Metrics, per estimator and level, pooled
over replicates: bias (mean of estimate − truth), relative bias (bias / mean truth), RMSE,
interval coverage of the truth, mean interval width, correlation; pre-treatment (placebo)
cells and event periods are compared with zero.

The goal of issue 8: for the recommended estimator, |relative bias| ≤ 10% and coverage in
[0.90, 0.99] on the post-treatment cells.
"""

from __future__ import annotations

import html
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from causalmem.results.base import provenance

if TYPE_CHECKING:
    import altair as alt

    from causalmem.lab.ground_truth import GroundTruth
    from causalmem.panel.panel import Panel

__all__ = [
    "ESTIMATORS",
    "ESTIMATOR_LABELS",
    "ValidationResult",
    "METRIC_COLUMNS",
    "estimate_all",
    "metrics_table",
    "validate",
    "validation_chart",
    "validation_metrics",
    "validation_section",
]

ESTIMATORS: tuple[str, ...] = ("cs_never", "cs_notyet", "twfe", "sunab", "diff", "bayes")
"""Estimator keys, in display order."""

ESTIMATOR_LABELS: Mapping[str, str] = {
    "cs_never": "CS, never-trained controls",
    "cs_notyet": "CS, not-yet-trained controls",
    "twfe": "TWFE event study",
    "sunab": "Sun & Abraham",
    "diff": "Difference estimator",
    "bayes": "Bayesian model",
}

PREFERENCE: tuple[str, ...] = ("cs_never", "cs_notyet", "bayes", "diff")
"""Order in which an estimator meeting the goal (on cells) is recommended: the paper's design
(never-trained controls) first; not-yet-trained controls add the assumption that training does
not spill over onto later cohorts' instances before their step; the Bayesian model and the
difference estimator add a pooling model and random assignment."""

GOAL_BIAS = 0.10
GOAL_COVERAGE = (0.90, 0.99)

METRIC_COLUMNS: tuple[str, ...] = (
    "estimator",
    "level",
    "period",
    "n",
    "mean_truth",
    "bias",
    "rel_bias",
    "rmse",
    "coverage",
    "mean_width",
    "corr",
    "meets_goal",
)
"""Columns of the metrics tables shown in reports (:func:`metrics_table`)."""

_EST_COLS = ["estimate", "std_error", "conf_low", "conf_high"]


# ----------------------------------------------------------------------------- estimation
def _periods(values: Any, grid: np.ndarray) -> np.ndarray:
    pos = {int(s): i for i, s in enumerate(grid)}
    return np.array([pos.get(int(v), -(10**9)) for v in values], dtype=np.int64)


def _cells(frame: pd.DataFrame, grid: np.ndarray, sign: int) -> pd.DataFrame:
    from causalmem.analysis.profile import to_memorisation

    t = to_memorisation(frame, sign)
    t = t[t["std_error"].notna() & np.isfinite(t["estimate"])]
    out = pd.DataFrame(
        {
            "level": "cell",
            "group": t["group"].astype(np.int64).to_numpy(),
            "time": t["time"].astype(np.int64).to_numpy(),
            **{c: t[c].to_numpy(np.float64) for c in _EST_COLS},
        }
    )
    out["event_period"] = _periods(out["time"], grid) - _periods(out["group"], grid)
    return out


def _events(frame: pd.DataFrame, sign: int) -> pd.DataFrame:
    from causalmem.analysis.profile import to_memorisation

    t = frame[frame["event_time"].notna()]
    t = to_memorisation(t, sign)
    t = t[t["std_error"].notna() & np.isfinite(t["estimate"])]
    return pd.DataFrame(
        {
            "level": "event",
            "event_period": t["event_time"].astype(np.int64).to_numpy(),
            **{c: t[c].to_numpy(np.float64) for c in _EST_COLS},
        }
    )


def estimate_all(
    panel: Panel,
    outcome: str,
    sign: int,
    *,
    estimators: Sequence[str] = ESTIMATORS,
    level: float = 0.95,
    bayes_draws: int = 500,
    bayes_tune: int = 500,
    seed: int = 0,
) -> pd.DataFrame:
    """Fit the estimators on one panel; estimates on the memorisation scale, pointwise intervals.

    Parameters
    ----------
    panel
        A balanced panel (the event-study estimators need one), e.g. ``GroundTruth.panel``.
    outcome, sign
        Outcome column and the sign turning its ATT into memorisation.
    estimators
        Keys of :data:`ESTIMATORS`.
    level
        Interval level (pointwise; HDI probability for ``bayes``).
    bayes_draws, bayes_tune
        Posterior draws and tuning steps per chain (2 chains) of :func:`~causalmem.bayes_did`.
    seed
        Seed of the Bayesian sampler.

    Returns
    -------
    pandas.DataFrame
        ``estimator, level`` (``cell`` / ``event``), ``group, time`` (cells), ``event_period``
        (checkpoints since training), ``estimate, std_error, conf_low, conf_high``.
    """
    from causalmem.errors import CausalmemWarning
    from causalmem.estimators.aggte import aggte
    from causalmem.estimators.att_gt import att_gt
    from causalmem.estimators.event_study import event_study
    from causalmem.results.attgt import AttGtResult

    unknown = sorted(set(estimators) - set(ESTIMATORS))
    if unknown:
        raise ValueError(f"unknown estimators {unknown}; use some of {list(ESTIMATORS)}.")
    if not panel.is_balanced:
        raise ValueError(
            "the panel is unbalanced; the event-study estimators need every instance scored at "
            "every checkpoint (score without a plan, or LabConfig(pre_periods=None))."
        )
    alp = 1.0 - level
    grid = np.asarray(panel.steps, dtype=np.int64)
    frame = panel.frame
    sch = panel.schema
    cols = (sch.step, sch.unit, sch.cohort)  # event_study: tname, idname, gname
    parts: list[pd.DataFrame] = []
    cs_never = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CausalmemWarning)
        for key in estimators:
            got: list[pd.DataFrame]
            if key in ("cs_never", "cs_notyet", "bayes"):
                if key != "bayes" or cs_never is None:
                    res = att_gt(
                        panel,
                        yname=outcome,
                        control_group="notyettreated" if key == "cs_notyet" else "nevertreated",
                        bstrap=False,
                        cband=False,
                        alp=alp,
                    )
                    if key != "cs_notyet":
                        cs_never = res
                else:
                    res = cs_never
                if key == "bayes":
                    from causalmem.estimators.bayes import bayes_did

                    b = bayes_did(res, draws=bayes_draws, tune=bayes_tune, seed=seed)
                    path = b.profile(hdi_prob=level)
                    # mu(e) lives on event time in steps; map it to periods on the grid.
                    ev = _events(path.assign(event_time=0), sign)
                    ev["event_period"] = _event_steps_to_periods(
                        path.loc[path["std_error"].notna(), "event_time"].to_numpy(np.float64),
                        grid,
                    )
                    got = [_cells(b.tidy(hdi_prob=level), grid, sign), ev]
                else:
                    dyn = aggte(res, "dynamic", event_time="periods", na_rm=True)
                    got = [_cells(res.tidy(), grid, sign), _events(dyn.tidy(), sign)]
            elif key == "diff":
                dres = event_study(frame, outcome, *cols, estimator="diff", alp=alp)
                assert isinstance(dres, AttGtResult)
                dyn = aggte(dres, "dynamic", event_time="periods", na_rm=True)
                got = [_cells(dres.tidy(), grid, sign), _events(dyn.tidy(), sign)]
            else:  # twfe, sunab
                eres = event_study(frame, outcome, *cols, estimator=key, alp=alp)  # type: ignore[arg-type]
                got = [_events(eres.tidy(), sign)]
            parts += [g.assign(estimator=key) for g in got]
    out = pd.concat(parts, ignore_index=True)
    lead = ["estimator", "level", "group", "time", "event_period"]
    return out[[*lead, *_EST_COLS]]


def _event_steps_to_periods(e_steps: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Event time in steps → periods, on a grid with a constant spacing after its first step."""
    gaps = np.diff(grid)
    if gaps.size == 0 or not np.all(gaps == gaps[-1]):
        raise ValueError(
            "the Bayesian path is in steps; mapping it to periods needs an evenly spaced grid."
        )
    return np.round(e_steps / gaps[-1]).astype(np.int64)


# ----------------------------------------------------------------------------- comparison
def _compare(est: pd.DataFrame, gt: GroundTruth, *, adjusted: bool, replicate: Any) -> pd.DataFrame:
    """Attach the truth (cells: τ(g, c); events: θ(e); placebo: 0) to the estimates."""
    truth = gt.tidy()
    swapped = truth[truth["swapped"]]
    tcol, scol = (
        ("estimate_adjusted", "std_error_adjusted")
        if adjusted
        else (
            "estimate",
            "std_error",
        )
    )
    cells = est[est["level"] == "cell"].merge(
        swapped[["group", "time", tcol, scol]].rename(columns={tcol: "truth", scol: "truth_se"}),
        on=["group", "time"],
        how="inner",
    )
    path = gt.event_path(adjusted=adjusted)[["event_period", "estimate", "std_error"]]
    events = est[est["level"] == "event"].merge(
        path.rename(columns={"estimate": "truth", "std_error": "truth_se"}),
        on="event_period",
        how="inner",
    )
    out = pd.concat([cells, events], ignore_index=True)
    out["period"] = np.where(out["event_period"] >= 0, "post", "pre")
    pre = out["period"] == "pre"
    # Placebo cells are judged against zero (no anticipation), not the trajectory noise.
    out.loc[pre, "truth"] = 0.0
    out.loc[pre, "truth_se"] = 0.0
    out["replicate"] = replicate
    return out


def validation_metrics(
    frame: pd.DataFrame, by: Sequence[str] = ("estimator", "level", "period")
) -> pd.DataFrame:
    """Bias, relative bias, RMSE, coverage, interval width and correlation against the truth.

    Parameters
    ----------
    frame
        Rows with ``estimate, conf_low, conf_high, truth`` (and ``truth_se``, optional) and
        the ``by`` columns.
    by
        Grouping columns.

    Returns
    -------
    pandas.DataFrame
        ``by`` columns, ``n``, ``mean_truth``, ``bias`` (mean of estimate − truth),
        ``rel_bias`` (bias / mean truth; NaN when the mean truth is 0), ``mae``, ``rmse``,
        ``coverage`` (share of intervals containing the truth), ``mean_width``, ``corr``
        (Pearson, estimate vs truth; NaN with fewer than 3 rows or no spread), ``mean_se``
        and ``mean_truth_se``.

    Examples
    --------
    >>> f = pd.DataFrame({"g": ["a"] * 2, "estimate": [1.0, 3.0], "truth": [2.0, 2.0],
    ...                   "conf_low": [0.0, 2.5], "conf_high": [2.5, 4.0]})
    >>> validation_metrics(f, by=["g"])[["bias", "rmse", "coverage"]].iloc[0].tolist()
    [0.0, 1.0, 0.5]
    """
    rows = []
    for key, d in frame.groupby(list(by), sort=False):
        e = d["estimate"].to_numpy(np.float64)
        t = d["truth"].to_numpy(np.float64)
        err = e - t
        mt = float(t.mean())
        cover = (d["conf_low"].to_numpy() <= t) & (t <= d["conf_high"].to_numpy())
        corr = (
            float(np.corrcoef(e, t)[0, 1])
            if len(d) >= 3 and np.std(e) > 0 and np.std(t) > 0
            else float("nan")
        )
        keys = key if isinstance(key, tuple) else (key,)
        rows.append(
            {
                **dict(zip(by, keys, strict=True)),
                "n": len(d),
                "mean_truth": mt,
                "bias": float(err.mean()),
                "rel_bias": float(err.mean() / mt) if mt != 0 else float("nan"),
                "mae": float(np.abs(err).mean()),
                "rmse": float(np.sqrt((err**2).mean())),
                "coverage": float(cover.mean()),
                "mean_width": float((d["conf_high"] - d["conf_low"]).mean()),
                "corr": corr,
                "mean_se": float(d["std_error"].mean()) if "std_error" in d else float("nan"),
                "mean_truth_se": float(d["truth_se"].mean()) if "truth_se" in d else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def _meets(row: Mapping[str, Any]) -> bool:
    return bool(
        np.isfinite(row["rel_bias"])
        and abs(row["rel_bias"]) <= GOAL_BIAS
        and GOAL_COVERAGE[0] <= row["coverage"] <= GOAL_COVERAGE[1]
    )


# ----------------------------------------------------------------------------- the result
@dataclass(frozen=True, eq=False)
class ValidationResult:
    """Estimator-vs-truth comparisons and their metrics over replicates (immutable).

    Attributes
    ----------
    comparisons
        One row per replicate × estimator × cell / event period: estimates, intervals, truth.
    estimates
        The raw :func:`estimate_all` frames with a ``replicate`` column (reusable: pass them
        back to :func:`validate` to compare the same fits with another truth).
    metrics
        :func:`validation_metrics` pooled over replicates by estimator, level and period, with
        ``meets_goal`` (|relative bias| ≤ 10% and coverage in [0.90, 0.99]).
    by_replicate
        The same metrics per replicate.
    recommended
        The first estimator of :data:`PREFERENCE` that meets the goal on post-treatment cells
        (``cs_never``, the paper's, when none does).
    truth
        ``"raw"`` (mean Y^A − Y^B) or ``"adjusted"`` (minus the never-trained shift).
    outcome, level
        Outcome validated and interval level.
    provenance
        Settings, replicate seeds, library versions.
    """

    comparisons: pd.DataFrame = field(repr=False)
    estimates: pd.DataFrame = field(repr=False)
    metrics: pd.DataFrame = field(repr=False)
    by_replicate: pd.DataFrame = field(repr=False)
    recommended: str
    truth: str
    outcome: str
    level: float
    provenance: dict[str, Any] = field(repr=False, default_factory=dict)

    def tidy(self) -> pd.DataFrame:
        """Return the pooled metrics (a new frame): one row per estimator × level × period."""
        return self.metrics.copy()

    def headline(self) -> pd.DataFrame:
        """Post-treatment rows at the cell level (event level for TWFE / Sun–Abraham)."""
        m = self.metrics[self.metrics["period"] == "post"]
        cell = m[m["level"] == "cell"]
        ev = m[(m["level"] == "event") & ~m["estimator"].isin(cell["estimator"])]
        out = pd.concat([cell, ev], ignore_index=True)
        order = {k: i for i, k in enumerate(ESTIMATORS)}
        return out.sort_values("estimator", key=lambda s: s.map(order)).reset_index(drop=True)

    def findings(self) -> list[str]:
        """One sentence per estimator: does it meet the goal, and if not, why (diagnosed)."""
        return _findings(self)

    def chart(self) -> alt.VConcatChart:
        """Estimate vs truth per estimator, and bias / coverage bars (:func:`validation_chart`)."""
        return validation_chart(self.comparisons, self.metrics)


def validate(
    truths: Sequence[GroundTruth],
    *,
    estimators: Sequence[str] = ESTIMATORS,
    truth: str = "raw",
    level: float = 0.95,
    bayes_draws: int = 500,
    bayes_tune: int = 500,
    seed: int = 0,
    replicates: Sequence[Any] | None = None,
    estimates: pd.DataFrame | None = None,
) -> ValidationResult:
    """Fit every estimator on each replicate's run A and compare it with the true τ(g, c).

    Parameters
    ----------
    truths
        Ground truths of independent replicates (:func:`~causalmem.lab.ground_truth`), same
        outcome.
    estimators
        Keys of :data:`ESTIMATORS` (default: all six).
    truth
        ``"raw"``: τ = mean(Y^A − Y^B) (the definition); ``"adjusted"``: minus the shift of the
        never-trained instances between the runs (removes run B's common trajectory shift).
    level
        Pointwise interval level (HDI probability for the Bayesian model).
    bayes_draws, bayes_tune, seed
        Bayesian sampler settings.
    replicates
        Labels of the replicates (default: their data seeds).
    estimates
        Reuse fits from an earlier call (its ``estimates``) instead of refitting.

    Returns
    -------
    ValidationResult
    """
    if truth not in ("raw", "adjusted"):
        raise ValueError(f"truth={truth!r}; use 'raw' or 'adjusted'.")
    if not truths:
        raise ValueError("pass at least one GroundTruth.")
    outcomes = {gt.outcome for gt in truths}
    if len(outcomes) > 1:
        raise ValueError(f"the replicates validate different outcomes {sorted(outcomes)}.")
    labels = (
        list(replicates)
        if replicates is not None
        else [gt.provenance.get("data_seed", i) for i, gt in enumerate(truths)]
    )
    parts, fits = [], []
    for lab, gt in zip(labels, truths, strict=True):
        if estimates is not None:
            est = estimates[estimates["replicate"] == lab].drop(columns="replicate")
            est = est[est["estimator"].isin(estimators)]
            if est.empty:
                raise ValueError(f"estimates has no rows for replicate {lab!r}.")
        else:
            est = estimate_all(
                gt.panel,
                gt.outcome,
                gt.sign,
                estimators=estimators,
                level=level,
                bayes_draws=bayes_draws,
                bayes_tune=bayes_tune,
                seed=seed,
            )
        fits.append(est.assign(replicate=lab))
        parts.append(_compare(est, gt, adjusted=truth == "adjusted", replicate=lab))
    comp = pd.concat(parts, ignore_index=True)
    metrics = validation_metrics(comp)
    metrics["meets_goal"] = [
        _meets(r) if r["period"] == "post" else bool(r["coverage"] >= GOAL_COVERAGE[0])
        for r in metrics.to_dict("records")
    ]
    by_rep = validation_metrics(comp, by=("replicate", "estimator", "level", "period"))
    post_cells = metrics[(metrics["period"] == "post") & (metrics["level"] == "cell")]
    ok = set(post_cells.loc[post_cells["meets_goal"], "estimator"])
    recommended = next((k for k in PREFERENCE if k in ok), "cs_never")
    prov = dict(
        provenance(
            estimators=list(estimators),
            truth=truth,
            level=level,
            replicates=labels,
            bayes_draws=bayes_draws,
            bayes_tune=bayes_tune,
            ground_truth=[
                {
                    k: gt.provenance.get(k)
                    for k in (
                        "data_seed",
                        "model_seed",
                        "first_swap_step",
                        "n_swapped",
                        "run_fingerprint_a",
                        "run_fingerprint_b",
                    )
                }
                for gt in truths
            ],
            goal={"abs_rel_bias_max": GOAL_BIAS, "coverage": list(GOAL_COVERAGE)},
        )
    )
    return ValidationResult(
        comparisons=comp,
        estimates=pd.concat(fits, ignore_index=True),
        metrics=metrics,
        by_replicate=by_rep,
        recommended=recommended,
        truth=truth,
        outcome=truths[0].outcome,
        level=level,
        provenance=prov,
    )


# ----------------------------------------------------------------------------- explanations
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
        "the Bayesian model shrinks every cell towards a pooled event-time path plus a constant "
        "cohort effect; cohorts whose decay has another shape (the LR schedule changes both the "
        "peak and the decay) are pulled towards the pooled shape, and the HDIs, narrower than the "
        "CS intervals, do not absorb that shrinkage bias"
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


def _findings(res: ValidationResult) -> list[str]:
    out = []
    head = res.headline()
    for r in head.to_dict("records"):
        k = r["estimator"]
        lvl = "cells" if r["level"] == "cell" else "event-time path"
        txt = (
            f"{ESTIMATOR_LABELS[k]} ({lvl}): bias {r['bias']:+.3f} "
            f"({100 * r['rel_bias']:+.1f}% of the mean truth {r['mean_truth']:.3f}), RMSE "
            f"{r['rmse']:.3f}, coverage {r['coverage']:.2f} over {r['n']} comparisons"
        )
        if r["meets_goal"]:
            txt += " — meets the goal."
        else:
            fails = []
            if not (np.isfinite(r["rel_bias"]) and abs(r["rel_bias"]) <= GOAL_BIAS):
                fails.append("bias above 10%")
            if r["coverage"] < GOAL_COVERAGE[0]:
                fails.append("under-coverage")
            if r["coverage"] > GOAL_COVERAGE[1]:
                fails.append("over-coverage (intervals too wide)")
            txt += f" — fails ({', '.join(fails)}): {_WHY[k]}."
        c = res.comparisons
        c = c[(c["estimator"] == k) & (c["level"] == r["level"]) & (c["period"] == "post")]
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
        rec = head[head["estimator"] == res.recommended]
        if k != res.recommended and len(rec) and r["level"] == rec["level"].iloc[0]:
            ratio = r["rmse"] / float(rec["rmse"].iloc[0])
            wid = r["mean_width"] / float(rec["mean_width"].iloc[0])
            if ratio > 1.2 or wid > 1.2:
                txt += (
                    f" RMSE {ratio:.2f}× and interval width {wid:.2f}× those of the recommended "
                    "estimator."
                )
        if k == res.recommended:
            txt += " Recommended."
        out.append(txt)
    pre = res.metrics[(res.metrics["period"] == "pre")]
    for r in pre.to_dict("records"):
        if r["coverage"] < GOAL_COVERAGE[0]:
            out.append(
                f"{ESTIMATOR_LABELS[r['estimator']]} ({r['level']}): placebo (pre-treatment) "
                f"intervals contain 0 in only {r['coverage']:.0%} of {r['n']} cases (mean "
                f"{r['bias']:+.3f}): a violation of parallel trends or no anticipation as seen "
                "by this estimator."
            )
    return out


# ----------------------------------------------------------------------------- charts & html
def validation_chart(comparisons: pd.DataFrame, metrics: pd.DataFrame) -> alt.VConcatChart:
    """Estimate vs truth per estimator (post-treatment, y = x line) over bias/coverage bars.

    Parameters
    ----------
    comparisons, metrics
        :attr:`ValidationResult.comparisons` and :attr:`ValidationResult.metrics`.

    Returns
    -------
    altair.VConcatChart
    """
    import altair as alt

    c = comparisons[comparisons["period"] == "post"].copy()
    has_cells = set(c.loc[c["level"] == "cell", "estimator"])
    c = c[(c["level"] == "cell") | ~c["estimator"].isin(has_cells)]
    c["label"] = c["estimator"].map(ESTIMATOR_LABELS) + np.where(
        c["level"] == "event", " (event path)", ""
    )
    c["replicate"] = c["replicate"].astype(str)
    pts = (
        alt.Chart()
        .mark_circle(size=28, opacity=0.7)
        .encode(
            x=alt.X("truth:Q", title="true τ (counterfactual retraining)"),
            y=alt.Y("estimate:Q", title="estimate"),
            color=alt.Color("replicate:N", title="replicate"),
            tooltip=["label", "group", "time", "event_period", "estimate", "truth"],
        )
    )
    bars = (
        alt.Chart()
        .mark_rule(opacity=0.35)
        .encode(x="truth:Q", y="conf_low:Q", y2="conf_high:Q", color="replicate:N")
    )
    # y = x, drawn through each panel's own truths
    line = (
        alt.Chart()
        .mark_line(color="black", strokeDash=[4, 3])
        .encode(x="truth:Q", y=alt.Y("truth:Q"))
    )
    scatter = (
        alt.layer(bars, pts, line, data=c)
        .properties(width=170, height=170)
        .facet(facet=alt.Facet("label:N", title=None), columns=3)
        .resolve_scale(x="shared", y="shared")
    )
    m = metrics[metrics["period"] == "post"].copy()
    m["label"] = m["estimator"].map(ESTIMATOR_LABELS) + np.where(
        m["level"] == "event", " (event)", " (cells)"
    )
    m["rel_bias_pct"] = 100 * m["rel_bias"]
    goal_colours = alt.Scale(domain=[True, False], range=["#4c9a2a", "#c44e52"])
    cov = (
        alt.Chart(m)
        .mark_bar()
        .encode(
            y=alt.Y("label:N", title=None, sort=None),
            x=alt.X("coverage:Q", title="coverage of the truth", scale=alt.Scale(domain=[0, 1])),
            color=alt.Color("meets_goal:N", title="meets goal", scale=goal_colours),
        )
    )
    band = (
        alt.Chart(pd.DataFrame({"lo": [GOAL_COVERAGE[0]], "hi": [GOAL_COVERAGE[1]]}))
        .mark_rect(opacity=0.15, color="green")
        .encode(x="lo:Q", x2="hi:Q")
    )
    bias = (
        alt.Chart(m)
        .mark_bar()
        .encode(
            y=alt.Y("label:N", title=None, sort=None),
            x=alt.X("rel_bias_pct:Q", title="relative bias (% of mean truth)"),
            color=alt.Color("meets_goal:N", title="meets goal", scale=goal_colours),
        )
    )
    bband = (
        alt.Chart(pd.DataFrame({"lo": [-100 * GOAL_BIAS], "hi": [100 * GOAL_BIAS]}))
        .mark_rect(opacity=0.15, color="green")
        .encode(x="lo:Q", x2="hi:Q")
    )
    bottom = alt.hconcat(
        alt.layer(band, cov).properties(width=260, height=220),
        alt.layer(bband, bias).properties(width=260, height=220),
    )
    return (
        alt.vconcat(scatter, bottom)
        .resolve_scale(color="independent")
        .properties(title="Estimators vs the true memorisation profile (counterfactual retraining)")
    )


_TRUTH_HTML = {
    "raw": "mean(Y<sup>A</sup> − Y<sup>B</sup>)",
    "adjusted": "mean(Y<sup>A</sup> − Y<sup>B</sup>) minus the never-trained shift",
}


def metrics_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Return the :data:`METRIC_COLUMNS` of a metrics frame with estimator labels (a new frame).

    ``frame`` is :meth:`ValidationResult.tidy`, :meth:`ValidationResult.headline` or a subset
    of their rows; the index is kept and ``estimator`` keys become :data:`ESTIMATOR_LABELS`.
    """
    f = frame[list(METRIC_COLUMNS)].copy()
    f["estimator"] = f["estimator"].map(ESTIMATOR_LABELS)
    return f


def _fmt_table(frame: pd.DataFrame) -> str:
    return metrics_table(frame).to_html(
        index=False, float_format=lambda v: f"{v:.3f}", na_rep="–", border=0
    )


def validation_section(
    result: ValidationResult, *, title: str = "Validation against counterfactual retraining"
) -> tuple[str, str]:
    """HTML section for the report: findings, the metrics table and the chart (inline SVG).

    Parameters
    ----------
    result
        Output of :func:`validate`.
    title
        Section title.

    Returns
    -------
    (str, str)
        The title and an HTML fragment (no ``<html>`` wrapper).
    """
    import vl_convert as vlc

    svg = vlc.vegalite_to_svg(result.chart().to_json())
    items = "".join(f"<li>{html.escape(s)}</li>" for s in result.findings())
    p = result.provenance
    intro = (
        f"<p>Outcome <code>{html.escape(result.outcome)}</code>; truth = "
        f"{_TRUTH_HTML[result.truth]}"
        f" over each cohort's instances; {len(p.get('replicates', []))} replicates (paired "
        f"runs); pointwise {result.level:.0%} intervals. Goal: |relative bias| ≤ "
        f"{GOAL_BIAS:.0%} and coverage in [{GOAL_COVERAGE[0]:.2f}, {GOAL_COVERAGE[1]:.2f}]. "
        f"Recommended estimator: <b>{html.escape(ESTIMATOR_LABELS[result.recommended])}</b>.</p>"
    )
    body = (
        f"{intro}<ul>{items}</ul>"
        f"<div class='table'>{_fmt_table(result.metrics)}</div>"
        f"<div class='figure'>{svg}</div>"
    )
    return title, body
