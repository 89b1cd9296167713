"""The paper's findings (i)-(iii) on a fitted family, with the numbers, and their Markdown."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from causalmem.workflows.family.build import ModelRun
from causalmem.workflows.family.fit import FamilyFit

__all__ = ["family_findings", "findings_markdown"]

_VERDICT = {True: "**holds**", False: "**does not hold**"}

_SHOWN = [
    "model",
    "n_params",
    "max_lr",
    "instantaneous_mean",
    "persistent_mean_e_gt_0",
    "residual_mean",
    "persistence_ratio",
    "corr_instantaneous_lr",
    "corr_residual_lr",
    "pretest_p_value",
]


# ----------------------------------------------------------------------------- statistics
def _spearman(a: npt.ArrayLike, b: npt.ArrayLike) -> float:
    from scipy.stats import spearmanr

    if np.size(a) < 2:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def _corr_test(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    from scipy.stats import pearsonr

    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3:
        return float("nan"), float("nan")
    r = pearsonr(x[ok], y[ok])
    return float(r.statistic), float(r.pvalue)


def _noise_floor(prediction: Any) -> float:
    try:
        return float(prediction.metric("noise_floor", "rmse"))
    except KeyError:
        return float("nan")


# ----------------------------------------------------------------------------- per model
def _model_row(
    fit: FamilyFit, m: ModelRun, inst: pd.DataFrame, resid: pd.DataFrame, pers: pd.DataFrame
) -> dict[str, Any]:
    """One model's numbers: memorisation levels, persistence, LR correlations, pre-test."""
    i = inst[inst["model"] == m.name]
    r = resid[resid["model"] == m.name]
    p = pers[(pers["model"] == m.name) & (pers["event_time"] > 0)]
    p = p[p["event_time"] <= m.epoch_end]
    e0 = pers[(pers["model"] == m.name) & (pers["event_time"] == 0)]["estimate"]
    lr_r, lr_p = _corr_test(i["estimate"].to_numpy(float), i["lr_mean"].to_numpy(float))
    rr = r.merge(i[["group", "lr_mean"]], on="group", how="left")
    res_lr, res_lr_p = _corr_test(rr["estimate"].to_numpy(float), rr["lr_mean"].to_numpy(float))
    inst_mean = float(i["estimate"].mean())
    return {
        "model": m.name,
        "n_params": m.n_params,
        "max_lr": m.max_lr,
        "instantaneous_mean": inst_mean,
        "instantaneous_share_significant": float(i["significant"].mean()),
        "persistent_mean_e_gt_0": float(p["estimate"].mean()),
        "path_e0": float(e0.iloc[0]) if len(e0) else float("nan"),
        "path_last": float(p["estimate"].iloc[-1]) if len(p) else float("nan"),
        "residual_at": float(r["at"].iloc[0]) if len(r) else float("nan"),
        "residual_mean": float(r["estimate"].mean()),
        "residual_share_significant": float(r["significant"].mean()),
        "persistence_ratio": float(r["estimate"].mean()) / inst_mean if inst_mean else float("nan"),
        "corr_instantaneous_lr": lr_r,
        "corr_instantaneous_lr_p": lr_p,
        "corr_residual_lr": res_lr,
        "corr_residual_lr_p": res_lr_p,
        "pretest_p_value": float(fit.results[m.name].pretest()[1]),
    }


def _per_model(fit: FamilyFit) -> list[dict[str, Any]]:
    """:func:`_model_row` of every model, smallest first."""
    inst = fit.instantaneous()
    resid = fit.residual()
    pers = fit.persistent()
    return [_model_row(fit, m, inst, resid, pers) for m in fit.family.models]


# ----------------------------------------------------------------------------- the findings
def _finding_i(
    fit: FamilyFit, pm: pd.DataFrame, comparisons: Mapping[str, Any], names: list[str]
) -> dict[str, Any]:
    """(i) larger models memorise more and more persistently."""
    size = pm["n_params"].to_numpy(float)
    small, large = names[0], names[-1]
    diff_rows = {}
    for key, comp in comparisons.items():
        d = comp.mean_difference(large, small, sign=fit.sign)
        diff_rows[key] = d.iloc[0].to_dict()
    rho_inst = _spearman(size, pm["instantaneous_mean"])
    rho_res = _spearman(size, pm["residual_mean"])
    rho_pers = _spearman(size, pm["persistent_mean_e_gt_0"])
    rho_ratio = _spearman(size, pm["persistence_ratio"])
    post = diff_rows.get("post_first_epoch", next(iter(diff_rows.values())))
    return {
        "holds": bool(rho_inst == 1.0 and rho_res == 1.0 and post["conf_low"] > 0),
        "criterion": "instantaneous and residual memorisation both increase strictly with size "
        "(Spearman rho = 1 over models) and the largest-minus-smallest mean memorisation over "
        "post-treatment first-epoch cells has a joint-bootstrap interval above 0",
        "spearman_size_instantaneous": rho_inst,
        "spearman_size_residual": rho_res,
        "spearman_size_persistent": rho_pers,
        "spearman_size_persistence_ratio": rho_ratio,
        "largest_minus_smallest_mean": diff_rows,
    }


