"""The immutable result of :func:`causalmem.bayes_did` (Bayesian memorisation profile)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import special

from causalmem._types import BoolArray, Float64Array
from causalmem.results.base import TIDY_COLUMNS, render_frame
from lmecon.result import ResultMixin


@dataclass(frozen=True)
class BayesDidSpec:
    """Every argument of the :func:`~causalmem.bayes_did` call (and the sampler actually used)."""

    model: str
    pooling: str
    include_pre: bool
    draws: int
    tune: int
    chains: int
    target_accept: float
    seed: int
    sampler: str
    sampler_used: str
    shrinkage: float | None
    cores: int
    yname: str
    cohort_decay: bool = False
    violation_scale: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain mapping of the recorded arguments."""
        return dataclasses.asdict(self)


# ----------------------------------------------------------------- MCMC diagnostics
# R-hat (rank-normalised split, max of bulk and folded), bulk and tail ESS and the HDI come from
# ArviZ (Vehtari, Gelman, Simpson, Carpenter & Buerkner 2021, "Rank-normalization, folding, and
# localization: an improved R-hat", Bayesian Analysis 16(2)): ArviZ >= 1 (``arviz-stats``, with
# the xarray ``DataTree`` container) where the Python version allows it, ArviZ 0.2x otherwise.
# One exception, measured: ArviZ (1.3 as 0.23) computes R-hat and ESS column by column in
# Python. On the 10,296 cells of the paper-scale profile (``bench/bayes.py``, 2 x 1,500 draws,
# shared 2-core machine) the diagnostics take 13.2 s with ArviZ on every variable against 5.5 s
# with the kernel below on ``theta`` (sampling: 14-23 s), and R-hat plus bulk ESS alone take
# 30.5 s against 9.7 s at a load of 5. From VECTORISED_FROM columns on, R-hat and bulk ESS
# therefore come from the vectorised kernel (the same algorithm on all columns at once; the
# tests check it equal to ArviZ's, to 1e-10); everything else is ArviZ's.
VECTORISED_FROM = 1000
TAIL_PROBS = (0.05, 0.95)


def _arviz_major() -> int:
    """Return the major version of ArviZ (1 and later: ``arviz-stats``, ``DataTree``)."""
    import arviz as az

    return int(str(az.__version__).split(".")[0])


def _as_dataset(draws: Float64Array) -> Any:
    """``[C, N, P]`` draws as a one-variable xarray Dataset (``chain, draw, cell``)."""
    import xarray as xr

    arr = np.asarray(draws, dtype=np.float64)
    return xr.Dataset({"x": (("chain", "draw", "cell"), arr)})


def arviz_rhat(draws: Float64Array) -> Float64Array:
    """ArviZ's rank-normalised split R-hat per column of ``[C, N, P]`` draws."""
    import arviz as az

    kw = {} if _arviz_major() >= 1 else {"method": "rank"}
    return np.asarray(az.rhat(_as_dataset(draws), **kw)["x"].values, dtype=np.float64)


def arviz_ess(draws: Float64Array, method: str = "bulk") -> Float64Array:
    """ArviZ's bulk (``method="bulk"``) or tail (``"tail"``, 5% and 95%) ESS per column."""
    import arviz as az

    kw: dict[str, Any] = {"method": method}
    if method == "tail" and _arviz_major() >= 1:
        kw["prob"] = TAIL_PROBS
    return np.asarray(az.ess(_as_dataset(draws), **kw)["x"].values, dtype=np.float64)


def ess_tail(draws: Float64Array) -> Float64Array:
    """Tail ESS (the smaller ESS of the 5% and 95% quantiles) per column, from ArviZ."""
    return arviz_ess(draws, "tail")


