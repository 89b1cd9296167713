"""The immutable result of :func:`causalmem.twfe` and the TWFE event study.

A :class:`TwfeResult` records its call in a frozen :class:`TwfeSpec` and, for :meth:`with_vcov`,
the within-transformed design in a frozen :class:`TwfeDesign` (no closure): another covariance
is a pure function of that design (:func:`ols_vcov`).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import t as student_t

from causalmem._numerics.within import cluster_meat, combine_codes, nested_in
from causalmem._types import Float64Array, Int64Array
from causalmem.errors import CausalmemWarning, FormulaError
from causalmem.results.base import RenderMixin, provenance
from lmecon.result import frozen_mapping

__all__ = [
    "LinearmodelsBackend",
    "TwfeDesign",
    "TwfeResult",
    "TwfeSpec",
    "VcovSpec",
    "exact_fit",
    "freeze_vcov",
    "linearmodels_backend",
    "linearmodels_fit_kwargs",
    "linearmodels_result",
    "ols_vcov",
    "undefined_vcov",
]

VcovSpec = str | Mapping[str, str] | None


def freeze_vcov(vcov: VcovSpec) -> VcovSpec:
    """Return ``vcov`` as given, with a mapping (``{"CRV1": ...}``) made read-only."""
    return frozen_mapping(vcov) if isinstance(vcov, Mapping) else vcov


@dataclass(frozen=True)
class TwfeSpec:
    """The call that made a :class:`TwfeResult` (frozen).

    ``vcov`` is the covariance as requested (``None``: clustered by the first fixed effect);
    ``ref`` and ``window`` are set for the TWFE event study only. There are no regression
    weights (``weights`` is recorded as ``None``). ``engine`` is ``"within"`` (the fast
    demeaning) or ``"linearmodels"`` (:class:`linearmodels.PanelOLS` / ``AbsorbingLS``).
    """

    formula: str
    outcome: str
    fixed_effects: tuple[str, ...]
    vcov: VcovSpec
    alp: float = 0.05
    weights: str | None = None
    ref: int | None = None
    window: tuple[int, int] | None = None
    engine: str = "within"


@dataclass(frozen=True, eq=False)
class TwfeDesign:
    """What another covariance needs: the demeaned regressors, residuals and FE codes (frozen).

    ``data`` is the caller's frame (not copied), kept to resolve cluster columns in
    :meth:`TwfeResult.with_vcov`.
    """

    xd: Float64Array
    resid: Float64Array
    bread: Float64Array
    fe_codes: tuple[Int64Array, ...]
    fe_names: tuple[str, ...]
    fe_levels: tuple[int, ...]
    data: pd.DataFrame = field(repr=False)
    exact_fit: bool = False
    y: Float64Array | None = field(default=None, repr=False)
    x: Float64Array | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        for arr in (self.xd, self.resid, self.bread, *self.fe_codes):
            arr.setflags(write=False)
        for raw in (self.y, self.x):
            if raw is not None:
                raw.setflags(write=False)

    def vcov(self, vcov: VcovSpec) -> tuple[Float64Array, str, int, int]:
        """``(vcov, label, df_k, df_t)`` of the coefficients (see :func:`ols_vcov`).

        An exact fit (residuals at rounding level) has no estimable variance: NaN, with a
        warning.
        """
        with warnings.catch_warnings():
            if self.exact_fit:  # its own warning below says why, not ols_vcov's
                warnings.simplefilter("ignore", CausalmemWarning)
            cov, label, df_k, df_t = ols_vcov(
                vcov,
                xd=self.xd,
                resid=self.resid,
                bread=self.bread,
                fe_codes=list(self.fe_codes),
                fe_names=self.fe_names,
                fe_levels=list(self.fe_levels),
                data=self.data,
            )
        if self.exact_fit:
            why = "the regression fits the outcome exactly (zero residual variance)"
            return undefined_vcov(cov.shape[0], label, df_k, df_t, why, FIX_EXACT)
        return cov, label, df_k, df_t


@dataclass(frozen=True, eq=False)
class TwfeResult(RenderMixin):
    """Coefficients of a fixed-effects regression with their covariance; immutable.

    ``vcov_type`` names the covariance (``iid``, ``hetero``, ``CRV1:<clusters>``); use
    :meth:`with_vcov` for another one — it returns a new result and never mutates this one.
    Confidence intervals use Student t with ``df_t`` degrees of freedom (``G - 1`` when
    clustered), as fixest does. ``spec`` records the call (:class:`TwfeSpec`).
    """

    spec: TwfeSpec
    names: tuple[str, ...]
    coef: Float64Array
    vcov: Float64Array
    vcov_type: str
    n_obs: int
    df_k: int
    df_t: int
    rss: float
    r2_within: float
    provenance: Mapping[str, Any] = field(default_factory=dict, repr=False)
    design: TwfeDesign | None = field(default=None, repr=False)
    event_time: Float64Array | None = field(default=None, repr=False)
    backend: LinearmodelsBackend | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.coef.setflags(write=False)
        self.vcov.setflags(write=False)

    @property
    def formula(self) -> str:
        """The regression formula (fixest syntax)."""
        return self.spec.formula

    @property
    def alp(self) -> float:
        """Level of the confidence intervals."""
        return self.spec.alp

    @property
    def se(self) -> Float64Array:
        """Standard errors."""
        return np.sqrt(np.diag(self.vcov))

    def with_vcov(self, vcov: VcovSpec) -> TwfeResult:
        """Return a new result with another covariance (``"iid"``, ``"hetero"``, CRV1)."""
        if self.backend is not None:
            spec = dataclasses.replace(self.spec, vcov=freeze_vcov(vcov))
            return linearmodels_result(self.backend, spec, self.names, self.event_time)
        if self.design is None:
            raise ValueError("This result cannot recompute its covariance.")
        cov, vtype, df_k, df_t = self.design.vcov(vcov)
        return dataclasses.replace(
            self,
            spec=dataclasses.replace(self.spec, vcov=freeze_vcov(vcov)),
            vcov=cov,
            vcov_type=vtype,
            df_k=df_k,
            df_t=df_t,
            provenance=provenance(),
        )

    @cached_property
    def _tidy(self) -> pd.DataFrame:
        with np.errstate(invalid="ignore"):
            se = np.where(self.se > 0, self.se, np.nan)  # a zero SE is undefined, not certain
        with np.errstate(divide="ignore", invalid="ignore"):
            stat = self.coef / se
        crit = float(student_t.ppf(1 - self.alp / 2, self.df_t))
        out = pd.DataFrame(
            {
                "term": list(self.names),
                "estimate": self.coef,
                "std_error": se,
                "statistic": stat,
                "p_value": 2 * student_t.sf(np.abs(stat), self.df_t),
                "conf_low": self.coef - crit * se,
                "conf_high": self.coef + crit * se,
            }
        )
        if self.event_time is not None:
            out["event_time"] = np.asarray(self.event_time, dtype=float)
        out["se_method"] = self.vcov_type
        out["band"] = "pointwise"
        out["crit_val"] = crit
        return out

    def tidy(self) -> pd.DataFrame:
        """One row per coefficient with the shared tidy columns (+ ``event_time`` if any)."""
        return self._tidy.copy()

    def glance(self) -> pd.DataFrame:
        """One-row fit summary."""
        return pd.DataFrame(
            [
                {
                    "formula": self.formula,
                    "n_obs": self.n_obs,
                    "n_coef": len(self.names),
                    "df_k": self.df_k,
                    "df_t": self.df_t,
                    "rss": self.rss,
                    "r2_within": self.r2_within,
                    "vcov_type": self.vcov_type,
                }
            ]
        )

    def summary(self) -> str:
        """fixest-style text summary."""
        t = self.tidy()
        lines = [
            f"OLS with fixed effects: {self.formula}",
            f"Observations: {self.n_obs:,}   Std. errors: {self.vcov_type}",
            "",
            f"{'':>24} {'Estimate':>11} {'Std. Error':>11} {'t value':>9} {'Pr(>|t|)':>10}",
        ]
        for r in t.itertuples(index=False):
            lines.append(
                f"{str(r.term)[:24]:>24} {r.estimate:>11.5f} {r.std_error:>11.5f} "
                f"{r.statistic:>9.3f} {r.p_value:>10.3g}"
            )
        lines += ["---", f"Within R2: {self.r2_within:.5f}   RSS: {self.rss:.5g}"]
        return "\n".join(lines)

    def _table(self) -> pd.DataFrame:
        return self.tidy()[["term", "estimate", "std_error", "conf_low", "conf_high"]]

    def _caption(self) -> str:
        return self.formula

    def to_linearmodels(self) -> Any:
        """Return the fit as a linearmodels results object, with this result's covariance.

        ``PanelEffectsResults`` (one or two fixed effects) or ``AbsorbingLSResults``.

        For ``engine="linearmodels"`` it is the engine's own fit; otherwise the regression is
        refitted by :func:`causalmem.twfe` with ``engine="linearmodels"`` (same coefficients;
        linearmodels' small-sample conventions, see :func:`causalmem.twfe`). Its
        ``summary`` prints in the linearmodels/statsmodels layout.

        Returns
        -------
        linearmodels results
        """
        if self.backend is not None:
            return self.backend.fit(self.spec.vcov)
        d = self.design
        if d is None or self.event_time is not None or d.y is None or d.x is None:
            raise ValueError(
                "to_linearmodels() needs a twfe() result; refit with engine='linearmodels'."
            )
        backend = linearmodels_backend(d.y, d.x, self.names, list(d.fe_codes), d.fe_names, d.data)
        return backend.fit(self.spec.vcov)

    def to_statsmodels(self) -> Any:
        """Return the within regression as statsmodels ``OLS`` results.

        OLS of the demeaned outcome on the demeaned regressors (``TwfeDesign``), with the
        covariance mapped to statsmodels' (``iid``: nonrobust, ``hetero``: HC1, CRV1: cluster
        on the first cluster column). The coefficients are this result's; statsmodels does not
        know the absorbed fixed effects, so its degrees of freedom (``N - k``) and hence its
        standard errors differ from fixest's by ``sqrt((N - k) / (N - df_k))`` (iid, hetero).
        Use it for statsmodels' ``summary()`` layout and post-estimation tools.

        Returns
        -------
        statsmodels.regression.linear_model.RegressionResultsWrapper
        """
        if self.design is None:
            raise ValueError("to_statsmodels() needs the within design (engine='within').")
        import statsmodels.api as sm

        d = self.design
        y = d.xd @ self.coef + d.resid
        mod = sm.OLS(y, pd.DataFrame(np.asarray(d.xd), columns=list(self.names)))
        vcov = self.spec.vcov if self.spec.vcov is not None else {"CRV1": d.fe_names[0]}
        if vcov == "iid":
            return mod.fit()
        if vcov == "hetero":
            return mod.fit(cov_type="HC1")
        if isinstance(vcov, Mapping) and set(vcov) == {"CRV1"}:
            col = str(vcov["CRV1"]).split("+")[0].strip()
            groups = pd.factorize(d.data[col], sort=True)[0]
            return mod.fit(cov_type="cluster", cov_kwds={"groups": groups})
        raise ValueError(f"vcov={vcov!r} has no statsmodels counterpart here.")

    def plot(self, **options: Any) -> Any:
        """Coefficient plot (Altair): each term's estimate with its interval and a zero line.

        Built by :func:`causalmem.presentation.charts.coefficient_plot` from :meth:`tidy`.

        Parameters
        ----------
        **options
            Passed to :func:`~causalmem.presentation.charts.coefficient_plot` (titles).

        Returns
        -------
        altair.LayerChart
        """
        from causalmem.results._charts import coefficient_plot

        options.setdefault("title", self.formula)
        return coefficient_plot(self.tidy(), **options)

    def __repr__(self) -> str:
        return f"TwfeResult({self.formula!r}, n={self.n_obs}, vcov={self.vcov_type!r})"


def ols_vcov(
    vcov: VcovSpec,
    *,
    xd: Float64Array,
    resid: Float64Array,
    bread: Float64Array,
    fe_codes: list[Int64Array],
    fe_names: tuple[str, ...],
    fe_levels: list[int],
    data: pd.DataFrame,
) -> tuple[Float64Array, str, int, int]:
    """Covariance with pyfixest's default small-sample corrections (see ``_numerics.within``).

    Returns ``(vcov, label, df_k, df_t)``.
    """
    n, k = xd.shape
    n_fe = len(fe_codes)
    k_fe = sum(fe_levels)
    k_fe_adj = k_fe - (n_fe - 1) if n_fe > 1 else k_fe
    if vcov is None:
        vcov = {"CRV1": fe_names[0]}
    if isinstance(vcov, str):
        if vcov not in ("iid", "hetero"):
            raise ValueError(
                f"vcov={vcov!r} is not supported; use 'iid', 'hetero' or {{'CRV1': 'col'}}."
            )
        df_k = k + k_fe_adj
        if n - df_k <= 0:
            why = f"no residual degrees of freedom (N={n})"
            return undefined_vcov(k, vcov, df_k, 0, why, FIX_DF)
        if vcov == "iid":
            sigma2 = float(resid @ resid) / (n - df_k)
            return sigma2 * bread, "iid", df_k, n - df_k
        scores = xd * resid[:, None]
        meat = scores.T @ scores
        return (n / (n - df_k)) * (bread @ meat @ bread), "hetero", df_k, n - df_k
    if not isinstance(vcov, Mapping) or set(vcov) != {"CRV1"}:
        raise ValueError(
            f"vcov={vcov!r}: use 'iid', 'hetero', {{'CRV1': 'a'}} or {{'CRV1': 'a+b'}}."
        )
    cols = [c.strip() for c in str(vcov["CRV1"]).split("+") if c.strip()]
    codes = _cluster_codes(cols, data, vcov)
    nested = [i for i, f in enumerate(fe_codes) if any(nested_in(f, cl) for cl in codes)]
    k_fe_nested = sum(fe_levels[i] for i in nested)
    df_k = k + k_fe_adj - k_fe_nested + len(nested) if nested else k + k_fe_adj
    scores = xd * resid[:, None]
    parts = [(1.0, codes[0])]
    if len(codes) == 2:
        parts = [(1.0, codes[0]), (1.0, codes[1]), (-1.0, combine_codes(codes[0], codes[1]))]
    meat = np.zeros((k, k))
    g_all = []
    for sign, cl in parts:
        m, g = cluster_meat(scores, cl)
        meat += sign * m
        g_all.append(g)
    g_min = min(g_all[: len(codes)])
    label = "CRV1:" + "+".join(cols)
    if g_min < 2 or n - df_k <= 0:
        why = (
            f"only {g_min} cluster in {'+'.join(cols)!r}; a clustered variance needs at least two"
            if g_min < 2
            else f"no residual degrees of freedom (N={n})"
        )
        fix = FIX_CLUSTERS if g_min < 2 else FIX_DF
        return undefined_vcov(k, label, df_k, max(g_min - 1, 0), why, fix)
    adj = (n - 1) / (n - df_k) * g_min / (g_min - 1)
    cov = adj * (bread @ meat @ bread)
    if len(codes) == 2:
        # Two-way clustering can give a non-PSD matrix; fixest clips negative eigenvalues.
        vals, vecs = np.linalg.eigh(cov)
        if vals.min() < 0:
            cov = (vecs * np.maximum(vals, 0.0)) @ vecs.T
    return cov, label, df_k, g_min - 1


def exact_fit(rss: float, tss: float) -> bool:
    """Whether residuals are rounding noise: ``RSS <= (10 sqrt(eps))^2 * TSS`` (within).

    Parameters
    ----------
    rss, tss
        Residual and total (demeaned) sums of squares.

    Returns
    -------
    bool
    """
    tol = float(np.sqrt(np.finfo(float).eps) * 10) ** 2
    return bool(tss > 0 and rss <= tol * tss) or bool(tss == 0)


FIX_CLUSTERS = "use another vcov (e.g. 'hetero') or a cluster variable with several levels"
FIX_DF = "add observations, or drop regressors or fixed effects"
FIX_EXACT = "check the outcome: it is a deterministic function of the regressors"


def undefined_vcov(
    k: int, label: str, df_k: int, df_t: int, why: str, fix: str = FIX_CLUSTERS
) -> tuple[Float64Array, str, int, int]:
    """Return a NaN covariance (with a warning) for inference that cannot be computed.

    Parameters
    ----------
    k
        Number of coefficients.
    label, df_k, df_t
        Returned as :func:`ols_vcov` returns them.
    why, fix
        What makes the covariance undefined and what to do (named in the warning).

    Returns
    -------
    tuple
        ``(vcov, label, df_k, df_t)`` with an all-NaN ``vcov``.
    """
    warnings.warn(
        f"{label} standard errors cannot be computed: {why}. The {k} coefficients are reported "
        f"with NaN standard errors, p-values and intervals; {fix}.",
        CausalmemWarning,
        stacklevel=4,
    )
    return np.full((k, k), np.nan), label, df_k, df_t


def _cluster_codes(cols: list[str], data: pd.DataFrame, vcov: Any) -> list[Int64Array]:
    """Integer codes of one or two cluster columns, checked."""
    if not 1 <= len(cols) <= 2:
        raise ValueError(f"vcov={vcov!r}: one- or two-way clustering only.")
    missing = [c for c in cols if c not in data.columns]
    if missing:
        raise FormulaError(f"Cluster column(s) {missing} not in the data.")
    codes = []
    for c in cols:
        s = data[c]
        if s.isna().any():
            raise ValueError(f"Cluster column {c!r} has missing values.")
        codes.append(pd.factorize(s, sort=True)[0].astype(np.int64))
    return codes


# ------------------------------------------------------------------ engine="linearmodels"
@dataclass(frozen=True, eq=False)
class LinearmodelsBackend:
    """A linearmodels model of a :func:`causalmem.twfe` call (``engine="linearmodels"``).

    ``model`` is a :class:`linearmodels.PanelOLS` (one or two fixed effects: entity = the first,
    time = the second) or a :class:`linearmodels.iv.absorbing.AbsorbingLS` (more fixed
    effects); ``data`` is the caller's frame, kept to resolve cluster columns.
    """

    model: Any
    data: pd.DataFrame = field(repr=False)
    fe_names: tuple[str, ...]
    panel: bool

    def fit(self, vcov: VcovSpec) -> Any:
        """Fit with the covariance ``vcov`` (see :func:`linearmodels_fit_kwargs`)."""
        return self.model.fit(**linearmodels_fit_kwargs(vcov, self))


def linearmodels_fit_kwargs(vcov: VcovSpec, backend: LinearmodelsBackend) -> dict[str, Any]:
    """``fit()`` keywords of linearmodels for a :data:`VcovSpec`.

    ``"iid"``: ``unadjusted``; ``"hetero"``: ``robust``; ``{"CRV1": "a"}`` / ``"a+b"``:
    ``clustered`` on those columns with ``group_debias`` (the ``G / (G - 1)`` factor);
    ``"driscoll_kraay"`` or ``{"kernel": "bartlett", "bandwidth": "3"}``: ``kernel``
    (Driscoll-Kraay: scores summed by the second fixed effect, the time). Always
    ``debiased=True`` (``N / (N - k - fixed effects)``).

    Parameters
    ----------
    vcov
        The requested covariance (``None``: clustered by the first fixed effect).
    backend
        The model (for the cluster columns and the panel structure).

    Returns
    -------
    dict
        Keywords for ``model.fit``.
    """
    if vcov is None:
        vcov = {"CRV1": backend.fe_names[0]}
    if vcov == "iid":
        return {"cov_type": "unadjusted", "debiased": True}
    if vcov == "hetero":
        return {"cov_type": "robust", "debiased": True}
    if vcov == "driscoll_kraay" or (isinstance(vcov, Mapping) and "kernel" in vcov):
        if not backend.panel or len(backend.fe_names) != 2:
            raise ValueError(
                f"vcov={vcov!r} (Driscoll-Kraay) needs exactly two fixed effects, unit + time."
            )
        kw: dict[str, Any] = {"cov_type": "kernel", "debiased": True}
        if isinstance(vcov, Mapping):
            kw["kernel"] = str(vcov["kernel"])
            if "bandwidth" in vcov:
                kw["bandwidth"] = float(vcov["bandwidth"])
        return kw
    if isinstance(vcov, Mapping) and set(vcov) == {"CRV1"}:
        cols = [c.strip() for c in str(vcov["CRV1"]).split("+") if c.strip()]
        codes = _cluster_codes(cols, backend.data, vcov)
        index = backend.model.dependent.index if backend.panel else None
        clusters = pd.DataFrame(np.column_stack(codes), index=index, columns=cols)
        kw = {"cov_type": "clustered", "clusters": clusters, "debiased": True}
        if backend.panel:  # AbsorbingLS always applies G / (G - 1)
            kw.update(group_debias=True, auto_df=False)  # count every effect (as df_k)
        return kw
    raise ValueError(
        f"vcov={vcov!r}: engine='linearmodels' takes 'iid', 'hetero', {{'CRV1': 'a'}}, "
        "{'CRV1': 'a+b'}, 'driscoll_kraay' or {'kernel': 'bartlett', 'bandwidth': '3'}."
    )


def _vcov_label(vcov: VcovSpec, fe_names: tuple[str, ...]) -> str:
    if vcov is None:
        vcov = {"CRV1": fe_names[0]}
    if isinstance(vcov, Mapping):
        return ",".join(f"{k}:{v}" for k, v in vcov.items())
    return str(vcov)


def linearmodels_result(
    backend: LinearmodelsBackend,
    spec: TwfeSpec,
    names: tuple[str, ...],
    event_time: Float64Array | None = None,
) -> TwfeResult:
    """Fit ``backend`` with ``spec.vcov`` and return it as a :class:`TwfeResult`.

    ``df_t`` is ``G - 1`` for a clustered covariance (the fewest clusters), else linearmodels'
    residual degrees of freedom; ``vcov_type`` is ``"linearmodels:<vcov>"``.

    Parameters
    ----------
    backend
        The linearmodels model.
    spec
        The call (``engine="linearmodels"``).
    names
        Coefficient names.
    event_time
        Event times of the coefficients (event study), if any.

    Returns
    -------
    TwfeResult
    """
    fit = backend.fit(spec.vcov)
    kw = linearmodels_fit_kwargs(spec.vcov, backend)
    n = int(fit.nobs)
    df_resid = int(fit.df_resid)
    df_t = df_resid
    if kw["cov_type"] == "clustered":
        df_t = int(min(kw["clusters"][c].nunique() for c in kw["clusters"].columns)) - 1
    rss = float(fit.resid_ss)
    if backend.panel:
        r2 = float(fit.rsquared)  # R2 of the demeaned regression (fixest's within R2)
    else:  # AbsorbingLS' rsquared counts the absorbed effects: use the demeaned outcome
        yd = np.asarray(backend.model.absorbed_dependent, dtype=np.float64).ravel()
        r2 = 1.0 - rss / float(yd @ yd) if float(yd @ yd) > 0 else float("nan")
    return TwfeResult(
        spec=spec,
        names=names,
        coef=np.asarray(fit.params, dtype=np.float64).copy(),
        vcov=np.asarray(fit.cov, dtype=np.float64).copy(),
        vcov_type="linearmodels:" + _vcov_label(spec.vcov, backend.fe_names),
        n_obs=n,
        df_k=n - df_resid,
        df_t=df_t,
        rss=rss,
        r2_within=r2,
        provenance=provenance(engine="linearmodels"),
        event_time=event_time,
        backend=backend,
    )


def linearmodels_backend(
    y: Float64Array,
    x: Float64Array,
    names: tuple[str, ...],
    fes: list[np.ndarray],
    fe_names: tuple[str, ...],
    data: pd.DataFrame,
) -> LinearmodelsBackend:
    """Build the linearmodels model of a TWFE regression (not yet fitted).

    ``PanelOLS`` on the index (first FE, second FE or row) for one or two fixed effects whose
    (entity, time) pairs are unique, else ``AbsorbingLS`` absorbing every fixed effect.
    """
    from linearmodels import PanelOLS
    from linearmodels.iv.absorbing import AbsorbingLS

    n = y.size
    if len(fes) <= 2:
        second = fes[1] if len(fes) == 2 else np.arange(n)
        index = pd.MultiIndex.from_arrays([fes[0], second], names=["entity", "time"])
        if not index.has_duplicates:
            dep = pd.Series(y, index=index, name="y")
            exog = pd.DataFrame(x, index=index, columns=list(names))
            model = PanelOLS(dep, exog, entity_effects=True, time_effects=len(fes) == 2)
            return LinearmodelsBackend(model, data, fe_names, panel=True)
    absorb = pd.DataFrame({f"fe{i}": pd.Categorical(f) for i, f in enumerate(fes)})
    absorbing = AbsorbingLS(pd.Series(y, name="y"), pd.DataFrame(x, columns=list(names)),
                            absorb=absorb)  # fmt: skip
    return LinearmodelsBackend(absorbing, data, fe_names, panel=False)
