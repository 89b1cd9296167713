"""Power of pre-trend tests (Roth 2022), on an event-study result or a user's (betahat, sigma).

Roth, J. (2022), "Pretest with Caution: Event-Study Estimates after Testing for Parallel
Trends", *AER: Insights* 4(3); R package ``pretrends`` (``slope_for_power``, ``pretrends``).

* :func:`slope_for_power` — slope of the linear violation ``slope * (t - ref)`` that the
  pre-test detects with a given power (R ``slope_for_power``);
* :func:`pretrends_power` — power against a hypothesised violation (linear with a given slope,
  the slope for a target power, or any ``deltatrue``), Bayes factor, likelihood ratio, and the
  mean and coverage of the estimates conditional on passing the pre-test (R ``pretrends``).

Inputs: an :class:`~causalmem.results.aggte.AggteResult` of ``aggte(type="dynamic")`` (the
covariance from its influence function), an :class:`~causalmem.results.event_study
.EventStudyResult` (TWFE, Sun-Abraham, ...), or ``betahat`` with ``sigma`` and
``event_time``. The pre-test needs one common reference period: CS results with
``base_period="varying"`` are refused (their pre-period estimates are short differences).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy.stats import chi2, norm
from scipy.stats import multivariate_normal as mvn

from causalmem._numerics.pretrends import (
    SEED,
    conditional_moments,
    pass_probability,
    slope_for_power_pointwise,
    slope_for_power_wald,
)
from causalmem._types import Float64Array
from causalmem.errors import OptionError
from causalmem.results.aggte import AggteResult
from causalmem.results.base import provenance
from causalmem.results.diagnostics import PretrendsPower, PretrendsSpec
from causalmem.results.event_study import EventStudyResult
from causalmem.results.twfe import TwfeResult
from lmecon.options import check_literal

__all__ = ["PretestKind", "event_study_inputs", "pretrends_power", "slope_for_power"]

PretestKind = Literal["pointwise", "wald"]


def event_study_inputs(
    result: Any,
    sigma: Float64Array | None = None,
    *,
    event_time: Float64Array | None = None,
    reference_period: float | None = None,
) -> tuple[Float64Array, Float64Array, Float64Array, float, str]:
    """``(event_time, betahat, sigma, reference_period, source)`` without the reference period.

    ``result`` is an ``AggteResult`` (dynamic), an ``EventStudyResult``, a TWFE event-study
    ``TwfeResult``, or an array ``betahat`` (then ``sigma`` and ``event_time`` are required;
    ``reference_period`` defaults to -1 as in R ``pretrends``).
    """
    if isinstance(result, EventStudyResult):
        ref = float(result.spec.ref) if reference_period is None else float(reference_period)
        t, b, v, _, _ = event_study_inputs(result.path, reference_period=ref)
        return t, b, v, ref, f"EventStudyResult({result.spec.estimator})"
    if isinstance(result, AggteResult):
        if result.spec.type != "dynamic":
            raise OptionError(
                f"pretrends needs an event study: aggte(type='dynamic'), got type="
                f"{result.spec.type!r}."
            )
        infl = result.influence
        v = infl.T @ infl
        v = v[:-1, :-1]
        t = np.asarray(result.labels, dtype=np.float64)
        b = np.asarray(result.estimate, dtype=np.float64)
        se = np.sqrt(np.diag(v))
        ref_rows = (t < 0) & (se <= 1e-12 * max(1.0, float(np.nanmax(se)))) & (np.abs(b) == 0)
        if not ref_rows.any():
            raise OptionError(
                "This event study has no reference period (every pre-period estimate has a "
                "standard error): it was fitted with base_period='varying', whose pre-period "
                "coefficients are period-on-period changes, not deviations from one reference. "
                "The pre-test of Roth (2022) needs a common reference: refit with "
                "att_gt(..., base_period='universal') and aggte(type='dynamic')."
            )
        ref = float(t[ref_rows].max()) if reference_period is None else float(reference_period)
        keep = t != ref
        return t[keep], b[keep], v[np.ix_(keep, keep)], ref, "AggteResult(dynamic)"
    if isinstance(result, TwfeResult):
        if result.event_time is None:
            raise OptionError(
                "This TwfeResult is not an event study (no event_time); use event_study() or "
                "pass betahat, sigma and event_time."
            )
        et = np.asarray(result.event_time, dtype=np.float64)
        ok = np.isfinite(et)
        ref = (
            float(result.spec.ref if result.spec.ref is not None else -1)
            if reference_period is None
            else float(reference_period)
        )
        return (
            et[ok],
            np.asarray(result.coef)[ok],
            np.asarray(result.vcov)[np.ix_(ok, ok)],
            ref,
            "TwfeResult(event study)",
        )
    b = np.asarray(result, dtype=np.float64).ravel()
    if sigma is None or event_time is None:
        raise TypeError("With a coefficient vector, pass sigma= and event_time= too.")
    v = np.asarray(sigma, dtype=np.float64)
    t = np.asarray(event_time, dtype=np.float64).ravel()
    if v.shape != (b.size, b.size) or t.size != b.size:
        raise ValueError(
            f"betahat has {b.size} entries, sigma shape {v.shape}, event_time {t.size} "
            "entries; they must agree (sigma k x k)."
        )
    if not (np.isfinite(b).all() and np.isfinite(v).all() and np.isfinite(t).all()):
        raise ValueError("betahat, sigma and event_time must be finite.")
    if not np.allclose(v, v.T, rtol=1e-10, atol=1e-14):
        raise ValueError("sigma must be symmetric.")
    ref = -1.0 if reference_period is None else float(reference_period)
    if np.any(t == ref):
        raise ValueError(
            f"event_time contains the reference period {ref:g}; leave the omitted period out "
            "(as R pretrends' tVec)."
        )
    return t, b, v, ref, "betahat/sigma"


def _split(t: Float64Array, ref: float, v: Float64Array) -> tuple[np.ndarray, np.ndarray]:
    pre = np.flatnonzero(t < ref)
    post = np.flatnonzero(t > ref)
    if pre.size == 0:
        raise OptionError(f"No pre-period coefficient (event time < {ref:g}): nothing to test.")
    s11 = v[np.ix_(pre, pre)]
    if np.linalg.eigvalsh(s11).min() <= 0:
        raise OptionError(
            "The covariance of the pre-period coefficients is singular; drop redundant "
            "periods (e.g. a second normalised period) before computing pre-test power."
        )
    return pre, post


def _crit(alp: float, test: str, k: int) -> tuple[float, float]:
    if not 0 < alp < 1:
        raise OptionError(f"alp={alp} must lie in (0, 1).")
    z = float(norm.ppf(1 - alp / 2))
    return z, float(chi2.ppf(1 - alp, k)) if test == "wald" else float("nan")


def _slope(
    v_pre: Float64Array, rel: Float64Array, target: float, test: str, z: float, crit: float
) -> float:
    if not 0 < target < 1:
        raise OptionError(f"target_power={target} must lie in (0, 1).")
    if test == "wald":
        return slope_for_power_wald(v_pre, rel, target, crit=crit)
    return slope_for_power_pointwise(v_pre, rel, target, z=z)


def _slope_or_nan(
    v_pre: Float64Array, rel: Float64Array, target: float, test: str, z: float, crit: float
) -> float:
    """Like :func:`_slope`, NaN when the pre-test's size already exceeds ``target``."""
    try:
        return _slope(v_pre, rel, target, test, z, crit)
    except ValueError:
        return float("nan")


