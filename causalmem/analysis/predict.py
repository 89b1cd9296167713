"""Predict a larger model's memorisation profile from smaller ones, with out-of-sample error.

Lesci et al. (2024, Fig. 6 and finding iii) argue that profiles are so correlated across model
sizes that memorisation in a large model is *predictable* from small ones. A correlation says
nothing about out-of-sample error, so here the claim is tested directly:

1. the cells ``tau_m(g, c)`` of every model are put side by side (same cohorts, checkpoints);
2. cohorts are split into a training and a held-out set (``holdout="alternate"``: every second
   cohort is held out, an interpolation test; ``"last"``: the last cohorts, an extrapolation
   test);
3. the target's cells are regressed on ``[1, tau_s1, tau_s2, ...]`` (OLS) over the training
   cohorts, and predicted on the held-out cohorts;
4. the out-of-sample RMSE, MAE and R^2 (``1 - SSE / SST`` around the held-out mean) are compared
   with two naive baselines: ``nearest`` (the largest predictor's cells as they are) and
   ``event_mean`` (the target's training-cohort mean at the same steps since training).

With a :class:`~causalmem.analysis.compare.ProfileComparison` the whole pipeline is re-run on every
joint multiplier-bootstrap draw (all models' estimates and the target's held-out "truth"
perturbed together), giving bootstrap standard errors and percentile intervals of the error
metrics. They describe the estimation noise of the profiles, not the sampling of cohorts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from causalmem._types import Holdout
from causalmem.analysis.compare import ProfileComparison
from causalmem.results.base import RenderMixin, provenance

__all__ = ["PredictSpec", "ProfilePrediction", "holdout_mask", "predict_profile"]


@dataclass(frozen=True, slots=True)
class _Fit:
    """One OLS fit and its held-out errors (pure numerics).

    ``coef`` has shape ``[1 + n_predictors]`` (intercept first); ``pred`` the held-out cells.
    """

    coef: npt.NDArray[np.float64]
    pred: npt.NDArray[np.float64]
    rmse: float
    mae: float
    r2: float


def _errors(y: np.ndarray, pred: np.ndarray) -> tuple[float, float, float]:
    res = y - pred
    sst = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - float(np.sum(res**2)) / sst if sst > 0 else float("nan")
    return float(np.sqrt(np.mean(res**2))), float(np.mean(np.abs(res))), r2


def _ols_fit(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray
) -> _Fit:
    """OLS of ``y`` on ``[1, x]`` over the training rows; errors on the test rows."""
    a = np.column_stack([np.ones(len(x_train)), x_train])
    coef, *_ = np.linalg.lstsq(a, y_train, rcond=None)
    pred = np.column_stack([np.ones(len(x_test)), x_test]) @ coef
    rmse, mae, r2 = _errors(y_test, pred)
    return _Fit(coef=coef, pred=pred, rmse=rmse, mae=mae, r2=r2)


def _event_mean(
    y_train: np.ndarray, e_train: np.ndarray, e_test: np.ndarray, fallback: float
) -> np.ndarray:
    """Mean of the training cells at each held-out cell's event time (``fallback`` if none)."""
    keys, inv = np.unique(e_train, return_inverse=True)
    means = np.bincount(inv, weights=y_train) / np.bincount(inv)
    pos = np.searchsorted(keys, e_test)
    pos = np.clip(pos, 0, max(keys.size - 1, 0))
    hit = keys.size > 0
    out = np.full(e_test.shape, fallback, dtype=np.float64)
    if hit:
        ok = keys[pos] == e_test
        out[ok] = means[pos[ok]]
    return out


