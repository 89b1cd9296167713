"""The immutable result of :func:`causalmem.aggte`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from causalmem._types import Float64Array
from causalmem.results.base import RenderMixin, inference_columns, significance_mark

_LABEL_COLUMN = {"dynamic": "event_time", "group": "group", "calendar": "time", "simple": None}
_TITLES = {
    "simple": "Overall ATT (simple weighted average of post-treatment cells)",
    "dynamic": "Event-study aggregation (persistent memorisation by event time)",
    "group": "Group (cohort) aggregation",
    "calendar": "Calendar-time aggregation",
}


@dataclass(frozen=True, slots=True)
class AggteSpec:
    """Arguments of the :func:`~causalmem.aggte` call."""

    type: str
    min_e: float
    max_e: float
    balance_e: float | None
    bstrap: bool
    cband: bool
    alp: float
    event_time: str = "steps"


@dataclass(frozen=True, eq=False)
class AggteResult(RenderMixin):
    """Aggregated ATT with its overall summary; immutable.

    ``labels`` / ``estimate`` / ``std_error`` are per event time, group or period (empty for
    ``simple``); ``overall_*`` is the overall parameter (pointwise interval, as in R ``did``).
    Honours :class:`lmecon.result.Result` (``spec`` is the :class:`AggteSpec`).
    """

    spec: AggteSpec
    yname: str
    labels: Float64Array
    estimate: Float64Array
    std_error: Float64Array
    crit_val: float
    band: str
    se_method: str
    overall_estimate: float
    overall_std_error: float
    overall_crit_val: float
    provenance: Mapping[str, Any] = field(default_factory=dict, repr=False)
    _engine: Any = field(default=None, repr=False)
    _weights: Any = field(default=None, repr=False)
    _h: Any = field(default=None, repr=False)

    @cached_property
    def influence(self) -> Float64Array:
        """Influence function on the r scale (``psi / n``), one row per cluster (unit).

        Columns follow :attr:`labels` then the overall parameter; ``std_error`` (analytic) is
        ``sqrt(sum of squares)`` of each column. Rows are in the engine's order (cohort blocks).
        """
        out = self._engine.combine(self._weights, self._h)
        out.setflags(write=False)
        return out

    @cached_property
    def _tidy(self) -> pd.DataFrame:
        lab = _LABEL_COLUMN[self.spec.type]
        est = np.append(self.estimate, self.overall_estimate)
        se = np.append(self.std_error, self.overall_std_error)
        crit = np.append(np.full(self.estimate.size, self.crit_val), self.overall_crit_val)
        if lab is None:
            terms = ["overall"]
        else:
            terms = [f"{lab}={v:g}" for v in self.labels] + ["overall"]
        out = pd.DataFrame({"term": terms, "estimate": est, "std_error": se})
        for k, v in inference_columns(est, se, crit).items():
            out[k] = v
        out["type"] = self.spec.type
        out["label"] = np.append(self.labels, np.nan)
        if lab is not None:
            out[lab] = out["label"]
        out["se_method"] = self.se_method
        out["band"] = [self.band] * self.estimate.size + ["pointwise"]
        out["crit_val"] = crit
        return out

    def tidy(self) -> pd.DataFrame:
        """Rows per event time / group / period, then ``overall``; shared tidy columns.

        Extra columns: ``type``, ``label`` (+ ``event_time``/``group``/``time``),
        ``se_method``, ``band`` and ``crit_val``.
        """
        return self._tidy.copy()

    def glance(self) -> pd.DataFrame:
        """One-row summary of the aggregation."""
        return pd.DataFrame(
            [
                {
                    "type": self.spec.type,
                    "overall_estimate": self.overall_estimate,
                    "overall_std_error": self.overall_std_error,
                    "n_estimates": int(self.estimate.size),
                    "se_method": self.se_method,
                    "band": self.band,
                    "crit_val": self.crit_val,
                    "alp": self.spec.alp,
                }
            ]
        )

    def summary(self) -> str:
        """R ``did``-style text summary."""
        t = self.tidy()
        lvl = int(round(100 * (1 - self.spec.alp)))
        ov = t.iloc[-1]
        lines = [
            _TITLES[self.spec.type] + f" of {self.yname}",
            "",
            f"{'ATT':>10} {'Std. Error':>11}   [{lvl}% Conf. Int.]",
            f"{ov.estimate:>10.4f} {ov.std_error:>11.4f}   "
            f"[{ov.conf_low:>8.4f}, {ov.conf_high:>8.4f}] "
            + significance_mark(t["conf_low"], t["conf_high"]).iloc[-1],
        ]
        if self.estimate.size:
            band = "Simult." if self.band == "uniform" else "Pointwise"
            lab = _LABEL_COLUMN[self.spec.type] or "label"
            lines += [
                "",
                f"{lab:>12} {'Estimate':>10} {'Std. Error':>11}   [{lvl}% {band} Conf. Band]",
            ]
            body = t.iloc[:-1]
            marks = significance_mark(body["conf_low"], body["conf_high"])
            for row, m in zip(body.itertuples(index=False), marks, strict=True):
                lines.append(
                    f"{row.label:>12g} {row.estimate:>10.4f} {row.std_error:>11.4f}"
                    f"   [{row.conf_low:>8.4f}, {row.conf_high:>8.4f}] {m}"
                )
        lines += [
            "---",
            "Signif. codes: `*' confidence band does not cover 0",
            f"Inference: {self.se_method} SEs; {self.band} band (critical value "
            f"{self.crit_val:.3f}); overall interval pointwise",
        ]
        return "\n".join(lines)

    def _table(self) -> pd.DataFrame:
        cols = ["term", "estimate", "std_error", "conf_low", "conf_high"]
        return self.tidy()[cols]

    def _caption(self) -> str:
        return _TITLES[self.spec.type]

    def plot(self, **options: Any) -> Any:
        """Chart the aggregation (Altair), as R ``did``'s ``ggdid()`` of an ``aggte`` fit.

        ``dynamic``: the event-time path with its band, a zero line and the treatment time
        (:func:`causalmem.presentation.charts.event_path`); ``group`` / ``calendar``: point
        ranges by cohort / period; ``simple``: the overall effect as one point range
        (:func:`causalmem.presentation.charts.point_range`).

        Parameters
        ----------
        **options
            Passed to the chart function (titles, ...).

        Returns
        -------
        altair.LayerChart
        """
        from causalmem.results._charts import event_path, point_range

        kind = self.spec.type
        options.setdefault("title", _TITLES[kind])
        options.setdefault("value_title", f"ATT ({self.yname})")
        if kind == "dynamic":
            options.setdefault("x_title", "event time e = t − g")
            return event_path(self.tidy(), **options)
        x = {"group": "group", "calendar": "time"}.get(kind, "term")
        options.setdefault("x_title", {"group": "cohort g", "time": "period t"}.get(x, ""))
        return point_range(self.tidy(), x, **options)

    def __repr__(self) -> str:
        return (
            f"AggteResult(type={self.spec.type!r}, overall={self.overall_estimate:.4g} "
            f"({self.overall_std_error:.3g}), n={self.estimate.size}, band={self.band!r})"
        )
