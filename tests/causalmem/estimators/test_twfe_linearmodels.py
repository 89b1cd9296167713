"""``twfe(..., engine="linearmodels")`` against the fast within engine, and the adapters.

Tolerances: coefficients ``COEF_TOL`` = 1e-10 (both solve the same normal equations; observed
~1e-15). Standard errors: identical (``SE_RTOL`` = 1e-10) for ``iid`` and ``hetero``; for
one-way clustering they differ only by the degrees-of-freedom count (fixest does not count a
fixed effect nested in the clusters, linearmodels counts every absorbed effect):
``se_lm = se_within * sqrt((N - df_k_within) / (N - df_k_lm))`` to ``SE_RTOL``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import causalmem as cm
from tests.causalmem.estimators.test_twfe_event_study import _frame

pytest.importorskip("linearmodels")

COEF_TOL, SE_RTOL = 1e-10, 1e-10
FORMULAS = [
    "y ~ treated + x2 | unit + step",
    "y ~ treated + x2 + x3 | unit",
    "y ~ treated + x2 | unit + step + cl",  # three fixed effects: AbsorbingLS
]


@pytest.fixture(autouse=True)
def _quiet() -> None:
    warnings.filterwarnings("ignore", module="linearmodels")


@pytest.mark.parametrize("formula", FORMULAS)
@pytest.mark.parametrize("vcov", [None, "iid", "hetero", {"CRV1": "cl"}, {"CRV1": "step"}],
                         ids=str)  # fmt: skip
@pytest.mark.parametrize("unbalanced", [False, True])
def test_linearmodels_engine_equals_within_engine(
    formula: str, vcov: object, unbalanced: bool
) -> None:
    df = _frame(seed=5)
    if unbalanced:
        df = df.sample(frac=0.85, random_state=1).sort_index()
    fast = cm.twfe(formula, df, vcov=vcov)  # type: ignore[arg-type]
    lm = cm.twfe(formula, df, vcov=vcov, engine="linearmodels")  # type: ignore[arg-type]
    assert isinstance(lm, cm.TwfeResult)
    assert lm.spec.engine == "linearmodels" and fast.spec.engine == "within"
    assert lm.names == fast.names and lm.n_obs == fast.n_obs
    np.testing.assert_allclose(lm.coef, fast.coef, atol=COEF_TOL)
    np.testing.assert_allclose(lm.rss, fast.rss, rtol=1e-10)
    np.testing.assert_allclose(lm.r2_within, fast.r2_within, rtol=1e-10)
    n = fast.n_obs
    factor = 1.0 if vcov in ("iid", "hetero") else np.sqrt((n - fast.df_k) / (n - lm.df_k))
    np.testing.assert_allclose(lm.se, fast.se * factor, rtol=SE_RTOL)
    if vcov in ("iid", "hetero"):
        assert lm.df_t == fast.df_t
    if isinstance(vcov, dict):
        assert lm.df_t == fast.df_t  # G - 1
    assert lm.tidy()["term"].tolist() == fast.tidy()["term"].tolist()


def test_driscoll_kraay_and_with_vcov() -> None:
    df = _frame(seed=6)
    dk = cm.twfe("y ~ treated + x2 | unit + step", df, vcov="driscoll_kraay",
                 engine="linearmodels")  # fmt: skip
    assert dk.vcov_type == "linearmodels:driscoll_kraay"
    assert np.all(np.isfinite(dk.se)) and np.all(dk.se > 0)
    peer = dk.to_linearmodels()
    np.testing.assert_allclose(dk.se, peer.std_errors.to_numpy(), rtol=1e-12)
    bart = dk.with_vcov({"kernel": "bartlett", "bandwidth": "5"})
    assert bart.spec.vcov == {"kernel": "bartlett", "bandwidth": "5"}
    assert not np.allclose(bart.se, dk.se)
    np.testing.assert_allclose(bart.coef, dk.coef, atol=COEF_TOL)
    het = dk.with_vcov("hetero")
    np.testing.assert_allclose(
        het.se, cm.twfe("y ~ treated + x2 | unit + step", df, vcov="hetero").se, rtol=SE_RTOL
    )
    with pytest.raises(ValueError, match="two fixed effects"):
        cm.twfe("y ~ treated | unit", df, vcov="driscoll_kraay", engine="linearmodels")
    with pytest.raises(ValueError, match="not supported"):
        cm.twfe("y ~ treated | unit + step", df, vcov="driscoll_kraay")  # fast engine
    with pytest.raises(ValueError, match="engine"):
        cm.twfe("y ~ treated | unit + step", df, engine="pyfixest")  # type: ignore[arg-type]


def test_adapters() -> None:
    df = _frame(seed=7)
    fast = cm.twfe("y ~ treated + x2 | unit + step", df, vcov="hetero")
    lmres = fast.to_linearmodels()
    np.testing.assert_allclose(lmres.params.to_numpy(), fast.coef, atol=COEF_TOL)
    np.testing.assert_allclose(lmres.std_errors.to_numpy(), fast.se, rtol=SE_RTOL)
    sm = fast.to_statsmodels()
    np.testing.assert_allclose(sm.params.to_numpy(), fast.coef, atol=COEF_TOL)
    n, k = fast.n_obs, len(fast.names)
    # statsmodels knows only the k demeaned regressors: HC1 with N / (N - k)
    np.testing.assert_allclose(sm.bse.to_numpy(), fast.se * np.sqrt((n - fast.df_k) / (n - k)),
                               rtol=SE_RTOL)  # fmt: skip
    assert "OLS Regression Results" in str(sm.summary())
    cl = cm.twfe("y ~ treated + x2 | unit + step", df).to_statsmodels()
    np.testing.assert_allclose(cl.params.to_numpy(), fast.coef, atol=COEF_TOL)
