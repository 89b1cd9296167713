"""The immutable result of :func:`causalmem.att_gt`."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy.stats import chi2

from causalmem._numerics.cells import CellLayout
from causalmem._types import Float32Array, Float64Array
from causalmem.results.base import (
    PAdjust,
    RenderMixin,
    adjust_pvalues,
    inference_columns,
    significance_mark,
)

if TYPE_CHECKING:
    from causalmem._numerics.dense import DenseIF
    from causalmem._numerics.streamed import StreamedIF
    from causalmem._numerics.structured import StructuredIF

_CONTROL_NAMES = {"nevertreated": "Never Treated", "notyettreated": "Not Yet Treated"}
_METHOD_NAMES = {
    "dr": "Doubly Robust",
    "reg": "Outcome Regression",
    "ipw": "Inverse Probability Weighting",
}


@dataclass(frozen=True)
class AttGtSpec:
    """Every argument of the :func:`~causalmem.att_gt` call except the data (R ``DIDparams``)."""

    yname: str
    tname: str
    idname: str
    gname: str
    xformla: str | None
    control_group: str
    anticipation: int
    base_period: str
    est_method: str
    allow_unbalanced_panel: bool
    clustervars: tuple[str, ...]
    weightsname: str | None
    bstrap: bool
    biters: int
    cband: bool
    alp: float
    seed: int | None
    drop_always_treated: bool
    n_rows: int
    _generator: np.random.Generator | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_kwargs(cls, kw: Mapping[str, Any]) -> AttGtSpec:
        """Build the spec from :func:`att_gt`'s keyword arguments; draws a seed when None."""
        from causalmem._types import as_name_tuple

        seed: Any = kw.get("seed")
        gen = seed if isinstance(seed, np.random.Generator) else None
        if seed is None:
            # Record fresh entropy so that an unseeded result is still reproducible.
            entropy: Any = np.random.SeedSequence().entropy
            seed = int(entropy) % (2**63)
        elif gen is not None:
            seed = None
        elif not isinstance(seed, int | np.integer) or isinstance(seed, bool):
            raise TypeError(f"seed must be an int, a numpy Generator or None, got {seed!r}.")
        data = kw["data"]
        return cls(
            yname=kw["yname"],
            tname=kw["tname"],
            idname=kw["idname"],
            gname=kw["gname"],
            xformla=kw.get("xformla"),
            control_group=kw.get("control_group", "nevertreated"),
            anticipation=kw.get("anticipation", 0),
            base_period=kw.get("base_period", "varying"),
            est_method=kw.get("est_method", "dr"),
            allow_unbalanced_panel=bool(kw.get("allow_unbalanced_panel", False)),
            clustervars=as_name_tuple("clustervars", kw.get("clustervars")),
            weightsname=kw.get("weightsname"),
            bstrap=bool(kw.get("bstrap", True)),
            biters=kw.get("biters", 1000),
            cband=bool(kw.get("cband", True)),
            alp=float(kw.get("alp", 0.05)),
            seed=None if seed is None else int(seed),
            drop_always_treated=bool(kw.get("drop_always_treated", False)),
            n_rows=len(data) if isinstance(data, pd.DataFrame) else 0,
            _generator=gen,
        )

    def rng(self) -> np.random.Generator:
        """Return the bootstrap generator: the caller's, or one built from the recorded seed."""
        return self._generator if self._generator is not None else np.random.default_rng(self.seed)

    def seed_repr(self) -> str:
        """How the seed was given, for provenance."""
        return "caller Generator" if self._generator is not None else str(self.seed)

    def to_dict(self) -> dict[str, Any]:
        """Plain mapping of the recorded arguments."""
        d = dataclasses.asdict(self)
        d.pop("_generator")
        return d


@dataclass(frozen=True, slots=True)
class Draws:
    """Multiplier-bootstrap draws kept for aggregations (r scale, see ``_numerics``)."""

    cells: Float32Array | Float64Array  # [J, B]
    omega: Float32Array | Float64Array  # [K + 1, B]
    n_clusters: int


