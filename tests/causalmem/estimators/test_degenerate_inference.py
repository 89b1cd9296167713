"""Issue 13, items 2, 4 and 10 (event study): inference that cannot be computed is never certain.

Each class of failure has a test: fewer than two clusters, too few bootstrap draws, zero
variance (att_gt, aggte, twfe, the TWFE event study, bayes_did); NaN cells from zero-weight
groups; overflow from huge outcomes or weights; empty aggregation windows; event-study windows
and reference periods outside the data.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import causalmem as cm
from causalmem._numerics.inference import MIN_BITERS, degenerate_se
from causalmem.errors import (
    CausalmemWarning,
    IdentificationError,
    OptionError,
    OutcomeError,
    WeightsError,
)
from causalmem.results.base import inference_columns

ROLES = ("y", "step", "unit", "cohort")


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    df = cm.simulate_panel(seed=1).frame
    g = df["cohort"].astype(float)
    return df.assign(g=g, d=(df["step"] >= g.fillna(np.inf)).astype(float), one=1)


@pytest.fixture(scope="module")
def exact(frame: pd.DataFrame) -> pd.DataFrame:
    """An outcome with no noise: unit and step effects plus a constant effect of 1."""
    u = frame["unit"].astype("category").cat.codes.to_numpy()
    return frame.assign(y=0.1 * u + 0.01 * frame["step"] + frame["d"])


def _no_inference(t: pd.DataFrame) -> None:
    cols = ["std_error", "statistic", "p_value", "conf_low", "conf_high"]
    assert t[cols].isna().all().all(), t[cols]


# ------------------------------------------------------------------ fewer than two clusters
@pytest.mark.parametrize("bstrap", [False, True])
def test_att_gt_one_cluster_is_nan_with_warning(frame: pd.DataFrame, bstrap: bool) -> None:
    with pytest.warns(CausalmemWarning, match=r"15 of 15 .*only 1 cluster \('one'\)"):
        res = cm.att_gt(frame, *ROLES, clustervars="one", bstrap=bstrap, biters=50, seed=0)
    _no_inference(res.tidy())
    assert np.isnan(res.se_analytic).all()
    assert np.isnan(res.pretest()[1])
    with pytest.warns(CausalmemWarning, match=r"aggte\(type='dynamic'\).*only 1 cluster"):
        agg = cm.aggte(res, "dynamic")
    assert np.isnan(agg.overall_std_error)
    _no_inference(agg.tidy())


def test_twfe_one_cluster_is_nan_with_warning(frame: pd.DataFrame) -> None:
    with pytest.warns(CausalmemWarning, match=r"CRV1:one .*only 1 cluster"):
        res = cm.twfe("y ~ d | unit + step", frame, vcov={"CRV1": "one"})
    _no_inference(res.tidy())
    ok = cm.twfe("y ~ d | unit + step", frame)
    with pytest.warns(CausalmemWarning, match="only 1 cluster"):
        _no_inference(ok.with_vcov({"CRV1": "one"}).tidy())
    with pytest.warns(CausalmemWarning, match=r"7 coefficients .*NaN"):
        es = cm.event_study(frame, *ROLES, vcov={"CRV1": "one"})
    assert es.tidy()["std_error"].isna().all()


# ------------------------------------------------------------------ too few bootstrap draws
@pytest.mark.parametrize("biters", [1, 3, MIN_BITERS - 1])
def test_too_few_bootstrap_draws_are_refused(frame: pd.DataFrame, biters: int) -> None:
    with pytest.raises(OptionError, match=rf"biters={biters} .*biters >= {MIN_BITERS}"):
        cm.att_gt(frame, *ROLES, biters=biters, seed=0)
    cm.att_gt(frame, *ROLES, bstrap=False, biters=biters)  # analytic: biters is unused


def test_minimum_bootstrap_draws_are_accepted(frame: pd.DataFrame) -> None:
    res = cm.att_gt(frame, *ROLES, biters=MIN_BITERS, seed=0)
    assert (res.tidy()["std_error"].dropna() > 0).all()


# ------------------------------------------------------------------ zero variance
@pytest.mark.parametrize("bstrap", [False, True])
def test_zero_variance_is_nan_with_warning(exact: pd.DataFrame, bstrap: bool) -> None:
    with pytest.warns(CausalmemWarning, match=r"no usable standard error.*zero variance"):
        res = cm.att_gt(exact, *ROLES, bstrap=bstrap, biters=50, seed=0)
    t = res.tidy()
    assert np.allclose(t.loc[t["post"], "estimate"], 1.0)
    _no_inference(t)


def test_constant_outcome_is_nan_with_warning(frame: pd.DataFrame) -> None:
    with pytest.warns(CausalmemWarning, match="15 of 15"):
        res = cm.att_gt(frame.assign(y=3.0), *ROLES, bstrap=False)
    _no_inference(res.tidy())


def test_degenerate_se_rule() -> None:
    se = np.array([0.0, 1e-9, 1e-3, np.nan, 0.2])
    assert degenerate_se(se, 1.0).tolist() == [True, True, False, False, False]
    # Scale-aware: the same SE is real on a tiny outcome scale.
    assert not degenerate_se(np.array([1e-9]), 1e-6)[0]


def test_zero_se_never_gives_p_zero() -> None:
    cols = inference_columns(np.array([1.0, 1.0]), np.array([0.0, 0.5]), 1.96)
    assert np.isnan(cols["p_value"][0]) and np.isnan(cols["conf_low"][0])
    assert cols["p_value"][1] == pytest.approx(0.0455, abs=1e-4)


def test_bayes_did_refuses_unusable_cells(frame: pd.DataFrame) -> None:
    pytest.importorskip("pymc")
    from causalmem.estimators.bayes import bayes_did

    with pytest.warns(CausalmemWarning):
        res = cm.att_gt(frame, *ROLES, clustervars="one", bstrap=False)
    with pytest.raises(IdentificationError, match=r"bayes_did: 9 of 9 .*only 1 cluster"):
        bayes_did(res, draws=10, tune=10, chains=1, seed=0)
    w = frame.assign(w=np.where(frame["g"].isna(), 0.0, 1.0))
    with pytest.warns(CausalmemWarning):
        nan_cells = cm.att_gt(w, *ROLES, weightsname="w", bstrap=False)
    with pytest.raises(IdentificationError, match=r"estimate is NaN"):
        bayes_did(nan_cells, draws=10, tune=10, chains=1, seed=0)


# ------------------------------------------------------------------ NaN cells, overflow
def test_zero_weight_never_treated_warns(frame: pd.DataFrame) -> None:
    w = frame.assign(w=np.where(frame["g"].isna(), 0.0, 1.0))
    with pytest.warns(CausalmemWarning, match=r"15 of 15 .*zero total weight in 'w': never"):
        res = cm.att_gt(w, *ROLES, weightsname="w", bstrap=False)
    assert res.tidy()["estimate"].isna().all()


@pytest.mark.parametrize("xformla", [None, "~ x"])
def test_zero_weight_cohort_warns(frame: pd.DataFrame, xformla: str | None) -> None:
    g0 = frame["g"].min()
    w = frame.assign(
        w=np.where(frame["g"] == g0, 0.0, 1.0),
        x=np.random.default_rng(0).normal(size=len(frame)),
    )
    with pytest.warns(CausalmemWarning, match=rf"5 of 15 .*cohort {g0:g}.*\(g={g0:g}, t="):
        cm.att_gt(w, *ROLES, weightsname="w", xformla=xformla, bstrap=False)


@pytest.mark.parametrize("bstrap", [False, True])
def test_huge_outcome_is_refused(frame: pd.DataFrame, bstrap: bool) -> None:
    with pytest.raises(OutcomeError, match=r"overflowed.*'y' reaches.*Rescale the outcome"):
        cm.att_gt(frame.assign(y=frame["y"] * 1e200), *ROLES, bstrap=bstrap, biters=50)


def test_huge_weight_is_refused(frame: pd.DataFrame) -> None:
    first = frame["unit"].iloc[0]
    w = frame.assign(w=np.where(frame["unit"] == first, 1e300, 1.0))
    with pytest.raises(WeightsError, match=r"overflowed.*weights 'w' span.*Rescale the weights"):
        cm.att_gt(w, *ROLES, weightsname="w", bstrap=False)


def test_large_but_safe_scale_is_unchanged(frame: pd.DataFrame) -> None:
    base = cm.att_gt(frame, *ROLES, bstrap=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        big = cm.att_gt(frame.assign(y=frame["y"] * 1e50), *ROLES, bstrap=False)
    assert np.allclose(big.att, base.att * 1e50, rtol=1e-10)
    assert np.allclose(big.se, base.se * 1e50, rtol=1e-8)


# ------------------------------------------------------------------ aggte windows
def test_aggte_empty_windows_are_refused(frame: pd.DataFrame) -> None:
    res = cm.att_gt(frame, *ROLES, bstrap=False)
    with pytest.raises(OptionError, match=r"min_e=3, max_e=1\).*min_e is above max_e"):
        cm.aggte(res, "dynamic", min_e=3, max_e=1)
    with pytest.raises(IdentificationError, match=r"no estimated ATT\(g, t\).*Event times"):
        cm.aggte(res, "dynamic", min_e=500, max_e=600)
    with pytest.raises(IdentificationError, match="nothing to aggregate"):
        cm.aggte(res, "simple", max_e=-50)


# ------------------------------------------------------------------ event-study windows
@pytest.mark.parametrize(
    ("kw", "err", "match"),
    [
        ({"window": (50, 60)}, IdentificationError, r"window=\(50, 60\) lies outside.*-4\.\.3"),
        ({"window": (3, -3)}, OptionError, r"lo is above hi"),
        ({"window": (0, 3)}, IdentificationError, r"ref=-1 is not .*choose ref among 0\.\.3"),
        ({"ref": -40}, IdentificationError, r"ref=-40 .*relative periods -4\.\.3"),
    ],
)
def test_event_study_bad_window(
    frame: pd.DataFrame, kw: dict[str, object], err: type[Exception], match: str
) -> None:
    with pytest.raises(err, match=match):
        cm.event_study(frame, *ROLES, **kw)  # type: ignore[arg-type]


# ------------------------------------------------------------------ valid inputs stay quiet
def test_valid_inputs_raise_no_new_warning(frame: pd.DataFrame) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", CausalmemWarning)
        res = cm.att_gt(frame, *ROLES, biters=100, seed=0)
        cm.aggte(res, "dynamic")
        cm.twfe("y ~ d | unit + step", frame)
        cm.event_study(frame, *ROLES, window=(-3, 3))
    assert np.isfinite(res.se).all()


# ------------------------------------------------------------------ twfe: no df, exact fit
def test_twfe_saturated_is_nan_with_warning() -> None:
    """No residual degrees of freedom (a saturated fit): warned, never a ZeroDivisionError."""
    df = pd.DataFrame(
        {"unit": [1, 1, 2, 2], "step": [1, 2, 1, 2], "y": [0.0, 1.0, 0.5, 2.0], "d": [0, 1, 0, 0]}
    ).assign(d=lambda f: f["d"].astype(float))
    for vcov in ("iid", "hetero", None):
        with pytest.warns(CausalmemWarning, match="standard errors cannot be computed"):
            res = cm.twfe("y ~ d | unit + step", df, vcov=vcov)
        _no_inference(res.tidy())


def test_twfe_exact_fit_is_nan_with_warning(exact: pd.DataFrame) -> None:
    with pytest.warns(CausalmemWarning, match="fits the outcome exactly"):
        res = cm.twfe("y ~ d | unit + step", exact)
    assert res.coef[0] == pytest.approx(1.0)
    _no_inference(res.tidy())
    with pytest.warns(CausalmemWarning, match="fits the outcome exactly"):
        es = cm.event_study(exact, *ROLES)
    assert es.tidy()["std_error"].isna().all()
