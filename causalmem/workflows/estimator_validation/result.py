"""The estimator validation result and :func:`validate_estimators` (estimators vs the truth)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from causalmem.results.base import provenance
from causalmem.workflows.estimator_validation.estimates import (
    ESTIMATOR_LABELS,
    ESTIMATORS,
    estimate_all,
)
from causalmem.workflows.estimator_validation.metrics import (
    GOAL_BIAS,
    GOAL_COVERAGE,
    _compare,
    _meets_goal,
    _recommend,
    metrics_table,
    validation_metrics,
)
from lmecon.result import ResultMixin, frozen_mapping

if TYPE_CHECKING:
    import altair as alt

    from causalmem.lab.ground_truth import GroundTruth

__all__ = ["EstimatorValidation", "validate_estimators"]

_GT_KEYS = (
    "data_seed",
    "model_seed",
    "first_swap_step",
    "n_swapped",
    "run_fingerprint_a",
    "run_fingerprint_b",
)


@dataclass(frozen=True, eq=False)
class EstimatorValidation(ResultMixin):
    """Estimator-vs-truth comparisons and their metrics over replicates (immutable).

    Attributes
    ----------
    comparisons
        One row per replicate × estimator × cell / event period: estimates, intervals, truth.
    estimates
        The raw :func:`estimate_all` frames with a ``replicate`` column (reusable: pass them
        back to :func:`validate_estimators` to compare the same fits with another truth).
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
    spec
        The call's settings (a read-only mapping): estimators, truth, level, Bayesian sampler
        settings, replicate labels, whether earlier estimates were reused.
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
    spec: Mapping[str, Any] = field(repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "spec", frozen_mapping(dict(self.spec)))

    def tidy(self) -> pd.DataFrame:
        """Return the pooled metrics (a new frame): one row per estimator × level × period."""
        return self.metrics.copy()

    def glance(self) -> pd.DataFrame:
        """One row: outcome, truth, level, replicates, comparisons and the recommendation."""
        head = self.headline()
        rec = head[head["estimator"] == self.recommended]
        return pd.DataFrame(
            [
                {
                    "outcome": self.outcome,
                    "truth": self.truth,
                    "level": self.level,
                    "n_replicates": int(self.comparisons["replicate"].nunique()),
                    "n_estimators": int(self.metrics["estimator"].nunique()),
                    "n_comparisons": len(self.comparisons),
                    "recommended": self.recommended,
                    "recommended_meets_goal": bool(rec["meets_goal"].any()),
                }
            ]
        )

    def summary(self) -> str:
        """Return the setting, the recommendation and one line per finding."""
        g = self.glance().iloc[0]
        lines = [
            f"Validation of {self.outcome} against the {self.truth} truth: "
            f"{g['n_replicates']} replicates, pointwise {self.level:.0%} intervals; goal "
            f"|relative bias| <= {GOAL_BIAS:.0%}, coverage in [{GOAL_COVERAGE[0]:.2f}, "
            f"{GOAL_COVERAGE[1]:.2f}].",
            f"Recommended estimator: {ESTIMATOR_LABELS[self.recommended]}.",
            *[f"- {s}" for s in self.findings()],
        ]
        return "\n".join(lines)

    def _table(self) -> pd.DataFrame:
        return metrics_table(self.headline())

    def _caption(self) -> str | None:
        return f"Estimators vs the {self.truth} truth ({self.outcome}), post-treatment"

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
        from causalmem.workflows.estimator_validation.explain import _findings

        return _findings(self)

    def chart(self) -> alt.VConcatChart:
        """Estimate vs truth per estimator, and bias / coverage bars (:func:`validation_chart`)."""
        from causalmem.workflows.estimator_validation.chart import validation_chart

        return validation_chart(self.comparisons, self.metrics)


def _check_truths(truths: Sequence[GroundTruth], truth: str) -> None:
    if truth not in ("raw", "adjusted"):
        raise ValueError(f"truth={truth!r}; use 'raw' or 'adjusted'.")
    if not truths:
        raise ValueError("pass at least one GroundTruth.")
    outcomes = {gt.outcome for gt in truths}
    if len(outcomes) > 1:
        raise ValueError(f"the replicates validate different outcomes {sorted(outcomes)}.")


def _reused(estimates: pd.DataFrame, lab: Any, estimators: Sequence[str]) -> pd.DataFrame:
    """Replicate ``lab``'s rows of earlier estimates, for the requested estimators."""
    est = estimates[estimates["replicate"] == lab].drop(columns="replicate")
    est = est[est["estimator"].isin(estimators)]
    if est.empty:
        raise ValueError(f"estimates has no rows for replicate {lab!r}.")
    return est


def _provenance(
    truths: Sequence[GroundTruth], labels: list[Any], spec: Mapping[str, Any]
) -> dict[str, Any]:
    return dict(
        provenance(
            estimators=list(spec["estimators"]),
            truth=spec["truth"],
            level=spec["level"],
            replicates=labels,
            bayes_draws=spec["bayes_draws"],
            bayes_tune=spec["bayes_tune"],
            ground_truth=[{k: gt.provenance.get(k) for k in _GT_KEYS} for gt in truths],
            goal={"abs_rel_bias_max": GOAL_BIAS, "coverage": list(GOAL_COVERAGE)},
        )
    )


def validate_estimators(
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
) -> EstimatorValidation:
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
    EstimatorValidation
    """
    _check_truths(truths, truth)
    labels = (
        list(replicates)
        if replicates is not None
        else [gt.provenance.get("data_seed", i) for i, gt in enumerate(truths)]
    )
    parts, fits = [], []
    for lab, gt in zip(labels, truths, strict=True):
        if estimates is not None:
            est = _reused(estimates, lab, estimators)
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
    metrics["meets_goal"] = _meets_goal(metrics)
    spec = {
        "estimators": tuple(estimators),
        "truth": truth,
        "level": level,
        "bayes_draws": bayes_draws,
        "bayes_tune": bayes_tune,
        "seed": seed,
        "replicates": tuple(labels),
        "reused_estimates": estimates is not None,
    }
    return EstimatorValidation(
        comparisons=comp,
        estimates=pd.concat(fits, ignore_index=True),
        metrics=metrics,
        by_replicate=validation_metrics(comp, by=("replicate", "estimator", "level", "period")),
        recommended=_recommend(metrics),
        truth=truth,
        outcome=truths[0].outcome,
        level=level,
        provenance=_provenance(truths, labels, spec),
        spec=spec,
    )
