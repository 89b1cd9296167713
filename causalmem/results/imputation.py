"""The immutable result of :func:`causalmem.estimators.imputation.did_imputation` / ``did2s``."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import chi2

from causalmem._numerics.inference import pointwise_crit
from causalmem._types import Float64Array
from causalmem.results.base import RenderMixin, inference_columns, significance_mark

__all__ = ["ImputationResult", "ImputationSpec"]

_TITLES = {
    "imputation": "Imputation estimator (Borusyak, Jaravel & Spiess 2024)",
    "two_stage": "Two-stage DiD (Gardner 2022)",
}


@dataclass(frozen=True)
class ImputationSpec:
    """The call that made an :class:`ImputationResult` (every argument except the data)."""

    estimator: str
    yname: str
    tname: str
    idname: str
    gname: str
    fe: str
    cluster: str
    anticipation: int
    event_time: str
    horizon: bool | tuple[int, ...] | None
    pretrends: bool | tuple[int, ...] | None
    leave_out: bool
    alp: float

    def to_dict(self) -> dict[str, Any]:
        """Plain mapping of the recorded arguments."""
        return dataclasses.asdict(self)


@dataclass(frozen=True, eq=False)
class ImputationResult(RenderMixin):
    """Static and event-study effects of the imputation or two-stage estimator; immutable.

    Attributes
    ----------
    spec
        The call (:class:`ImputationSpec`); ``spec.estimator`` is ``"imputation"`` or
        ``"two_stage"``.
    term, kind, event_time, estimate, std_error, n_obs_term
        One entry per reported parameter: ``kind`` is ``"overall"`` (static average over all
        treated observations), ``"post"`` (event time ``e >= 0``) or ``"pre"`` (leads: BJS's
        pre-trend regression for the imputation estimator, did2s's pre-period coefficients
        for the two-stage one).
    vcov
        Covariance of ``estimate`` (cluster-robust; blocks not estimated jointly are NaN).
    pretest
        ``(W, df, p)``: Wald test that all leads are zero (NaN without leads).
    """

    spec: ImputationSpec
    term: tuple[str, ...]
    kind: tuple[str, ...]
    event_time: Float64Array
    estimate: Float64Array
    std_error: Float64Array
    n_obs_term: Float64Array
    vcov: Float64Array = field(repr=False)
    pretest: tuple[float, int, float]
    n_obs: int
    n_units: int
    n_clusters: int
    n_treated_obs: int
    n_dropped: int = 0
    provenance: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for name in ("event_time", "estimate", "std_error", "n_obs_term", "vcov"):
            getattr(self, name).setflags(write=False)

    @property
    def estimator(self) -> str:
        """``"imputation"`` or ``"two_stage"``."""
        return self.spec.estimator

    @cached_property
    def _tidy(self) -> pd.DataFrame:
        crit = pointwise_crit(self.spec.alp)
        out = pd.DataFrame(
            {"term": list(self.term), "estimate": self.estimate, "std_error": self.std_error}
        )
        for k, v in inference_columns(self.estimate, self.std_error, crit).items():
            out[k] = v
        out["event_time"] = self.event_time
        out["kind"] = list(self.kind)
        out["n_obs"] = self.n_obs_term
        out["se_method"] = "analytic"
        out["band"] = "pointwise"
        out["crit_val"] = crit
        out["estimator"] = self.spec.estimator
        return out

    def tidy(self) -> pd.DataFrame:
        """One row per parameter (a new frame).

        Columns: ``term, estimate, std_error, statistic, p_value, conf_low, conf_high,
        event_time, kind, n_obs, se_method, band, crit_val, estimator``. Terms are
        ``"overall"`` and ``"event_time=<e>"`` (as :func:`causalmem.etable` aligns them).
        """
        return self._tidy.copy()

    def event_study(self) -> pd.DataFrame:
        """Return the event-time rows of :meth:`tidy` (leads, horizons) by event time."""
        t = self.tidy()
        return t[t["kind"] != "overall"].sort_values("event_time").reset_index(drop=True)

    def glance(self) -> pd.DataFrame:
        """One row: estimator, sizes, the overall effect and the pre-trend test."""
        w, df, p = self.pretest
        t = self._tidy
        ov = t[t["kind"] == "overall"]
        return pd.DataFrame(
            [
                {
                    "estimator": self.spec.estimator,
                    "n_obs": self.n_obs,
                    "n_units": self.n_units,
                    "n_clusters": self.n_clusters,
                    "n_treated_obs": self.n_treated_obs,
                    "n_dropped": self.n_dropped,
                    "overall_estimate": float(ov["estimate"].iloc[0]) if len(ov) else np.nan,
                    "overall_std_error": float(ov["std_error"].iloc[0]) if len(ov) else np.nan,
                    "pretest_wald": w,
                    "pretest_df": df,
                    "pretest_p_value": p,
                    "se_method": "analytic",
                    "alp": self.spec.alp,
                }
            ]
        )

    def summary(self) -> str:
        """Text summary in the style of R ``didimputation`` / ``did2s``."""
        t = self.tidy()
        lvl = int(round(100 * (1 - self.spec.alp)))
        lines = [
            _TITLES[self.spec.estimator],
            "",
            f"{'Term':>16} {'Estimate':>10} {'Std. Error':>11}   [{lvl}% Conf. Int.]",
        ]
        mark = significance_mark(t["conf_low"], t["conf_high"])
        for row, m in zip(t.itertuples(index=False), mark, strict=True):
            lines.append(
                f"{row.term:>16} {row.estimate:>10.4f} {row.std_error:>11.4f}"
                f"   [{row.conf_low:>8.4f}, {row.conf_high:>8.4f}] {m}"
            )
        w, df, p = self.pretest
        se_note = (
            "BJS conservative variance"
            + (" (leave-out cell averages)" if self.spec.leave_out else "")
            if self.spec.estimator == "imputation"
            else "GMM-corrected two-stage variance"
        )
        lines += [
            "---",
            f"Observations: {self.n_obs} ({self.n_treated_obs} treated), units: {self.n_units}, "
            f"clusters ({self.spec.cluster}): {self.n_clusters}",
            f"Standard errors: {se_note}, clustered by {self.spec.cluster!r}",
            f"Pre-trend Wald test (leads = 0): W = {w:.4g}, df = {df}, p = {p:.4g}"
            if np.isfinite(p)
            else "Pre-trend test: no leads estimated",
        ]
        return "\n".join(lines)

    def _table(self) -> pd.DataFrame:
        return self.tidy()[["term", "estimate", "std_error", "conf_low", "conf_high"]]

    def _caption(self) -> str:
        return f"{_TITLES[self.spec.estimator]}: {self.spec.yname}"

    def plot(self, **options: Any) -> Any:
        """Event-study chart (Altair): leads and horizons with pointwise intervals.

        Parameters
        ----------
        **options
            Passed to :func:`causalmem.results._charts.event_path` (``title``, ...).
        """
        from causalmem.results._charts import event_path

        options.setdefault("title", _TITLES[self.spec.estimator])
        options.setdefault("value_title", f"effect on {self.spec.yname}")
        options.setdefault(
            "x_title",
            "checkpoints since treatment"
            if self.spec.event_time == "periods"
            else "steps since treatment (t − g)",
        )
        return event_path(self.event_study(), **options)

    def __repr__(self) -> str:
        return (
            f"ImputationResult(estimator={self.spec.estimator!r}, yname={self.spec.yname!r}, "
            f"terms={len(self.term)}, obs={self.n_obs}, clusters={self.n_clusters})"
        )


def wald(estimate: Float64Array, vcov: Float64Array) -> tuple[float, int, float]:
    """``(W, df, p)`` for ``estimate = 0`` with covariance ``vcov`` (NaN when not testable)."""
    k = estimate.size
    if k == 0 or not np.isfinite(vcov).all() or not np.isfinite(estimate).all():
        return float("nan"), int(k), float("nan")
    try:
        w = float(estimate @ np.linalg.solve(vcov, estimate))
    except np.linalg.LinAlgError:
        return float("nan"), int(k), float("nan")
    return w, int(k), float(chi2.sf(w, k))
