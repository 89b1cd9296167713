"""Compare estimates with the truth and score them: bias, RMSE, coverage, the validation goal."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from causalmem.workflows.estimator_validation.estimates import ESTIMATOR_LABELS

if TYPE_CHECKING:
    from causalmem.lab.ground_truth import GroundTruth

__all__ = [
    "GOAL_BIAS",
    "GOAL_COVERAGE",
    "METRIC_COLUMNS",
    "PREFERENCE",
    "metrics_table",
    "validation_metrics",
]

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


def _compare(est: pd.DataFrame, gt: GroundTruth, *, adjusted: bool, replicate: Any) -> pd.DataFrame:
    """Attach the truth (cells: τ(g, c); events: θ(e); placebo: 0) to the estimates."""
    truth = gt.tidy()
    swapped = truth[truth["swapped"]]
    tcol, scol = (
        ("estimate_adjusted", "std_error_adjusted") if adjusted else ("estimate", "std_error")
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


def _metric_row(d: pd.DataFrame) -> dict[str, Any]:
    """Compute the metrics of one group of comparison rows."""
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
    return {
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
        keys = key if isinstance(key, tuple) else (key,)
        rows.append({**dict(zip(by, keys, strict=True)), **_metric_row(d)})
    return pd.DataFrame(rows)


def _meets(row: Mapping[Hashable, Any]) -> bool:
    return bool(
        np.isfinite(row["rel_bias"])
        and abs(row["rel_bias"]) <= GOAL_BIAS
        and GOAL_COVERAGE[0] <= row["coverage"] <= GOAL_COVERAGE[1]
    )


def _meets_goal(metrics: pd.DataFrame) -> list[bool]:
    """Post-treatment rows: the goal; placebo rows: coverage of 0 at least the goal's floor."""
    return [
        _meets(r) if r["period"] == "post" else bool(r["coverage"] >= GOAL_COVERAGE[0])
        for r in metrics.to_dict("records")
    ]


def _recommend(metrics: pd.DataFrame) -> str:
    """Pick the first estimator of :data:`PREFERENCE` meeting the goal on post-treatment cells."""
    post_cells = metrics[(metrics["period"] == "post") & (metrics["level"] == "cell")]
    ok = set(post_cells.loc[post_cells["meets_goal"], "estimator"])
    return next((k for k in PREFERENCE if k in ok), "cs_never")


def metrics_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Return the :data:`METRIC_COLUMNS` of a metrics frame with estimator labels (a new frame).

    ``frame`` is :meth:`EstimatorValidation.tidy`, :meth:`EstimatorValidation.headline` or a subset
    of their rows; the index is kept and ``estimator`` keys become :data:`ESTIMATOR_LABELS`.
    """
    f = frame[list(METRIC_COLUMNS)].copy()
    f["estimator"] = f["estimator"].map(ESTIMATOR_LABELS)
    return f
