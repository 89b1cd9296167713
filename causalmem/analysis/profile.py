"""Memorisation profiles: estimates turned into memorisation with an explicit sign convention.

Memorisation is the causal effect of training on an instance's likelihood (Lesci et al. 2024).
With the outcomes the scoring stage writes, that is **-ATT** for surprisal, entropy and rank
(lower after training = memorised) and **+ATT** for accuracy and log-probability. Negating keeps
standard errors non-negative and swaps the interval bounds (the reference repository negated
both bounds without swapping them and negated the SE: pitfall 3).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from causalmem.panel.schema import METRIC_SIGNS as METRIC_SIGNS
from causalmem.panel.schema import metric_sign
from causalmem.results.aggte import AggteResult
from causalmem.results.attgt import AttGtResult
from causalmem.results.base import RenderMixin
from causalmem.results.bayes import BayesDidResult
from causalmem.results.event_study import EventStudyResult
from causalmem.results.twfe import TwfeResult
from lmecon.result import frozen_mapping


def to_memorisation(tidy: pd.DataFrame, sign: int) -> pd.DataFrame:
    """Apply the sign to a tidy frame: estimate and statistic flip, SE stays, bounds swap."""
    if sign not in (-1, 1):
        raise ValueError(f"sign must be -1 or +1, got {sign!r}.")
    out = tidy.copy()
    out["estimate"] = sign * tidy["estimate"]
    if "statistic" in out:
        out["statistic"] = sign * tidy["statistic"]
    lo, hi = sign * tidy["conf_low"], sign * tidy["conf_high"]
    out["conf_low"], out["conf_high"] = np.minimum(lo, hi), np.maximum(lo, hi)
    out["significant"] = (out["conf_low"] > 0) | (out["conf_high"] < 0)
    return out


@dataclass(frozen=True)
class ProfileSpec:
    """How a :class:`MemorisationProfile` was built (frozen).

    ``source`` names the result type (``att_gt``, ``aggte``, ``bayes_did``,
    ``twfe_event_study``, ``event_study:<estimator>``); ``options`` holds the source's settings
    (e.g. ``control_group``, ``hdi_prob``), read-only.
    """

    metric: str
    sign: int
    source: str
    event_time: str | None = None
    options: Mapping[str, Any] = field(default_factory=lambda: frozen_mapping({}))


@dataclass(frozen=True, eq=False)
class MemorisationProfile(RenderMixin):
    """The profile tau(g, c) (and/or the event-time path) on the memorisation scale; immutable.

    Build with :meth:`from_result`. ``cells`` holds one row per (cohort g, checkpoint c) with the
    tidy columns on the memorisation scale (+ ``group``, ``time``, ``event_time``, ``post``,
    ``significant``, ``se_method``, ``band``); ``path`` holds the event-time average. Honours
    :class:`lmecon.result.Result` (``spec``: :class:`ProfileSpec`; ``metric``, ``sign``,
    ``source`` and ``meta`` read it).
    """

    spec: ProfileSpec
    cells: pd.DataFrame | None
    path: pd.DataFrame | None
    provenance: Mapping[str, Any] = field(default_factory=dict, repr=False)
    _result: Any = field(default=None, repr=False)

    @property
    def metric(self) -> str:
        """Outcome name."""
        return self.spec.metric

    @property
    def sign(self) -> int:
        """``+1`` (memorisation = ATT) or ``-1`` (memorisation = -ATT)."""
        return self.spec.sign

    @property
    def source(self) -> str:
        """The kind of result the profile was built from."""
        return self.spec.source

    @property
    def meta(self) -> dict[str, Any]:
        """The source's settings (a new dict)."""
        return dict(self.spec.options)

    @classmethod
    def from_result(
        cls,
        result: AttGtResult | AggteResult | TwfeResult | EventStudyResult | BayesDidResult,
        *,
        metric: str | None = None,
        sign: int | None = None,
        event_time: str = "steps",
        hdi_prob: float = 0.9,
    ) -> MemorisationProfile:
        """Build a profile from a CS (``att_gt``/``aggte``), event-study, TWFE or Bayesian result.

        Parameters
        ----------
        result
            An :class:`AttGtResult` (cells and path), an :class:`AggteResult` of type
            ``dynamic`` (path), an :class:`EventStudyResult` (path, any estimator), an
            event-study :class:`TwfeResult` (path), or a :class:`BayesDidResult` (posterior
            cells and the pooled path ``mu(e)``, HDIs).
        metric
            Outcome name (default: the result's ``yname``; required for a ``TwfeResult``).
        sign
            Override the sign convention (default from :func:`metric_sign`).
        event_time
            For an ``AttGtResult``: the path's event-time unit, ``"steps"`` or ``"periods"``.
        hdi_prob
            For a ``BayesDidResult``: the probability of the highest-density intervals.

        Returns
        -------
        MemorisationProfile
        """
        if isinstance(result, AttGtResult):
            return cls._from_att_gt(result, metric, sign, event_time)
        if isinstance(result, AggteResult):
            if result.spec.type != "dynamic":
                raise ValueError(
                    f"A profile path needs aggte(type='dynamic'), got type={result.spec.type!r}."
                )
            spec = _spec(metric or result.yname, sign, "aggte")
            return cls(spec, None, to_memorisation(result.tidy(), spec.sign), _prov(result), result)
        if isinstance(result, BayesDidResult):
            spec = _spec(
                metric or result.spec.yname,
                sign,
                "bayes_did",
                options={"model": result.spec.model, "hdi_prob": hdi_prob},
            )
            cells = to_memorisation(result.tidy(hdi_prob=hdi_prob), spec.sign)
            cells["reference"] = False
            path = to_memorisation(result.profile(hdi_prob=hdi_prob), spec.sign)
            return cls(spec, cells, path, _prov(result), result)
        if isinstance(result, EventStudyResult):
            spec = _spec(
                metric or result.spec.yname,
                sign,
                f"event_study:{result.estimator}",
                event_time="periods",
            )
            return cls(spec, None, to_memorisation(result.tidy(), spec.sign), _prov(result), result)
        if isinstance(result, TwfeResult):
            t = result.tidy()
            if "event_time" not in t:
                raise ValueError("A TwfeResult profile needs an event study (event_time terms).")
            if metric is None:
                raise ValueError("Pass metric= (the outcome name) for a TwfeResult.")
            spec = _spec(metric, sign, "twfe_event_study", event_time="periods")
            return cls(spec, None, to_memorisation(t, spec.sign), _prov(result), result)
        raise TypeError(
            f"Cannot build a MemorisationProfile from {type(result).__name__}; pass an "
            "AttGtResult, a dynamic AggteResult, an EventStudyResult, an event-study TwfeResult "
            "or a BayesDidResult."
        )

    @classmethod
    def _from_att_gt(
        cls, result: AttGtResult, metric: str | None, sign: int | None, event_time: str
    ) -> MemorisationProfile:
        from causalmem.estimators.aggte import aggte

        spec = _spec(
            metric or result.spec.yname,
            sign,
            "att_gt",
            event_time=event_time,
            options={
                "control_group": result.spec.control_group,
                "base_period": result.spec.base_period,
            },
        )
        cells = to_memorisation(result.tidy(), spec.sign)
        path = to_memorisation(aggte(result, "dynamic", event_time=event_time).tidy(), spec.sign)
        return cls(spec, cells, path, _prov(result), result)

    def glance(self) -> pd.DataFrame:
        """One row: metric, sign, source and the profile's size."""
        return pd.DataFrame(
            [
                {
                    "metric": self.metric,
                    "sign": self.sign,
                    "source": self.source,
                    "n_cells": 0 if self.cells is None else len(self.cells),
                    "n_event_times": 0 if self.path is None else len(self.path),
                }
            ]
        )

    def summary(self) -> str:
        """Text summary: the memorisation path by event time (or the cells without a path)."""
        frame = self._table()
        scale = "ATT" if self.sign == 1 else "-ATT"
        lines = [
            f"Memorisation profile of {self.metric} (memorisation = {scale}; from {self.source})",
            "",
            frame.to_string(index=False, float_format=lambda v: f"{v:.4f}"),
        ]
        return "\n".join(lines)

    def _table(self) -> pd.DataFrame:
        frame = self.path if self.path is not None else self.cells
        assert frame is not None
        cols = ["term", "estimate", "std_error", "conf_low", "conf_high", "significant"]
        return frame[[c for c in cols if c in frame.columns]]

    def _caption(self) -> str:
        return f"Memorisation profile of {self.metric} ({self.source})"

    def _need_cells(self) -> pd.DataFrame:
        if self.cells is None:
            raise ValueError(f"This profile ({self.source}) has an event-time path only.")
        return self.cells

    def tidy(self) -> pd.DataFrame:
        """Cells (when available) else the path, on the memorisation scale."""
        return (self.cells if self.cells is not None else self.path).copy()  # type: ignore[union-attr]

    def instantaneous(self) -> pd.DataFrame:
        """Instantaneous memorisation tau(g, g), one row per cohort."""
        c = self._need_cells()
        return c[c["time"] == c["group"]].reset_index(drop=True)

    def residual(self, at: float | None = None) -> pd.DataFrame:
        """Residual memorisation tau(g, T) for cohorts g <= T (default T: the last checkpoint)."""
        c = self._need_cells()
        at = float(c["time"].max()) if at is None else float(at)
        if at not in set(c["time"].tolist()):
            raise ValueError(f"at={at:g} is not an observed checkpoint.")
        return c[(c["time"] == at) & c["post"]].reset_index(drop=True)

    def persistent(self) -> pd.DataFrame:
        """Return persistent memorisation by event time (the path for ``event_time >= 0``)."""
        p = self.path
        assert p is not None
        return p[p["event_time"] >= 0].reset_index(drop=True)

    def cohort_path(self, group: float) -> pd.DataFrame:
        """Return the row tau(g, .) of one cohort (the per-cohort memorisation path)."""
        c = self._need_cells()
        rows = c[c["group"] == group]
        if rows.empty:
            raise ValueError(f"No cohort {group!r}; cohorts are {sorted(c['group'].unique())}.")
        return rows.reset_index(drop=True)

    def pretrend(self) -> dict[str, float]:
        """Placebo summary of the pre-treatment cells (c < g) and the joint Wald test.

        Returns the number of placebo cells, their mean memorisation, the share whose interval
        excludes 0, and R did's Wald statistic, degrees of freedom and p-value (all placebo
        cells zero; NaN for a Bayesian profile, which has no such test).
        """
        c = self._need_cells()
        pre = c[~c["post"] & ~c["reference"]]
        out = {
            "n_placebo": float(len(pre)),
            "mean_placebo": float(pre["estimate"].mean()) if len(pre) else float("nan"),
            "share_significant": float(pre["significant"].mean()) if len(pre) else float("nan"),
        }
        pretest = getattr(self._result, "pretest", None)
        w, p, df = pretest() if callable(pretest) else (float("nan"), float("nan"), len(pre))
        out.update({"wald": w, "df": float(df), "p_value": p})
        return out

    def matrix(self, post_only: bool = False) -> pd.DataFrame:
        """Return the profile as a cohort x checkpoint matrix (the heat-map's data)."""
        c = self._need_cells()
        if post_only:
            c = c[c["post"]]
        return c.pivot(index="group", columns="time", values="estimate")

    def plot(self, kind: str | None = None, *, at: float | None = None, **options: Any) -> Any:
        """Chart the profile on the memorisation scale (Altair).

        Parameters
        ----------
        kind
            ``"heatmap"`` (the default when the profile has cells): tau(g, c), cohort by
            checkpoint, non-significant cells faint
            (:func:`causalmem.presentation.charts.profile_heatmap`); ``"path"`` (the default
            otherwise): the event-time path theta(e) with its band
            (:func:`~causalmem.presentation.charts.event_path`); ``"persistent"``: theta(e) for
            ``e >= 0`` (:func:`~causalmem.presentation.charts.persistent_memorisation`);
            ``"residual"``: tau(g, T) per cohort at checkpoint ``at``
            (:func:`~causalmem.presentation.charts.residual_lollipop`).
        at
            The checkpoint T of ``kind="residual"`` (default: the last).
        **options
            Passed to the chart function (titles, ...).

        Returns
        -------
        altair.Chart or altair.LayerChart
        """
        from causalmem.results import _charts

        kind = kind or ("heatmap" if self.cells is not None else "path")
        if kind == "heatmap":
            options.setdefault("title", f"Memorisation profile ({self.metric})")
            return _charts.profile_heatmap(self._need_cells(), **options)
        if kind == "residual":
            return _charts.residual_lollipop(self.residual(at), at=at, **options)
        if self.path is None:
            raise ValueError(f"This profile ({self.source}) has no event-time path.")
        if kind == "path":
            return _charts.event_path(self.path, **options)
        if kind == "persistent":
            return _charts.persistent_memorisation(self.persistent(), **options)
        raise ValueError(f"kind={kind!r}; use 'heatmap', 'path', 'persistent' or 'residual'.")


def _spec(
    metric: str,
    sign: int | None,
    source: str,
    *,
    event_time: str | None = None,
    options: Mapping[str, Any] | None = None,
) -> ProfileSpec:
    """Build the profile's spec, with the sign from :func:`metric_sign` unless given."""
    return ProfileSpec(
        metric=metric,
        sign=metric_sign(metric) if sign is None else sign,
        source=source,
        event_time=event_time,
        options=frozen_mapping(options or {}),
    )


def _prov(result: Any) -> Mapping[str, Any]:
    """Return the source result's provenance (empty when it records none)."""
    return dict(getattr(result, "provenance", None) or {})