def holdout_mask(groups: npt.ArrayLike, holdout: Holdout = "alternate", frac: float = 0.5) -> Any:
    """Boolean mask of held-out cells, splitting by cohort.

    Parameters
    ----------
    groups
        Cohort of each cell.
    holdout
        ``"alternate"``: cohorts 2, 4, 6, … (in sorted order) are held out (interpolation);
        ``"last"``: the last ``frac`` of the cohorts (extrapolation to later training).
    frac
        Share of cohorts held out with ``"last"``.

    Returns
    -------
    numpy.ndarray of bool

    Examples
    --------
    >>> holdout_mask([1, 1, 2, 3, 4], "alternate").tolist()
    [False, False, True, False, True]
    >>> holdout_mask([1, 2, 3, 4], "last", frac=0.25).tolist()
    [False, False, False, True]
    """
    g = np.asarray(groups, dtype=np.float64)
    cohorts = np.unique(g)
    if cohorts.size < 2:
        raise ValueError(f"Need at least two cohorts to hold some out; got {cohorts.size}.")
    if holdout == "alternate":
        test = cohorts[1::2]
    elif holdout == "last":
        if not 0 < frac < 1:
            raise ValueError(f"frac={frac!r} must be in (0, 1).")
        k = min(max(int(round(frac * cohorts.size)), 1), cohorts.size - 1)
        test = cohorts[-k:]
    else:
        raise ValueError(f"holdout={holdout!r} is not supported; use 'alternate' or 'last'.")
    return np.isin(g, test)


@dataclass(frozen=True)
class PredictSpec:
    """The :func:`predict_profile` call (frozen)."""

    target: str
    predictors: tuple[str, ...]
    holdout: str
    frac: float
    sign: int
    alp: float


@dataclass(frozen=True, eq=False)
class ProfilePrediction(RenderMixin):
    """Out-of-sample prediction of one model's profile from others.

    Honours :class:`lmecon.result.Result` (``spec``: :class:`PredictSpec`; ``target``,
    ``predictors``, ``holdout`` and ``meta`` read it).

    Attributes
    ----------
    coefficients
        Tidy OLS coefficients (``term`` ``intercept`` / predictor names, ``estimate``,
        ``std_error``, ``conf_low``, ``conf_high`` from the joint bootstrap when available).
    metrics
        Tidy errors: one row per (``method``: ``linear`` / ``nearest`` / ``event_mean``,
        ``metric``: ``rmse`` / ``mae`` / ``r2``) with ``estimate`` and, with bootstrap draws,
        ``std_error``, ``conf_low``, ``conf_high`` (percentile intervals of the re-run on the
        draws; the draws add estimation noise to already noisy estimates, so they sit above the
        point RMSE). With draws, a ``noise_floor`` / ``rmse`` row gives the RMSE that the
        target's own estimation noise alone implies on the held-out cells.
    cells
        Every cell with ``group, time, event_time, split`` (``train``/``test``), the target's
        estimate ``observed`` and the predictions ``linear``, ``nearest``, ``event_mean``.
    biters
        Bootstrap draws used (0 without a comparison).
    """

    spec: PredictSpec
    coefficients: pd.DataFrame
    metrics: pd.DataFrame
    cells: pd.DataFrame
    biters: int = 0
    provenance: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def target(self) -> str:
        """The predicted model."""
        return self.spec.target

    @property
    def predictors(self) -> tuple[str, ...]:
        """The models predicted from (the ``nearest`` baseline uses the last)."""
        return self.spec.predictors

    @property
    def holdout(self) -> str:
        """How cohorts were split (``"alternate"`` or ``"last"``)."""
        return self.spec.holdout

    @property
    def meta(self) -> dict[str, Any]:
        """``sign``, ``alp`` and ``frac`` of the call (a new dict)."""
        return {"sign": self.spec.sign, "alp": self.spec.alp, "frac": self.spec.frac}

    def tidy(self) -> pd.DataFrame:
        """Error metrics, one row per (method, metric)."""
        return self.metrics.copy()

    def glance(self) -> pd.DataFrame:
        """One row: target, predictors, split sizes and the linear predictor's errors."""
        m = self.metrics
        first = m.iloc[0] if len(m) else None
        return pd.DataFrame(
            [
                {
                    "target": self.target,
                    "predictors": ",".join(self.predictors),
                    "holdout": self.holdout,
                    "n_train": int(first["n_train"]) if first is not None else 0,
                    "n_test": int(first["n_test"]) if first is not None else 0,
                    "rmse": self.metric("linear", "rmse"),
                    "r2": self.metric("linear", "r2"),
                    "biters": self.biters,
                }
            ]
        )

    def summary(self) -> str:
        """Text summary: held-out errors of every method."""
        lines = [
            f"Prediction of {self.target} from {', '.join(self.predictors)} "
            f"(held-out cohorts: {self.holdout})",
            "",
            f"{'method':>12} {'metric':>7} {'Estimate':>10} {'Std. Error':>11}",
        ]
        for r in self.metrics.itertuples(index=False):
            lines.append(f"{r.method:>12} {r.metric:>7} {r.estimate:>10.4f} {r.std_error:>11.4f}")
        return "\n".join(lines)

    def _table(self) -> pd.DataFrame:
        return self.metrics[["method", "metric", "estimate", "std_error", "conf_low", "conf_high"]]

    def _caption(self) -> str:
        return f"Held-out prediction of {self.target} ({self.holdout} cohorts)"

    def metric(self, method: str = "linear", metric: str = "r2") -> float:
        """One headline number, e.g. ``metric("linear", "r2")``."""
        m = self.metrics
        row = m[(m["method"] == method) & (m["metric"] == metric)]
        if row.empty:
            raise KeyError(f"No ({method!r}, {metric!r}); have {m[['method', 'metric']].values}.")
        return float(row["estimate"].iloc[0])

    def plot(self, **options: Any) -> Any:
        """Held-out cells: the target's estimate against each method's prediction (Altair).

        Built by :func:`causalmem.presentation.charts.prediction_scatter` from :attr:`cells`,
        with the line y = x.

        Parameters
        ----------
        **options
            Passed to the chart function (``title``).

        Returns
        -------
        altair.LayerChart
        """
        from causalmem.results._charts import prediction_scatter

        return prediction_scatter(self.cells, **options)


