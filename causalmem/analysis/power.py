"""Power and sample size for detecting memorisation with the DiD estimator of ATT(g, c).

The DiD estimate of cell ``(g, g + k)`` (``k`` checkpoints after training, base period
``g − 1``) is a difference of two means of outcome changes over ``d = k + 1`` checkpoints,

    τ̂ = mean_{x in g}(Y_{g+k} − Y_{g−1}) − mean_{x in C}(Y_{g+k} − Y_{g−1}),

so ``Var(τ̂) = σ²_T(d) / n + σ²_C(d) / n_C`` with ``σ²_T(d)``, ``σ²_C(d)`` the variances of the
``d``-checkpoint change among treated and control instances. They grow with ``d`` (checkpoints
drift apart) and the treated one also carries the spread of memorisation across instances.
:func:`fit_variance` calibrates them on a scored lab panel, :func:`power` and
:func:`required_n` turn them into power and the instances per cohort needed to detect a
memorisation of size ``δ`` (two-sided test at level ``α``; a *uniform* band over ``J`` cells uses
the Šidák critical value ``z_{1 − (1 − (1 − α)^{1/J})/2}``, which bounds the sup-t value of
nearly independent cells), and :func:`check_power` compares predicted power with the empirical
rejection rate of subsamples of the same panel.

Closed form (ignoring the far tail, which changes power by less than ``Φ(−2z)``)::

    n = σ²_T(d) / ((δ / (z_{crit} + z_{power}))² − σ²_C(d) / n_C)

(with ``n_C = n``: ``n = (σ²_T + σ²_C)(z_{crit} + z_{power})² / δ²``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy.stats import norm

from causalmem._types import BandKind as Band
from causalmem.results.base import RenderMixin, provenance

if TYPE_CHECKING:
    from causalmem.panel.panel import Panel

__all__ = [
    "VarianceModel",
    "VarianceSpec",
    "check_power",
    "critical_value",
    "fit_variance",
    "plan_sample_size",
    "power",
    "required_n",
]


def critical_value(alp: float = 0.05, *, band: Band = "pointwise", n_cells: int = 1) -> float:
    """Two-sided critical value: ``z_{1−α/2}``, or Šidák's for a uniform band over ``n_cells``.

    Parameters
    ----------
    alp
        Significance level ``α`` (R did's ``alp``).
    band
        ``"pointwise"`` or ``"uniform"`` (Šidák over ``n_cells`` cells).
    n_cells
        Cells the uniform band covers.

    Returns
    -------
    float

    Examples
    --------
    >>> round(critical_value(0.05), 4), round(critical_value(0.05, band="uniform", n_cells=10), 3)
    (1.96, 2.8)
    """
    if not 0 < alp < 1:
        raise ValueError(f"alp must lie in (0, 1); got {alp}.")
    if band == "pointwise":
        return float(norm.ppf(1 - alp / 2))
    if band != "uniform":
        raise ValueError(f"band={band!r}; use 'pointwise' or 'uniform'.")
    if n_cells < 1:
        raise ValueError("n_cells must be at least 1.")
    a1 = 1 - (1 - alp) ** (1 / n_cells)
    return float(norm.ppf(1 - a1 / 2))


# ----------------------------------------------------------------------------- variance
def _wide(panel: Panel, outcome: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    sch = panel.schema
    f = panel.frame
    y = f.pivot(index=sch.unit, columns=sch.step, values=outcome)
    if y.isna().any().any():
        raise ValueError(
            "the panel is unbalanced; calibrate on a panel with every instance scored at every "
            "checkpoint (e.g. GroundTruth.panel)."
        )
    coh = f.groupby(sch.unit, sort=True)[sch.cohort].first().reindex(y.index)
    cohort = coh.astype("float64").to_numpy()  # NaN = never trained
    return y.to_numpy(np.float64), np.asarray(y.columns, dtype=np.int64), cohort


@dataclass(frozen=True)
class VarianceSpec:
    """The :func:`fit_variance` call (frozen): outcome and largest tabulated distance."""

    outcome: str
    max_distance: int | None = None


@dataclass(frozen=True, eq=False)
class VarianceModel(RenderMixin):
    """Variance of ``d``-checkpoint outcome changes, treated and control, fitted on a panel.

    Honours :class:`lmecon.result.Result` (``spec``: :class:`VarianceSpec`).

    Attributes
    ----------
    table
        Empirical variances per distance ``d``: ``distance``, ``var_treated`` (pooled
        within-cohort variance of ``Y_{g+d−1} − Y_{g−1}``), ``var_control`` (variance of
        ``Y_{t+d} − Y_t`` over never-trained instances, averaged over ``t``), ``n_cells``.
    cells
        The same per cohort: ``group``, ``base`` (``g − 1``), ``distance``, ``var_treated`` and
        ``var_control`` (controls over the same two checkpoints). In the lab both depend on
        *when* in training the cell lies (early changes are far noisier), not only on ``d``.
    coef_treated, coef_control
        ``(a, b)`` of the linear fit ``σ²(d) = a + b d`` (weighted by cells; used beyond the
        calibrated distances and with ``smooth=True``).
    spec
        The call; ``outcome`` (a property) is the outcome it was fitted on.
    """

    table: pd.DataFrame = field(repr=False)
    cells: pd.DataFrame = field(repr=False)
    coef_treated: tuple[float, float]
    coef_control: tuple[float, float]
    spec: VarianceSpec
    provenance: dict[str, Any] = field(repr=False, default_factory=dict)

    @property
    def outcome(self) -> str:
        """The outcome the variances were fitted on."""
        return self.spec.outcome

    def variance(
        self,
        distance: npt.ArrayLike,
        which: Literal["treated", "control"],
        smooth: bool = False,
        group: float | None = None,
    ) -> npt.NDArray[np.float64]:
        """Return ``σ²(d)``: empirical at calibrated distances, else (or ``smooth``) the fit.

        With ``group``, the calibrated value of that cohort's cell ``(g, g + d − 1)`` where
        there is one (else the pooled value).
        """
        d = np.atleast_1d(np.asarray(distance, dtype=np.float64))
        if group is not None and not smooth:
            c = self.cells[self.cells["group"] == group].set_index("distance")[f"var_{which}"]
            hit = np.array([float(c.get(int(x), np.nan)) for x in d])
            if np.isfinite(hit).all():
                return hit
        a, b = self.coef_treated if which == "treated" else self.coef_control
        fit = np.maximum(a + b * d, 1e-12)
        if smooth:
            return fit
        emp = self.table.set_index("distance")[f"var_{which}"]
        out = np.array(
            [float(emp.get(int(x), np.nan)) if float(x).is_integer() else np.nan for x in d]
        )
        return np.where(np.isfinite(out), out, fit)

    def tidy(self) -> pd.DataFrame:
        """Return the calibration table with the fitted values (a new frame)."""
        t = self.table.copy()
        t["fit_treated"] = self.variance(t["distance"], "treated", smooth=True)
        t["fit_control"] = self.variance(t["distance"], "control", smooth=True)
        return t

    def glance(self) -> pd.DataFrame:
        """One row: outcome, calibrated distances and the linear fits ``σ²(d) = a + b d``."""
        return pd.DataFrame(
            [
                {
                    "outcome": self.outcome,
                    "n_distances": len(self.table),
                    "n_cells": len(self.cells),
                    "intercept_treated": self.coef_treated[0],
                    "slope_treated": self.coef_treated[1],
                    "intercept_control": self.coef_control[0],
                    "slope_control": self.coef_control[1],
                }
            ]
        )

    def summary(self) -> str:
        """Text summary of the calibration."""
        (at, bt), (ac, bc) = self.coef_treated, self.coef_control
        lines = [
            f"Variance of d-checkpoint changes of {self.outcome} "
            f"({len(self.table)} distances, {len(self.cells)} cohort cells)",
            f"treated: σ²(d) = {at:.4g} + {bt:.4g} d;  control: σ²(d) = {ac:.4g} + {bc:.4g} d",
            "",
            f"{'distance':>9} {'var_treated':>12} {'var_control':>12} {'n_cells':>8}",
        ]
        for r in self.table.itertuples(index=False):
            lines.append(
                f"{r.distance:>9d} {r.var_treated:>12.4g} {r.var_control:>12.4g} {r.n_cells:>8d}"
            )
        return "\n".join(lines)

    def _caption(self) -> str:
        return f"Variance of d-checkpoint changes of {self.outcome}"


def _linfit(d: np.ndarray, v: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    ok = np.isfinite(v)
    d, v, w = d[ok], v[ok], w[ok]
    if d.size == 0:
        raise ValueError("no finite variances to fit.")
    if d.size == 1:
        return float(v[0]), 0.0
    x = np.column_stack([np.ones_like(d), d]) * np.sqrt(w)[:, None]
    coef, *_ = np.linalg.lstsq(x, v * np.sqrt(w), rcond=None)
    return float(coef[0]), float(coef[1])


def fit_variance(panel: Panel, outcome: str, *, max_distance: int | None = None) -> VarianceModel:
    """Calibrate ``σ²_T(d)`` and ``σ²_C(d)`` on a balanced scored panel.

    Parameters
    ----------
    panel
        Balanced panel (treated cohorts and never-trained instances).
    outcome
        Outcome column.
    max_distance
        Largest distance (checkpoints) to tabulate (default: all).

    Returns
    -------
    VarianceModel
    """
    y, steps, cohort = _wide(panel, outcome)
    pos = {int(s): i for i, s in enumerate(steps)}
    never = np.isnan(cohort)
    if never.sum() < 2:
        raise ValueError("need at least two never-trained instances to calibrate σ²_C.")
    n_t = steps.size
    dmax = n_t - 1 if max_distance is None else min(int(max_distance), n_t - 1)
    rows, cell_rows = [], []
    groups = [g for g in np.unique(cohort[~never]) if int(g) in pos and pos[int(g)] >= 1]
    yc = y[never]
    for d in range(1, dmax + 1):
        vt, nt = [], []
        for g in groups:
            base = pos[int(g)] - 1
            if base + d >= n_t:
                continue
            idx = ~never & (cohort == g)
            if idx.sum() < 2:
                continue
            dy = y[idx, base + d] - y[idx, base]
            vt.append(float(np.var(dy, ddof=1)))
            nt.append(int(idx.sum()))
            cell_rows.append(
                {
                    "group": float(g),
                    "base": int(steps[base]),
                    "distance": d,
                    "var_treated": vt[-1],
                    "var_control": float(np.var(yc[:, base + d] - yc[:, base], ddof=1)),
                    "n": nt[-1],
                }
            )
        vc = [float(np.var(yc[:, t + d] - yc[:, t], ddof=1)) for t in range(n_t - d)]
        rows.append(
            {
                "distance": d,
                "var_treated": float(np.average(vt, weights=np.array(nt) - 1)) if vt else np.nan,
                "var_control": float(np.mean(vc)),
                "n_cells": len(vt),
            }
        )
    table = pd.DataFrame(rows)
    dist = table["distance"].to_numpy(np.float64)
    w = np.maximum(table["n_cells"].to_numpy(np.float64), 1.0)
    return VarianceModel(
        table=table,
        cells=pd.DataFrame(cell_rows),
        coef_treated=_linfit(dist, table["var_treated"].to_numpy(), w),
        coef_control=_linfit(dist, table["var_control"].to_numpy(), np.ones_like(dist)),
        spec=VarianceSpec(outcome=outcome, max_distance=max_distance),
        provenance=dict(
            provenance(
                n_units=int(y.shape[0]),
                n_never=int(never.sum()),
                steps=[int(s) for s in steps],
                panel=dict(panel.meta).get("instances") if hasattr(panel, "meta") else None,
            )
        ),
    )


# ----------------------------------------------------------------------------- formulas
def power(
    delta: float | npt.ArrayLike,
    n: float | npt.ArrayLike,
    var_treated: float | npt.ArrayLike,
    var_control: float | npt.ArrayLike,
    *,
    n_controls: float | npt.ArrayLike | None = None,
    alp: float = 0.05,
    band: Band = "pointwise",
    n_cells: int = 1,
) -> Any:
    """Power of the two-sided DiD test of one cell: ``Φ(δ/se − z) + Φ(−δ/se − z)``.

    ``se = sqrt(σ²_T / n + σ²_C / n_C)``; ``n_controls=None`` means ``n_C = n``.

    Parameters
    ----------
    delta
        True effect ``δ`` (outcome units).
    n, n_controls
        Treated and control instances (``n_controls=None``: as many as treated).
    var_treated, var_control
        ``σ²_T(d)`` and ``σ²_C(d)`` (e.g. from :meth:`VarianceModel.variance`).
    alp, band, n_cells
        Test level; ``"uniform"`` uses Šidák's critical value over ``n_cells`` cells.

    Returns
    -------
    float or numpy.ndarray
        Power, broadcast over the array arguments.

    Examples
    --------
    >>> round(float(power(0.5, 63, 1.0, 1.0)), 3)
    0.801
    """
    d = np.asarray(delta, dtype=np.float64)
    nn = np.asarray(n, dtype=np.float64)
    nc = nn if n_controls is None else np.asarray(n_controls, dtype=np.float64)
    se = np.sqrt(np.asarray(var_treated) / nn + np.asarray(var_control) / nc)
    z = critical_value(alp, band=band, n_cells=n_cells)
    out = norm.cdf(np.abs(d) / se - z) + norm.cdf(-np.abs(d) / se - z)
    return float(out) if out.ndim == 0 else out


def required_n(
    delta: float,
    var_treated: float,
    var_control: float,
    *,
    n_controls: float | None = None,
    alp: float = 0.05,
    target_power: float = 0.8,
    band: Band = "pointwise",
    n_cells: int = 1,
) -> float:
    """Instances per cohort needed to detect ``δ`` with ``target_power`` (closed form, ceiled).

    Returns ``inf`` when the control noise alone, ``σ²_C / n_C``, already exceeds the allowed
    variance (more controls are needed, not more treated instances).

    Parameters
    ----------
    delta
        Effect to detect (outcome units).
    var_treated, var_control
        ``σ²_T(d)`` and ``σ²_C(d)``.
    n_controls
        Control instances (None: as many as treated).
    alp, target_power
        Test level and power.
    band, n_cells
        ``"uniform"`` plans for Šidák's critical value over ``n_cells`` cells.

    Returns
    -------
    float
        Instances per cohort (``inf`` when unreachable).

    Examples
    --------
    >>> required_n(0.5, 1.0, 1.0)   # n_C = n: 2 (1.96 + 0.8416)^2 / 0.25 = 62.8
    63.0
    """
    if delta == 0:
        return math.inf
    if not 0 < target_power < 1:
        raise ValueError(f"target_power must lie in (0, 1); got {target_power}.")
    z = critical_value(alp, band=band, n_cells=n_cells) + float(norm.ppf(target_power))
    allowed = (abs(delta) / z) ** 2
    if n_controls is None:
        return float(math.ceil((var_treated + var_control) / allowed - 1e-9))
    room = allowed - var_control / n_controls
    if room <= 0:
        return math.inf
    return float(math.ceil(var_treated / room - 1e-9))


def plan_sample_size(
    model: VarianceModel,
    deltas: Sequence[float],
    event_periods: Sequence[int],
    *,
    alp: float = 0.05,
    target_power: float = 0.8,
    n_controls: int | None = None,
    band: Band = "pointwise",
    n_cells: int = 1,
    smooth: bool = False,
    group: float | None = None,
) -> pd.DataFrame:
    """Instances per cohort needed to detect memorisation ``δ`` at ``k`` checkpoints after training.

    Parameters
    ----------
    model
        Calibrated variances (:func:`fit_variance`).
    deltas
        Memorisation sizes to detect (outcome units, e.g. nats of log p(x)).
    event_periods
        ``k`` (0 = instantaneous); the outcome change spans ``d = k + 1`` checkpoints.
    alp, target_power
        Test level and power.
    n_controls
        Never-trained instances (None: as many as treated).
    band, n_cells
        ``"uniform"`` plans for a sup-t band over ``n_cells`` cells.
    smooth
        Use the linear variance fit everywhere (else the empirical value where calibrated).
    group
        Plan for this cohort's cells (its calibrated variances; training phase matters).

    Returns
    -------
    pandas.DataFrame
        ``group, variance_source`` (``cohort``, ``pooled`` or ``fit``), ``delta, event_period,
        distance, var_treated, var_control, crit, n_required,
        n_controls, alp, power, band``.
    """
    crit = critical_value(alp, band=band, n_cells=n_cells)
    rows = []
    for k in event_periods:
        d = int(k) + 1
        vt = float(model.variance(d, "treated", smooth, group)[0])
        vc = float(model.variance(d, "control", smooth, group)[0])
        cal = model.cells
        own = (
            group is not None
            and not smooth
            and bool(((cal["group"] == group) & (cal["distance"] == d)).any())
        )
        source = "cohort" if own else ("fit" if smooth else "pooled")
        for delta in deltas:
            rows.append(
                {
                    "group": group,
                    "variance_source": source,
                    "delta": float(delta),
                    "event_period": int(k),
                    "distance": d,
                    "var_treated": vt,
                    "var_control": vc,
                    "crit": crit,
                    "n_required": required_n(
                        float(delta),
                        vt,
                        vc,
                        n_controls=n_controls,
                        alp=alp,
                        target_power=target_power,
                        band=band,
                        n_cells=n_cells,
                    ),
                    "n_controls": n_controls if n_controls is not None else "= n",
                    "alp": alp,
                    "power": target_power,
                    "band": band,
                }
            )
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- the check
def check_power(
    panel: Panel,
    outcome: str,
    sign: int,
    model: VarianceModel,
    *,
    ns: Sequence[int] = (5, 10, 20),
    n_controls: int | None = None,
    event_periods: Sequence[int] | None = None,
    draws: int = 400,
    alp: float = 0.05,
    seed: int = 0,
) -> pd.DataFrame:
    """Predicted power vs the empirical rejection rate of subsamples of a lab panel.

    For every post-treatment cell ``(g, g + k)``, the full-sample DiD estimate is taken as the
    true effect ``δ``. Each draw subsamples ``n`` of the cohort's instances and ``n_controls``
    never-trained ones without replacement, computes the DiD and its analytic SE, and rejects
    when ``|t| > z_{1−α/2}``. The prediction uses the calibrated variances with the
    finite-population factors of the subsampling, ``(N − n)/(N − 1)``, in the spread of the
    estimate (the test's SE, like an analyst's, ignores them), and the model's variance of each
    cohort's own cell where calibrated (:meth:`VarianceModel.variance` with ``group``).

    Parameters
    ----------
    panel, outcome, sign
        Balanced panel, outcome and memorisation sign.
    model
        Variances calibrated on the same or another panel (:func:`fit_variance`).
    ns
        Treated instances per subsample.
    n_controls
        Control instances per subsample (default: half of the never-trained pool).
    event_periods
        Restrict to these ``k`` (default: all).
    draws
        Subsamples per cell and ``n``.
    alp
        Test level.
    seed
        Seed of the subsampling.

    Returns
    -------
    pandas.DataFrame
        One row per (``event_period``, ``n``): ``cells``, ``mean_delta``, ``predicted``
        (mean predicted power), ``empirical`` (rejection rate), ``mc_se`` (its Monte Carlo SE).
    """
    y, steps, cohort = _wide(panel, outcome)
    y = sign * y
    rng = np.random.default_rng(seed)
    pos = {int(s): i for i, s in enumerate(steps)}
    never = np.flatnonzero(np.isnan(cohort))
    n_c = n_controls or max(2, never.size // 2)
    if n_c > never.size:
        raise ValueError(f"n_controls={n_c} exceeds the {never.size} never-trained instances.")
    z = critical_value(alp)
    rows = []
    for g in np.unique(cohort[~np.isnan(cohort)]):
        if int(g) not in pos or pos[int(g)] < 1:
            continue
        members = np.flatnonzero(cohort == g)
        base = pos[int(g)] - 1
        for t in range(pos[int(g)], steps.size):
            k = t - pos[int(g)]
            if event_periods is not None and k not in event_periods:
                continue
            dt = y[members, t] - y[members, base]
            dc = y[never, t] - y[never, base]
            delta = float(dt.mean() - dc.mean())
            vt = float(model.variance(k + 1, "treated", group=float(g))[0])
            vc = float(model.variance(k + 1, "control", group=float(g))[0])
            for n in ns:
                if n >= members.size:
                    continue
                fpc_t = (members.size - n) / (members.size - 1)
                fpc_c = (never.size - n_c) / (never.size - 1)
                se = math.sqrt(vt / n + vc / n_c)
                sd = math.sqrt(vt / n * fpc_t + vc / n_c * fpc_c)
                pred = float(
                    norm.cdf((abs(delta) - z * se) / sd) + norm.cdf((-abs(delta) - z * se) / sd)
                )
                # all draws at once: each row a subsample without replacement
                a = dt[np.argsort(rng.random((draws, dt.size)), axis=1)[:, :n]]
                b = dc[np.argsort(rng.random((draws, dc.size)), axis=1)[:, :n_c]]
                est = a.mean(axis=1) - b.mean(axis=1)
                s = np.sqrt(a.var(axis=1, ddof=1) / n + b.var(axis=1, ddof=1) / n_c)
                rej = int(np.count_nonzero(np.abs(est) > z * s))
                rows.append(
                    {
                        "event_period": k,
                        "n": n,
                        "delta": delta,
                        "predicted": pred,
                        "empirical": rej / draws,
                    }
                )
    cells = pd.DataFrame(rows)
    if cells.empty:
        raise ValueError("no cells to check; lower ns or widen event_periods.")
    out = (
        cells.groupby(["event_period", "n"], sort=True)
        .agg(
            cells=("delta", "size"),
            mean_delta=("delta", "mean"),
            predicted=("predicted", "mean"),
            empirical=("empirical", "mean"),
        )
        .reset_index()
    )
    out["mc_se"] = np.sqrt(out["empirical"] * (1 - out["empirical"]) / (out["cells"] * draws))
    out["n_controls"] = n_c
    return out