@dataclass(frozen=True, eq=False)
class AttGtResult(RenderMixin):
    """Group-time ATTs with influence-function inference; immutable.

    The inference actually used is explicit: ``se_method`` (``"analytic"`` or ``"bootstrap"``)
    and ``band`` (``"pointwise"`` or ``"uniform"``), with ``crit_val`` the band's critical value.
    Honours :class:`lmecon.result.Result`: ``spec`` (:class:`AttGtSpec`), ``provenance``,
    ``tidy()``, ``glance()``, ``summary()``, ``to_latex()``, ``to_markdown()``, ``_repr_html_()``.
    """

    spec: AttGtSpec
    cells: CellLayout
    att: Float64Array
    se: Float64Array
    se_analytic: Float64Array
    n_treated: Float64Array
    n_control: Float64Array
    crit_val: float
    band: str
    se_method: str
    engine: StructuredIF | DenseIF | StreamedIF = field(repr=False)
    draws: Draws | None = field(repr=False)
    pg_cohort: Float64Array = field(repr=False)
    n_units: int = 0
    n_clusters: int = 0
    provenance: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for name in ("att", "se", "se_analytic", "n_treated", "n_control", "pg_cohort"):
            getattr(self, name).setflags(write=False)

    # ------------------------------------------------------------------ views
    @property
    def group(self) -> Float64Array:
        """Cohort of each cell."""
        return self.cells.group

    @property
    def time(self) -> Float64Array:
        """Checkpoint (period) of each cell."""
        return self.cells.time

    @cached_property
    def _tidy(self) -> pd.DataFrame:
        c = self.cells
        out = pd.DataFrame(
            {
                "term": [f"ATT({g:g},{t:g})" for g, t in zip(c.group, c.time, strict=True)],
                "estimate": self.att,
                "std_error": self.se,
            }
        )
        for k, v in inference_columns(self.att, self.se, self.crit_val).items():
            out[k] = v
        out["group"] = c.group
        out["time"] = c.time
        out["base"] = c.base
        out["event_time"] = c.time - c.group
        out["post"] = c.post
        out["reference"] = c.reference
        out["n_treated"] = self.n_treated
        out["n_control"] = self.n_control
        out["se_method"] = self.se_method
        out["band"] = self.band
        out["crit_val"] = self.crit_val
        if self.draws is not None and self.band == "uniform":
            out["p_value_uniform"] = self._uniform_pvalues()
        return out

    def _uniform_pvalues(self) -> Float64Array:
        """Simultaneous p-values from the sup-t distribution of the bootstrap draws."""
        assert self.draws is not None
        zb = self.draws.cells
        ok = np.isfinite(self.se) & ~np.isnan(zb).any(axis=1)
        pv = np.full(self.att.size, np.nan)
        if not ok.any():
            return pv
        sup = np.max(np.abs(zb[ok]) / self.se[ok, None], axis=0)
        sup.sort()
        tstat = np.abs(self.att[ok] / self.se[ok])
        # (1 + #{sup >= |t|}) / (B + 1): never below the bootstrap's resolution 1 / (B + 1).
        exceed = sup.size - np.searchsorted(sup, tstat, side="left")
        pv[ok] = (1.0 + exceed) / (sup.size + 1.0)
        return pv

    def tidy(self, p_adjust: PAdjust | None = None) -> pd.DataFrame:
        """One row per ATT(g, t) cell with the shared tidy columns (a new frame each call).

        Columns: ``term, estimate, std_error, statistic, p_value, conf_low, conf_high, group,
        time, base, event_time, post, reference, n_treated, n_control, se_method, band,
        crit_val`` (+ ``p_value_uniform`` with a uniform band). ``conf_low``/``conf_high`` use
        ``crit_val``; reference cells (universal base period) have ``estimate = 0`` and NaN SE.

        Parameters
        ----------
        p_adjust
            ``None`` (default: the columns above) or an R ``p.adjust`` method (``"holm"``,
            ``"hochberg"``, ``"hommel"``, ``"bonferroni"``, ``"BH"``/``"fdr"``, ``"BY"``,
            ``"none"``): adds ``p_value_adj``, the pointwise ``p_value`` adjusted for
            multiplicity across every cell with a finite p-value (pre- and post-treatment; the
            reference cells are left out), by
            :func:`statsmodels.stats.multitest.multipletests`, and ``p_adjust``, the method.
            This is the R idiom ``mutate(p.adj = p.adjust(p.value, "BH"))`` on ``tidy()``;
            for another family (e.g. post-treatment cells only) apply
            :func:`causalmem.results.base.adjust_pvalues` to the rows you choose. The uniform
            band and ``p_value_uniform`` (sup-t, family-wise over all cells) are unchanged.

        Examples
        --------
        >>> res.tidy(p_adjust="BH").query("p_value_adj < 0.05")  # doctest: +SKIP
        """
        out = self._tidy.copy()
        if p_adjust is not None:
            out["p_value_adj"] = adjust_pvalues(out["p_value"].to_numpy(), p_adjust)
            out["p_adjust"] = p_adjust
        return out

    def glance(self) -> pd.DataFrame:
        """One-row model summary (sizes, settings, inference, pre-trend Wald test)."""
        w, p, df = self.pretest()
        s = self.spec
        return pd.DataFrame(
            [
                {
                    "n_units": self.n_units,
                    "n_clusters": self.n_clusters,
                    "n_periods": self.cells.tlist.size,
                    "n_groups": self.cells.glist.size,
                    "n_cells": self.cells.n_cells,
                    "control_group": s.control_group,
                    "est_method": s.est_method,
                    "base_period": s.base_period,
                    "anticipation": s.anticipation,
                    "se_method": self.se_method,
                    "band": self.band,
                    "crit_val": self.crit_val,
                    "biters": s.biters if s.bstrap else 0,
                    "alp": s.alp,
                    "pretest_wald": w,
                    "pretest_df": df,
                    "pretest_p_value": p,
                }
            ]
        )

    @cached_property
    def _pretest(self) -> tuple[float, float, int]:
        pre = np.flatnonzero(
            ~self.cells.post
            & ~self.cells.reference
            & np.isfinite(self.se_analytic)
            & (self.se_analytic > 0)
        )
        if pre.size == 0 or pre.size > 4000:
            return float("nan"), float("nan"), int(pre.size)
        import scipy.sparse as sp

        sel = sp.csr_matrix(
            (np.ones(pre.size), (pre, np.arange(pre.size))), shape=(self.att.size, pre.size)
        )
        r = self.engine.combine(sel, np.zeros((self.cells.glist.size + 1, pre.size)))
        v = r.T @ r
        a = self.att[pre]
        try:
            wstat = float(a @ np.linalg.solve(v, a))
        except np.linalg.LinAlgError:
            return float("nan"), float("nan"), int(pre.size)
        return wstat, float(chi2.sf(wstat, pre.size)), int(pre.size)

    def pretest(self) -> tuple[float, float, int]:
        """Wald test that all pre-treatment ATT(g, t) are zero (R ``did``'s pre-test).

        Uses the analytic influence-function covariance. Returns ``(W, p_value, df)``; NaN when
        there are no pre-treatment cells, the covariance is singular, or there are more than
        4,000 pre-treatment cells (use the per-cell bands instead).
        """
        return self._pretest

    # --------------------------------------------------------- memorisation
    def instantaneous(self) -> pd.DataFrame:
        """Instantaneous memorisation cells, ``c = g`` (tidy rows)."""
        t = self.tidy()
        return t[t["time"] == t["group"]].reset_index(drop=True)

    def residual(self, at: float | None = None) -> pd.DataFrame:
        """Residual memorisation ``tau(g, T)`` for every cohort ``g <= T`` (tidy rows).

        Parameters
        ----------
        at
            The checkpoint ``T`` (default: the last one; the paper uses the end of epoch one).
        """
        t = self.tidy()
        at = float(self.cells.tlist[-1]) if at is None else float(at)
        if at not in set(self.cells.tlist.tolist()):
            raise ValueError(
                f"at={at:g} is not an observed step; choose one of the steps "
                f"{self.cells.tlist[0]:g} ... {self.cells.tlist[-1]:g}."
            )
        return t[(t["time"] == at) & t["post"]].reset_index(drop=True)

    def summary(self) -> str:
        """R ``did``-style text summary."""
        t = self.tidy()
        lvl = int(round(100 * (1 - self.spec.alp)))
        band = "Simult." if self.band == "uniform" else "Pointwise"
        lines = [
            "Group-Time Average Treatment Effects (Callaway & Sant'Anna 2021)",
            "",
            f"{'Group':>10} {'Time':>10} {'ATT(g,t)':>10} {'Std. Error':>11}   "
            f"[{lvl}% {band} Conf. Band]",
        ]
        mark = significance_mark(t["conf_low"], t["conf_high"])
        for row, m in zip(t.itertuples(index=False), mark, strict=True):
            lines.append(
                f"{row.group:>10g} {row.time:>10g} {row.estimate:>10.4f} {row.std_error:>11.4f}"
                f"   [{row.conf_low:>8.4f}, {row.conf_high:>8.4f}] {m}"
            )
        w, p, df = self.pretest()
        lines += [
            "---",
            "Signif. codes: `*' confidence band does not cover 0",
            "",
            f"P-value for pre-test of parallel trends assumption: {p:.5g} (W = {w:.4g}, df = {df})"
            if np.isfinite(p)
            else "Pre-test of parallel trends: not available",
            f"Control Group: {_CONTROL_NAMES[self.spec.control_group]}"
            f",  Anticipation Periods: {self.spec.anticipation}",
            f"Estimation Method: {_METHOD_NAMES[self.spec.est_method]}"
            + ("" if self.spec.xformla else " (no covariates: all methods coincide)"),
            f"Inference: {self.se_method} SEs, {self.band} band "
            f"(critical value {self.crit_val:.3f})",
        ]
        return "\n".join(lines)

    def _table(self) -> pd.DataFrame:
        return self.tidy()[["group", "time", "estimate", "std_error", "conf_low", "conf_high"]]

    def _caption(self) -> str:
        return (
            f"ATT(g,t) of {self.spec.yname}; {self.se_method} SEs, "
            f"{int(round(100 * (1 - self.spec.alp)))}% {self.band} band"
        )

    def plot(self, kind: str = "groups", **options: Any) -> Any:
        """Chart the ATT(g, t) cells (Altair), as R ``did``'s ``ggdid()`` of an ``att_gt`` fit.

        Parameters
        ----------
        kind
            ``"groups"`` (default): one panel per cohort, ATT(g, t) with its interval by
            period, pre and post coloured (:func:`causalmem.presentation.charts.cohort_panels`,
            the ``ggdid`` layout); ``"heatmap"``: the profile heat-map, cohort by period with
            non-significant cells faint
            (:func:`causalmem.presentation.charts.profile_heatmap`).
        **options
            Passed to the chart function (titles, sizes, ``post_only``, ...).

        Returns
        -------
        altair.FacetChart or altair.Chart
            Estimates on the outcome's scale (use :class:`causalmem.MemorisationProfile` for
            the memorisation scale).
        """
        from causalmem.results._charts import cohort_panels, profile_heatmap

        if kind == "groups":
            return cohort_panels(self.tidy(), **options)
        if kind == "heatmap":
            options.setdefault("title", f"ATT(g, t) of {self.spec.yname}")
            options.setdefault("value_title", "ATT(g, t)")
            return profile_heatmap(self.tidy(), **options)
        raise ValueError(f"kind={kind!r}; use 'groups' or 'heatmap'.")

    def __repr__(self) -> str:
        return (
            f"AttGtResult(yname={self.spec.yname!r}, cells={self.cells.n_cells}, "
            f"units={self.n_units}, se_method={self.se_method!r}, band={self.band!r})"
        )
