"""Immutable results of the pre-trend power analysis and the TWFE diagnostics (issue 14).

* :class:`PretrendsPower` — Roth (2022): power of the pre-test against a hypothesised
  violation, Bayes factor, likelihood ratio, and the means / coverage of the event-study
  estimates conditional on passing the pre-test (R ``pretrends``).
* :class:`BaconDecomposition` — Goodman-Bacon (2021): every 2x2 DiD with its weight and type
  (R ``bacondecomp::bacon``).
* :class:`TwfeWeights` — de Chaisemartin & D'Haultfoeuille (2020): the weight of each treated
  (cohort, period) cell in the TWFE coefficient (R ``TwoWayFEWeights``, ``type = "feTR"``).

Each records its call in a frozen ``spec`` and offers the Result protocol (``tidy``,
``glance``, ``summary``, renderings, ``plot``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from causalmem._types import Float64Array
from causalmem.results.base import RenderMixin
from lmecon.charts import alt as _alt

__all__ = [
    "BaconDecomposition",
    "BaconSpec",
    "PretrendsPower",
    "PretrendsSpec",
    "TwfeWeights",
    "TwfeWeightsSpec",
]


def _frozen(*arrays: Float64Array | np.ndarray) -> None:
    for a in arrays:
        a.setflags(write=False)


# --------------------------------------------------------------------------------------------
# pre-trend power


@dataclass(frozen=True)
class PretrendsSpec:
    """The call that made a :class:`PretrendsPower` (frozen).

    ``test``: ``"pointwise"`` (no pre-period ``|t| >= z``; Roth's and R ``pretrends``') or
    ``"wald"`` (joint chi-square); ``violation``: ``"linear"`` (``slope * (t - ref)``, the slope
    given or solved for ``target_power``) or ``"custom"`` (a user's ``deltatrue``).
    """

    reference_period: float
    alp: float
    test: str
    violation: str
    slope: float | None
    target_power: float | None
    source: str
    n_draws: int | None = None
    seed: int | None = None


@dataclass(frozen=True, eq=False)
class PretrendsPower(RenderMixin):
    """Power of a pre-test against a hypothesised trend and what passing it does (immutable).

    Attributes
    ----------
    event_time
        Relative periods of the coefficients, the reference period included (estimate 0).
    betahat, std_error
        The event-study estimates and standard errors (0 at the reference period).
    deltatrue
        The hypothesised violation (bias) in every period (0 at the reference).
    mean_after_pretest
        ``E[betahat | pass]`` under ``deltatrue`` (R ``meanAfterPretesting``).
    coverage_after_pretest
        Post periods: probability that ``betahat_j -/+ z se_j`` covers ``deltatrue_j`` given
        that the pre-test passes (NaN for pre periods and the reference).
    power, power_null
        Rejection probability of the pre-test under ``deltatrue`` and under parallel trends.
    bayes_factor
        ``(1 - power) / (1 - power_null)``: probability of passing under the trend relative
        to parallel trends.
    likelihood_ratio
        Density of the observed pre-period coefficients under ``deltatrue`` over that under 0.
    slope
        Slope of the linear violation (``None`` for a custom one).
    slope_power_50, slope_power_80
        Slopes of linear violations the pre-test detects with 50 % / 80 % power.
    method
        ``"exact"`` (closed-form Tallis moments of numerically integrated rectangle
        probabilities: absolute error about 1e-6 up to five pre-periods, 1e-4 to 1e-3 for the
        moments above) or ``"monte_carlo"`` (Wald test's conditional moments; ``mc_se`` holds
        their standard errors).
    """

    spec: PretrendsSpec
    event_time: Float64Array
    betahat: Float64Array
    std_error: Float64Array
    deltatrue: Float64Array
    mean_after_pretest: Float64Array
    coverage_after_pretest: Float64Array
    power: float
    power_null: float
    bayes_factor: float
    likelihood_ratio: float
    slope: float | None
    slope_power_50: float
    slope_power_80: float
    method: str
    mc_se: Float64Array
    curve: pd.DataFrame = field(repr=False)
    provenance: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        _frozen(
            self.event_time,
            self.betahat,
            self.std_error,
            self.deltatrue,
            self.mean_after_pretest,
            self.coverage_after_pretest,
            self.mc_se,
        )

    @property
    def is_pre(self) -> np.ndarray:
        """Mask of the pre periods (before the reference period)."""
        return np.asarray(self.event_time < self.spec.reference_period)

    @property
    def is_post(self) -> np.ndarray:
        """Mask of the post periods (after the reference period)."""
        return np.asarray(self.event_time > self.spec.reference_period)

    def tidy(self) -> pd.DataFrame:
        """One row per relative period (R ``df_eventplot`` plus bias and coverage).

        Columns: ``term``, ``event_time``, ``period`` (pre / reference / post), ``estimate``
        (betahat), ``std_error``, ``conf_low``, ``conf_high`` (``-/+ z se``), ``deltatrue``,
        ``mean_after_pretest``, ``bias_after_pretest`` (``mean_after_pretest - deltatrue``:
        the bias of betahat as an estimate of the true effect when the hypothesised trend is
        the violation), ``coverage_after_pretest`` and ``mc_se``.
        """
        from scipy.stats import norm

        z = float(norm.ppf(1 - self.spec.alp / 2))
        period = np.where(self.is_pre, "pre", np.where(self.is_post, "post", "reference"))
        return pd.DataFrame(
            {
                "term": [f"event_time={v:g}" for v in self.event_time],
                "event_time": self.event_time,
                "period": period,
                "estimate": self.betahat,
                "std_error": self.std_error,
                "conf_low": self.betahat - z * self.std_error,
                "conf_high": self.betahat + z * self.std_error,
                "deltatrue": self.deltatrue,
                "mean_after_pretest": self.mean_after_pretest,
                "bias_after_pretest": self.mean_after_pretest - self.deltatrue,
                "coverage_after_pretest": self.coverage_after_pretest,
                "mc_se": self.mc_se,
            }
        )

    def glance(self) -> pd.DataFrame:
        """One row: power, Bayes factor, likelihood ratio, slopes for 50 % / 80 % power."""
        return pd.DataFrame(
            [
                {
                    "test": self.spec.test,
                    "violation": self.spec.violation,
                    "slope": np.nan if self.slope is None else self.slope,
                    "power": self.power,
                    "power_null": self.power_null,
                    "bayes_factor": self.bayes_factor,
                    "likelihood_ratio": self.likelihood_ratio,
                    "slope_power_50": self.slope_power_50,
                    "slope_power_80": self.slope_power_80,
                    "n_pre": int(self.is_pre.sum()),
                    "n_post": int(self.is_post.sum()),
                    "alp": self.spec.alp,
                    "method": self.method,
                }
            ]
        )

    def summary(self) -> str:
        """Text summary (R ``df_power`` and ``df_eventplot``)."""
        g = self.glance().iloc[0]
        t = self.tidy()
        head = (
            f"linear violation, slope {self.slope:.6g}"
            if self.slope is not None
            else "user-given violation"
        )
        lines = [
            f"Pre-trend power (Roth 2022), {self.spec.test} pre-test at alp = {self.spec.alp}",
            f"Hypothesised trend: {head}",
            f"  Power {g.power:.4f}   Bayes factor {g.bayes_factor:.4f}   "
            f"Likelihood ratio {g.likelihood_ratio:.4f}",
            f"  Slope detected with 50% power {g.slope_power_50:.6g}, with 80% power "
            f"{g.slope_power_80:.6g}",
            "",
            f"{'event_time':>10} {'betahat':>10} {'deltatrue':>10} {'mean|pass':>10} "
            f"{'bias|pass':>10} {'cover|pass':>10}",
        ]
        for r in t.itertuples(index=False):
            lines.append(
                f"{r.event_time:>10g} {r.estimate:>10.5f} {r.deltatrue:>10.5f} "
                f"{r.mean_after_pretest:>10.5f} {r.bias_after_pretest:>10.5f} "
                f"{r.coverage_after_pretest:>10.4f}"
            )
        lines.append(f"Conditional moments: {self.method}.")
        return "\n".join(lines)

    def _table(self) -> pd.DataFrame:
        return self.tidy()[
            [
                "event_time",
                "estimate",
                "std_error",
                "deltatrue",
                "mean_after_pretest",
                "coverage_after_pretest",
            ]
        ]

    def _caption(self) -> str:
        return f"Pre-trend power ({self.spec.test} pre-test): power {self.power:.3f}"

    def plot(self, kind: str = "event", **options: Any) -> Any:
        """Altair chart of the estimates or of the power curve.

        ``kind="event"``: estimates with intervals, the hypothesised trend and the mean after
        pre-testing (R ``event_plot_pretest``); ``kind="power"``: power against the slope of
        a linear violation.
        """
        alt = _alt()
        if kind == "power":
            c = self.curve
            base = alt.Chart(c).encode(
                x=alt.X("slope:Q", title="Slope of linear violation"),
                y=alt.Y("power:Q", title="Power of pre-test", scale=alt.Scale(domain=[0, 1])),
            )
            rules = alt.Chart(pd.DataFrame({"power": [0.5, 0.8]})).mark_rule(
                strokeDash=[4, 4], color="gray"
            )
            return (base.mark_line() + rules.encode(y="power:Q")).properties(
                title=f"Power of the {self.spec.test} pre-test", **options
            )
        if kind != "event":
            raise ValueError(f"kind={kind!r}; use 'event' or 'power'.")
        t = self.tidy()
        long = pd.concat(
            [
                t.assign(series="betahat", value=t["estimate"]),
                t.assign(series="hypothesised trend", value=t["deltatrue"]),
                t.assign(series="mean after pre-test", value=t["mean_after_pretest"]),
            ]
        )[["event_time", "series", "value", "conf_low", "conf_high"]]
        pts = (
            alt.Chart(long)
            .mark_line(point=True)
            .encode(
                x=alt.X("event_time:Q", title="Event time"),
                y=alt.Y("value:Q", title="Coefficient"),
                color=alt.Color("series:N", title=None),
            )
        )
        bars = (
            alt.Chart(t)
            .mark_errorbar()
            .encode(x="event_time:Q", y=alt.Y("conf_low:Q", title="Coefficient"), y2="conf_high")
        )
        zero = alt.Chart(pd.DataFrame({"y": [0.0]})).mark_rule(color="gray").encode(y="y:Q")
        return (bars + pts + zero).properties(
            title=f"Pre-test power {self.power:.2f} against the hypothesised trend", **options
        )


# --------------------------------------------------------------------------------------------
# Goodman-Bacon decomposition


@dataclass(frozen=True)
class BaconSpec:
    """The call that made a :class:`BaconDecomposition` (frozen)."""

    yname: str
    tname: str
    idname: str
    gname: str


@dataclass(frozen=True, eq=False)
class BaconDecomposition(RenderMixin):
    """Goodman-Bacon decomposition of the static TWFE coefficient (immutable).

    ``comparisons`` has one row per 2x2 DiD: ``treated`` and ``control`` cohorts (``inf``:
    never treated), ``estimate``, ``weight`` (sums to one), ``type`` (R ``bacondecomp``'s
    labels) and ``forbidden`` (the control group is already treated: ``"Later vs Earlier
    Treated"``, ``"Later vs Always Treated"``). ``sum(weight * estimate) == twfe_estimate``.
    """

    spec: BaconSpec
    comparisons: pd.DataFrame
    twfe_estimate: float
    variance_d: float
    n_units: int
    n_periods: int
    provenance: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def tidy(self) -> pd.DataFrame:
        """One row per 2x2 comparison (a new frame)."""
        t = self.comparisons.copy()
        t.insert(
            0,
            "term",
            [f"{a:g} vs {b:g}" for a, b in zip(t["treated"], t["control"], strict=True)],
        )
        return t

    def by_type(self) -> pd.DataFrame:
        """Weight and weighted-average estimate per comparison type (R ``bacon``'s printout)."""
        c = self.comparisons
        grp = c.assign(we=c["weight"] * c["estimate"]).groupby("type", sort=True)
        out = grp.agg(weight=("weight", "sum"), we=("we", "sum"), n=("weight", "size"))
        out["avg_est"] = out["we"] / out["weight"]
        return out.drop(columns="we").reset_index()

    def glance(self) -> pd.DataFrame:
        """One row: TWFE estimate, number of comparisons, weight on forbidden comparisons."""
        c = self.comparisons
        bad = c["forbidden"].to_numpy(bool)
        return pd.DataFrame(
            [
                {
                    "twfe_estimate": self.twfe_estimate,
                    "decomposition_sum": float((c["weight"] * c["estimate"]).sum()),
                    "n_comparisons": len(c),
                    "forbidden_weight": float(c["weight"][bad].sum()),
                    "n_units": self.n_units,
                    "n_periods": self.n_periods,
                    "variance_d": self.variance_d,
                }
            ]
        )

    def summary(self) -> str:
        """R ``bacon()``-style printout: weight and average estimate per type."""
        b = self.by_type()
        g = self.glance().iloc[0]
        lines = [
            f"Goodman-Bacon decomposition of the TWFE coefficient of {self.spec.yname}",
            "",
            f"{'type':>26} {'weight':>9} {'avg_est':>10} {'n':>6}",
        ]
        for r in b.itertuples(index=False):
            lines.append(f"{r.type:>26} {r.weight:>9.5f} {r.avg_est:>10.5f} {r.n:>6d}")
        lines += [
            "",
            f"TWFE estimate {g.twfe_estimate:.6g} = weighted sum {g.decomposition_sum:.6g}; "
            f"weight on forbidden comparisons {g.forbidden_weight:.4f}",
        ]
        return "\n".join(lines)

    def _table(self) -> pd.DataFrame:
        return self.by_type()

    def _caption(self) -> str:
        return f"Goodman-Bacon decomposition (TWFE {self.twfe_estimate:.4g})"

    def plot(self, **options: Any) -> Any:
        """Scatter of 2x2 estimates against weights, coloured by type; TWFE as a dashed line."""
        alt = _alt()
        t = self.tidy()
        pts = (
            alt.Chart(t)
            .mark_point(filled=True, size=60)
            .encode(
                x=alt.X("weight:Q", title="Weight"),
                y=alt.Y("estimate:Q", title="2x2 DiD estimate"),
                color=alt.Color("type:N", title="Comparison"),
                shape=alt.Shape("type:N", title="Comparison"),
                tooltip=["treated", "control", "estimate", "weight", "type"],
            )
        )
        line = (
            alt.Chart(pd.DataFrame({"y": [self.twfe_estimate]}))
            .mark_rule(strokeDash=[5, 5])
            .encode(y="y:Q")
        )
        return (pts + line).properties(
            title=f"Goodman-Bacon decomposition (TWFE = {self.twfe_estimate:.4g})", **options
        )


# --------------------------------------------------------------------------------------------
# de Chaisemartin - D'Haultfoeuille weights


@dataclass(frozen=True)
class TwfeWeightsSpec:
    """The call that made a :class:`TwfeWeights` (frozen)."""

    yname: str | None
    tname: str
    idname: str
    gname: str
    balanced: bool


@dataclass(frozen=True, eq=False)
class TwfeWeights(RenderMixin):
    """Weights of the treated (cohort, period) cells in the TWFE coefficient (immutable).

    ``cells`` has one row per treated cell: ``cohort``, ``time``, ``event_time``, ``n_obs``,
    ``weight`` (``W_gt``, sums to one: ``beta_fe = sum W_gt ATT(g, t)`` under parallel
    trends), ``w`` (dCDH's per-observation weight, ``W_gt / (n_gt / N_1)``, averaging one).
    """

    spec: TwfeWeightsSpec
    cells: pd.DataFrame
    beta_fe: float
    sigma_fe: float
    n_units: int
    n_periods: int
    provenance: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def tidy(self) -> pd.DataFrame:
        """One row per treated (cohort, period) cell (a new frame)."""
        t = self.cells.copy()
        t.insert(
            0, "term", [f"g={g:g},t={s:g}" for g, s in zip(t["cohort"], t["time"], strict=True)]
        )
        return t

    def glance(self) -> pd.DataFrame:
        """One row: counts and sums of positive and negative weights, ``beta_fe``, ``sigma_fe``."""
        w = self.cells["weight"].to_numpy(np.float64)
        neg = w < 0
        return pd.DataFrame(
            [
                {
                    "n_cells": int(w.size),
                    "n_positive": int((w > 0).sum()),
                    "n_negative": int(neg.sum()),
                    "sum_positive": float(w[w > 0].sum()),
                    "sum_negative": float(w[neg].sum()),
                    "share_negative": float(neg.mean()) if w.size else np.nan,
                    "beta_fe": self.beta_fe,
                    "sigma_fe": self.sigma_fe,
                    "balanced": self.spec.balanced,
                    "n_units": self.n_units,
                    "n_periods": self.n_periods,
                }
            ]
        )

    def summary(self) -> str:
        """``twowayfeweights``-style printout."""
        g = self.glance().iloc[0]
        lines = [
            "Weights of the TWFE coefficient on the treated (cohort, period) cells "
            "(de Chaisemartin & D'Haultfoeuille 2020)",
            "",
            f"{g.n_positive} ATTs receive a positive weight; the weights sum to "
            f"{g.sum_positive:.6g}.",
            f"{g.n_negative} ATTs receive a negative weight; the weights sum to "
            f"{g.sum_negative:.6g}.",
        ]
        if np.isfinite(self.beta_fe):
            lines.append(
                f"beta_fe = {self.beta_fe:.6g}; sigma_fe = {self.sigma_fe:.6g} (smallest "
                "standard deviation of the cell effects compatible with beta_fe and ATTs of "
                "the opposite sign)."
            )
        return "\n".join(lines)

    def _table(self) -> pd.DataFrame:
        return self.glance()[
            ["n_cells", "n_positive", "sum_positive", "n_negative", "sum_negative"]
        ]

    def _caption(self) -> str:
        return "TWFE weights (dCDH 2020)"

    def plot(self, **options: Any) -> Any:
        """Heatmap of the weights by cohort and period (negative cells stand out)."""
        alt = _alt()
        t = self.tidy()
        lim = float(np.abs(t["weight"]).max()) if len(t) else 1.0
        return (
            alt.Chart(t)
            .mark_rect()
            .encode(
                x=alt.X("time:O", title="Period"),
                y=alt.Y("cohort:O", title="Cohort"),
                color=alt.Color(
                    "weight:Q",
                    scale=alt.Scale(scheme="redblue", domain=[-lim, lim]),
                    title="Weight",
                ),
                tooltip=["cohort", "time", "weight", "n_obs"],
            )
            .properties(title="TWFE weights on treated cells", **options)
        )
