"""Two-way fixed effects regression with fixest formulas: ``twfe("y ~ x | unit + step", data)``."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
import scipy.linalg

from causalmem._numerics.within import demean
from causalmem._types import Float64Array
from causalmem.errors import FormulaError, SingularDesignError
from causalmem.estimators.formula import design, parse_formula
from causalmem.results.base import provenance
from causalmem.results.twfe import (
    TwfeDesign,
    TwfeResult,
    TwfeSpec,
    VcovSpec,
    exact_fit,
    freeze_vcov,
    linearmodels_backend,
    linearmodels_result,
    ols_vcov,
)
from lmecon.options import check_literal

__all__ = ["Engine", "VcovSpec", "ols_vcov", "twfe"]

Engine = Literal["within", "linearmodels"]


def twfe(
    formula: str,
    data: pd.DataFrame,
    *,
    vcov: VcovSpec = None,
    alp: float = 0.05,
    engine: Engine = "within",
) -> TwfeResult:
    """OLS with absorbed fixed effects (the within estimator), fixest/pyfixest conventions.

    Parameters
    ----------
    formula
        ``"y ~ x1 + x2 | fe1 + fe2"``; at least one fixed effect is required. The right-hand
        side is evaluated by formulaic, which runs Python expressions (``I(...)``, function
        calls): pass only formulas you trust. Text from a file or a command line should first
        go through :func:`causalmem.estimators.formula.check_formula_text`, which allows only
        column names, ``C()``, ``I()`` with arithmetic and the documented transforms.
    data
        Long frame (never modified).
    vcov
        ``"iid"``, ``"hetero"`` (HC1), ``{"CRV1": "unit"}`` or two-way ``{"CRV1": "unit+step"}``.
        Default: clustered by the first fixed effect (fixest's default).
    alp
        Level of the confidence intervals.
    engine
        ``"within"`` (default): the fast demeaning here, fixest/pyfixest small-sample
        conventions. ``"linearmodels"``: :class:`linearmodels.PanelOLS` (one or two fixed
        effects, entity = the first, time = the second) or
        :class:`linearmodels.iv.absorbing.AbsorbingLS` (three or more), for what the fast
        engine does not cover: Driscoll-Kraay / kernel covariances (``vcov="driscoll_kraay"``
        or ``{"kernel": "bartlett", "bandwidth": "3"}``) and many fixed effects. Same
        coefficients; standard errors follow linearmodels (``debiased=True``: ``N / (N - k -
        absorbed effects)``; clustered with ``G / (G - 1)``): they equal the fast engine's up
        to the degrees-of-freedom factor ``(N - 1) / (N - df_k)`` versus ``N / (N - df_lm)``
        (identical for ``"iid"`` and ``"hetero"``; for clusters that nest a fixed effect,
        fixest does not count it). The result's ``backend`` holds the model;
        :meth:`TwfeResult.to_linearmodels` returns linearmodels' results object.

    Returns
    -------
    TwfeResult
        Coefficients, covariance and the tidy contract; ``with_vcov`` re-does inference from
        the recorded design (``result.design``); ``result.spec`` records the call.

    Examples
    --------
    >>> from causalmem import simulate_panel
    >>> df = simulate_panel(seed=0).frame.assign(d=lambda f: (f.step >= f.cohort).fillna(False))
    >>> res = twfe("y ~ d | unit + step", df.assign(d=df.d.astype(float)))
    >>> res.tidy()["term"].tolist()
    ['d']

    Notes
    -----
    The within transformation is computed here (group means by ``np.bincount``; alternating
    projections for unbalanced or multi-way designs) rather than by linearmodels ``PanelOLS``,
    which is several times slower at the paper's scale; linearmodels and pyfixest serve as
    test oracles.
    """
    check_literal("engine", engine, Engine)
    parsed = parse_formula(formula)
    if not parsed.fixed_effects:
        raise FormulaError(
            f"twfe() needs fixed effects after '|', e.g. '{parsed.outcome} ~ {parsed.rhs} | "
            "unit + step'; for a plain regression use statsmodels."
        )
    y, x, names, fes = design(parsed, data)
    if x.shape[1] == 0:
        raise FormulaError(f"formula={formula!r} has no regressors before '|'.")
    if engine == "linearmodels":
        backend = linearmodels_backend(y, x, names, fes, parsed.fixed_effects, data)
        spec = TwfeSpec(
            formula=formula,
            outcome=parsed.outcome,
            fixed_effects=parsed.fixed_effects,
            vcov=freeze_vcov(vcov),
            alp=alp,
            engine="linearmodels",
        )
        return linearmodels_result(backend, spec, names)
    dm = demean(np.column_stack([y, x]), fes)
    if not dm.converged:
        raise FormulaError("The fixed-effect demeaning did not converge; check the design.")
    yd, xd = dm.values[:, 0], dm.values[:, 1:]
    _check_rank(xd, names)
    xtx = xd.T @ xd
    bread: Float64Array = np.asarray(np.linalg.inv(xtx), dtype=np.float64)
    beta = bread @ (xd.T @ yd)
    resid = yd - xd @ beta
    rss = float(resid @ resid)
    tss = float(yd @ yd)
    des = TwfeDesign(
        xd=xd,
        resid=resid,
        bread=bread,
        fe_codes=tuple(fes),
        fe_names=parsed.fixed_effects,
        fe_levels=tuple(int(f.max()) + 1 for f in fes),
        data=data,
        exact_fit=exact_fit(rss, tss),
        y=y,
        x=x,
    )
    cov, vtype, df_k, df_t = des.vcov(vcov)
    return TwfeResult(
        spec=TwfeSpec(
            formula=formula,
            outcome=parsed.outcome,
            fixed_effects=parsed.fixed_effects,
            vcov=freeze_vcov(vcov),
            alp=alp,
        ),
        names=names,
        coef=beta.copy(),
        vcov=cov,
        vcov_type=vtype,
        n_obs=int(y.size),
        df_k=df_k,
        df_t=df_t,
        rss=rss,
        r2_within=1.0 - rss / tss if tss > 0 else float("nan"),
        provenance=provenance(),
        design=des,
    )


def _check_rank(xd: Float64Array, names: tuple[str, ...]) -> None:
    if xd.shape[0] <= xd.shape[1]:
        raise SingularDesignError(
            f"{xd.shape[0]} observations for {xd.shape[1]} regressors after absorbing the "
            "fixed effects."
        )
    _, r, piv = scipy.linalg.qr(xd, mode="economic", pivoting=True)
    d = np.abs(np.diag(r))
    tol = max(xd.shape) * np.finfo(float).eps * (d[0] if d.size else 0.0)
    bad = [names[piv[i]] for i in range(d.size) if d[i] <= max(tol, 1e-10 * d[0])]
    if bad or (d.size and d[0] == 0):
        raise SingularDesignError(
            f"Regressors {bad or list(names)} are collinear with the fixed effects or with "
            "each other (e.g. time-invariant within unit); drop them from the formula."
        )
