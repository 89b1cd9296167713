"""Memorisation profiles: estimates turned into memorisation with an explicit sign convention.

Memorisation is the causal effect of training on an instance's likelihood (Lesci et al. 2024).
With the outcomes the scoring stage writes, that is **-ATT** for surprisal, entropy and rank
(lower after training = memorised) and **+ATT** for accuracy and log-probability. Negating keeps
standard errors non-negative and swaps the interval bounds (the reference repository negated
both bounds without swapping them and negated the SE: pitfall 3).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from causalmem.results.aggte import AggteResult
from causalmem.results.attgt import AttGtResult
from causalmem.results.bayes import BayesDidResult
from causalmem.results.twfe import TwfeResult

#: Sign that turns an ATT on the metric into memorisation (substring match on the outcome name).
METRIC_SIGNS: dict[str, int] = {
    "sup": -1,
    "surprisal": -1,
    "nll": -1,
    "loss": -1,
    "entr": -1,
    "entropy": -1,
    "rank": -1,
    "acc": +1,
    "accuracy": +1,
    "logprob": +1,
    "log_prob": +1,
    "loglik": +1,
}


def metric_sign(metric: str) -> int:
    """Sign turning an ATT on ``metric`` into memorisation (-1 surprisal/entropy/rank, +1 accuracy).

    Raises ``ValueError`` for an unknown metric: pass ``sign=`` explicitly then.

    Examples
    --------
    >>> metric_sign("sup_seq"), metric_sign("acc_seq"), metric_sign("avg_rank")
    (-1, 1, -1)
    """
    name = metric.lower()
    hits = {s for key, s in METRIC_SIGNS.items() if key in name}
    if len(hits) != 1:
        raise ValueError(
            f"Cannot tell whether memorisation is +ATT or -ATT for the metric {metric!r}; pass "
            "sign=-1 (lower is memorised: surprisal, entropy, rank) or sign=+1 (higher is "
            "memorised: accuracy, log-probability)."
        )
    return hits.pop()


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


@dataclass(frozen=True, eq=False)
class MemorisationProfile:
    """The profile tau(g, c) (and/or the event-time path) on the memorisation scale; immutable.

    Build with :meth:`from_result`. ``cells`` holds one row per (cohort g, checkpoint c) with the
    tidy columns on the memorisation scale (+ ``group``, ``time``, ``event_time``, ``post``,
    ``significant``, ``se_method``, ``band``); ``path`` holds the event-time average.
    """

    metric: str
    sign: int
    source: str
    cells: pd.DataFrame | None
    path: pd.DataFrame | None
    meta: dict[str, Any] = field(default_factory=dict)
    _result: Any = field(default=None, repr=False)

    @classmethod
    def from_result(
        cls,
        result: AttGtResult | AggteResult | TwfeResult | BayesDidResult,
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
            ``dynamic`` (path), an event-study :class:`TwfeResult` (path), or a
            :class:`BayesDidResult` (posterior cells and the pooled path ``mu(e)``, HDIs).
        metric
            Outcome name (default: the result's ``yname``).
        sign
            Override the sign convention (default from :func:`metric_sign`).
        event_time
            For an ``AttGtResult``: the path's event-time unit, ``"steps"`` or ``"periods"``.
        hdi_prob
            For a ``BayesDidResult``: the probability of the highest-density intervals.
        """
        from causalmem.estimators.aggte import aggte

        if isinstance(result, AttGtResult):
            metric = metric or result.spec.yname
            s = metric_sign(metric) if sign is None else sign
            cells = to_memorisation(result.tidy(), s)
            path = to_memorisation(aggte(result, "dynamic", event_time=event_time).tidy(), s)
            return cls(
                metric=metric,
                sign=s,
                source="att_gt",
                cells=cells,
                path=path,
                meta={
                    "control_group": result.spec.control_group,
                    "base_period": result.spec.base_period,
                },
                _result=result,
            )
        if isinstance(result, AggteResult):
            if result.spec.type != "dynamic":
                raise ValueError(
                    f"A profile path needs aggte(type='dynamic'), got type={result.spec.type!r}."
                )
            metric = metric or result.yname
            s = metric_sign(metric) if sign is None else sign
            return cls(
                metric=metric,
                sign=s,
                source="aggte",
                cells=None,
                path=to_memorisation(result.tidy(), s),
                _result=result,
            )
        if isinstance(result, BayesDidResult):
            metric = metric or result.spec.yname
            s = metric_sign(metric) if sign is None else sign
            cells = to_memorisation(result.tidy(hdi_prob=hdi_prob), s)
            cells["reference"] = False
            return cls(
                metric=metric,
                sign=s,
                source="bayes_did",
                cells=cells,
                path=to_memorisation(result.profile(hdi_prob=hdi_prob), s),
                meta={"model": result.spec.model, "hdi_prob": hdi_prob},
                _result=result,
            )
        if isinstance(result, TwfeResult):
            t = result.tidy()
            if "event_time" not in t:
                raise ValueError("A TwfeResult profile needs an event study (event_time terms).")
            if metric is None:
                raise ValueError("Pass metric= (the outcome name) for a TwfeResult.")
            s = metric_sign(metric) if sign is None else sign
            return cls(
                metric=metric,
                sign=s,
                source="twfe_event_study",
                cells=None,
                path=to_memorisation(t, s),
                _result=result,
            )
        raise TypeError(
            f"Cannot build a MemorisationProfile from {type(result).__name__}; pass an "
            "AttGtResult, a dynamic AggteResult, an event-study TwfeResult or a BayesDidResult."
        )

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
