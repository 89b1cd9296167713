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

Modules: ``estimates`` (:func:`estimate_all`), ``metrics`` (comparison with the truth,
:func:`validation_metrics`, :func:`metrics_table`), ``result`` (:class:`EstimatorValidation`,
:func:`validate_estimators`), ``explain`` (the findings), ``chart`` (:func:`validation_chart`),
``section`` (:func:`validation_section`).
"""

from __future__ import annotations

from causalmem.workflows.estimator_validation.chart import validation_chart
from causalmem.workflows.estimator_validation.estimates import _EST_COLS as _EST_COLS
from causalmem.workflows.estimator_validation.estimates import (
    ESTIMATOR_LABELS,
    ESTIMATORS,
    estimate_all,
)
from causalmem.workflows.estimator_validation.explain import _WHY as _WHY
from causalmem.workflows.estimator_validation.explain import _findings as _findings
from causalmem.workflows.estimator_validation.metrics import GOAL_BIAS as GOAL_BIAS
from causalmem.workflows.estimator_validation.metrics import GOAL_COVERAGE as GOAL_COVERAGE
from causalmem.workflows.estimator_validation.metrics import (
    METRIC_COLUMNS,
    metrics_table,
    validation_metrics,
)
from causalmem.workflows.estimator_validation.metrics import PREFERENCE as PREFERENCE
from causalmem.workflows.estimator_validation.metrics import _compare as _compare
from causalmem.workflows.estimator_validation.metrics import _meets as _meets
from causalmem.workflows.estimator_validation.result import EstimatorValidation, validate_estimators
from causalmem.workflows.estimator_validation.section import _TRUTH_HTML as _TRUTH_HTML
from causalmem.workflows.estimator_validation.section import validation_section

__all__ = [
    "ESTIMATORS",
    "ESTIMATOR_LABELS",
    "EstimatorValidation",
    "METRIC_COLUMNS",
    "estimate_all",
    "metrics_table",
    "validate_estimators",
    "validation_chart",
    "validation_metrics",
    "validation_section",
]
