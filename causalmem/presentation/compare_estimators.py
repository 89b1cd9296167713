"""One panel, several event-study estimators: a shared table and one dodged chart.

:func:`compare_estimators` fits Callaway & Sant'Anna (``"cs"``), Sun & Abraham (``"sa"``), the
dynamic TWFE regression (``"twfe"``), the imputation estimator of Borusyak, Jaravel & Spiess
(``"imputation"``) and Gardner's two-stage DiD (``"two_stage"``) on the same panel, with event
time counted in checkpoints (periods on the observed grid) for all of them, and returns an
:class:`EstimatorComparison` with :meth:`~EstimatorComparison.etable` and
:meth:`~EstimatorComparison.chart` (points and intervals by estimator, dodged), so that the
analyst sees where they disagree (the R idiom of ``did2s::event_study(estimator = "all")``).

The estimators answer slightly different questions before treatment: CS's pre-periods are
short differences (``base_period="varying"``), Sun-Abraham and TWFE are relative to ``e = -1``,
the imputation estimator's leads are BJS's pre-trend regression (relative to the earliest lead),
and did2s's leads are mean first-stage residuals. After treatment all target the average effect
``e`` checkpoints after training, under different weighting when effects are heterogeneous.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from causalmem.errors import OptionError
from causalmem.presentation.tables import Table, etable
from causalmem.results.base import RenderMixin, provenance

__all__ = ["ESTIMATOR_LABELS", "CompareSpec", "EstimatorComparison", "compare_estimators"]

#: Display names of the estimators, in the default order.
ESTIMATOR_LABELS: Mapping[str, str] = {
    "cs": "Callaway-Sant'Anna",
    "sa": "Sun-Abraham",
    "twfe": "TWFE",
    "imputation": "Imputation (BJS)",
    "two_stage": "Two-stage (Gardner)",
}

_COLUMNS = ("term", "estimate", "std_error", "conf_low", "conf_high", "event_time")


@dataclass(frozen=True)
class CompareSpec:
    """The :func:`compare_estimators` call (every argument except the data)."""

    yname: str
    tname: str
    idname: str
    gname: str
    estimators: tuple[str, ...]
    window: tuple[float, float] | None
    alp: float


@dataclass(frozen=True, eq=False)
class EstimatorComparison(RenderMixin):
    """Event-study fits of several estimators on one panel; immutable.

    Attributes
    ----------
    spec
        The call (:class:`CompareSpec`); ``spec.window`` is the event-time window
        ``(min_e, max_e)`` shown in the table and chart (None = all).
    results
        Fitted results by estimator key (``"cs"`` is the dynamic
        :class:`~causalmem.results.aggte.AggteResult`).
    """

    spec: CompareSpec
    results: Mapping[str, Any] = field(repr=False)
    provenance: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def yname(self) -> str:
        """Outcome column."""
        return self.spec.yname

    @property
    def window(self) -> tuple[float, float] | None:
        """Event-time window shown."""
        return self.spec.window

    @property
    def alp(self) -> float:
        """Significance level of the intervals."""
        return self.spec.alp

    @property
    def estimators(self) -> tuple[str, ...]:
        """Estimator keys in display order."""
        return tuple(self.results)

    def tidy(self) -> pd.DataFrame:
        """Long frame: one row per estimator and term (``estimator``, ``label`` + tidy columns)."""
        parts = []
        for key, res in self.results.items():
            t = res.tidy()
            t = t.loc[:, [c for c in _COLUMNS if c in t.columns]].copy()
            if self.window is not None:
                e = t["event_time"]
                t = t[e.isna() | ((e >= self.window[0]) & (e <= self.window[1]))]
            t.insert(0, "label", ESTIMATOR_LABELS.get(key, key))
            t.insert(0, "estimator", key)
            parts.append(t)
        return pd.concat(parts, ignore_index=True)

    def by_estimator(self) -> pd.DataFrame:
        """One row per estimator: sizes and the overall post-treatment average if reported."""
        rows = []
        for key, res in self.results.items():
            g = res.glance().iloc[0].to_dict() if hasattr(res, "glance") else {}
            t = res.tidy()
            ov = t[t["term"] == "overall"]
            rows.append(
                {
                    "estimator": key,
                    "label": ESTIMATOR_LABELS.get(key, key),
                    "n_obs": g.get("n_obs", np.nan),
                    "n_units": g.get("n_units", np.nan),
                    "overall_estimate": float(ov["estimate"].iloc[0])
                    if len(ov)
                    else g.get("overall_estimate", np.nan),
                    "overall_std_error": float(ov["std_error"].iloc[0])
                    if len(ov)
                    else g.get("overall_std_error", np.nan),
                }
            )
        return pd.DataFrame(rows)

    def glance(self) -> pd.DataFrame:
        """One row: how many estimators and how far apart their event-time estimates are.

        ``max_spread_post`` / ``max_spread_pre``: the largest range (max - min across
        estimators) of the estimates at one post-/pre-treatment event time in the window;
        ``event_time_max_spread_post``: where it occurs.
        """
        t = self.tidy()
        t = t[t["event_time"].notna()]
        rng = t.groupby("event_time")["estimate"].agg(lambda v: float(v.max() - v.min()))
        post, pre = rng[rng.index >= 0], rng[rng.index < 0]
        return pd.DataFrame(
            [
                {
                    "yname": self.spec.yname,
                    "n_estimators": len(self.results),
                    "estimators": ",".join(self.results),
                    "max_spread_post": float(post.max()) if len(post) else np.nan,
                    "event_time_max_spread_post": float(post.index[int(np.argmax(post.to_numpy()))])
                    if len(post)
                    else np.nan,
                    "max_spread_pre": float(pre.max()) if len(pre) else np.nan,
                    "alp": self.spec.alp,
                }
            ]
        )

    def etable(self, digits: int = 4, keep: str | None = None) -> Table:
        """Side-by-side table (:func:`causalmem.etable`) of the event-time terms in the window."""
        models = list(self.results.values())
        names = [ESTIMATOR_LABELS.get(k, k) for k in self.results]
        keep_re = keep
        if keep_re is None and self.window is not None:
            lo, hi = self.window
            shown = sorted(
                {
                    float(e)
                    for m in models
                    for e in m.tidy()["event_time"].dropna()
                    if lo <= float(e) <= hi
                }
            )
            keep_re = "^(?:overall|" + "|".join(f"event_time={e:g}" for e in shown) + ")$"
        return etable(
            models, names, keep=keep_re, digits=digits, caption=f"Event studies of {self.yname}"
        )

    def summary(self) -> str:
        """Return the comparison table as Markdown."""
        return self.etable().to_markdown()

    def _table(self) -> pd.DataFrame:
        t = self.tidy()
        return t[["label", "term", "estimate", "std_error", "conf_low", "conf_high"]]

    def _caption(self) -> str:
        return f"Event studies of {self.yname} by estimator"

    def chart(
        self,
        *,
        title: str | None = None,
        width: int = 560,
        height: int = 300,
        dodge: float = 0.6,
    ) -> Any:
        """One event-study chart with every estimator: dodged points and intervals.

        Parameters
        ----------
        title
            Chart title (default: ``"Event studies of <yname>"``).
        width, height
            Size in pixels.
        dodge
            Total horizontal spread (in event-time units) of the estimators at each event time.

        Returns
        -------
        altair.LayerChart
        """
        from lmecon.charts import alt as _alt

        alt = _alt()
        t = self.tidy()
        t = t[t["event_time"].notna()].copy()
        keys = list(self.results)
        k = len(keys)
        offs = {key: (i - (k - 1) / 2) * (dodge / max(k - 1, 1)) for i, key in enumerate(keys)}
        t["x"] = t["event_time"] + t["estimator"].map(offs)
        labels = [ESTIMATOR_LABELS.get(x, x) for x in keys]
        colour = alt.Color(
            "label:N",
            title="Estimator",
            sort=labels,
            scale=alt.Scale(domain=labels, scheme="tableau10"),
        )
        base = alt.Chart(t)
        xq = alt.X("x:Q", title="checkpoints since treatment (e)", axis=alt.Axis(tickMinStep=1))
        tip = [
            alt.Tooltip("label:N", title="estimator"),
            alt.Tooltip("event_time:Q", title="e"),
            alt.Tooltip("estimate:Q", format=".4f"),
            alt.Tooltip("conf_low:Q", format=".4f", title="lower"),
            alt.Tooltip("conf_high:Q", format=".4f", title="upper"),
        ]
        rules = base.mark_rule(strokeWidth=1.5).encode(
            x=xq,
            y=alt.Y("conf_low:Q", title=f"effect on {self.yname}"),
            y2="conf_high:Q",
            color=colour,
            tooltip=tip,
        )
        shape = alt.Shape("label:N", title="Estimator", sort=labels, scale=alt.Scale(domain=labels))
        pts = base.mark_point(filled=True, size=40).encode(
            x=xq, y="estimate:Q", color=colour, shape=shape, tooltip=tip
        )
        zero = alt.Chart(pd.DataFrame({"y": [0.0]})).mark_rule(color="#444", strokeDash=[4, 3])
        start = alt.Chart(pd.DataFrame({"x": [-0.5]})).mark_rule(color="#999", strokeDash=[2, 2])
        lvl = int(round(100 * (1 - self.alp)))
        return alt.layer(
            rules,
            pts,
            zero.encode(y="y:Q"),
            start.encode(x="x:Q"),
            title=title or f"Event studies of {self.yname} ({lvl}% pointwise intervals)",
        ).properties(width=width, height=height)

    def plot(self, **options: Any) -> Any:
        """Alias of :meth:`chart`."""
        return self.chart(**options)


def compare_estimators(
    data: pd.DataFrame,
    yname: str,
    tname: str,
    idname: str,
    gname: str,
    *,
    estimators: Sequence[str] = ("cs", "sa", "twfe", "imputation", "two_stage"),
    window: tuple[float, float] | None = None,
    alp: float = 0.05,
    options: Mapping[str, Mapping[str, Any]] | None = None,
) -> EstimatorComparison:
    """Fit several event-study estimators on one panel and compare them.

    Parameters
    ----------
    data, yname, tname, idname, gname
        Long panel and roles (never treated: missing cohort), as :func:`causalmem.att_gt`.
    estimators
        Any of ``"cs"`` (:func:`~causalmem.att_gt` + dynamic :func:`~causalmem.aggte`, analytic
        SEs), ``"sa"`` and ``"twfe"`` (:func:`~causalmem.event_study`), ``"imputation"``
        (:func:`~causalmem.estimators.imputation.did_imputation` with all horizons and BJS
        leads) and ``"two_stage"`` (:func:`~causalmem.estimators.imputation.did2s`, horizons
        and leads). Event time is in checkpoints for all of them.
    window
        ``(min_e, max_e)`` shown in the table and the chart (estimates are fitted on all).
    alp
        Level of the pointwise intervals.
    options
        Extra keyword arguments per estimator key (e.g. ``{"cs": {"control_group":
        "notyettreated"}}``).

    Returns
    -------
    EstimatorComparison
        With ``etable()``, ``chart()``, ``tidy()``, ``glance()`` and ``by_estimator()``.

    Examples
    --------
    >>> import causalmem as cm
    >>> from causalmem.presentation.compare_estimators import compare_estimators
    >>> df = cm.simulate_panel(seed=0).frame
    >>> cmp = compare_estimators(df, "y", "step", "unit", "cohort", estimators=["cs", "twfe"])
    >>> cmp.estimators
    ('cs', 'twfe')
    """
    unknown = [e for e in estimators if e not in ESTIMATOR_LABELS]
    if unknown or not estimators:
        raise OptionError(
            f"estimators={list(estimators)!r}: choose among {list(ESTIMATOR_LABELS)}."
        )
    if len(set(estimators)) != len(estimators):
        raise OptionError(f"estimators={list(estimators)!r} lists an estimator twice.")
    if window is not None and window[0] > window[1]:
        raise OptionError(f"window={window!r}: the lower end is above the upper end.")
    opts = {k: dict(v) for k, v in (options or {}).items()}
    extra = set(opts) - set(estimators)
    if extra:
        raise OptionError(f"options given for estimators not fitted: {sorted(extra)}.")
    roles = (data, yname, tname, idname, gname)
    results: dict[str, Any] = {}
    for key in estimators:
        kw = opts.get(key, {})
        results[key] = _fit(key, roles, alp, kw)
    spec = CompareSpec(
        yname=yname,
        tname=tname,
        idname=idname,
        gname=gname,
        estimators=tuple(estimators),
        window=None if window is None else (float(window[0]), float(window[1])),
        alp=float(alp),
    )
    return EstimatorComparison(spec=spec, results=results, provenance=provenance())


def _fit(key: str, roles: tuple[Any, ...], alp: float, kw: dict[str, Any]) -> Any:
    if key == "cs":
        from causalmem.estimators.aggte import aggte
        from causalmem.estimators.att_gt import att_gt

        kw.setdefault("bstrap", False)
        res = att_gt(*roles, alp=alp, **kw)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return aggte(res, "dynamic", event_time="periods", na_rm=True)
    if key in ("sa", "twfe"):
        from causalmem.estimators.event_study import event_study

        return event_study(*roles, estimator="sunab" if key == "sa" else "twfe", alp=alp, **kw)
    from causalmem.estimators.imputation import did2s, did_imputation

    kw.setdefault("horizon", True)
    kw.setdefault("pretrends", True)
    kw.setdefault("event_time", "periods")
    fn = did_imputation if key == "imputation" else did2s
    return fn(*roles, alp=alp, **kw)
