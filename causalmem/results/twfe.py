"""The immutable result of :func:`causalmem.twfe` and the TWFE event study."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import t as student_t

from causalmem._types import Float64Array
from causalmem.results.base import render_frame


@dataclass(frozen=True, eq=False)
class TwfeResult:
    """Coefficients of a fixed-effects regression with their covariance; immutable.

    ``vcov_type`` names the covariance (``iid``, ``hetero``, ``CRV1:<clusters>``); use
    :meth:`with_vcov` for another one — it returns a new result and never mutates this one.
    Confidence intervals use Student t with ``df_t`` degrees of freedom (``G - 1`` when
    clustered), as fixest does.
    """

    formula: str
    names: tuple[str, ...]
    coef: Float64Array
    vcov: Float64Array
    vcov_type: str
    n_obs: int
    df_k: int
    df_t: int
    rss: float
    r2_within: float
    alp: float = 0.05
    provenance: Mapping[str, Any] = field(default_factory=dict, repr=False)
    _revcov: Callable[[Any], TwfeResult] | None = field(default=None, repr=False)
    extra: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.coef.setflags(write=False)
        self.vcov.setflags(write=False)

    @property
    def se(self) -> Float64Array:
        """Standard errors."""
        return np.sqrt(np.diag(self.vcov))

    def with_vcov(self, vcov: Any) -> TwfeResult:
        """Return a new result with another covariance (``"iid"``, ``"hetero"``, CRV1)."""
        if self._revcov is None:
            raise ValueError("This result cannot recompute its covariance.")
        return self._revcov(vcov)

    @cached_property
    def _tidy(self) -> pd.DataFrame:
        se = self.se
        with np.errstate(divide="ignore", invalid="ignore"):
            stat = self.coef / se
        crit = float(student_t.ppf(1 - self.alp / 2, self.df_t))
        out = pd.DataFrame(
            {
                "term": list(self.names),
                "estimate": self.coef,
                "std_error": se,
                "statistic": stat,
                "p_value": 2 * student_t.sf(np.abs(stat), self.df_t),
                "conf_low": self.coef - crit * se,
                "conf_high": self.coef + crit * se,
            }
        )
        if "event_time" in self.extra:
            out["event_time"] = np.asarray(self.extra["event_time"], dtype=float)
        out["se_method"] = self.vcov_type
        out["band"] = "pointwise"
        out["crit_val"] = crit
        return out

    def tidy(self) -> pd.DataFrame:
        """One row per coefficient with the shared tidy columns (+ ``event_time`` if any)."""
        return self._tidy.copy()

    def glance(self) -> pd.DataFrame:
        """One-row fit summary."""
        return pd.DataFrame(
            [
                {
                    "formula": self.formula,
                    "n_obs": self.n_obs,
                    "n_coef": len(self.names),
                    "df_k": self.df_k,
                    "df_t": self.df_t,
                    "rss": self.rss,
                    "r2_within": self.r2_within,
                    "vcov_type": self.vcov_type,
                }
            ]
        )

    def summary(self) -> str:
        """fixest-style text summary."""
        t = self.tidy()
        lines = [
            f"OLS with fixed effects: {self.formula}",
            f"Observations: {self.n_obs:,}   Std. errors: {self.vcov_type}",
            "",
            f"{'':>24} {'Estimate':>11} {'Std. Error':>11} {'t value':>9} {'Pr(>|t|)':>10}",
        ]
        for r in t.itertuples(index=False):
            lines.append(
                f"{str(r.term)[:24]:>24} {r.estimate:>11.5f} {r.std_error:>11.5f} "
                f"{r.statistic:>9.3f} {r.p_value:>10.3g}"
            )
        lines += ["---", f"Within R2: {self.r2_within:.5f}   RSS: {self.rss:.5g}"]
        return "\n".join(lines)

    def to_latex(self, digits: int = 4) -> str:
        """LaTeX (booktabs) coefficient table."""
        cols = ["term", "estimate", "std_error", "conf_low", "conf_high"]
        return render_frame(self.tidy()[cols], "latex", digits, caption=self.formula)

    def to_markdown(self, digits: int = 4) -> str:
        """Markdown coefficient table."""
        cols = ["term", "estimate", "std_error", "conf_low", "conf_high"]
        return render_frame(self.tidy()[cols], "markdown", digits, caption=self.formula)

    def __repr__(self) -> str:
        return f"TwfeResult({self.formula!r}, n={self.n_obs}, vcov={self.vcov_type!r})"
