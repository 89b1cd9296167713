"""Pre-trend power (Roth 2022) against the published outputs of the pretrends packages.

Reference: ``reference/pretrends_hewang_stata.json`` (He & Wang 2017 event study, outputs of
the Stata port of R ``pretrends``; provenance inside). Properties: symmetric truncation leaves
a zero mean at zero, independent post periods keep their mean and nominal coverage, the Wald
slope gives the target power exactly, and a seeded Monte Carlo agrees with the Tallis moments.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import norm

from causalmem._numerics.pretrends import (
    conditional_moments,
    pass_probability,
    rectangle_probability,
    truncated_normal_mean,
)
from causalmem.analysis.pretrends import pretrends_power, slope_for_power
from causalmem.errors import OptionError
from lmecon.result import check_result

REF = json.loads((Path(__file__).parent / "reference" / "pretrends_hewang_stata.json").read_text())
BETA = np.array(REF["betahat"])
SIGMA = np.array(REF["sigma"])
T = np.array(REF["event_time"], dtype=float)
Z = float(norm.ppf(0.975))


@pytest.fixture(scope="module")
def linear50():  # noqa: ANN201
    return pretrends_power(BETA, SIGMA, event_time=T, reference_period=-1, target_power=0.5)


def test_slope_for_power_matches_stata_port() -> None:
    s = slope_for_power(BETA, SIGMA, event_time=T, reference_period=-1, target_power=0.5)
    # printed to 16 digits; our rectangle probabilities carry ~1e-7 error
    assert s == pytest.approx(REF["linear_power50"]["slope"], rel=2e-5)


def test_pretrends_linear_matches_stata_port(linear50) -> None:  # noqa: ANN001
    ref = REF["linear_power50"]
    assert linear50.power == pytest.approx(ref["Power"], abs=2e-6)
    assert linear50.bayes_factor == pytest.approx(ref["Bayes"], abs=5e-6)
    assert linear50.likelihood_ratio == pytest.approx(ref["LR"], rel=5e-5)
    t = linear50.tidy()
    res = ref["results"]
    assert t["event_time"].tolist() == res["t"]
    # 7 significant digits printed
    np.testing.assert_allclose(t["deltatrue"], res["deltatrue"], atol=2e-7 + 1e-6)
    np.testing.assert_allclose(t["mean_after_pretest"], res["meanAfterPretesting"], atol=1e-6)
    np.testing.assert_allclose(t["conf_low"], res["lb"], atol=1e-6)
    np.testing.assert_allclose(t["conf_high"], res["ub"], atol=1e-6)


@pytest.mark.slow
def test_pretrends_quadratic_matches_stata_port() -> None:
    delta = 0.024 * (T + 1) ** 2
    r = pretrends_power(BETA, SIGMA, event_time=T, deltatrue=delta)
    q = REF["quadratic"]
    assert r.power == pytest.approx(q["Power"], abs=2e-6)
    assert r.bayes_factor == pytest.approx(q["Bayes"], abs=5e-6)
    assert r.likelihood_ratio == pytest.approx(q["LR"], rel=1e-9)  # closed form
    assert r.slope is None and r.spec.violation == "custom"


def test_result_protocol_and_charts(linear50) -> None:  # noqa: ANN001
    check_result(linear50)
    assert linear50.glance()["slope_power_80"].iloc[0] > linear50.glance()["slope_power_50"].iloc[0]
    assert "Power" in linear50.summary()
    curve = linear50.curve
    assert curve["power"].is_monotonic_increasing
    assert curve["power"].iloc[0] == pytest.approx(linear50.power_null, abs=1e-3)
    assert linear50.plot().to_dict()["layer"]
    assert linear50.plot(kind="power").to_dict()["layer"]
    with pytest.raises(ValueError, match="kind"):
        linear50.plot(kind="nope")
    with pytest.raises(ValueError):
        linear50.betahat[0] = 1.0  # immutable arrays


def test_rectangle_probability_independent_is_product() -> None:
    sd = np.array([0.5, 1.0, 2.0, 1.5])
    cov = np.diag(sd**2)
    mean = np.array([0.3, -0.2, 0.0, 1.0])
    lo, hi = -Z * sd, Z * sd
    exact = np.prod(norm.cdf((hi - mean) / sd) - norm.cdf((lo - mean) / sd))
    assert rectangle_probability(mean, cov, lo, hi) == pytest.approx(exact, abs=1e-6)


@pytest.mark.slow
def test_truncated_mean_symmetry_and_monte_carlo() -> None:
    rng = np.random.default_rng(3)
    a = rng.standard_normal((4, 4))
    cov = a @ a.T / 4 + 0.3 * np.eye(4)
    lo, hi = -Z * np.sqrt(np.diag(cov)), Z * np.sqrt(np.diag(cov))
    m0, _ = truncated_normal_mean(np.zeros(4), cov, lo, hi)
    np.testing.assert_allclose(m0, 0.0, atol=1e-6)
    mu = np.array([0.4, -0.3, 0.2, 0.6])
    m, p = truncated_normal_mean(mu, cov, lo, hi)
    draws = rng.multivariate_normal(mu, cov, size=200_000)
    keep = np.all((draws > lo) & (draws < hi), axis=1)
    mc = draws[keep].mean(axis=0)
    mc_se = draws[keep].std(axis=0) / np.sqrt(keep.sum())
    assert p == pytest.approx(keep.mean(), abs=4 * np.sqrt(p * (1 - p) / keep.size))
    assert np.all(np.abs(m - mc) < 5 * mc_se)


def test_independent_post_periods_are_untouched() -> None:
    cov = np.diag([0.01, 0.02, 0.015, 0.03])
    beta = np.array([-0.1, -0.05, 0.05, 0.1])
    cm = conditional_moments(beta, cov, np.array([0, 1]), np.array([2, 3]), z=Z)
    np.testing.assert_allclose(cm.mean_post, beta[2:], atol=1e-12)
    np.testing.assert_allclose(cm.coverage, 0.95, atol=2e-6)


@pytest.mark.slow
def test_wald_slope_gives_target_power_and_mc_moments() -> None:
    s = slope_for_power(BETA, SIGMA, event_time=T, target_power=0.8, test="wald")
    rel = T[:3] + 1
    from scipy.stats import chi2

    crit = float(chi2.ppf(0.95, 3))
    p = 1 - pass_probability(s * rel, SIGMA[:3, :3], z=Z, test="wald", crit=crit)
    assert p == pytest.approx(0.8, abs=1e-10)
    r = pretrends_power(BETA, SIGMA, event_time=T, slope=s, test="wald", n_draws=100_000)
    assert r.power == pytest.approx(0.8, abs=1e-10)
    assert r.method == "monte_carlo"
    t = r.tidy()
    post = t[t["period"] == "post"]
    assert (post["mc_se"] > 0).all() and (post["mc_se"] < 5e-3).all()
    # pointwise and Wald tests differ, but both pass more often under parallel trends
    assert r.bayes_factor < 1


def test_bad_inputs() -> None:
    with pytest.raises(OptionError, match="at most one"):
        pretrends_power(BETA, SIGMA, event_time=T, slope=0.1, target_power=0.5)
    with pytest.raises(ValueError, match="reference period"):
        pretrends_power(BETA, SIGMA, event_time=np.array([-4, -3, -1, 0, 1, 2, 3.0]))
    with pytest.raises(ValueError, match="agree"):
        pretrends_power(BETA[:-1], SIGMA, event_time=T)
    with pytest.raises(TypeError, match="sigma"):
        pretrends_power(BETA)
    with pytest.raises(ValueError, match="size"):
        slope_for_power(BETA, SIGMA, event_time=T, target_power=0.01)
    with pytest.raises(ValueError, match="deltatrue"):
        pretrends_power(BETA, SIGMA, event_time=T, deltatrue=np.zeros(3))


@pytest.mark.slow
def test_on_package_results_and_varying_base_refused() -> None:
    from causalmem import aggte, att_gt, simulate_panel

    df = simulate_panel(seed=0).frame
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        uni = aggte(
            att_gt(df, "y", "step", "unit", "cohort", base_period="universal", bstrap=False),
            type="dynamic",
        )
        var = aggte(att_gt(df, "y", "step", "unit", "cohort", bstrap=False), type="dynamic")
    s = slope_for_power(uni, target_power=0.5)
    infl = uni.influence
    v = (infl.T @ infl)[:-1, :-1]
    keep = uni.labels != -1
    s_arr = slope_for_power(
        uni.estimate[keep], v[np.ix_(keep, keep)], event_time=uni.labels[keep], target_power=0.5
    )
    assert s == pytest.approx(s_arr, rel=1e-12)
    with pytest.raises(OptionError, match="base_period='universal'"):
        slope_for_power(var)


def test_many_pre_periods_size_above_half() -> None:
    # 14 independent pre-periods: the pointwise test's size is 1 - 0.95^14 = 0.512 > 0.5, so
    # no slope has 50 % power (NaN, and an error when asked for); the 80 % slope still exists
    # and its power is the exact product of univariate probabilities.
    k = 14
    t = np.r_[np.arange(-k - 1, -1), 0.0]
    sd = np.full(k + 1, 0.1)
    cov = np.diag(sd**2)
    beta = np.zeros(k + 1)
    with pytest.raises(ValueError, match="size"):
        slope_for_power(beta, cov, event_time=t, target_power=0.5)
    r = pretrends_power(beta, cov, event_time=t, target_power=0.8)
    assert np.isnan(r.slope_power_50) and r.power_null == pytest.approx(1 - 0.95**k, abs=3e-4)
    rel = t[:k] + 1
    m = r.slope * rel / 0.1
    exact = 1 - np.prod(norm.cdf(Z - m) - norm.cdf(-Z - m))
    assert exact == pytest.approx(0.8, abs=3e-4)
    assert r.tidy()["coverage_after_pretest"].iloc[-1] == pytest.approx(0.95, abs=3e-3)