def _finding_ii(pm: pd.DataFrame, names: list[str]) -> dict[str, Any]:
    """(ii) instantaneous memorisation tracks the LR."""
    lr_corrs = pm["corr_instantaneous_lr"].to_numpy(float)
    lr_ps = pm["corr_instantaneous_lr_p"].to_numpy(float)
    return {
        "holds": bool(np.all(lr_corrs > 0) and np.all(lr_ps < 0.05)),
        "criterion": "in every model, the Pearson correlation between tau(g, g) and the mean LR "
        "of the macro-batch is positive with p < 0.05 (paper: high LR -> high instantaneous, low "
        "residual memorisation; corr_residual_lr should then be negative)",
        "corr_instantaneous_lr": dict(zip(names, lr_corrs.tolist(), strict=True)),
        "corr_instantaneous_lr_p": dict(zip(names, lr_ps.tolist(), strict=True)),
        "corr_residual_lr": dict(zip(names, pm["corr_residual_lr"].tolist(), strict=True)),
    }


def _prediction_numbers(prediction: Any) -> dict[str, Any]:
    """Out-of-sample fit of the prediction and its baselines."""
    return {
        "target": prediction.target,
        "predictors": list(prediction.predictors),
        "holdout": prediction.holdout,
        "r2_linear": prediction.metric("linear", "r2"),
        "r2_event_mean_baseline": prediction.metric("event_mean", "r2"),
        "r2_nearest_baseline": prediction.metric("nearest", "r2"),
        "rmse_linear": prediction.metric("linear", "rmse"),
        "rmse_event_mean_baseline": prediction.metric("event_mean", "rmse"),
        "rmse_nearest_baseline": prediction.metric("nearest", "rmse"),
        "noise_floor_rmse": _noise_floor(prediction),
        "metrics": prediction.tidy().to_dict(orient="records"),
    }


def _finding_iii(
    comparisons: Mapping[str, Any], prediction: Any, corr_threshold: float
) -> dict[str, Any]:
    """(iii) profiles are highly correlated across sizes and predictable."""
    corr = {k: c.tidy().to_dict(orient="records") for k, c in comparisons.items()}
    pfe = comparisons.get("post_first_epoch")
    est = pfe.tidy()["estimate"].to_numpy(float) if pfe is not None else np.array([np.nan])
    low = pfe.tidy()["conf_low"].to_numpy(float) if pfe is not None else np.array([np.nan])
    pred = _prediction_numbers(prediction)
    r2, r2_event = pred["r2_linear"], pred["r2_event_mean_baseline"]
    return {
        "holds": bool(np.all(est >= corr_threshold) and r2 > 0.5 and r2 > r2_event),
        "criterion": f"every pairwise noise-corrected Pearson correlation of the post-treatment "
        f"first-epoch cells >= {corr_threshold}, and predicting the largest model's held-out "
        "cohorts from the smaller models gives R^2 > 0.5 and beats the event-time-mean baseline",
        "min_corr_post_first_epoch": float(np.nanmin(est)),
        "min_corr_lower_bound_post_first_epoch": float(np.nanmin(low)),
        "correlations": corr,
        "paper_fig6_variant": "all",
        "prediction": pred,
    }


def family_findings(
    fit: FamilyFit,
    comparisons: Mapping[str, Any],
    prediction: Any,
    *,
    corr_threshold: float = 0.7,
) -> dict[str, Any]:
    """Check the paper's findings (i)-(iii) on a fitted family, with the numbers; never forced.

    Parameters
    ----------
    fit
        The fitted family (models ordered by size).
    comparisons
        ``{"all": ProfileComparison, "post_first_epoch": ProfileComparison}`` (see
        :func:`causalmem.analysis.compare.compare_profiles`).
    prediction
        A :class:`~causalmem.analysis.predict.ProfilePrediction` of the largest model from the
        others.
    corr_threshold
        What "highly correlated" means for (iii): every pairwise noise-corrected correlation of
        the post-treatment first-epoch cells at or above it.

    Returns
    -------
    dict
        ``per_model`` numbers and, per finding, ``holds`` (bool), ``criterion`` (text) and the
        numbers behind it.
    """
    names = list(fit.family.names)
    per_model = _per_model(fit)
    pm = pd.DataFrame(per_model)
    return {
        "outcome": fit.outcome,
        "sign": fit.sign,
        "models": names,
        "per_model": per_model,
        "finding_i": _finding_i(fit, pm, comparisons, names),
        "finding_ii": _finding_ii(pm, names),
        "finding_iii": _finding_iii(comparisons, prediction, corr_threshold),
    }


