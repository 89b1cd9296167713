"""Convergence diagnostics of a fit (ArviZ's R-hat and ESS, divergences) and the warning."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from causalmem._types import Float64Array
from causalmem.errors import CausalmemWarning

# Diagnostics thresholds (Vehtari et al. 2021, "Rank-normalization, folding, and localization").
RHAT_MAX = 1.01
ESS_MIN = 400.0
REPORTED = frozenset(
    {
        "sigma_mu",
        "sigma_alpha",
        "sigma_delta",
        "sigma_eps",
        "sigma_unit",
        "lengthscale",
        "mu",
        "alpha",
        "sigma_beta",
        "beta",
        "theta",
    }
)
_Worst = dict[str, tuple[float, str]]


def _diagnostics(idata: Any) -> tuple[dict[str, Any], dict[str, tuple[Float64Array, Float64Array]]]:
    """Summary diagnostics and per-variable ``(r_hat, ess_bulk)`` of every posterior variable.

    The warning thresholds apply to the reported quantities (:data:`REPORTED`: the scales,
    ``mu``, ``alpha`` and ``theta``). The sampler's internal coordinates (whitened ``eta``, the
    never-treated path latents ``z_ctrl``, non-centred offsets, unit and period effects) are
    summarised separately as nuisance (``*_nuisance`` keys): with a few hundred of them, the
    maximum folded R-hat over 1,000 draws per chain exceeds 1.01 by chance alone.
    """
    per_var, worst = _per_variable(idata.posterior)
    return _summary(idata, worst), per_var


def _per_variable(post: Any) -> tuple[dict[str, tuple[Float64Array, Float64Array]], _Worst]:
    """``(r_hat, ess_bulk)`` per variable, and the worst value (and variable) per key.

    ArviZ's diagnostics: :func:`~causalmem.results.bayes.rhat_ess_bulk` (the vectorised
    equivalent for variables of 1,000+ columns) and the tail ESS.
    """
    from causalmem.results.bayes import ess_tail, rhat_ess_bulk

    per_var: dict[str, tuple[Float64Array, Float64Array]] = {}
    worst: _Worst = {}
    for name in post.data_vars:
        arr = np.asarray(post[name].values)
        if arr.dtype.kind != "f" or str(name).endswith("__"):
            continue  # nutpie also stores unconstrained copies (same rank diagnostics)
        x = arr.reshape(arr.shape[0], arr.shape[1], -1).astype(np.float64)
        rhat, ess = rhat_ess_bulk(x)
        per_var[str(name)] = (rhat, ess)
        suffix = "" if str(name) in REPORTED else "_nuisance"
        _update_worst(worst, "r_hat" + suffix, rhat, str(name), True)
        _update_worst(worst, "ess" + suffix, ess, str(name), False)
        if name != "theta":  # tail ESS of 10k+ cells is skipped (reported only)
            _update_worst(worst, "ess_tail" + suffix, ess_tail(x), str(name), False)
    return per_var, worst


def _update_worst(worst: _Worst, key: str, vals: Float64Array, name: str, high: bool) -> None:
    """Keep the largest (``high``) or smallest finite value seen under ``key``."""
    if not np.isfinite(vals).any():
        return
    v = float(np.nanmax(vals) if high else np.nanmin(vals))
    cur = worst.get(key, (np.nan, ""))[0]
    if np.isnan(cur) or (v > cur if high else v < cur):
        worst[key] = (v, name)


def _summary(idata: Any, worst: _Worst) -> dict[str, Any]:
    """Build the diagnostics mapping of the result (worst values, divergences, tree sizes)."""
    post = idata.posterior
    div = idata.sample_stats.get("diverging")
    n_div = int(np.asarray(div.values).sum()) if div is not None else 0
    depth = idata.sample_stats.get("tree_depth")
    if depth is None:
        depth = idata.sample_stats.get("depth")
    steps = idata.sample_stats.get("n_steps")
    max_rhat = worst.get("r_hat", (np.nan, ""))
    min_ess = worst.get("ess", (np.nan, ""))
    return {
        "max_r_hat": max_rhat[0],
        "max_r_hat_var": max_rhat[1],
        "min_ess_bulk": min_ess[0],
        "min_ess_bulk_var": min_ess[1],
        "min_ess_tail": worst.get("ess_tail", (np.nan, ""))[0],
        "divergences": n_div,
        "max_r_hat_nuisance": worst.get("r_hat_nuisance", (np.nan, ""))[0],
        "min_ess_bulk_nuisance": worst.get("ess_nuisance", (np.nan, ""))[0],
        "mean_tree_depth": float(np.asarray(depth.values).mean()) if depth is not None else np.nan,
        "mean_n_steps": float(np.asarray(steps.values).mean()) if steps is not None else np.nan,
        "n_samples": int(post.sizes["chain"] * post.sizes["draw"]),
        "passed": bool(
            np.isfinite(max_rhat[0])
            and max_rhat[0] <= RHAT_MAX
            and np.isfinite(min_ess[0])
            and min_ess[0] >= ESS_MIN
            and n_div == 0
        ),
    }


def _warn_diagnostics(d: Mapping[str, Any]) -> None:
    problems = []
    if not (np.isfinite(d["max_r_hat"]) and d["max_r_hat"] <= RHAT_MAX):
        problems.append(f"max r_hat = {d['max_r_hat']:.3f} > {RHAT_MAX} ({d['max_r_hat_var']})")
    if not (np.isfinite(d["min_ess_bulk"]) and d["min_ess_bulk"] >= ESS_MIN):
        problems.append(
            f"min ess_bulk = {d['min_ess_bulk']:.0f} < {ESS_MIN:.0f} ({d['min_ess_bulk_var']})"
        )
    if d["divergences"] > 0:
        problems.append(f"{d['divergences']} divergent transitions")
    if problems:
        warnings.warn(
            "bayes_did: the sampler's diagnostics failed: "
            + "; ".join(problems)
            + ". Do not trust the posterior yet: raise draws/tune, raise target_accept, or "
            "simplify the model (e.g. pooling='rw', include_pre=False).",
            CausalmemWarning,
            stacklevel=3,
        )