def _all_methods(
    y: np.ndarray, x: np.ndarray, e: np.ndarray, test: np.ndarray
) -> tuple[_Fit, dict[str, np.ndarray]]:
    train = ~test
    fit = _ols_fit(x[train], y[train], x[test], y[test])
    preds = {
        "linear": fit.pred,
        "nearest": x[test, -1],
        "event_mean": _event_mean(y[train], e[train], e[test], float(np.mean(y[train]))),
    }
    return fit, preds


def _errors_draws(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """:func:`_errors` for every draw: ``y``, ``pred`` ``[B, n]`` -> ``[B, 3]`` (RMSE, MAE, R^2)."""
    res = y - pred
    sse = np.sum(res**2, axis=1)
    sst = np.sum((y - y.mean(axis=1, keepdims=True)) ** 2, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(sst > 0, 1.0 - sse / np.where(sst > 0, sst, 1.0), np.nan)
    return np.column_stack([np.sqrt(sse / res.shape[1]), np.mean(np.abs(res), axis=1), r2])


def _all_methods_draws(
    y: np.ndarray, x: np.ndarray, e: np.ndarray, test: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_all_methods` on every bootstrap draw at once.

    ``y`` is ``[n, B]`` and ``x`` ``[n, p, B]``. Returns the linear coefficients ``[B, 1 + p]``
    and the held-out errors ``[B, 3 methods (linear, nearest, event_mean), 3 metrics]``.
    """
    train = ~test
    yb = y.T  # [B, n]
    xb = np.moveaxis(x, 2, 0)  # [B, n, p]
    ones = np.ones(xb.shape[:2] + (1,))
    a = np.concatenate([ones, xb], axis=2)
    coef = np.einsum("bkn,bn->bk", np.linalg.pinv(a[:, train]), yb[:, train])
    pred_linear = np.einsum("bnk,bk->bn", a[:, test], coef)
    keys, inv = np.unique(e[train], return_inverse=True)
    onehot = np.zeros((inv.size, keys.size))
    onehot[np.arange(inv.size), inv] = 1.0
    means = (yb[:, train] @ onehot) / onehot.sum(axis=0)
    pred_event = np.repeat(yb[:, train].mean(axis=1, keepdims=True), int(test.sum()), axis=1)
    if keys.size:
        e_test = e[test]
        pos = np.clip(np.searchsorted(keys, e_test), 0, keys.size - 1)
        ok = keys[pos] == e_test
        pred_event[:, ok] = means[:, pos[ok]]
    y_test = yb[:, test]
    errs = np.stack(
        [
            _errors_draws(y_test, pred_linear),
            _errors_draws(y_test, xb[:, test, -1]),
            _errors_draws(y_test, pred_event),
        ],
        axis=1,
    )
    return coef, errs


def predict_profile(
    source: ProfileComparison | pd.DataFrame,
    target: str,
    predictors: Sequence[str] | None = None,
    *,
    holdout: Holdout = "alternate",
    frac: float = 0.5,
    sign: int = 1,
    alp: float = 0.05,
) -> ProfilePrediction:
    """Predict ``target``'s profile from ``predictors``' profiles on held-out cohorts.

    Parameters
    ----------
    source
        A :class:`~causalmem.analysis.compare.ProfileComparison` (its selected cells, with joint
        bootstrap draws: errors get intervals), or a wide frame with columns ``group``,
        ``time`` and one column of cell estimates per model (no intervals).
    target
        Model to predict (e.g. the largest).
    predictors
        Models to predict from, smallest to largest (default: every other model, in the
        comparison's order). The ``nearest`` baseline uses the last one.
    holdout, frac
        Cohort split (see :func:`holdout_mask`).
    sign
        Multiply estimates by this first (``-1`` turns surprisal ATTs into memorisation; the
        errors are sign-invariant, the coefficients' intercept is not).
    alp
        Level of the percentile intervals.

    Returns
    -------
    ProfilePrediction

    Examples
    --------
    >>> import pandas as pd
    >>> w = pd.DataFrame({"group": [1, 1, 2, 2, 3, 3, 4, 4], "time": [1, 2, 2, 3, 3, 4, 4, 5],
    ...                   "small": [1.0, 0.5, 2.0, 1.0, 3.0, 1.5, 4.0, 2.0]})
    >>> w["large"] = 0.5 + 2 * w["small"]
    >>> p = predict_profile(w, "large", ["small"])
    >>> round(p.metric("linear", "rmse"), 12), round(float(p.coefficients["estimate"].iloc[1]), 6)
    (0.0, 2.0)
    """
    if sign not in (-1, 1):
        raise ValueError(f"sign must be -1 or +1, got {sign!r}.")
    models, est, draws, index = _source_arrays(source, sign)
    if target not in models:
        raise KeyError(f"Unknown target {target!r}; models are {models}.")
    preds_names = [m for m in models if m != target] if predictors is None else list(predictors)
    bad = [m for m in preds_names if m not in models or m == target]
    if bad or not preds_names:
        raise ValueError(
            f"predictors {preds_names} must be one or more models other than the target "
            f"{target!r}, among {models}."
        )
    g = index["group"].to_numpy(dtype=np.float64)
    t = index["time"].to_numpy(dtype=np.float64)
    e = t - g
    ok = np.isfinite(est[target]) & np.all([np.isfinite(est[m]) for m in preds_names], axis=0)
    test = holdout_mask(g, holdout, frac) & ok
    train = ~holdout_mask(g, holdout, frac) & ok
    if train.sum() < len(preds_names) + 2 or test.sum() < 2:
        raise ValueError(
            f"Too few cells to fit and test ({int(train.sum())} training, {int(test.sum())} "
            "held out); use more cohorts or fewer predictors."
        )
    use = ok
    y = est[target][use]
    x = np.column_stack([est[m][use] for m in preds_names])
    ee, tt = e[use], test[use]
    fit, preds = _all_methods(y, x, ee, tt)
    point = {k: _errors(y[tt], p) for k, p in preds.items()}

    boot: dict[str, np.ndarray] = {}
    coef_draws = None
    biters = 0
    if draws is not None:
        biters = int(draws[target].shape[1])
        yb = y[:, None] + draws[target][use]
        xb = np.stack([est[m][use][:, None] + draws[m][use] for m in preds_names], axis=1)
        coef_draws, errs = _all_methods_draws(yb, xb, ee, tt)
        for i, k in enumerate(("linear", "nearest", "event_mean")):
            boot[k] = errs[:, i, :]
    sizes = {"n_train": int(train.sum()), "n_test": int(test.sum())}
    rows = _metric_rows(point, boot, alp, sizes)
    if draws is not None:
        # RMSE that estimation noise alone gives: the target's held-out cells are themselves
        # estimates, so no predictor can beat sqrt(mean bootstrap variance) on average.
        var = np.var(draws[target][use][tt], axis=1, ddof=1)
        nan = float("nan")
        rows.append(
            {
                "method": "noise_floor",
                "metric": "rmse",
                "estimate": float(np.sqrt(np.mean(var))),
                "std_error": nan,
                "conf_low": nan,
                "conf_high": nan,
                **sizes,
            }
        )
    cells = pd.DataFrame({"group": g[use], "time": t[use], "event_time": ee, "observed": y}).assign(
        split=np.where(tt, "test", "train")
    )
    cells["linear"] = np.column_stack([np.ones(len(y)), x]) @ fit.coef
    cells["nearest"] = x[:, -1]
    cells["event_mean"] = np.nan
    cells.loc[tt, "event_mean"] = preds["event_mean"]
    return ProfilePrediction(
        spec=PredictSpec(
            target=target,
            predictors=tuple(preds_names),
            holdout=holdout,
            frac=frac,
            sign=sign,
            alp=alp,
        ),
        coefficients=_coef_frame(["intercept", *preds_names], fit.coef, coef_draws, alp),
        metrics=pd.DataFrame(rows),
        cells=cells,
        biters=biters,
        provenance=provenance(),
    )


def _source_arrays(
    source: ProfileComparison | pd.DataFrame, sign: int
) -> tuple[list[str], dict[str, np.ndarray], dict[str, np.ndarray] | None, pd.DataFrame]:
    """Models, signed cell estimates, joint draws (None for a frame) and the cells' index."""
    if isinstance(source, ProfileComparison):
        models = list(source.models)
        est = {m: sign * np.asarray(source._est[m], dtype=np.float64) for m in models}
        draws = {m: sign * np.asarray(source._draws[m], dtype=np.float64) for m in models}
        return models, est, draws, source._index.reset_index(drop=True)
    if isinstance(source, pd.DataFrame):
        missing = [c for c in ("group", "time") if c not in source.columns]
        if missing:
            raise KeyError(f"The wide frame needs columns 'group' and 'time'; missing {missing}.")
        models = [c for c in source.columns if c not in ("group", "time", "event_time")]
        est = {m: sign * source[m].to_numpy(dtype=np.float64) for m in models}
        return models, est, None, source[["group", "time"]].reset_index(drop=True)
    raise TypeError(
        f"source must be a ProfileComparison or a wide DataFrame, got {type(source).__name__}."
    )


def _metric_rows(
    point: Mapping[str, tuple[float, float, float]],
    boot: Mapping[str, np.ndarray],
    alp: float,
    sizes: Mapping[str, int],
) -> list[dict[str, Any]]:
    """One row per (method, metric): the point error and, with draws, its SE and interval."""
    rows = []
    for k in ("linear", "nearest", "event_mean"):
        for j, metric in enumerate(("rmse", "mae", "r2")):
            row: dict[str, Any] = {"method": k, "metric": metric, "estimate": point[k][j]}
            if k in boot:
                d = boot[k][:, j]
                d = d[np.isfinite(d)]
                row["std_error"] = float(np.std(d, ddof=1)) if d.size > 1 else float("nan")
                lo, hi = np.quantile(d, [alp / 2, 1 - alp / 2]) if d.size else (np.nan, np.nan)
                row["conf_low"], row["conf_high"] = float(lo), float(hi)
            else:
                row["std_error"] = row["conf_low"] = row["conf_high"] = float("nan")
            row.update(sizes)
            rows.append(row)
    return rows


def _coef_frame(
    terms: list[str], coef: np.ndarray, coef_draws: np.ndarray | None, alp: float
) -> pd.DataFrame:
    """Tidy OLS coefficients with joint-bootstrap SEs and percentile intervals when drawn."""
    out = pd.DataFrame({"term": terms, "estimate": coef})
    if coef_draws is not None:
        out["std_error"] = np.std(coef_draws, axis=0, ddof=1)
        q = np.quantile(coef_draws, [alp / 2, 1 - alp / 2], axis=0)
        out["conf_low"], out["conf_high"] = q[0], q[1]
    else:
        out["std_error"] = out["conf_low"] = out["conf_high"] = np.nan
    return out
