r"""``bayes_sensitivity``: the Bayesian twin of HonestDiD's smoothness restriction Delta^SD(M).

The cells model of :func:`~causalmem.bayes_did` assumes parallel trends: a cell's estimate
measures its effect ``theta`` (plus sampling error). The sensitivity model adds an explicit
violation path ``v(e)`` for the treated units, on event time in periods (checkpoints)::

    ATT_hat(g, t) = theta[g, t] + v(e_t) - v(e_b) + eps

``e_t`` and ``e_b`` are the event times of the cell's period and of its base period, so both
``base_period="varying"`` (placebo cells compare ``t`` with ``t - 1``) and ``"universal"`` are
modelled as they are, with no conversion. ``v`` is normalised to 0 at the post cells' base
period ``e_ref = -1 - anticipation`` and is a random walk on slopes started from a zero slope::

    v(e_ref + 1) - v(e_ref)            ~ N(0, s^2)      (the slope at the reference)
    v(e + 1) - 2 v(e) + v(e - 1)       ~ N(0, s^2)      (every second difference)

so ``s = 0`` is the parallel-trends model (exactly :func:`bayes_did`) and the prior scale ``s``
(data units) controls how far, and how smoothly, trends may diverge. The pre-treatment
(placebo) cells, modelled by default here (``include_pre=True``), inform ``v`` before
treatment; after treatment ``v`` is identified by the prior alone (it is confounded with the
effect), so each target's posterior widens with ``s``.

**Mapping to Delta^SD(M)** (Rambachan & Roth 2023, https://doi.org/10.1093/restud/rdad018):
Delta^SD(M) bounds every second difference of the violation path, ``|v(e+1) - 2 v(e) +
v(e-1)| <= M``; here each second difference has prior ``N(0, s^2)``, so ``M = z s`` with
``z = Phi^-1(1 - alp / 2)`` (1.96 at ``alp = 0.05``) bounds each one with prior probability
``1 - alp``. The result reports ``m_equivalent = z s`` and the chart puts it on the M axis of
the frequentist robust sets. Two differences remain and are documented, not hidden:

* Delta^SD leaves the slope at the reference free (M = 0 allows any linear trend, extrapolated
  from the pre-periods); the prior here shrinks it to 0 with SD ``s`` (``s = 0``: no violation).
* Delta^SD is a worst case over the set; the posterior averages over the prior. At horizon
  ``h`` periods after the reference the worst-case bias under Delta^SD (beyond the linear
  extrapolation) is ``M h (h + 1) / 2``; the prior SD of ``v(e_ref + h)`` is
  ``s sqrt(h (h + 1) (2 h + 1) / 6)``, growing like ``h^1.5`` instead of ``h^2``.

**Targets** (``targets=``, posterior in data units of the average cohort, model order):

* ``"instantaneous"``: ``mu(0)`` (the pooled path at event time 0; the first post event time
  when 0 is not on the grid);
* ``"persistent@E"``: ``mu(E)`` at event time ``E`` (steps; must be on the grid);
  ``"persistent"`` alone: the median post event time;
* ``"window@A:B"``: the mean of ``mu(e)`` over the grid's event times in ``[A, B]``;
  ``"window"`` alone: over every post event time;
* ``"residual"`` / ``"residual@T"``: the mean of ``theta[g, T]`` over the cohorts treated at or
  before the last checkpoint ``T`` (equal cohort weights).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from causalmem._types import BayesModel, Pooling, Sampler, check_literal
from causalmem.estimators.bayes._sensitivity import _Violation

if TYPE_CHECKING:
    from causalmem.estimators.bayes._cells import _CellSet
    from causalmem.results.attgt import AttGtResult
    from causalmem.results.bayes import BayesDidResult, BayesSensitivityResult

__all__ = ["FREQUENTIST_COLUMNS", "bayes_sensitivity", "violation_prior"]

FREQUENTIST_COLUMNS = ("M", "lower", "upper", "method", "restriction")
_ = BayesModel  # re-exported literal types live in causalmem._types


def violation_prior(result: AttGtResult, cs: _CellSet, s: float) -> _Violation:
    """Return the violation path's design and prior for the modelled cells ``cs`` (model order)."""
    c = result.cells
    order = cs.order
    gpos = np.searchsorted(c.tlist, c.glist[c.g_idx[order]], side="left")
    e_t = (c.t_idx[order] - gpos).astype(np.int64)
    e_b = (c.b_idx[order] - gpos).astype(np.int64)
    post_b = e_b[cs.post]
    e_ref = int(np.max(post_b)) if post_b.size else -1
    lo = int(min(e_t.min(), e_b.min(), e_ref))
    hi = int(max(e_t.max(), e_b.max(), e_ref + 1))
    grid = np.arange(lo, hi + 1, dtype=np.int64)
    n_g = grid.size
    # Full-grid prior precision: anchor slope plus every second difference, over s^2.
    rows = []
    r0 = np.zeros(n_g)
    r0[e_ref + 1 - lo] = 1.0
    r0[e_ref - lo] = -1.0
    rows.append(r0)
    for k in range(1, n_g - 1):
        r = np.zeros(n_g)
        r[k - 1], r[k], r[k + 1] = 1.0, -2.0, 1.0
        rows.append(r)
    d = np.asarray(rows)
    free = grid != e_ref
    d = d[:, free]
    precision = d.T @ d / float(s) ** 2
    full = np.zeros((order.size, n_g))
    full[np.arange(order.size), e_t - lo] += 1.0
    full[np.arange(order.size), e_b - lo] -= 1.0
    text = (
        f"violation path v(e) on period event times {lo}..{hi}, v({e_ref}) = 0; "
        f"v({e_ref + 1}) - v({e_ref}) ~ N(0, s), second differences ~ N(0, s), s = {s:.6g}; "
        "cell mean += v(e_t) - v(e_b)"
    )
    return _Violation(
        grid=grid[free].astype(np.float64),
        design=full[:, free],
        precision=precision,
        scale=float(s),
        text=text,
    )


