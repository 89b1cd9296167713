"""The immutable result of :func:`causalmem.event_study`, whatever the estimator.

Like R ``did2s::event_study``, every estimator gives the same tidy frame: one row per relative
period ``event_time`` (counted in periods on the observed grid) with ``term, estimate, std_error,
statistic, p_value, conf_low, conf_high, event_time, se_method, band, crit_val, estimator``.
The estimator's own fit stays reachable: ``path`` (the event-time estimates: a
:class:`~causalmem.results.twfe.TwfeResult` or a dynamic
:class:`~causalmem.results.aggte.AggteResult`) and ``att_gt`` (the group-time ATTs behind the
path, for the estimators built on :func:`~causalmem.att_gt`; ``None`` for TWFE).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from causalmem._types import Float64Array
from causalmem.results.aggte import AggteResult
from causalmem.results.attgt import AttGtResult
from causalmem.results.base import RenderMixin, significance_mark
from causalmem.results.twfe import TwfeResult, VcovSpec

__all__ = ["EVENT_STUDY_COLUMNS", "EventStudyResult", "EventStudySpec"]

#: Columns of :meth:`EventStudyResult.tidy`, identical for every estimator.
EVENT_STUDY_COLUMNS = (
    "term",
    "estimate",
    "std_error",
    "statistic",
    "p_value",
    "conf_low",
    "conf_high",
    "event_time",
    "se_method",
    "band",
    "crit_val",
    "estimator",
)

_TITLES = {
    "twfe": "Dynamic TWFE event study",
    "sunab": "Sun & Abraham (2021) interaction-weighted event study",
    "diff": "Difference estimator (Estimator 1), averaged by event time",
    "simple_diff": "Reference baseline (two-way demeaned difference), averaged by event time",
}


@dataclass(frozen=True)
class EventStudySpec:
    """The arguments of the :func:`~causalmem.event_study` call except the data (frozen).

    ``seed`` is the seed as given (``"caller Generator"`` for a numpy Generator).
    """

    estimator: str
    yname: str
    tname: str
    idname: str
    gname: str
    ref: int
    window: tuple[int, int] | None
    vcov: VcovSpec
    alp: float
    bstrap: bool
    biters: int
    seed: int | str | None


@dataclass(frozen=True, eq=False)
class EventStudyResult(RenderMixin):
    """Event-study estimates by relative period, one type for every estimator; immutable.

    Attributes
    ----------
    spec
        The call (:class:`EventStudySpec`); ``spec.estimator`` names the estimator.
    path
        The estimator's event-time fit: a :class:`TwfeResult` (``"twfe"``: coefficients,
        covariance, :meth:`TwfeResult.with_vcov` is not available) or a dynamic
        :class:`AggteResult` (``"sunab"``, ``"diff"``, ``"simple_diff"``; its ``overall`` row
        is reported by :meth:`glance`).
    att_gt
        The group-time ATTs the path averages (``None`` for ``"twfe"``).
    provenance
        Versions, time and seed.
    """

    spec: EventStudySpec
    path: TwfeResult | AggteResult
    att_gt: AttGtResult | None = field(default=None, repr=False)
    provenance: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def estimator(self) -> str:
        """``"twfe"``, ``"sunab"``, ``"diff"`` or ``"simple_diff"``."""
        return self.spec.estimator

    @cached_property
    def _tidy(self) -> pd.DataFrame:
        t = self.path.tidy()
        t = t[t["event_time"].notna()].reset_index(drop=True)
        t["estimator"] = self.spec.estimator
        return t.loc[:, list(EVENT_STUDY_COLUMNS)]

    def tidy(self) -> pd.DataFrame:
        """One row per relative period with :data:`EVENT_STUDY_COLUMNS` (a new frame)."""
        return self._tidy.copy()

    @property
    def event_time(self) -> Float64Array:
        """Relative periods of the rows of :meth:`tidy`."""
        return self._tidy["event_time"].to_numpy(np.float64)

    @property
    def estimate(self) -> Float64Array:
        """Estimates by relative period."""
        return self._tidy["estimate"].to_numpy(np.float64)

    @property
    def std_error(self) -> Float64Array:
        """Standard errors by relative period."""
        return self._tidy["std_error"].to_numpy(np.float64)

    def _overall(self) -> dict[str, float]:
        if isinstance(self.path, AggteResult):
            row = self.path.tidy().iloc[-1]
            keys = ("estimate", "std_error", "conf_low", "conf_high")
            return {f"overall_{k}": float(row[k]) for k in keys}
        keys = ("estimate", "std_error", "conf_low", "conf_high")
        return {f"overall_{k}": float("nan") for k in keys}

    def glance(self) -> pd.DataFrame:
        """One row: estimator, sizes, inference and the overall post-treatment average.

        ``overall_*`` is the aggregation's overall ATT (average over post-treatment event
        times, pointwise interval) for the estimators built on ``att_gt``; NaN for TWFE.
        """
        t = self._tidy
        if isinstance(self.path, TwfeResult):
            n = {"n_obs": self.path.n_obs, "n_units": np.nan}
        else:
            n_units = self.att_gt.n_units if self.att_gt is not None else np.nan
            n = {"n_obs": np.nan, "n_units": n_units}
        return pd.DataFrame(
            [
                {
                    "estimator": self.spec.estimator,
                    "yname": self.spec.yname,
                    **n,
                    "n_event_times": len(t),
                    "ref": self.spec.ref,
                    "se_method": t["se_method"].iloc[0] if len(t) else "",
                    "band": t["band"].iloc[0] if len(t) else "",
                    "alp": self.spec.alp,
                    **self._overall(),
                }
            ]
        )

    def summary(self) -> str:
        """Text summary: the estimates by relative period and the inference used."""
        t = self._tidy
        lvl = int(round(100 * (1 - self.spec.alp)))
        band = t["band"].iloc[0] if len(t) else "pointwise"
        lines = [
            f"{_TITLES[self.spec.estimator]} of {self.spec.yname}",
            "",
            f"{'event_time':>12} {'Estimate':>10} {'Std. Error':>11}   [{lvl}% {band} interval]",
        ]
        marks = significance_mark(t["conf_low"], t["conf_high"])
        for row, m in zip(t.itertuples(index=False), marks, strict=True):
            lines.append(
                f"{row.event_time:>12g} {row.estimate:>10.4f} {row.std_error:>11.4f}"
                f"   [{row.conf_low:>8.4f}, {row.conf_high:>8.4f}] {m}"
            )
        se = t["se_method"].iloc[0] if len(t) else ""
        lines += [
            "---",
            "Signif. codes: `*' interval does not cover 0",
            f"Relative time in periods of the observed grid; inference: {se} SEs, {band} band",
        ]
        return "\n".join(lines)

    def _table(self) -> pd.DataFrame:
        return self.tidy()[["term", "estimate", "std_error", "conf_low", "conf_high"]]

    def _caption(self) -> str:
        return f"{_TITLES[self.spec.estimator]} of {self.spec.yname}"

    def plot(self, **options: Any) -> Any:
        """Event-study chart (Altair), as ``fixest``'s ``iplot()``: θ(e) by relative period.

        The estimates with their interval band, a zero line and the treatment time
        (:func:`causalmem.presentation.charts.event_path`); the omitted reference period, if
        any, is not drawn.

        Parameters
        ----------
        **options
            Passed to :func:`~causalmem.presentation.charts.event_path` (titles, ...).

        Returns
        -------
        altair.LayerChart
        """
        from causalmem.results._charts import event_path

        options.setdefault("title", self._caption())
        options.setdefault("value_title", f"estimate ({self.spec.yname})")
        options.setdefault("x_title", "relative period e")
        return event_path(self.tidy(), **options)

    def __repr__(self) -> str:
        return (
            f"EventStudyResult(estimator={self.spec.estimator!r}, yname={self.spec.yname!r}, "
            f"n_event_times={len(self._tidy)})"
        )
