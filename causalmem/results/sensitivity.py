"""The immutable result of :func:`causalmem.analysis.sensitivity.honest_did`.

One row per value of ``M`` (Δ^SD: bound on the change in slope of the violation of parallel
trends) or ``M̄`` (Δ^RM / Δ^SDRM: bound relative to the largest pre-period violation), with the
robust confidence set ``[lower, upper]`` for the target ``l'τ_post``; the original
(non-robust) interval sits beside them, as R ``HonestDiD``'s ``createSensitivityPlot``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from causalmem._types import Float64Array
from causalmem.results.base import RenderMixin

__all__ = ["SensitivityResult", "SensitivitySpec"]

_RESTRICTION_NAMES = {
    "SD": "Δ^SD(M): smoothness (bounded change in the slope of the violation)",
    "RM": "Δ^RM(M̄): relative magnitudes (post violation ≤ M̄ × largest pre violation)",
    "SDRM": "Δ^SDRM(M̄): smoothness relative to the pre-period non-linearity",
}


@dataclass(frozen=True, slots=True)
class SensitivitySpec:
    """The call: restriction, method, sign/shape variant, level, target and grids (frozen)."""

    restriction: str
    method: str
    bias: str | None
    monotone: str | None
    alp: float
    target: str
    m_grid: tuple[float, ...]
    grid_points: int
    null: float
    source: str
    seed: int = 0


@dataclass(frozen=True, eq=False)
class SensitivityResult(RenderMixin):
    """Robust confidence sets for a target under a grid of restriction bounds; immutable.

    Attributes
    ----------
    spec
        The call (:class:`SensitivitySpec`).
    event_time
        Event times of ``betahat`` (pre then post; the reference period is omitted).
    betahat, sigma
        The event-study coefficients and covariance used.
    n_pre
        Number of pre-period coefficients.
    l_vec
        Target weights on the post-period coefficients.
    m
        Grid of ``M`` (or ``M̄``).
    lower, upper
        Robust set per ``M`` (NaN when empty).
    open_ended
        Whether the set reaches an end of its θ grid (it may then extend beyond it).
    original
        ``(estimate, std_error, lower, upper)`` of the original interval for ``l'τ``.
    breakdown
        Smallest ``M`` at which the robust set contains ``spec.null`` (NaN when none up to
        the search limit; ``0`` when even ``M = 0`` contains it).
    provenance
        Versions, time, and where ``betahat`` came from.
    """

    spec: SensitivitySpec
    event_time: Float64Array
    betahat: Float64Array
    sigma: Float64Array
    n_pre: int
    l_vec: Float64Array
    m: Float64Array
    lower: Float64Array
    upper: Float64Array
    open_ended: np.ndarray
    original: tuple[float, float, float, float]
    breakdown: float
    breakdown_grid: float
    provenance: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for arr in (
            self.event_time,
            self.betahat,
            self.sigma,
            self.l_vec,
            self.m,
            self.lower,
            self.upper,
            self.open_ended,
        ):
            arr.setflags(write=False)

    @property
    def m_name(self) -> str:
        """``"M"`` for Δ^SD, ``"Mbar"`` for the relative-magnitude restrictions."""
        return "M" if self.spec.restriction == "SD" else "Mbar"

    @property
    def delta_name(self) -> str:
        """R HonestDiD's name of the restriction (``DeltaSD``, ``DeltaRMPB``, ...)."""
        name = "Delta" + self.spec.restriction
        if self.spec.bias is not None:
            name += "PB" if self.spec.bias == "positive" else "NB"
        if self.spec.monotone is not None:
            name += "I" if self.spec.monotone == "increasing" else "D"
        return name

    def tidy(self) -> pd.DataFrame:
        """Return the original interval, then one row per ``M``.

        Columns: the shared ``term, estimate, std_error, statistic, p_value, conf_low,
        conf_high`` (``estimate`` is the set's midpoint, ``conf_*`` its bounds), then ``m``
        (NaN for the original row), ``lower``, ``upper``, ``method``, ``restriction`` (R's
        ``Delta`` name, ``"none"`` for the original), ``covers_null`` and ``open_ended``.
        """
        est, se, lo0, hi0 = self.original
        lower = np.r_[lo0, self.lower]
        upper = np.r_[hi0, self.upper]
        with np.errstate(invalid="ignore"):
            mid = 0.5 * (lower + upper)
        mid[0] = est
        n = self.m.size
        null = self.spec.null
        out = pd.DataFrame(
            {
                "term": ["original"] + [f"{self.m_name}={v:.6g}" for v in self.m],
                "estimate": mid,
                "std_error": np.r_[se, np.full(n, np.nan)],
                "statistic": np.r_[est / se if se > 0 else np.nan, np.full(n, np.nan)],
                "p_value": np.full(n + 1, np.nan),
                "conf_low": lower,
                "conf_high": upper,
                "m": np.r_[np.nan, self.m],
                "lower": lower,
                "upper": upper,
                "method": ["Original"] + [self.spec.method] * n,
                "restriction": ["none"] + [self.delta_name] * n,
                "covers_null": (lower <= null) & (null <= upper),
                "open_ended": np.r_[False, self.open_ended],
            }
        )
        from scipy.stats import norm

        out.loc[0, "p_value"] = 2.0 * norm.sf(abs(est / se)) if se > 0 else np.nan
        return out

    def glance(self) -> pd.DataFrame:
        """One row: restriction, method, target, the breakdown value and the original CI."""
        est, se, lo0, hi0 = self.original
        return pd.DataFrame(
            [
                {
                    "restriction": self.delta_name,
                    "method": self.spec.method,
                    "target": self.spec.target,
                    "n_pre": self.n_pre,
                    "n_post": int(self.l_vec.size),
                    "n_m": int(self.m.size),
                    "m_max": float(self.m.max()) if self.m.size else math.nan,
                    "null": self.spec.null,
                    "breakdown": self.breakdown,
                    "breakdown_grid": self.breakdown_grid,
                    "original_estimate": est,
                    "original_std_error": se,
                    "original_low": lo0,
                    "original_high": hi0,
                    "alp": self.spec.alp,
                    "source": self.spec.source,
                }
            ]
        )

    def summary(self) -> str:
        """HonestDiD-style text: the original interval, the robust sets and the breakdown."""
        lvl = int(round(100 * (1 - self.spec.alp)))
        est, se, lo0, hi0 = self.original
        name = _RESTRICTION_NAMES[self.spec.restriction]
        extra = []
        if self.spec.bias is not None:
            extra.append(f"bias {self.spec.bias}")
        if self.spec.monotone is not None:
            extra.append(f"monotone {self.spec.monotone}")
        lines = [
            "Sensitivity of the event-study target to violations of parallel trends "
            "(Rambachan & Roth 2023)",
            f"Target: {self.spec.target}",
            f"Restriction: {name}" + (f" [{', '.join(extra)}]" if extra else ""),
            f"Method: {self.spec.method}; {lvl}% confidence sets; {self.n_pre} pre and "
            f"{self.l_vec.size} post coefficients",
            "",
            f"Original: {est:.4f} (SE {se:.4f}), {lvl}% CI [{lo0:.4f}, {hi0:.4f}]",
            "",
            f"{self.m_name:>10} {'lower':>10} {'upper':>10}",
        ]
        for m, lo, hi, op in zip(self.m, self.lower, self.upper, self.open_ended, strict=True):
            flag = "  (open at the grid end)" if op else ""
            lines.append(f"{m:>10.4g} {lo:>10.4f} {hi:>10.4f}{flag}")
        bd = self.breakdown
        where = "never (up to the largest value searched)" if math.isnan(bd) else f"{bd:.4g}"
        lines += [
            "---",
            f"Breakdown value ({self.m_name} at which the robust set first includes "
            f"{self.spec.null:g}): {where}",
        ]
        return "\n".join(lines)

    def _table(self) -> pd.DataFrame:
        t = self.tidy()
        return t[["term", "m", "lower", "upper", "method", "restriction"]]

    def _caption(self) -> str:
        return f"Robust confidence sets ({self.delta_name}, {self.spec.method})"

    def plot(self, **options: Any) -> Any:
        """Sensitivity plot (Altair), as R ``HonestDiD::createSensitivityPlot``.

        The original interval at the left (drawn one grid step left of the first ``M``), then
        the robust set for each ``M`` as an interval, a dotted line at ``null`` (0) and a
        dashed line at the breakdown value.

        Parameters
        ----------
        **options
            ``title``, ``value_title``, ``width``, ``height``.

        Returns
        -------
        altair.LayerChart
        """
        from lmecon.charts import alt as _alt

        alt = _alt()
        t = self.tidy()
        m = self.m
        gap = (m.max() - m.min()) / max(m.size - 1, 1) if m.size > 1 else 1.0
        t["x"] = np.where(t["m"].isna(), (m.min() if m.size else 0.0) - gap, t["m"])
        t["kind"] = np.where(t["method"] == "Original", "Original", self.spec.method)
        t = t[np.isfinite(t["lower"]) & np.isfinite(t["upper"])]
        title = options.get(
            "title", f"Robust confidence sets, {self.delta_name}: {self.spec.target}"
        )
        ytitle = options.get("value_title", "robust confidence set")
        base = alt.Chart(t)
        colour = alt.Color(
            "kind:N",
            title=None,
            scale=alt.Scale(domain=["Original", self.spec.method], range=["#d62728", "#1f77b4"]),
        )
        x = alt.X("x:Q", title=self.m_name)
        bars = base.mark_rule(strokeWidth=3).encode(
            x=x,
            y=alt.Y("lower:Q", title=ytitle),
            y2="upper:Q",
            color=colour,
            tooltip=[
                "term:N",
                alt.Tooltip("lower:Q", format=".4f"),
                alt.Tooltip("upper:Q", format=".4f"),
            ],
        )
        ends = base.mark_tick(thickness=2, size=12, orient="horizontal").encode(
            x=x, y="lower:Q", color=colour
        )
        ends2 = base.mark_tick(thickness=2, size=12, orient="horizontal").encode(
            x=x, y="upper:Q", color=colour
        )
        zero = (
            alt.Chart(pd.DataFrame({"y": [self.spec.null]}))
            .mark_rule(color="#555555", strokeDash=[2, 2])
            .encode(y="y:Q")
        )
        layers = [bars, ends, ends2, zero]
        if np.isfinite(self.breakdown):
            layers.append(
                alt.Chart(pd.DataFrame({"x": [self.breakdown]}))
                .mark_rule(color="#2ca02c", strokeDash=[6, 3])
                .encode(x="x:Q")
            )
        return alt.layer(*layers, title=title).properties(
            width=options.get("width", 420), height=options.get("height", 260)
        )

    def __repr__(self) -> str:
        return (
            f"SensitivityResult(restriction={self.delta_name!r}, method={self.spec.method!r}, "
            f"n_m={self.m.size}, breakdown={self.breakdown:.4g})"
        )