def slope_for_power(
    result: Any,
    sigma: Float64Array | None = None,
    *,
    event_time: Float64Array | None = None,
    reference_period: float | None = None,
    target_power: float = 0.5,
    alp: float = 0.05,
    test: PretestKind = "pointwise",
) -> float:
    """Slope of the linear violation ``slope * (t - ref)`` detected with ``target_power``.

    R ``pretrends::slope_for_power(sigma, targetPower, tVec, referencePeriod)``: the pre-test
    rejects when any pre-period ``|t| >= z`` (``test="pointwise"``) or when the joint Wald
    statistic exceeds its chi-square critical value (``test="wald"``, exact).

    Parameters
    ----------
    result
        An event-study result (``aggte(type="dynamic")``, ``EventStudyResult``) or
        ``betahat`` (only its length matters here).
    sigma, event_time, reference_period
        With a coefficient vector: its covariance, relative periods (reference left out) and
        the reference period (default -1).
    target_power
        Power in (size, 1).
    alp
        Level of the pre-test.
    test
        ``"pointwise"`` or ``"wald"``.

    Returns
    -------
    float
        The slope (positive; the power is symmetric in its sign).
    """
    check_literal("test", test, PretestKind)
    t, _, v, ref, _ = event_study_inputs(
        result, sigma, event_time=event_time, reference_period=reference_period
    )
    pre, _ = _split(t, ref, v)
    z, crit = _crit(alp, test, pre.size)
    return _slope(v[np.ix_(pre, pre)], t[pre] - ref, target_power, test, z, crit)