def bayes_sensitivity(
    result: AttGtResult,
    *,
    scales: Sequence[float],
    targets: Sequence[str] | None = None,
    alp: float = 0.05,
    include_pre: bool = True,
    pooling: Pooling = "rw",
    cohort_decay: bool | None = None,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 2,
    target_accept: float = 0.9,
    seed: int | None = None,
    sampler: Sampler = "auto",
    shrinkage: float | None = None,
    cores: int | None = None,
    frequentist: pd.DataFrame | None = None,
    progressbar: bool = False,
) -> BayesSensitivityResult:
    r"""Posterior of memorisation targets as a function of the violation prior's scale ``s``.

    Fits the cells model of :func:`~causalmem.bayes_did` once per scale, with the violation
    path of this module's docstring (``s = 0``: the parallel-trends model itself), and reports
    each target's posterior mean, SD and ``1 - alp`` highest-density interval.

    Parameters
    ----------
    result
        A fitted :func:`~causalmem.att_gt` result. Never modified.
    scales
        Prior SDs ``s`` of the violation's second differences (data units), each ``>= 0``.
    targets
        Target names (see the module docstring); default ``("instantaneous", "persistent",
        "window", "residual")``.
    alp
        Significance level: the intervals are ``1 - alp`` HDIs and ``m_equivalent = z s``,
        ``z = Phi^-1(1 - alp / 2)``.
    include_pre
        Model the placebo cells (default True: they inform the violation's pre-period path).
    pooling, cohort_decay, draws, tune, chains, target_accept, seed, sampler, shrinkage, cores
        As in :func:`~causalmem.bayes_did` (one seed for every scale).
    frequentist
        Optional frequentist robust sets to overlay in the chart: a tidy frame with columns
        ``M, lower, upper, method, restriction`` (as the HonestDiD sets of this package give),
        and optionally ``target`` (needed when more than one target is reported). Copied.
    progressbar
        Show the sampler's progress bar.

    Returns
    -------
    BayesSensitivityResult
        Immutable; ``tidy()`` has one row per scale and target (``scale, m_equivalent, target,
        event_time, mean, sd, lower, upper, alp`` and the fit's diagnostics).

    Raises
    ------
    ValueError
        Bad scales, targets or ``frequentist`` frame.
    """
    from causalmem.estimators.bayes.api import _check_args, _resolve_seed
    from causalmem.results.base import provenance
    from causalmem.results.bayes import BayesSensitivityResult, BayesSensitivitySpec

    _check_args(result, "cells", pooling, sampler, draws, tune, chains, target_accept, shrinkage)
    check_literal("pooling", pooling, Pooling)
    s_list = _check_scales(scales)
    if not 0.0 < float(alp) < 1.0:
        raise ValueError(f"alp must lie in (0, 1), got {alp!r}.")
    freq = _check_frequentist(frequentist)
    seed = _resolve_seed(seed)
    n_cores = int(cores) if cores is not None else min(chains, os.cpu_count() or 1)
    tnames = tuple(targets) if targets is not None else None
    rows: list[pd.DataFrame] = []
    fits: list[dict[str, Any]] = []
    resolved: tuple[str, ...] | None = None
    for s in s_list:
        post = _fit_one(
            result,
            s,
            include_pre=include_pre,
            pooling=pooling,
            cohort_decay=cohort_decay,
            draws=draws,
            tune=tune,
            chains=chains,
            target_accept=target_accept,
            seed=seed,
            sampler=sampler,
            shrinkage=shrinkage,
            cores=n_cores,
            progressbar=progressbar,
        )
        frame, resolved = target_summary(post, tnames, alp)
        d = post.diagnostics
        fit_info = {
            "scale": s,
            "max_r_hat": float(d.get("max_r_hat", np.nan)),
            "min_ess_bulk": float(d.get("min_ess_bulk", np.nan)),
            "divergences": int(d.get("divergences", 0)),
            "sample_s": float(post.timing.get("sample_s", np.nan)),
        }
        fits.append(fit_info)
        rows.append(frame.assign(**{k: v for k, v in fit_info.items() if k != "sample_s"}))
    assert resolved is not None
    if freq is not None and "target" not in freq.columns and len(resolved) > 1:
        raise ValueError(
            "frequentist has no 'target' column but "
            f"{len(resolved)} targets are reported ({list(resolved)}): add a 'target' column "
            "naming the target of each robust set, or ask for one target."
        )
    z = float(_norm_ppf(1.0 - float(alp) / 2.0))
    table = pd.concat(rows, ignore_index=True)
    table.insert(1, "m_equivalent", z * table["scale"])
    spec = BayesSensitivitySpec(
        scales=tuple(s_list),
        targets=resolved,
        alp=float(alp),
        include_pre=bool(include_pre),
        pooling=pooling,
        cohort_decay=cohort_decay,
        draws=int(draws),
        tune=int(tune),
        chains=int(chains),
        target_accept=float(target_accept),
        seed=seed,
        sampler=sampler,
        shrinkage=None if shrinkage is None else float(shrinkage),
        yname=result.spec.yname,
    )
    return BayesSensitivityResult(
        spec=spec,
        table=table,
        frequentist=freq,
        fits=pd.DataFrame(fits),
        z=z,
        provenance=provenance(seed=seed),
    )