def rhat_ess_bulk(draws: Float64Array) -> tuple[Float64Array, Float64Array]:
    """``(r_hat, ess_bulk)`` per column of ``[C, N, P]`` draws.

    ArviZ's, except from :data:`VECTORISED_FROM` columns on, where the vectorised
    :func:`convergence` (equal to ArviZ's) avoids ArviZ's per-column loop.
    """
    x = np.asarray(draws, dtype=np.float64)
    if x.shape[2] >= VECTORISED_FROM:
        return convergence(x)
    return arviz_rhat(x), arviz_ess(x, "bulk")


def hdi(draws: Float64Array, prob: float) -> tuple[Float64Array, Float64Array]:
    """ArviZ's highest-density interval per column of ``[C, N, P]`` draws: ``(low, high)``."""
    import arviz as az

    ds = _as_dataset(draws)
    if _arviz_major() >= 1:
        out = np.asarray(az.hdi(ds, prob=prob)["x"].transpose("cell", "ci_bound").values)
    else:
        out = np.asarray(az.hdi(ds, hdi_prob=prob)["x"].transpose("cell", "hdi").values)
    return out[:, 0].astype(np.float64), out[:, 1].astype(np.float64)


def _split_chains(x: Float64Array) -> Float64Array:
    """``[C, N, P] -> [2C, N // 2, P]``: first and last halves of each chain."""
    half = x.shape[1] // 2
    return np.concatenate([x[:, :half], x[:, x.shape[1] - half :]], axis=0)


def _rank_average(flat: Float64Array) -> Float64Array:
    """Ranks (1-based, ties averaged) of each column of ``[S, P]``; ``scipy.stats.rankdata``."""
    cols = np.ascontiguousarray(flat.T)  # [P, S]: one sort per contiguous row
    order = np.argsort(cols, axis=1)
    sv = np.take_along_axis(cols, order, axis=1)
    n = sv.shape[1]
    val = np.broadcast_to(np.arange(1.0, n + 1.0), sv.shape).copy()
    tie = sv[:, 1:] == sv[:, :-1]
    rows = np.flatnonzero(tie.any(axis=1))
    if rows.size:
        # Average the ranks within runs of equal values (only rows that have ties).
        sub = sv[rows]
        pos = np.broadcast_to(np.arange(n, dtype=np.float64), sub.shape)
        new = np.ones(sub.shape, dtype=bool)
        new[:, 1:] = ~tie[rows]
        first = np.maximum.accumulate(np.where(new, pos, 0.0), axis=1)
        end = np.ones(sub.shape, dtype=bool)
        end[:, :-1] = new[:, 1:]
        last = np.flip(
            np.minimum.accumulate(np.flip(np.where(end, pos, float(n)), axis=1), axis=1), axis=1
        )
        val[rows] = (first + last) / 2.0 + 1.0
    ranks = np.empty_like(sv)
    np.put_along_axis(ranks, order, val, axis=1)
    return ranks.T


def _z_scale(x: Float64Array) -> Float64Array:
    """Rank-normalise each column over all chains and draws (Blom offset 3/8)."""
    c, n = x.shape[:2]
    rank = _rank_average(x.reshape(c * n, -1))
    return np.asarray(special.ndtri((rank - 0.375) / (c * n + 0.25)).reshape(x.shape))


