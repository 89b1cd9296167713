"""Sensitivity of event-study targets to violations of parallel trends (Rambachan & Roth 2023).

:func:`honest_did` reports robust confidence sets for a memorisation target under the
restrictions of R ``HonestDiD`` — Δ^SD(M) (the slope of the violation changes by at most ``M``
per period), Δ^RM(M̄) (post-period violations at most ``M̄`` times the largest pre-period one),
their combination Δ^SDRM(M̄), each optionally with a sign (``bias``) or monotonicity
(``monotone``) restriction — by the FLCI, the conditional ARP test or the conditional-FLCI /
conditional-LF hybrids, with the original interval beside them and the **breakdown value**
(:func:`breakdown_value`): the smallest ``M`` at which the robust set includes 0 (or ``null``).

Inputs: a dynamic :class:`~causalmem.results.aggte.AggteResult` (CS event study, covariance
from its influence function as R's ``honest_did.AGGTEobj``), an
:class:`~causalmem.results.event_study.EventStudyResult` (Sun & Abraham or TWFE), or a user's
``betahat``/``sigma``. Pre-period coefficients must share one reference period: an ``att_gt``
fit with ``base_period="varying"`` has pre-period coefficients that are one-period changes and
is refused with the refit to use.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy.stats import norm

from causalmem._types import Float64Array, check_literal
from causalmem.errors import CausalmemWarning, IdentificationError, OptionError
from causalmem.results.aggte import AggteResult
from causalmem.results.base import provenance
from causalmem.results.event_study import EventStudyResult
from causalmem.results.sensitivity import SensitivityResult, SensitivitySpec
from causalmem.results.twfe import TwfeResult

__all__ = [
    "EventStudyInputs",
    "breakdown_value",
    "event_study_inputs",
    "honest_did",
    "target_weights",
]

Restriction = Literal["SD", "RM", "SDRM"]
Method = Literal["FLCI", "C-F", "C-LF", "Conditional"]
Target = Literal["instantaneous", "persistent", "average", "residual"]
Breakdown = Literal["refine", "grid", "none"]
_HYBRID = {"Conditional": "ARP", "C-F": "FLCI", "C-LF": "LF"}


@dataclass(frozen=True, slots=True)
class EventStudyInputs:
    """Event-study coefficients relative to one reference period, pre periods first."""

    event_time: Float64Array
    betahat: Float64Array
    sigma: Float64Array
    n_pre: int
    source: str

    @property
    def n_post(self) -> int:
        """Number of post-period coefficients."""
        return int(self.betahat.size - self.n_pre)


# --------------------------------------------------------------------------- inputs


def _universal_base(result: AggteResult) -> bool:
    """Whether the att_gt cells behind ``result`` share one base period per cohort."""
    engine = result._engine
    cells = getattr(engine, "cells", None)
    if cells is None:
        return True
    if cells.difference:
        return True
    g, b = np.asarray(cells.g_idx), np.asarray(cells.b_idx)
    for k in np.unique(g):
        if np.unique(b[g == k]).size > 1:
            return False
    return True


def _from_aggte(result: AggteResult, source: str) -> EventStudyInputs:
    if result.spec.type != "dynamic":
        raise OptionError(
            f"honest_did needs an event study, but this aggte result has type="
            f"{result.spec.type!r}; aggregate with aggte(res, 'dynamic') first."
        )
    labels = np.asarray(result.labels, dtype=np.float64)
    if not _universal_base(result):
        if np.any(labels < 0):
            raise OptionError(
                "This event study comes from att_gt(..., base_period='varying'): its pre-period "
                "coefficients compare consecutive periods, not the common reference period "
                "e = -1 that HonestDiD's restrictions are written for, so mixing them with the "
                "post-period coefficients would be wrong. Refit with "
                "att_gt(..., base_period='universal') and aggte(res, 'dynamic')."
            )
    infl = result.influence[:, : labels.size]
    sigma = infl.T @ infl
    est = np.asarray(result.estimate, dtype=np.float64)
    ref = (np.abs(infl).sum(axis=0) == 0) & (est == 0)
    if np.isnan(est).any():
        bad = labels[np.isnan(est)]
        raise IdentificationError(
            f"The event study has NaN estimates at event times {bad.tolist()}; narrow the "
            "window (aggte(min_e=..., max_e=...)) to event times that are estimated."
        )
    keep = ~ref
    return _order(labels[keep], est[keep], sigma[np.ix_(keep, keep)], labels[ref], source)


def _order(
    e: Float64Array, b: Float64Array, s: Float64Array, ref: Float64Array, source: str
) -> EventStudyInputs:
    order = np.argsort(e)
    e, b, s = e[order], b[order], s[np.ix_(order, order)]
    pre = e < 0
    n_pre = int(pre.sum())
    if ref.size and n_pre and float(ref.max()) < float(e[pre].max()):
        raise IdentificationError(
            f"The reference period (event time {float(ref.max()):g}) is not the last pre-period "
            f"(event times {e[pre].tolist()} are later); HonestDiD needs the reference period "
            "just before treatment: refit with ref=-1."
        )
    return EventStudyInputs(
        event_time=e, betahat=b, sigma=0.5 * (s + s.T), n_pre=n_pre, source=source
    )


def event_study_inputs(result: Any) -> EventStudyInputs:
    """Coefficients and covariance of an event study, pre periods first, reference dropped.

    Parameters
    ----------
    result
        A dynamic :class:`~causalmem.results.aggte.AggteResult` (covariance from the influence
        function), an :class:`~causalmem.results.event_study.EventStudyResult` (``"sunab"``:
        its dynamic aggregation; ``"twfe"``: the regression covariance) or a
        :class:`~causalmem.results.twfe.TwfeResult` of an event study.

    Returns
    -------
    EventStudyInputs

    Raises
    ------
    OptionError
        A varying-base-period fit (refit with ``base_period="universal"``), a non-dynamic
        aggregation, or an estimator without a reference period (``"diff"``).
    """
    if isinstance(result, EventStudyResult):
        if result.spec.estimator in ("diff", "simple_diff"):
            raise OptionError(
                f"event_study(estimator={result.spec.estimator!r}) compares levels, with no "
                "reference period, so its pre-period coefficients are not violations of "
                "parallel trends relative to e = -1; use estimator='sunab' or 'twfe'."
            )
        return (
            event_study_inputs(result.path)
            if isinstance(result.path, TwfeResult)
            else (_from_aggte(result.path, f"event_study({result.spec.estimator})"))
        )
    if isinstance(result, AggteResult):
        return _from_aggte(result, "aggte(dynamic)")
    if isinstance(result, TwfeResult):
        if result.event_time is None:
            raise OptionError(
                "This TWFE result is not an event study (no event times); use "
                "event_study(..., estimator='twfe')."
            )
        et = np.asarray(result.event_time, dtype=np.float64)
        names = list(result.names)
        idx = np.flatnonzero(np.isfinite(et))
        if et.size != len(names):
            idx = np.arange(et.size)
        ref = np.array([float(result.spec.ref)]) if result.spec.ref is not None else np.zeros(0)
        return _order(
            et[idx] if et.size == len(names) else et,
            np.asarray(result.coef, dtype=np.float64)[idx],
            np.asarray(result.vcov, dtype=np.float64)[np.ix_(idx, idx)],
            ref,
            "event_study(twfe)",
        )
    raise TypeError(
        f"honest_did takes an AggteResult (type='dynamic'), an EventStudyResult or arrays "
        f"(betahat=..., sigma=..., num_pre=...), got {type(result).__name__}."
    )


def _user_inputs(
    betahat: Any, sigma: Any, num_pre: int | None, num_post: int | None, event_time: Any
) -> EventStudyInputs:
    b = np.asarray(betahat, dtype=np.float64).ravel()
    s = np.asarray(sigma, dtype=np.float64)
    if num_pre is None:
        raise OptionError("With betahat/sigma, give num_pre (number of pre-period coefficients).")
    n_post = b.size - num_pre if num_post is None else int(num_post)
    if num_pre < 1 or n_post < 1 or num_pre + n_post != b.size:
        raise OptionError(
            f"num_pre={num_pre} and num_post={n_post} must be ≥ 1 and add up to "
            f"len(betahat)={b.size}."
        )
    if s.shape != (b.size, b.size):
        raise OptionError(f"sigma has shape {s.shape}; expected ({b.size}, {b.size}).")
    if not (np.isfinite(b).all() and np.isfinite(s).all()):
        raise OptionError("betahat and sigma must be finite.")
    if not np.allclose(s, s.T, rtol=1e-8, atol=1e-12 * max(1.0, float(np.abs(s).max()))):
        raise OptionError("sigma is not symmetric; pass the covariance matrix of betahat.")
    if np.linalg.eigvalsh(0.5 * (s + s.T)).min() < -1e-10 * max(1.0, float(np.abs(s).max())):
        raise OptionError("sigma is not positive semi-definite.")
    if event_time is None:
        e = np.r_[np.arange(-num_pre - 1, -1, dtype=np.float64), np.arange(n_post, dtype=float)]
    else:
        e = np.asarray(event_time, dtype=np.float64).ravel()
        if e.size != b.size:
            raise OptionError(f"event_time has {e.size} entries; expected {b.size}.")
    return EventStudyInputs(
        event_time=e, betahat=b, sigma=0.5 * (s + s.T), n_pre=int(num_pre), source="user"
    )


def target_weights(
    inputs: EventStudyInputs,
    target: Target | str = "instantaneous",
    *,
    e: float | None = None,
    window: tuple[float, float] | None = None,
    l_vec: Any = None,
) -> tuple[Float64Array, str]:
    """Weights ``l`` on the post-period coefficients of a named memorisation target.

    ``"instantaneous"``: the effect at ``e = 0`` (first post period); ``"persistent"``: at event
    time ``e``; ``"average"``: the equally weighted mean over post event times in ``window``
    (default: all, the dynamic aggregation's overall ATT); ``"residual"``: the last post event
    time (memorisation left at the last checkpoint). ``l_vec`` overrides ``target``.

    Returns
    -------
    (l_vec, description)
    """
    post_e = inputs.event_time[inputs.n_pre :]
    n_post = post_e.size
    if l_vec is not None:
        lv = np.asarray(l_vec, dtype=np.float64).ravel()
        if lv.size != n_post or not np.isfinite(lv).all() or not lv.any():
            raise OptionError(
                f"l_vec must be {n_post} finite weights on the post periods (event times "
                f"{post_e[0]:g}..{post_e[-1]:g}), not all zero; got {lv.size}."
            )
        return lv, "l_vec"
    lv = np.zeros(n_post)
    if target == "instantaneous":
        lv[0] = 1.0
        return lv, f"instantaneous (e = {post_e[0]:g})"
    if target == "residual":
        lv[-1] = 1.0
        return lv, f"residual at the last checkpoint (e = {post_e[-1]:g})"
    if target == "persistent":
        if e is None:
            raise OptionError("target='persistent' needs the event time e=...")
        hit = np.flatnonzero(np.isclose(post_e, e))
        if hit.size == 0:
            raise OptionError(
                f"event time e={e:g} is not a post-period event time of this event study "
                f"({post_e[0]:g}..{post_e[-1]:g})."
            )
        lv[hit[0]] = 1.0
        return lv, f"persistent at e = {e:g}"
    if target == "average":
        lo, hi = (post_e[0], post_e[-1]) if window is None else window
        sel = (post_e >= lo) & (post_e <= hi)
        if not sel.any():
            raise OptionError(f"No post-period event time lies in window=({lo:g}, {hi:g}).")
        lv[sel] = 1.0 / sel.sum()
        return lv, f"average over e in [{lo:g}, {hi:g}] ({int(sel.sum())} event times)"
    raise OptionError(
        f"target={target!r}; use 'instantaneous', 'persistent', 'average', 'residual' or l_vec."
    )


# --------------------------------------------------------------------------- sets


def sd_upper_bound_mpre(inputs: EventStudyInputs, alp: float = 0.05) -> float:
    """R ``DeltaSD_upperBound_Mpre``: largest one-sided upper bound of a pre-period 2nd diff."""
    from causalmem._numerics.honest import _a_sd

    k = inputs.n_pre
    a = _a_sd(k, 0)
    b = a @ inputs.betahat[:k]
    se = np.sqrt(np.diag(a @ inputs.sigma[:k, :k] @ a.T))
    return float(np.max(b + norm.ppf(1 - alp) * se))


@dataclass(frozen=True, slots=True)
class _Setup:
    inputs: EventStudyInputs
    l_vec: Float64Array
    restriction: str
    method: str
    bias: str | None
    monotone: str | None
    alp: float
    grid_points: int
    seed: int
    grid: str = "centred"


def _robust_set(st: _Setup, m: float) -> tuple[float, float, bool]:
    """``(lower, upper, open_ended)`` at one ``M``; the θ grid widens while the set is open."""
    from causalmem._numerics.honest import conditional_set
    from causalmem._numerics.honest_flci import flci

    inp = st.inputs
    if st.method == "FLCI":
        fit = flci(inp.betahat, inp.sigma, inp.n_pre, st.l_vec, np.array([m]), st.alp)
        c, h = float(fit.centre[0]), float(fit.half_length[0])
        return c - h, c + h, False
    kw: dict[str, Any] = {
        "restriction": st.restriction,
        "m": m,
        "hybrid": _HYBRID[st.method],
        "alp": st.alp,
        "bias": st.bias,
        "monotone": st.monotone,
        "grid_points": st.grid_points,
        "seed": st.seed,
    }
    theta_hat = float(st.l_vec @ inp.betahat[inp.n_pre :])
    if st.grid == "centred" and st.method != "C-F":
        # R's grid is the identified set at β = 0 ± 20 SD: centred on 0, it misses a precise
        # estimate far from 0 (a memorisation effect of 400 SDs). Shift it to l'β̂.
        from causalmem._numerics.honest import delta_pieces, grid_bounds, id_set

        pieces = delta_pieces(
            st.restriction, inp.n_pre, st.l_vec.size, m, bias=st.bias, monotone=st.monotone
        )
        if st.restriction == "SD" and (st.bias is not None or st.monotone is not None):
            lb, ub = id_set(pieces[0], np.zeros(inp.n_pre), st.l_vec)
            sd = float(np.sqrt(st.l_vec @ inp.sigma[inp.n_pre :, inp.n_pre :] @ st.l_vec))
            lo0, hi0 = lb - 20 * sd, ub + 20 * sd
        else:
            lo0, hi0 = grid_bounds(st.restriction, pieces, inp.sigma, inp.n_pre, st.l_vec)
        kw["grid_lb"], kw["grid_ub"] = lo0 + theta_hat, hi0 + theta_hat
    cs = conditional_set(inp.betahat, inp.sigma, inp.n_pre, st.l_vec, **kw)
    for _ in range(4):
        if (cs.accept.any() and not cs.open_ended) or st.method == "C-F":
            break
        lo, hi = float(cs.theta[0]), float(cs.theta[-1])
        width = hi - lo
        lo, hi = min(lo, theta_hat - width), max(hi, theta_hat + width)
        if cs.accept.any():
            a, b = cs.bounds
            lo = min(lo, a - width) if cs.accept[0] else lo
            hi = max(hi, b + width) if cs.accept[-1] else hi
        kw["grid_lb"], kw["grid_ub"] = lo, hi
        cs = conditional_set(inp.betahat, inp.sigma, inp.n_pre, st.l_vec, **kw)
    lo_b, hi_b = cs.bounds
    return lo_b, hi_b, cs.open_ended and st.method != "C-F"


def _robust_sets(st: _Setup, ms: list[float], n_jobs: int) -> list[tuple[float, float, bool]]:
    """:func:`_robust_set` at every ``M``; over ``n_jobs`` worker processes when > 1."""
    if n_jobs <= 1 or len(ms) <= 1:
        return [_robust_set(st, m) for m in ms]
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor
    from functools import partial

    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    # Largest M first: the union's pieces are slowest to search there.
    order = sorted(range(len(ms)), key=lambda i: -ms[i])
    with ProcessPoolExecutor(max_workers=min(n_jobs, len(ms)), mp_context=ctx) as ex:
        got = list(ex.map(partial(_robust_set, st), [ms[i] for i in order]))
    out: list[tuple[float, float, bool]] = [(math.nan, math.nan, False)] * len(ms)
    for i, r in zip(order, got, strict=True):
        out[i] = r
    return out


def _covers(st: _Setup, m: float, null: float) -> bool:
    lo, hi, _ = _robust_set(st, m)
    return bool(lo <= null <= hi)


def _breakdown(
    st: _Setup, m_grid: Float64Array, covers: Sequence[bool], null: float, mode: str
) -> tuple[float, float]:
    """``(refined, grid)`` breakdown values; NaN where no ``M`` searched covers ``null``."""
    hit = [i for i, c in enumerate(covers) if c]
    grid_bd = float(m_grid[hit[0]]) if hit else math.nan
    if mode == "none":
        return math.nan, grid_bd
    if mode == "grid":
        return grid_bd, grid_bd
    if hit and hit[0] == 0:
        return float(m_grid[0]), grid_bd
    if hit:
        lo, hi = float(m_grid[hit[0] - 1]), float(m_grid[hit[0]])
    else:
        lo = float(m_grid[-1]) if m_grid.size else 0.0
        hi = math.nan
        step = max(lo, 1e-12)
        for _ in range(6):
            cand = lo + step
            if _covers(st, cand, null):
                hi = cand
                break
            lo, step = cand, 2.0 * step
        if math.isnan(hi):
            return math.nan, grid_bd
    scale = float(m_grid.max()) if m_grid.size and m_grid.max() > 0 else hi
    tol = (1e-6 if st.method == "FLCI" else 2e-3) * scale
    while hi - lo > tol:
        mid = 0.5 * (lo + hi)
        if _covers(st, mid, null):
            hi = mid
        else:
            lo = mid
    return hi, grid_bd


def honest_did(
    result: Any = None,
    *,
    betahat: Any = None,
    sigma: Any = None,
    num_pre: int | None = None,
    num_post: int | None = None,
    event_time: Any = None,
    restriction: Restriction | str = "SD",
    method: Method | str | None = None,
    m_grid: Any = None,
    target: Target | str = "instantaneous",
    e: float | None = None,
    window: tuple[float, float] | None = None,
    l_vec: Any = None,
    bias: str | None = None,
    monotone: str | None = None,
    alp: float = 0.05,
    null: float = 0.0,
    grid_points: int = 1000,
    theta_grid: Literal["centred", "R"] | str = "centred",
    breakdown: Breakdown | str = "refine",
    seed: int = 0,
    n_jobs: int = 1,
) -> SensitivityResult:
    """Robust confidence sets for a memorisation target (Rambachan & Roth 2023; R HonestDiD).

    Parameters
    ----------
    result
        A dynamic :class:`~causalmem.results.aggte.AggteResult` (``att_gt`` with
        ``base_period="universal"``), an :class:`~causalmem.results.event_study.
        EventStudyResult` (``"sunab"``, ``"twfe"``) or ``None`` with ``betahat``/``sigma``.
    betahat, sigma, num_pre, num_post, event_time
        A user's event study: coefficients (pre periods first, reference omitted), their
        covariance, the number of pre (and post) coefficients, optional event times.
    restriction
        ``"SD"`` (Δ^SD(M), smoothness), ``"RM"`` (Δ^RM(M̄), relative magnitudes) or ``"SDRM"``.
    method
        ``"FLCI"`` (Δ^SD only; R's default there), ``"C-F"`` (conditional-FLCI hybrid, Δ^SD;
        default with ``bias``/``monotone``), ``"C-LF"`` (conditional-least-favourable hybrid,
        the default for Δ^RM / Δ^SDRM) or ``"Conditional"`` (ARP).
    m_grid
        Values of ``M`` (``M̄``). Default as R: Δ^SD ``linspace(0, M_ub, 10)`` with ``M_ub``
        the largest upper bound of a pre-period second difference; Δ^RM/Δ^SDRM
        ``linspace(0, 2, 10)``.
    target, e, window, l_vec
        The parameter ``l'τ_post``: ``"instantaneous"`` (``e = 0``), ``"persistent"`` (at
        ``e``), ``"average"`` (over ``window``, default all post periods), ``"residual"`` (last
        checkpoint), or explicit weights ``l_vec`` (:func:`target_weights`).
    bias, monotone
        Sign restriction (``"positive"``/``"negative"`` bias, R ``biasDirection``) or shape
        restriction (``"increasing"``/``"decreasing"``, R ``monotonicityDirection``).
    alp
        Significance level.
    null
        Value whose inclusion defines the breakdown value (0: the effect's sign is lost).
    grid_points
        θ-grid size of the conditional / hybrid sets (R's default 1000).
    theta_grid
        ``"centred"`` (default): R's θ grid (identified set at β = 0, ± 20 SD of ``l'β̂``)
        shifted to ``l'β̂``; ``"R"``: R's grid as is (centred on 0: it misses estimates more
        than ~20 SD from 0). Either widens automatically while the set reaches its end
        (R warns "CI is open at one of the endpoints" and reports the truncated set).
    breakdown
        ``"refine"`` (bisection between grid values), ``"grid"`` (first grid value) or
        ``"none"``.
    seed
        Seed of the least-favourable simulation (C-LF).
    n_jobs
        Worker processes over the ``M`` grid for the ARP-based sets (``"C-LF"``, ``"C-F"``,
        ``"Conditional"``); the sets are identical to ``n_jobs=1``. Workers are forked
        (POSIX; elsewhere spawned, which re-imports the package), so use it from a script
        rather than from a process that runs threads of its own.

    Returns
    -------
    SensitivityResult

    Raises
    ------
    OptionError
        Incompatible options or inputs (the message says which and how to fix them).

    Examples
    --------
    >>> import numpy as np
    >>> r = honest_did(betahat=np.array([0.01, -0.02, 0.0, 0.3, 0.35]), sigma=np.eye(5) * 1e-3,
    ...                num_pre=3, m_grid=[0, 0.05], breakdown="grid")
    >>> r.tidy()[["m", "method"]].iloc[1:].to_dict("list")
    {'m': [0.0, 0.05], 'method': ['FLCI', 'FLCI']}
    """
    check_literal("restriction", restriction, Restriction)
    check_literal("breakdown", breakdown, Breakdown)
    if not 0 < alp < 1:
        raise OptionError(f"alp must lie in (0, 1), got {alp!r}.")
    if bias is not None and monotone is not None:
        raise OptionError("Choose a sign restriction (bias=) or a shape one (monotone=), not both.")
    if bias is not None and bias not in ("positive", "negative"):
        raise OptionError(f"bias={bias!r}; use 'positive' or 'negative'.")
    if monotone is not None and monotone not in ("increasing", "decreasing"):
        raise OptionError(f"monotone={monotone!r}; use 'increasing' or 'decreasing'.")
    if result is not None:
        if betahat is not None or sigma is not None:
            raise OptionError("Pass either a result or betahat/sigma, not both.")
        inputs = event_study_inputs(result)
    else:
        if betahat is None or sigma is None:
            raise OptionError("Pass an event-study result or betahat=, sigma=, num_pre=.")
        inputs = _user_inputs(betahat, sigma, num_pre, num_post, event_time)
    if inputs.n_pre < 1 or inputs.n_post < 1:
        raise IdentificationError(
            f"HonestDiD needs at least one pre- and one post-period coefficient; this event "
            f"study has {inputs.n_pre} pre and {inputs.n_post} post (event times "
            f"{inputs.event_time.tolist()[:8]}...)."
        )
    if restriction == "SDRM" and inputs.n_pre < 2:
        raise OptionError("Δ^SDRM needs at least two pre-period coefficients.")
    if method is None:
        method = (
            "FLCI"
            if restriction == "SD" and bias is None and monotone is None
            else ("C-F" if restriction == "SD" else "C-LF")
        )
    check_literal("method", method, Method)
    if method in ("FLCI", "C-F") and restriction != "SD":
        raise OptionError(
            f"method={method!r} exists for Δ^SD only; use 'C-LF' or 'Conditional' with "
            f"restriction={restriction!r}."
        )
    if method == "FLCI" and (bias is not None or monotone is not None):
        warnings.warn(
            "method='FLCI' ignores the sign/shape restriction (as R HonestDiD); use 'C-F' to "
            "exploit it.",
            CausalmemWarning,
            stacklevel=2,
        )
    lv, tdesc = target_weights(inputs, target, e=e, window=window, l_vec=l_vec)
    if m_grid is None:
        if restriction == "SD":
            if inputs.n_pre == 1:
                top = float(np.sqrt(inputs.sigma[0, 0]))
            else:
                top = max(sd_upper_bound_mpre(inputs, 0.05), 0.0)
            grid = np.linspace(0.0, top, 10)
        else:
            grid = np.linspace(0.0, 2.0, 10)
    else:
        grid = np.atleast_1d(np.asarray(m_grid, dtype=np.float64))
        if grid.size == 0 or not np.isfinite(grid).all() or (grid < 0).any():
            raise OptionError("m_grid must be finite values ≥ 0.")
        if (np.diff(grid) < 0).any():
            raise OptionError("m_grid must be sorted in increasing order.")
    if grid_points < 10:
        raise OptionError(f"grid_points={grid_points}: use at least 10 (R's default is 1000).")
    if theta_grid not in ("centred", "R"):
        raise OptionError(f"theta_grid={theta_grid!r}; use 'centred' or 'R'.")
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs < 1:
        raise OptionError(f"n_jobs={n_jobs!r}; use a whole number of processes ≥ 1.")
    st = _Setup(
        inputs,
        lv,
        restriction,
        str(method),
        bias,
        monotone,
        float(alp),
        int(grid_points),
        int(seed),
        str(theta_grid),
    )
    if method == "FLCI":
        from causalmem._numerics.honest_flci import flci

        fit = flci(inputs.betahat, inputs.sigma, inputs.n_pre, lv, grid, alp)
        lower = fit.centre - fit.half_length
        upper = fit.centre + fit.half_length
        open_ = np.zeros(grid.size, dtype=bool)
    else:
        sets = _robust_sets(st, [float(m) for m in grid], n_jobs)
        lower = np.array([s[0] for s in sets])
        upper = np.array([s[1] for s in sets])
        open_ = np.array([s[2] for s in sets], dtype=bool)
    covers = [bool(lo <= null <= hi) for lo, hi in zip(lower, upper, strict=True)]
    bd, bd_grid = _breakdown(st, grid, covers, null, str(breakdown))
    post = inputs.betahat[inputs.n_pre :]
    est = float(lv @ post)
    se = float(np.sqrt(lv @ inputs.sigma[inputs.n_pre :, inputs.n_pre :] @ lv))
    z = float(norm.ppf(1 - alp / 2))
    spec = SensitivitySpec(
        restriction=str(restriction),
        method=str(method),
        bias=bias,
        monotone=monotone,
        alp=float(alp),
        target=tdesc,
        m_grid=tuple(float(v) for v in grid),
        grid_points=int(grid_points),
        null=float(null),
        source=inputs.source,
        seed=int(seed),
    )
    return SensitivityResult(
        spec=spec,
        event_time=inputs.event_time.copy(),
        betahat=inputs.betahat.copy(),
        sigma=inputs.sigma.copy(),
        n_pre=inputs.n_pre,
        l_vec=lv.copy(),
        m=grid.copy(),
        lower=lower,
        upper=upper,
        open_ended=open_,
        original=(est, se, est - z * se, est + z * se),
        breakdown=bd,
        breakdown_grid=bd_grid,
        provenance=provenance(source=inputs.source),
    )


def breakdown_value(result: Any = None, **kwargs: Any) -> float:
    """Smallest ``M`` (``M̄``) at which the robust set includes ``null`` (default 0).

    Takes the arguments of :func:`honest_did` (a result or ``betahat``/``sigma``, restriction,
    method, target, ...); the grid ``m_grid`` brackets the search, then bisection refines it
    (FLCI: to ``1e-6`` of the grid's largest value; the ARP-based sets: ``2e-3``). NaN when no
    ``M`` up to ``64×`` the grid's largest value reaches ``null``.
    """
    kwargs["breakdown"] = "refine"
    return honest_did(result, **kwargs).breakdown