def _norm_ppf(p: float) -> float:
    from scipy import stats

    return float(stats.norm.ppf(p))


def _check_scales(scales: Any) -> list[float]:
    try:
        vals = [float(v) for v in scales]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"scales must be a sequence of numbers >= 0, got {scales!r}.") from exc
    if not vals:
        raise ValueError("scales is empty: give at least one prior scale (0 = parallel trends).")
    bad = [v for v in vals if not np.isfinite(v) or v < 0]
    if bad:
        raise ValueError(f"scales must be finite and >= 0; got {bad}.")
    if len(set(vals)) != len(vals):
        raise ValueError(f"scales has duplicates: {vals}.")
    return sorted(vals)


def _check_frequentist(frame: pd.DataFrame | None) -> pd.DataFrame | None:
    if frame is None:
        return None
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"frequentist must be a pandas DataFrame, got {type(frame)!r}.")
    missing = [c for c in FREQUENTIST_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(
            f"frequentist lacks the columns {missing}; it needs {list(FREQUENTIST_COLUMNS)} "
            "(the tidy layout of the HonestDiD robust sets), optionally 'target'."
        )
    out = frame.copy()
    for c in ("M", "lower", "upper"):
        if not pd.api.types.is_numeric_dtype(out[c]):
            raise ValueError(f"frequentist column {c!r} must be numeric.")
    return out.reset_index(drop=True)


def _fit_one(result: AttGtResult, s: float, **kw: Any) -> BayesDidResult:
    """One fit of the cells model with the violation prior of scale ``s`` (none at 0)."""
    from causalmem.estimators.bayes.api import _fit_cells

    return _fit_cells(result, violation_scale=s, **kw)


# ----------------------------------------------------------------- targets
def _parse_target(name: str, e_grid: np.ndarray, times: np.ndarray) -> tuple[str, Any]:
    kind, _, arg = str(name).partition("@")
    if kind == "instantaneous" and not arg:
        e0 = 0.0 if 0.0 in set(e_grid.tolist()) else float(e_grid[0])
        return "path", [e0]
    if kind == "persistent":
        e = float(np.median(e_grid)) if not arg else float(arg)
        if not arg:
            e = float(e_grid[np.argmin(np.abs(e_grid - e))])
        if e not in set(e_grid.tolist()):
            raise ValueError(
                f"target {name!r}: event time {e:g} is not on the posterior path's grid "
                f"{_show(e_grid)}."
            )
        return "path", [e]
    if kind == "window":
        if arg:
            a_txt, _, b_txt = arg.partition(":")
            try:
                a, b = float(a_txt), float(b_txt)
            except ValueError as exc:
                raise ValueError(f"target {name!r}: use 'window@A:B' with numbers.") from exc
        else:
            a, b = float(e_grid[0]), float(e_grid[-1])
        sel = e_grid[(e_grid >= a) & (e_grid <= b)]
        if sel.size == 0:
            raise ValueError(f"target {name!r}: no event time of {_show(e_grid)} in [{a}, {b}].")
        return "path", sel.tolist()
    if kind == "residual":
        t_last = float(times.max()) if not arg else float(arg)
        if t_last not in set(times.tolist()):
            raise ValueError(f"target {name!r}: {t_last:g} is not a modelled post checkpoint.")
        return "residual", t_last
    raise ValueError(
        f"unknown target {name!r}; use 'instantaneous', 'persistent[@E]', 'window[@A:B]' or "
        "'residual[@T]'."
    )


def _show(grid: np.ndarray) -> str:
    vals = [f"{v:g}" for v in grid[:8]]
    return "[" + ", ".join(vals) + (", ...]" if grid.size > 8 else "]")


def target_summary(
    post: BayesDidResult, targets: Sequence[str] | None, alp: float
) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """Posterior mean, SD and ``1 - alp`` HDI of each target; returns the frame and names."""
    from causalmem.results.bayes import hdi

    names = tuple(targets) if targets else ("instantaneous", "persistent", "window", "residual")
    e_grid = np.asarray(post.e_grid, dtype=np.float64)
    post_times = np.asarray(post.time[post.post], dtype=np.float64)
    mu = post._chains("mu")  # [C, N, n_e]
    theta = None
    out = []
    for name in names:
        kind, arg = _parse_target(name, e_grid, post_times)
        if kind == "path":
            idx = np.searchsorted(e_grid, np.asarray(arg, dtype=np.float64))
            draws = mu[:, :, idx].mean(axis=2)
            e_txt = float(arg[0]) if len(arg) == 1 else np.nan
        else:
            if theta is None:
                theta = post._chains("theta")
            sel = np.flatnonzero(post.post & (post.time == arg))
            draws = theta[:, :, sel].mean(axis=2)
            e_txt = np.nan
        lo, hi = hdi(draws[:, :, None], 1.0 - float(alp))
        flat = draws.ravel()
        out.append(
            {
                "target": name,
                "event_time": e_txt,
                "mean": float(flat.mean()),
                "sd": float(flat.std(ddof=1)),
                "lower": float(lo[0]),
                "upper": float(hi[0]),
                "alp": float(alp),
            }
        )
    return pd.DataFrame(out), names