def _rhat_basic(x: Float64Array) -> Float64Array:
    n = x.shape[1]
    between = n * x.mean(axis=1).var(axis=0, ddof=1)
    within = x.var(axis=1, ddof=1).mean(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(np.sqrt((between / within + n - 1) / n))


def convergence(
    draws: Float64Array, chunk: int = 256, workers: int | None = None
) -> tuple[Float64Array, Float64Array]:
    """Vectorised ``(r_hat, ess_bulk)`` per column of ``[C, N, P]`` draws (equal to ArviZ's).

    The rank transform is shared by R-hat and ESS. Columns are processed in chunks
    (cache-sized) on ``workers`` threads (default: up to 2; NumPy's sorts and FFTs release the
    GIL).
    """
    draws = np.asarray(draws, dtype=np.float64)
    p = draws.shape[2]
    if p <= chunk:
        return _convergence(draws)
    import os
    from concurrent.futures import ThreadPoolExecutor

    slices = [slice(i, min(i + chunk, p)) for i in range(0, p, chunk)]
    n_workers = workers if workers is not None else min(2, os.cpu_count() or 1)
    with ThreadPoolExecutor(max(n_workers, 1)) as ex:
        outs = list(ex.map(lambda sl: _convergence(np.ascontiguousarray(draws[:, :, sl])), slices))
    return np.concatenate([o[0] for o in outs]), np.concatenate([o[1] for o in outs])


def _convergence(draws: Float64Array) -> tuple[Float64Array, Float64Array]:
    x = _split_chains(draws)
    z = _z_scale(x)
    ess = _ess_raw(z)
    if x.shape[0] < 2 or x.shape[1] < 2:
        return np.full(x.shape[2], np.nan), ess
    bulk = _rhat_basic(z)
    med = np.median(x.reshape(-1, x.shape[2]), axis=0)
    tail = _rhat_basic(_z_scale(np.abs(x - med)))
    return np.maximum(bulk, tail), ess


def _ess_raw(x: Float64Array) -> Float64Array:
    """Geyer initial-monotone-sequence ESS of ``[C, N, P]`` draws (ArviZ's ``_ess``)."""
    c, n, p = x.shape
    total = c * n
    out = np.full(p, np.nan)
    const = (x.max(axis=(0, 1)) - x.min(axis=(0, 1))) < np.finfo(float).resolution
    out[const] = total
    live = ~const & np.isfinite(x).all(axis=(0, 1))
    if not live.any() or n < 2:
        return out
    x = x[:, :, live]
    m = 1 << (2 * n - 1).bit_length()
    xc = x - x.mean(axis=1, keepdims=True)
    f = np.fft.rfft(xc, n=m, axis=1)
    acov = np.fft.irfft(f * np.conjugate(f), n=m, axis=1)[:, :n] / n  # [C, N, P]
    mean_var = acov[:, 0].mean(axis=0) * n / (n - 1.0)
    var_plus = mean_var * (n - 1.0) / n
    if c > 1:
        var_plus = var_plus + x.mean(axis=1).var(axis=0, ddof=1)
    rho = 1.0 - (mean_var[None, :] - acov.mean(axis=0)) / var_plus[None, :]  # [N, P]
    rho[0] = 1.0
    n_pairs = n // 2
    pairs = rho[: 2 * n_pairs].reshape(n_pairs, 2, -1).sum(axis=1)  # S_k = rho_2k + rho_2k+1
    # Pairs k = 1..k_last are examined (ArviZ's loop over odd t < n - 3, k = (t + 1) / 2).
    k_last = min(max((n - 3) // 2, 0), n_pairs - 1)
    nonpos = pairs <= 0.0
    examined = np.arange(n_pairs)[:, None]
    stop_mask = nonpos & (examined >= 1) & (examined <= k_last)
    has_stop = stop_mask.any(axis=0) & (pairs[0] > 0)
    k_star = np.where(has_stop, np.argmax(stop_mask, axis=0), k_last)
    # Pairs 0..last enter the double sum (monotone: running minimum of pair sums).
    last = np.where(pairs[0] > 0, k_star - 1, -1)
    mono = np.minimum.accumulate(pairs, axis=0)
    use = examined <= last[None, :]
    double = np.where(use, mono, 0.0).sum(axis=0)
    idx_even = np.minimum(2 * np.where(pairs[0] > 0, k_star, 0), n - 1)
    even = rho[idx_even, np.arange(rho.shape[1])]
    extra = np.where(has_stop, np.maximum(even, 0.0), even)
    extra = np.where(pairs[0] > 0, extra, 1.0)
    tau = -1.0 + 2.0 * double + extra
    tau = np.maximum(tau, 1.0 / np.log10(total))
    out[live] = total / tau
    return out


@dataclass(frozen=True, eq=False)
class BayesDidResult:
    """Posterior of a hierarchical ATT(g, c) model; immutable.

    ``idata`` is ArviZ's container: an xarray ``DataTree`` (ArviZ >= 1, PyMC >= 6; an ArviZ
    ``InferenceData`` with ArviZ 0.2x on Python 3.11) with the groups ``posterior``
    (``theta`` per cell, ``mu`` per event time, ``alpha`` per cohort, the scales and the raw
    sampled variables), ``sample_stats`` and ``constant_data`` (the raw cell estimates). Treat
    it as read-only: the summaries below are computed from it on demand (R-hat and ESS once, at
    fit time, in ``convergence``). ``diagnostics`` holds the sampler checks, ``priors`` the
    priors used (with their data-derived scales), ``timing`` the seconds spent per stage.
    """

    spec: BayesDidSpec
    idata: Any = field(repr=False)
    group: Float64Array = field(repr=False)
    time: Float64Array = field(repr=False)
    post: BoolArray = field(repr=False)
    raw_estimate: Float64Array = field(repr=False)
    raw_std_error: Float64Array = field(repr=False)
    e_grid: Float64Array = field(repr=False)
    cohorts: Float64Array = field(repr=False)
    diagnostics: Mapping[str, Any] = field(default_factory=dict)
    convergence: Mapping[str, tuple[Float64Array, Float64Array]] = field(
        default_factory=dict, repr=False
    )
    priors: Mapping[str, str] = field(default_factory=dict, repr=False)
    covariance: str = "structured"
    timing: Mapping[str, float] = field(default_factory=dict, repr=False)
    provenance: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for name in ("group", "time", "post", "raw_estimate", "raw_std_error", "e_grid", "cohorts"):
            getattr(self, name).setflags(write=False)

    # ------------------------------------------------------------------ draws
    def _chains(self, name: str) -> Float64Array:
        """Posterior draws ``[chain, draw, P]`` of a variable."""
        arr = np.asarray(self.idata.posterior[name].values, dtype=np.float64)
        return arr.reshape(arr.shape[0], arr.shape[1], -1)

    def _draws(self, name: str) -> Float64Array:
        arr = self._chains(name)
        return arr.reshape(arr.shape[0] * arr.shape[1], -1)

    def _conv(self, name: str) -> tuple[Float64Array, Float64Array]:
        if name in self.convergence:
            return self.convergence[name]
        return rhat_ess_bulk(self._chains(name))

    def _summarise(self, name: str, hdi_prob: float) -> dict[str, Float64Array]:
        if not 0.0 < hdi_prob < 1.0:
            raise ValueError(f"hdi_prob must lie in (0, 1), got {hdi_prob!r}.")
        chains = self._chains(name)
        d = chains.reshape(chains.shape[0] * chains.shape[1], -1)
        lo, hi = hdi(chains, hdi_prob)
        rhat, ess = self._conv(name)
        return {
            "estimate": d.mean(axis=0),
            "std_error": d.std(axis=0, ddof=1),
            "conf_low": lo,
            "conf_high": hi,
            "r_hat": rhat,
            "ess_bulk": ess,
        }

    # ------------------------------------------------------------------ tidy
    def tidy(self, hdi_prob: float = 0.9) -> pd.DataFrame:
        """One row per modelled cell: posterior mean, SD and highest-density interval.

        Columns: ``term, estimate, std_error, statistic, p_value, conf_low, conf_high, group,
        time, event_time, post, r_hat, ess_bulk, raw_estimate, raw_std_error, se_method, band,
        hdi_prob``. ``estimate`` is the posterior mean, ``std_error`` the posterior SD,
        ``conf_low``/``conf_high`` the HDI bounds; ``statistic`` and ``p_value`` are NaN.

        Parameters
        ----------
        hdi_prob
            Probability mass of the highest-density interval.

        Returns
        -------
        pandas.DataFrame
            A new frame on each call.
        """
        s = self._summarise("theta", hdi_prob)
        terms = [f"ATT({g:g},{t:g})" for g, t in zip(self.group, self.time, strict=True)]
        out = _posterior_frame(terms, s)
        out["group"] = self.group
        out["time"] = self.time
        out["event_time"] = self.time - self.group
        out["post"] = self.post
        out["r_hat"] = s["r_hat"]
        out["ess_bulk"] = s["ess_bulk"]
        out["raw_estimate"] = self.raw_estimate
        out["raw_std_error"] = self.raw_std_error
        out["se_method"] = "posterior"
        out["band"] = "hdi"
        out["hdi_prob"] = float(hdi_prob)
        assert tuple(out.columns[: len(TIDY_COLUMNS)]) == TIDY_COLUMNS
        return out

    def profile(self, hdi_prob: float = 0.9) -> pd.DataFrame:
        """Summarise the pooled event-time path ``mu(e)`` (the memorisation path) with its HDI.

        Returns
        -------
        pandas.DataFrame
            The tidy columns plus ``event_time, r_hat, ess_bulk, se_method, band, hdi_prob``;
            one row per event time.
        """
        s = self._summarise("mu", hdi_prob)
        out = _posterior_frame([f"mu({e:g})" for e in self.e_grid], s)
        out["event_time"] = self.e_grid
        out["r_hat"] = s["r_hat"]
        out["ess_bulk"] = s["ess_bulk"]
        out["se_method"] = "posterior"
        out["band"] = "hdi"
        out["hdi_prob"] = float(hdi_prob)
        return out

    def hyperparameters(self) -> pd.DataFrame:
        """Posterior mean and SD of the scale parameters (data units)."""
        rows = []
        for name in (
            "sigma_mu",
            "sigma_alpha",
            "sigma_beta",
            "sigma_delta",
            "lengthscale",
            "sigma_eps",
        ):
            if name in self.idata.posterior:
                d = self._draws(name)
                for k in range(d.shape[1]):
                    term = name if d.shape[1] == 1 else f"{name}[{k + 1}]"
                    col = d[:, k]
                    rows.append(
                        {"term": term, "estimate": col.mean(), "std_error": col.std(ddof=1)}
                    )
        return pd.DataFrame(rows)

    def glance(self) -> pd.DataFrame:
        """One-row summary: sizes, settings, sampler, timing and diagnostics."""
        d = self.diagnostics
        return pd.DataFrame(
            [
                {
                    "model": self.spec.model,
                    "pooling": self.spec.pooling,
                    "covariance": self.covariance,
                    "n_cells": int(self.group.size),
                    "n_post_cells": int(self.post.sum()),
                    "n_cohorts": int(self.cohorts.size),
                    "n_event_times": int(self.e_grid.size),
                    "sampler": self.spec.sampler_used,
                    "chains": self.spec.chains,
                    "draws": self.spec.draws,
                    "tune": self.spec.tune,
                    "sample_s": float(self.timing.get("sample_s", np.nan)),
                    "max_r_hat": d.get("max_r_hat", np.nan),
                    "min_ess_bulk": d.get("min_ess_bulk", np.nan),
                    "min_ess_tail": d.get("min_ess_tail", np.nan),
                    "divergences": d.get("divergences", 0),
                    "diagnostics_passed": d.get("passed", False),
                }
            ]
        )

    # ------------------------------------------------------------------ rendering
    def summary(self, hdi_prob: float = 0.9, max_rows: int = 30) -> str:
        """Text summary: the pooled path ``mu(e)`` with HDIs and the sampler diagnostics."""
        d = self.diagnostics
        pct = int(round(100 * hdi_prob))
        lines = [
            "Bayesian hierarchical ATT(g, c) "
            f"(model={self.spec.model!r}, pooling={self.spec.pooling!r}, "
            f"covariance={self.covariance})",
            f"{self.group.size} cells ({int(self.post.sum())} post), {self.cohorts.size} cohorts, "
            f"{self.e_grid.size} event times; {self.spec.chains} chains x {self.spec.draws} draws "
            f"({self.spec.sampler_used})",
            "",
            f"{'Event time':>12} {'mu(e)':>10} {'Post. SD':>10}   [{pct}% HDI]",
        ]
        prof = self.profile(hdi_prob)
        shown = prof if len(prof) <= max_rows else prof.iloc[:max_rows]
        for row in shown.itertuples(index=False):
            lines.append(
                f"{row.event_time:>12g} {row.estimate:>10.4f} {row.std_error:>10.4f}"
                f"   [{row.conf_low:>8.4f}, {row.conf_high:>8.4f}]"
            )
        if len(prof) > max_rows:
            lines.append(f"{'...':>12} ({len(prof) - max_rows} more event times)")
        lines += [
            "---",
            f"Diagnostics: max r_hat {d.get('max_r_hat', np.nan):.3f}, min ess_bulk "
            f"{d.get('min_ess_bulk', np.nan):.0f}, divergences {d.get('divergences', 0)} -> "
            + ("passed" if d.get("passed") else "FAILED (see the warning)"),
        ]
        return "\n".join(lines)

    def _table(self, hdi_prob: float) -> pd.DataFrame:
        return self.profile(hdi_prob)[
            ["event_time", "estimate", "std_error", "conf_low", "conf_high"]
        ]

    def _caption(self, hdi_prob: float) -> str:
        return (
            f"Posterior event-time profile mu(e) of {self.spec.yname} "
            f"({self.spec.pooling}, {int(round(100 * hdi_prob))}% HDI)"
        )

    def to_latex(self, digits: int = 4, hdi_prob: float = 0.9) -> str:
        """LaTeX (booktabs) table of the pooled path ``mu(e)``."""
        return render_frame(self._table(hdi_prob), "latex", digits, self._caption(hdi_prob))

    def to_markdown(self, digits: int = 4, hdi_prob: float = 0.9) -> str:
        """Markdown table of the pooled path ``mu(e)``."""
        return render_frame(self._table(hdi_prob), "markdown", digits, self._caption(hdi_prob))

    def _repr_html_(self, hdi_prob: float = 0.9) -> str:
        """HTML table of the pooled path ``mu(e)`` (Jupyter)."""
        return render_frame(self._table(hdi_prob), "html", 4, self._caption(hdi_prob))

    def plot(self, kind: str = "path", hdi_prob: float = 0.9, **options: Any) -> Any:
        """Chart the posterior (Altair): the pooled path ``mu(e)`` or the cells, with HDIs.

        Parameters
        ----------
        kind
            ``"path"`` (default): posterior mean of ``mu(e)`` with its highest-density band by
            event time (:func:`causalmem.presentation.charts.event_path`); ``"heatmap"``: the
            posterior mean per cell, cells whose HDI covers zero faint
            (:func:`causalmem.presentation.charts.profile_heatmap`).
        hdi_prob
            Probability mass of the highest-density intervals.
        **options
            Passed to the chart function (titles, ...).

        Returns
        -------
        altair.LayerChart or altair.Chart
        """
        from causalmem.results._charts import event_path, profile_heatmap

        hdi = f"{int(round(100 * hdi_prob))}% HDI"
        if kind == "path":
            options.setdefault("title", f"Posterior path mu(e) of {self.spec.yname} ({hdi})")
            options.setdefault("value_title", "posterior mean")
            return event_path(self.profile(hdi_prob), **options)
        if kind == "heatmap":
            options.setdefault("title", f"Posterior ATT(g, t) of {self.spec.yname} ({hdi})")
            options.setdefault("value_title", "posterior mean")
            return profile_heatmap(self.tidy(hdi_prob), **options)
        raise ValueError(f"kind={kind!r}; use 'path' or 'heatmap'.")

    def __repr__(self) -> str:
        d = self.diagnostics
        return (
            f"BayesDidResult(model={self.spec.model!r}, pooling={self.spec.pooling!r}, "
            f"cells={self.group.size}, sampler={self.spec.sampler_used!r}, "
            f"max_r_hat={d.get('max_r_hat', np.nan):.3f}, "
            f"min_ess_bulk={d.get('min_ess_bulk', np.nan):.0f}, "
            f"divergences={d.get('divergences', 0)})"
        )


def _posterior_frame(terms: list[str], s: Mapping[str, Any]) -> pd.DataFrame:
    """Build the shared tidy columns from a posterior summary (no statistic; HDI bounds)."""
    return pd.DataFrame(
        {
            "term": terms,
            "estimate": s["estimate"],
            "std_error": s["std_error"],
            "statistic": np.nan,
            "p_value": np.nan,
            "conf_low": s["conf_low"],
            "conf_high": s["conf_high"],
        }
    )


# ----------------------------------------------------------------- sensitivity (bayes_sensitivity)
@dataclass(frozen=True)
class BayesSensitivitySpec:
    """Every argument of the :func:`~causalmem.bayes_sensitivity` call."""

    scales: tuple[float, ...]
    targets: tuple[str, ...]
    alp: float
    include_pre: bool
    pooling: str
    cohort_decay: bool | None
    draws: int
    tune: int
    chains: int
    target_accept: float
    seed: int
    sampler: str
    shrinkage: float | None
    yname: str

    def to_dict(self) -> dict[str, Any]:
        """Plain mapping of the recorded arguments."""
        return dataclasses.asdict(self)


@dataclass(frozen=True, eq=False)
class BayesSensitivityResult(ResultMixin):
    """Posterior of memorisation targets by the violation prior's scale ``s``; immutable.

    ``tidy()``: one row per scale and target with ``scale`` (the prior SD ``s`` of the
    violation's second differences, data units), ``m_equivalent`` (``z s``, the Delta^SD bound
    M that each second difference stays within with prior probability ``1 - alp``),
    ``target, event_time, mean, sd, lower, upper`` (the ``1 - alp`` HDI), ``alp`` and the fit's
    diagnostics. ``frequentist`` holds the optional robust sets to overlay (``M, lower, upper,
    method, restriction[, target]``).
    """

    spec: BayesSensitivitySpec
    table: pd.DataFrame = field(repr=False)
    frequentist: pd.DataFrame | None = field(default=None, repr=False)
    fits: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)
    z: float = 1.959963984540054
    provenance: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def tidy(self) -> pd.DataFrame:
        """One row per scale and target (a new frame on each call)."""
        return self.table.copy()

    def glance(self) -> pd.DataFrame:
        """One-row summary: scales, targets, sampler settings and the worst diagnostics."""
        f = self.fits
        return pd.DataFrame(
            [
                {
                    "n_scales": len(self.spec.scales),
                    "max_scale": max(self.spec.scales),
                    "n_targets": len(self.spec.targets),
                    "alp": self.spec.alp,
                    "include_pre": self.spec.include_pre,
                    "draws": self.spec.draws,
                    "chains": self.spec.chains,
                    "max_r_hat": float(f["max_r_hat"].max()) if len(f) else np.nan,
                    "min_ess_bulk": float(f["min_ess_bulk"].min()) if len(f) else np.nan,
                    "divergences": int(f["divergences"].sum()) if len(f) else 0,
                    "has_frequentist": self.frequentist is not None,
                }
            ]
        )

    def _table(self) -> pd.DataFrame:
        return self.table[["target", "scale", "m_equivalent", "mean", "sd", "lower", "upper"]]

    def _caption(self) -> str | None:
        pct = int(round(100 * (1 - self.spec.alp)))
        return (
            f"Posterior of {self.spec.yname} targets by violation prior scale s "
            f"({pct}% HDI; M = {self.z:.2f} s)"
        )

    def summary(self) -> str:
        """Text summary: per target, the interval at each scale and its width."""
        pct = int(round(100 * (1 - self.spec.alp)))
        lines = [
            "Bayesian sensitivity to parallel-trends violations (violation path: random walk on "
            "slopes, second differences ~ N(0, s^2))",
            f"{len(self.spec.scales)} scales, {pct}% HDIs; M-equivalent = {self.z:.3f} s",
        ]
        for name, grp in self.table.groupby("target", sort=False):
            lines.append(f"\n{name}:")
            lines.append(f"{'s':>10} {'M~':>10} {'mean':>10} {'lower':>10} {'upper':>10}")
            for r in grp.itertuples(index=False):
                lines.append(
                    f"{r.scale:>10.4g} {r.m_equivalent:>10.4g} {r.mean:>10.4f} "
                    f"{r.lower:>10.4f} {r.upper:>10.4f}"
                )
        return "\n".join(lines)

    def plot(self, **options: Any) -> Any:
        """Chart (Altair): each target's interval by M-equivalent, frequentist sets overlaid.

        The Bayesian posterior is a band (``1 - alp`` HDI) with its mean as a line, over
        ``m_equivalent = z s``; the frequentist robust sets (``frequentist``) are error bars at
        their ``M``, coloured by ``method, restriction``. One panel per target.

        Parameters
        ----------
        **options
            ``title`` and ``width`` / ``height`` of each panel.
        """
        return sensitivity_chart(self.table, self.frequentist, self.spec.alp, **options)

    def __repr__(self) -> str:
        return (
            f"BayesSensitivityResult(scales={list(self.spec.scales)}, "
            f"targets={list(self.spec.targets)}, alp={self.spec.alp})"
        )


def sensitivity_chart(
    table: pd.DataFrame,
    frequentist: pd.DataFrame | None,
    alp: float,
    *,
    title: str | None = None,
    width: int = 220,
    height: int = 180,
) -> Any:
    """Build the sensitivity chart of :meth:`BayesSensitivityResult.plot`."""
    import altair as alt

    pct = int(round(100 * (1 - alp)))
    y_title = "interval (posterior HDI / robust set)"
    targets = list(dict.fromkeys(table["target"]))
    bayes = table.assign(source=f"Bayes ({pct}% HDI)", M=table["m_equivalent"])[
        ["target", "M", "mean", "lower", "upper", "source"]
    ]
    frames = [bayes]
    if frequentist is not None and len(frequentist):
        fq = frequentist.copy()
        if "target" not in fq.columns:
            fq["target"] = targets[0]
        fq["source"] = fq["method"].astype(str) + ", " + fq["restriction"].astype(str)
        fq["mean"] = np.nan
        frames.append(fq[["target", "M", "mean", "lower", "upper", "source"]])
    data = pd.concat(frames, ignore_index=True)
    data = data[data["target"].isin(targets)]
    x = alt.X("M:Q", title="M (Bayes: M = z·s)")
    color = alt.Color("source:N", title=None, legend=alt.Legend(orient="bottom", columns=2))
    is_bayes = alt.datum.source == f"Bayes ({pct}% HDI)"
    base = alt.Chart().encode(x=x)
    band = (
        base.mark_area(opacity=0.25)
        .encode(y=alt.Y("lower:Q", title=y_title), y2="upper:Q", color=color)
        .transform_filter(is_bayes)
    )
    line = (
        base.mark_line(point=True)
        .encode(y=alt.Y("mean:Q", title=y_title), color=color)
        .transform_filter(is_bayes)
    )
    bars = (
        base.mark_errorbar(ticks=True, thickness=1.5)
        .encode(y=alt.Y("lower:Q", title=y_title), y2="upper:Q", color=color)
        .transform_filter(~is_bayes)
    )
    zero = alt.Chart().mark_rule(strokeDash=[4, 4], color="grey").encode(y=alt.datum(0))
    chart = (
        alt.layer(band, line, bars, zero, data=data)
        .properties(width=width, height=height)
        .facet(facet=alt.Facet("target:N", sort=targets, title=None), columns=min(len(targets), 4))
        .resolve_scale(y="independent")
    )
    return chart.properties(
        title=title or "Sensitivity of memorisation targets to parallel-trends violations"
    )