def pretrends_power(
    result: Any,
    sigma: Float64Array | None = None,
    *,
    event_time: Float64Array | None = None,
    reference_period: float | None = None,
    deltatrue: Float64Array | None = None,
    slope: float | None = None,
    target_power: float | None = None,
    alp: float = 0.05,
    test: PretestKind = "pointwise",
    n_draws: int = 200_000,
    seed: int = SEED,
    curve_points: int = 21,
) -> PretrendsPower:
    """Power of the pre-test against a hypothesised violation and its consequences.

    R ``pretrends::pretrends(betahat, sigma, tVec, referencePeriod, deltatrue)``.

    Parameters
    ----------
    result
        ``aggte(type="dynamic")`` result, ``EventStudyResult``, TWFE event-study result, or
        ``betahat`` (then ``sigma`` and ``event_time`` are required).
    sigma, event_time, reference_period
        See :func:`slope_for_power`.
    deltatrue
        The hypothesised violation at each event time of the estimates (reference left out).
        Alternatively ``slope`` (linear ``slope * (t - ref)``) or ``target_power`` (the slope
        detected with that power, R's usual workflow); default: ``target_power=0.5``.
    slope, target_power
        See ``deltatrue``; give at most one of the three.
    alp
        Level of the pre-test and of the post-period intervals whose coverage is reported.
    test
        ``"pointwise"`` (exact; R ``pretrends``) or ``"wald"`` (power exact, conditional
        moments by a seeded Monte Carlo of ``n_draws`` draws with reported standard errors).
    n_draws, seed
        Monte Carlo size and seed (Wald test only).
    curve_points
        Points of the power curve (slopes from 0 to twice the 80 %-power slope; each power
        to about 1e-3).

    Notes
    -----
    The pointwise pre-test's size grows with the number of pre-periods (about 0.61 with 19
    nearly independent ones at ``alp = 0.05``): slopes for a power below the size are NaN
    (``slope_power_50`` / ``slope_power_80``), and a ``target_power`` below it is an error.
    ``test="wald"`` keeps the size at ``alp``.

    Returns
    -------
    PretrendsPower
    """
    check_literal("test", test, PretestKind)
    given = [x is not None for x in (deltatrue, slope, target_power)]
    if sum(given) > 1:
        raise OptionError("Give at most one of deltatrue, slope and target_power.")
    t, b, v, ref, source = event_study_inputs(
        result, sigma, event_time=event_time, reference_period=reference_period
    )
    pre, post = _split(t, ref, v)
    z, crit = _crit(alp, test, pre.size)
    v_pre = v[np.ix_(pre, pre)]
    rel = t - ref
    s50 = _slope_or_nan(v_pre, rel[pre], 0.5, test, z, crit)
    s80 = _slope_or_nan(v_pre, rel[pre], 0.8, test, z, crit)
    violation = "linear"
    if deltatrue is not None:
        delta = np.asarray(deltatrue, dtype=np.float64).ravel()
        if delta.size != t.size or not np.isfinite(delta).all():
            raise ValueError(
                f"deltatrue must hold {t.size} finite values, one per event time "
                f"{t.tolist()} (the reference period left out)."
            )
        violation, slope_used = "custom", None
    else:
        if slope is None:
            target_power = 0.5 if target_power is None else target_power
            known = {0.5: s50, 0.8: s80}.get(target_power, float("nan"))
            slope_used = (
                known
                if np.isfinite(known)
                else _slope(v_pre, rel[pre], target_power, test, z, crit)
            )
        else:
            slope_used = float(slope)
        delta = slope_used * rel
    power = 1.0 - pass_probability(delta[pre], v_pre, z=z, test=test, crit=crit)
    power0 = 1.0 - pass_probability(np.zeros(pre.size), v_pre, z=z, test=test, crit=crit)
    lr = float(
        np.exp(
            mvn.logpdf(b[pre], mean=delta[pre], cov=v_pre)
            - mvn.logpdf(b[pre], mean=np.zeros(pre.size), cov=v_pre)
        )
    )
    cm = conditional_moments(
        delta, v, pre, post, z=z, test=test, crit=crit, n_draws=n_draws, seed=seed
    )
    # insert the reference period (0 everywhere), as R's df_eventplot
    pos = int(np.searchsorted(t, ref)) if np.all(np.diff(t) > 0) else t.size
    full_t = np.insert(t, pos, ref)
    mean = np.empty(t.size)
    mean[pre], mean[post] = cm.mean_pre, cm.mean_post
    cover = np.full(t.size, np.nan)
    cover[post] = cm.coverage
    mc = np.zeros(t.size)
    mc[post] = cm.mean_mc_se
    se = np.sqrt(np.diag(v))
    top = s80 if np.isfinite(s80) else (abs(slope_used) if slope_used else np.nan)
    if not np.isfinite(top) or top == 0:
        top = 3.0 * float(np.max(np.sqrt(np.diag(v_pre))))
    slopes = np.linspace(0.0, 2.0 * top, curve_points)
    curve = pd.DataFrame(
        {
            "slope": slopes,
            "power": [
                1.0 - pass_probability(s * rel[pre], v_pre, z=z, test=test, crit=crit, tol=1e-3)
                for s in slopes
            ],
        }
    )
    return PretrendsPower(
        spec=PretrendsSpec(
            reference_period=ref,
            alp=alp,
            test=test,
            violation=violation,
            slope=slope,
            target_power=target_power,
            source=source,
            n_draws=n_draws if test == "wald" else None,
            seed=seed if test == "wald" else None,
        ),
        event_time=full_t,
        betahat=np.insert(b, pos, 0.0),
        std_error=np.insert(se, pos, 0.0),
        deltatrue=np.insert(delta, pos, 0.0),
        mean_after_pretest=np.insert(mean, pos, 0.0),
        coverage_after_pretest=np.insert(cover, pos, np.nan),
        power=float(power),
        power_null=float(power0),
        bayes_factor=float((1.0 - power) / (1.0 - power0)),
        likelihood_ratio=lr,
        slope=slope_used,
        slope_power_50=s50,
        slope_power_80=s80,
        method=cm.method,
        mc_se=np.insert(mc, pos, 0.0),
        curve=curve,
        provenance=provenance(
            method="Roth (2022); rectangle probabilities by SciPy (Genz, seeded)",
        ),
    )