# ----------------------------------------------------------------------------- markdown
def _md_finding_i(f1: Mapping[str, Any]) -> list[str]:
    return [
        f"## (i) Larger models memorise more and more persistently: {_VERDICT[f1['holds']]}",
        "",
        f"Criterion: {f1['criterion']}.",
        "",
        f"- Spearman(size, instantaneous) = {f1['spearman_size_instantaneous']:.2f}; "
        f"Spearman(size, residual) = {f1['spearman_size_residual']:.2f}; Spearman(size, "
        f"persistent e>0) = {f1['spearman_size_persistent']:.2f}; Spearman(size, residual / "
        f"instantaneous) = {f1['spearman_size_persistence_ratio']:.2f}.",
        *[
            f"- Largest minus smallest, mean over {k} cells: {v['estimate']:.3f} "
            f"[{v['conf_low']:.3f}, {v['conf_high']:.3f}] (joint bootstrap, {v['n_cells']} cells)."
            for k, v in f1["largest_minus_smallest_mean"].items()
        ],
        "",
    ]


def _md_finding_ii(f2: Mapping[str, Any]) -> list[str]:
    return [
        f"## (ii) Instantaneous memorisation tracks the learning rate: {_VERDICT[f2['holds']]}",
        "",
        f"Criterion: {f2['criterion']}.",
        "",
        *[
            f"- {m}: corr(tau(g,g), LR) = {r:.2f} (p = {f2['corr_instantaneous_lr_p'][m]:.2g}); "
            f"corr(residual, LR) = {f2['corr_residual_lr'][m]:.2f}."
            for m, r in f2["corr_instantaneous_lr"].items()
        ],
        "",
    ]


def _md_finding_iii(f3: Mapping[str, Any]) -> list[str]:
    lines = [
        f"## (iii) Profiles are highly correlated across sizes and predictable: "
        f"{_VERDICT[f3['holds']]}",
        "",
        f"Criterion: {f3['criterion']}.",
        "",
        "Pairwise Pearson correlations (noise-corrected estimate, raw plain correlation, 95% "
        "joint-bootstrap interval). The `all` variant pivots every cell, placebo cells "
        "included, as the reference repository's `compute_correlations` does: it is the one "
        "that reproduces the paper's Fig. 6 (pitfall 8); `post_first_epoch` keeps only c >= g "
        "with g, c <= T.",
        "",
    ]
    for k, rows in f3["correlations"].items():
        for r in rows:
            lines.append(
                f"- {k}: {r['term']}: {r['estimate']:.3f} (raw {r['raw']:.3f}) "
                f"[{r['conf_low']:.3f}, {r['conf_high']:.3f}], {r['n_cells']} cells"
            )
    return lines + _md_prediction(f3["prediction"])


def _md_prediction(p: Mapping[str, Any]) -> list[str]:
    lines = [
        "",
        f"Prediction of {p['target']} from {', '.join(p['predictors'])} (OLS on the training "
        f"cohorts, {p['holdout']} cohorts held out): out-of-sample R^2 {p['r2_linear']:.3f}, "
        f"RMSE {p['rmse_linear']:.3f}; baselines: event-time mean of the target's training "
        f"cohorts R^2 {p['r2_event_mean_baseline']:.3f} (RMSE "
        f"{p['rmse_event_mean_baseline']:.3f}), the largest predictor's cells as they are R^2 "
        f"{p['r2_nearest_baseline']:.3f} (RMSE {p['rmse_nearest_baseline']:.3f}).",
        "",
    ]
    floor = p.get("noise_floor_rmse", float("nan"))
    if np.isfinite(floor):
        lines += [
            f"The target's own estimation noise on the held-out cells is RMSE {floor:.3f} (from "
            "the joint bootstrap). "
            + (
                "The prediction error is below it: every model is scored on the same "
                "instances, so the predictors share the target's sampling noise, and part of "
                "the out-of-sample fit is shared noise rather than shared memorisation (the "
                "noise-corrected correlations above remove that part)."
                if p["rmse_linear"] < floor
                else "The prediction error is at or above it: what is left is estimation noise "
                "plus misfit."
            ),
            "",
        ]
    return lines


def findings_markdown(findings: Mapping[str, Any]) -> str:
    """Render :func:`family_findings` as Markdown (a table per model and one line per finding)."""
    show = pd.DataFrame(findings["per_model"])[_SHOWN]
    lines = [
        f"# Findings (i)-(iii) of Lesci et al. (2024) on this family ({findings['outcome']})",
        "",
        show.to_markdown(index=False, floatfmt=".4g"),
        "",
        *_md_finding_i(findings["finding_i"]),
        *_md_finding_ii(findings["finding_ii"]),
        *_md_finding_iii(findings["finding_iii"]),
    ]
    return "\n".join(lines)
