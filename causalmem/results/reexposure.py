"""Immutable results of :func:`causalmem.estimators.reexposure.reexposure_att`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from causalmem._numerics.inference import pointwise_crit
from causalmem._numerics.reexposure import aggregation_weights, bootstrap
from causalmem._types import Float64Array
from causalmem.results.base import RenderMixin, inference_columns

__all__ = ["AGGREGATIONS", "ReexposureAggregate", "ReexposureResult", "ReexposureSpec"]

AGGREGATIONS: tuple[str, ...] = ("event", "cohort_event", "cohort", "forgetting", "simple")
_ESTIMAND_NAMES = {
    "second": "effect of the second exposure (re-memorisation)",
    "combined": "combined effect of both exposures vs never trained",
}
_AGG_TITLES = {
    "event": "by checkpoints since the second exposure",
    "cohort_event": "by first-exposure cohort and checkpoints since the second exposure",
    "cohort": "by first-exposure cohort (post cells)",
    "forgetting": "forgetting after re-exposure: θ(g, 0) − θ(g, e), averaged over groups",
    "simple": "overall (post cells)",
}


@dataclass(frozen=True)
class ReexposureSpec:
    """Arguments of the :func:`~causalmem.estimators.reexposure.reexposure_att` call."""

    yname: str
    estimand: str
    control: str
    unit: str
    time: str
    first: str
    second: str
    cluster: str | None
    se_correction: bool
    bstrap: bool
    biters: int
    cband: bool
    alp: float
    seed: int


def _inference(
    est: Float64Array,
    r: Float64Array,
    spec: ReexposureSpec,
    n_units: int,
    seed: int,
    keys: np.ndarray,
) -> tuple[Float64Array, float, str, str]:
    """SEs, critical value, SE method and band kind of estimates with r-scale influence ``r``."""
    se = np.sqrt(np.einsum("ik,ik->k", r, r))
    se = np.where(np.isfinite(est), se, np.nan)
    method = "analytic" + (" (clustered)" if spec.cluster else "")
    crit, band = pointwise_crit(spec.alp), "pointwise"
    if spec.bstrap and np.isfinite(est).any():
        ok = np.isfinite(est)
        bse, bcrit = bootstrap(
            r[:, ok], keys=keys, n_units=n_units, biters=spec.biters, alp=spec.alp, seed=seed
        )
        se = se.copy()
        se[ok] = bse
        method = "multiplier bootstrap" + (" (clustered)" if spec.cluster else "")
        if spec.cband and np.isfinite(bcrit):
            crit, band = bcrit, "uniform"
    return se, crit, method, band


@dataclass(frozen=True, eq=False)
class ReexposureAggregate(RenderMixin):
    """An aggregation of re-exposure cells (immutable); ``tidy`` holds one row per label."""

    spec: ReexposureSpec
    kind: str
    labels: pd.DataFrame = field(repr=False)
    estimate: Float64Array = field(repr=False)
    std_error: Float64Array = field(repr=False)
    crit_val: float
    band: str
    se_method: str
    provenance: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @cached_property
    def _tidy(self) -> pd.DataFrame:
        out = self.labels.copy()
        keys = list(self.labels.columns)
        out.insert(
            0,
            "term",
            [
                ",".join(f"{k}={v:g}" for k, v in zip(keys, row, strict=True))
                for row in self.labels.itertuples(index=False)
            ]
            if keys
            else ["overall"],
        )
        out["estimate"] = self.estimate
        out["std_error"] = self.std_error
        for k, v in inference_columns(self.estimate, self.std_error, self.crit_val).items():
            out[k] = v
        out["kind"] = self.kind
        out["estimand"] = self.spec.estimand
        out["band"] = self.band
        out["crit_val"] = self.crit_val
        return out

    def tidy(self) -> pd.DataFrame:
        """Rows per label: the label columns, ``estimate, std_error, statistic, p_value,
        conf_low, conf_high`` (band ``estimate ± crit_val × std_error``), ``kind``, ``estimand``,
        ``band``, ``crit_val``; a new frame."""  # noqa: D205, D209
        return self._tidy.copy()

    def glance(self) -> pd.DataFrame:
        """One-row summary: kind, estimand, number of estimates, SE method, band."""
        return pd.DataFrame(
            [
                {
                    "kind": self.kind,
                    "estimand": self.spec.estimand,
                    "n_estimates": int(self.estimate.size),
                    "mean_estimate": float(np.nanmean(self.estimate))
                    if self.estimate.size
                    else float("nan"),
                    "se_method": self.se_method,
                    "band": self.band,
                    "crit_val": self.crit_val,
                    "alp": self.spec.alp,
                }
            ]
        )

    def summary(self) -> str:
        """Return a printable table with its title."""
        head = (
            f"{_ESTIMAND_NAMES[self.spec.estimand]} of {self.spec.yname}, {_AGG_TITLES[self.kind]}"
        )
        foot = f"Inference: {self.se_method}; {self.band} band (critical value {self.crit_val:.3f})"
        return head + "\n\n" + self._table().to_string(index=False) + "\n---\n" + foot

    def _table(self) -> pd.DataFrame:
        return self.tidy()[["term", "estimate", "std_error", "conf_low", "conf_high"]]

    def _caption(self) -> str:
        return f"Re-exposure: {_ESTIMAND_NAMES[self.spec.estimand]}, {_AGG_TITLES[self.kind]}"

    def plot(self, **options: Any) -> Any:
        """Chart the aggregation (Altair).

        ``event`` / ``forgetting``: the path by checkpoints since the second exposure with its
        band (:func:`causalmem.results._charts.event_path`); other kinds: point ranges.
        """
        from causalmem.results._charts import event_path, point_range

        short = {"second": "Second exposure", "combined": "Both exposures vs never trained"}
        options.setdefault("title", f"{short[self.spec.estimand]}: {_AGG_TITLES[self.kind]}")
        options.setdefault("value_title", f"effect on {self.spec.yname}")
        if self.kind in ("event", "forgetting"):
            options.setdefault("x_title", "checkpoints since the second exposure")
            t = self.tidy()
            if self.kind == "event" and (t["event_period"] < -1).any():
                # the universal base period (e = −1) is zero by construction: show it
                ref = {"event_period": -1, "estimate": 0.0, "conf_low": 0.0, "conf_high": 0.0}
                t = pd.concat([t, pd.DataFrame([ref])], ignore_index=True)
                t = t.sort_values("event_period", ignore_index=True)
            return event_path(t, x="event_period", **options)
        x = "g1" if self.kind == "cohort" else "term"
        return point_range(self.tidy(), x, **options)

    def __repr__(self) -> str:
        return (
            f"ReexposureAggregate(kind={self.kind!r}, estimand={self.spec.estimand!r}, "
            f"n={self.estimate.size}, band={self.band!r})"
        )


@dataclass(frozen=True, eq=False)
class ReexposureResult(RenderMixin):
    """Group-time effects of a re-exposure estimand over (g1, g2) groups (immutable).

    Attributes
    ----------
    spec
        The call's arguments.
    cells
        One row per (g1, g2, time): ``g1, g2, time, base, event_period`` (checkpoints since
        ``g2``; for once-trained groups of the combined estimand, since ``g1``), ``phase``
        (``pre``: placebo before the base period; ``between``: after the first, before the
        second exposure; ``post``), ``estimate``, ``n_treated``, ``n_control``.
    influence
        r-scale influence functions (clusters × cells, read-only): ``se = sqrt(sum r²)``.
    n_units
        Units in the panel.
    """

    spec: ReexposureSpec
    cells: pd.DataFrame = field(repr=False)
    influence: Float64Array = field(repr=False)
    n_units: int
    provenance: Mapping[str, Any] = field(default_factory=dict, repr=False)
    keys: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)
    """Unit (or cluster) id of each influence row: the bootstrap multipliers are keyed by it."""

    def __post_init__(self) -> None:
        if self.keys.size == 0:  # positional ids when built without them
            object.__setattr__(self, "keys", np.arange(self.influence.shape[0]))
        if self.keys.shape[0] != self.influence.shape[0]:
            raise ValueError(
                f"keys has {self.keys.shape[0]} ids for {self.influence.shape[0]} influence rows."
            )

    @cached_property
    def _inference(self) -> tuple[Float64Array, float, str, str]:
        est = self.cells["estimate"].to_numpy(np.float64)
        return _inference(est, self.influence, self.spec, self.n_units, self.spec.seed, self.keys)

    @property
    def crit_val(self) -> float:
        """Critical value of the band (sup-t over cells when ``cband``)."""
        return self._inference[1]

    @cached_property
    def _tidy(self) -> pd.DataFrame:
        se, crit, method, band = self._inference
        out = self.cells.copy()
        est = out["estimate"].to_numpy(np.float64)
        out.insert(
            0,
            "term",
            [
                f"ATT({a:g},{b:g};{t:g})"
                for a, b, t in zip(out["g1"], out["g2"], out["time"], strict=True)
            ],
        )
        out["std_error"] = se
        for k, v in inference_columns(est, se, crit).items():
            out[k] = v
        out["se_method"] = method
        out["band"] = band
        out["estimand"] = self.spec.estimand
        return out

    def tidy(self) -> pd.DataFrame:
        """Cells with ``term``, ``std_error``, ``statistic``, ``p_value``, ``conf_low``,
        ``conf_high`` (band ``estimate ± crit_val × std_error``), ``se_method``, ``band``,
        ``estimand``; a new frame."""  # noqa: D205, D209
        return self._tidy.copy()

    def glance(self) -> pd.DataFrame:
        """One-row summary: estimand, control group, sizes, the mean post estimate, inference."""
        t = self._tidy
        post = t[t["phase"] == "post"]
        return pd.DataFrame(
            [
                {
                    "estimand": self.spec.estimand,
                    "control": self.spec.control,
                    "n_units": self.n_units,
                    "n_groups": int(t[["g1", "g2"]].drop_duplicates().shape[0]),
                    "n_cells": len(t),
                    "mean_post": float(post["estimate"].mean()) if len(post) else float("nan"),
                    "se_method": t["se_method"].iloc[0] if len(t) else "",
                    "band": t["band"].iloc[0] if len(t) else "",
                    "crit_val": self.crit_val,
                    "alp": self.spec.alp,
                }
            ]
        )

    def summary(self) -> str:
        """Return a printable summary: the design and the event path."""
        g = self.glance().iloc[0]
        head = (
            f"Re-exposure: {_ESTIMAND_NAMES[self.spec.estimand]} of {self.spec.yname}; controls "
            f"{self.spec.control!r}; {g['n_groups']} (g1, g2) groups, {g['n_cells']} cells, "
            f"{g['n_units']} units; {g['se_method']} SEs, {g['band']} band."
        )
        return head + "\n\n" + self.aggregate("event").summary()

    def _table(self) -> pd.DataFrame:
        return self.tidy()[["term", "estimate", "std_error", "conf_low", "conf_high"]]

    def _caption(self) -> str:
        return f"Re-exposure cells: {_ESTIMAND_NAMES[self.spec.estimand]}"

    def aggregate(self, kind: str = "event", *, phase: str | None = None) -> ReexposureAggregate:
        """Aggregate cells with fixed weights ∝ treated-group size.

        Parameters
        ----------
        kind
            ``"event"`` (by checkpoints since ``g2``, placebo periods included),
            ``"cohort_event"`` (by ``g1`` and event period), ``"cohort"`` (by ``g1``, post cells),
            ``"forgetting"`` (per event period ``e ≥ 1``: group-weighted mean of
            ``ATT(g1, g2, g2) − ATT(g1, g2, g2+e)`` over groups observed at both; positive =
            memorisation lost since the instantaneous effect), ``"simple"`` (post cells).
        phase
            Restrict the cells first (``"pre"``, ``"between"``, ``"post"``); default: all for
            ``event``/``cohort_event``, ``post`` otherwise.

        Returns
        -------
        ReexposureAggregate
            Weights are fixed (the sampling design fixes the group sizes), so the aggregate's
            influence function is the same linear combination of the cells' influence functions;
            the bootstrap band is uniform over the aggregate's labels.
        """
        if kind not in AGGREGATIONS:
            raise ValueError(f"kind={kind!r}; use one of {list(AGGREGATIONS)}.")
        cells = self.cells
        if phase is None and kind in ("cohort", "simple", "forgetting"):
            phase = "post"
        mask = (
            np.ones(len(cells), dtype=bool)
            if phase is None
            else (cells["phase"] == phase).to_numpy()
        )
        sub = cells.assign(_all=0).copy()
        sub.loc[~mask, "estimate"] = np.nan
        if kind == "forgetting":
            labels, w = _forgetting_weights(sub)
        else:
            keys = {
                "event": ["event_period"],
                "cohort_event": ["g1", "event_period"],
                "cohort": ["g1"],
                "simple": ["_all"],
            }[kind]
            labels, w = aggregation_weights(sub, keys)
            if kind == "simple":
                labels = labels.drop(columns="_all")
        est_cells = np.nan_to_num(cells["estimate"].to_numpy(np.float64))
        est = est_cells @ w
        r = self.influence @ w
        se, crit, method, band = _inference(
            est, r, self.spec, self.n_units, self.spec.seed + 1, self.keys
        )
        return ReexposureAggregate(
            spec=self.spec,
            kind=kind,
            labels=labels,
            estimate=est,
            std_error=se,
            crit_val=crit,
            band=band,
            se_method=method,
            provenance=self.provenance,
        )

    def plot(self, kind: str = "event", **options: Any) -> Any:
        """Chart the event path (default) or another aggregation (see :meth:`aggregate`)."""
        return self.aggregate(kind).plot(**options)

    def __repr__(self) -> str:
        return (
            f"ReexposureResult(estimand={self.spec.estimand!r}, cells={len(self.cells)}, "
            f"units={self.n_units})"
        )


def _forgetting_weights(cells: pd.DataFrame) -> tuple[pd.DataFrame, Float64Array]:
    """Weights of the forgetting contrasts ``ATT(g, g2) − ATT(g, g2 + e)`` per ``e ≥ 1``."""
    ok = np.isfinite(cells["estimate"].to_numpy())
    c = cells.assign(_row=np.arange(len(cells)))[ok]
    inst = c[c["event_period"] == 0].set_index(["g1", "g2"])["_row"]
    later = c[c["event_period"] >= 1]
    key = pd.MultiIndex.from_frame(later[["g1", "g2"]])
    zero_row = inst.reindex(key).to_numpy()
    later = later[np.isfinite(zero_row)]
    zero_row = zero_row[np.isfinite(zero_row)].astype(np.int64)
    es = np.sort(later["event_period"].unique())
    w = np.zeros((len(cells), es.size))
    col = np.searchsorted(es, later["event_period"].to_numpy())
    nt = later["n_treated"].to_numpy(np.float64)
    tot = np.bincount(col, weights=nt, minlength=es.size)
    share = nt / tot[col]
    np.add.at(w, (later["_row"].to_numpy(), col), -share)
    np.add.at(w, (zero_row, col), share)
    return pd.DataFrame({"event_period": es.astype(np.int64)}), w
