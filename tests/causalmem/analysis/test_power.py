"""Power / sample-size planner: closed forms, calibration and simulation on simulated panels."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from causalmem.analysis.power import (
    check_power,
    critical_value,
    fit_variance,
    plan_sample_size,
    power,
    required_n,
)
from causalmem.estimators.att_gt import att_gt
from causalmem.panel.simulate import simulate_panel

Z975, Z80 = norm.ppf(0.975), norm.ppf(0.8)


def _const(delta: float):  # noqa: ANN202 - simulate_panel's att callback
    return lambda g, t, e: np.full(np.shape(g), delta, dtype=float)


def test_critical_values() -> None:
    assert critical_value(0.05) == pytest.approx(Z975)
    j = 12
    a1 = 1 - 0.95 ** (1 / j)
    assert critical_value(0.05, band="uniform", n_cells=j) == pytest.approx(norm.ppf(1 - a1 / 2))
    assert critical_value(0.05, band="uniform", n_cells=1) == pytest.approx(Z975)
    with pytest.raises(ValueError):
        critical_value(0.05, band="sup", n_cells=3)  # type: ignore[arg-type]


def test_required_n_closed_form() -> None:
    k = (Z975 + Z80) ** 2
    # n_C = n: n = (s2_T + s2_C) (z + z_b)^2 / delta^2
    assert required_n(0.5, 1.0, 1.0) == math.ceil(2 * k / 0.25)
    assert required_n(0.5, 2.0, 0.5) == math.ceil(2.5 * k / 0.25)
    # fixed controls: n = s2_T / (delta^2 / k - s2_C / n_C)
    assert required_n(1.0, 3.0, 2.0, n_controls=500) == math.ceil(3.0 / (1 / k - 2.0 / 500))
    assert required_n(0.1, 1.0, 10.0, n_controls=50) == math.inf  # controls alone too noisy
    # uniform band over 10 cells needs more instances
    assert required_n(0.5, 1.0, 1.0, band="uniform", n_cells=10) > required_n(0.5, 1.0, 1.0)
    # the returned n reaches the target power, n - 1 does not (far tail negligible here)
    n = required_n(0.4, 1.5, 0.8, n_controls=300)
    assert power(0.4, n, 1.5, 0.8, n_controls=300) >= 0.8
    assert power(0.4, n - 1, 1.5, 0.8, n_controls=300) < 0.8
    assert power(0.0, 100, 1.0, 1.0) == pytest.approx(0.05)  # size at delta = 0


def test_fit_variance_on_a_simulated_panel() -> None:
    # iid noise: the change over any distance has variance 2 * noise_sd^2 (unit effects cancel)
    sim = simulate_panel(
        cohorts=[2, 3, 4],
        units_per_cohort=300,
        n_never=600,
        steps=range(1, 7),
        att=_const(0.3),
        noise_sd=0.5,
        seed=3,
    )
    m = fit_variance(sim.to_panel(), "y")
    t = m.tidy()
    assert t["distance"].tolist() == [1, 2, 3, 4, 5]
    np.testing.assert_allclose(t["var_control"], 0.5, atol=0.06)
    np.testing.assert_allclose(t["var_treated"], 0.5, atol=0.1)
    assert abs(m.coef_control[1]) < 0.02  # no growth with distance
    plan = plan_sample_size(m, [0.2, 0.4], [0, 2], n_controls=None)
    assert len(plan) == 4 and (plan["distance"] == plan["event_period"] + 1).all()
    row = plan.query("delta == 0.4 and event_period == 0").iloc[0]
    assert row["n_required"] == required_n(0.4, row["var_treated"], row["var_control"])
    assert row["n_required"] == pytest.approx(math.ceil(1.0 * (Z975 + Z80) ** 2 / 0.16), abs=6)


def test_power_formula_matches_simulated_rejection_rates() -> None:
    # att_gt's analytic test on panels with a planted ATT: rejection rate vs predicted power
    delta, n, n_c, reps = 0.33, 40, 80, 100
    rej = 0
    for r in range(reps):
        sim = simulate_panel(
            cohorts=[3],
            units_per_cohort=n,
            n_never=n_c,
            steps=[1, 2, 3],
            att=_const(delta),
            noise_sd=0.5,
            seed=1000 + r,
        )
        res = att_gt(sim.frame, "y", "step", "unit", "cohort", bstrap=False, cband=False)
        cell = res.tidy().query("group == 3 and time == 3").iloc[0]
        rej += bool(cell["conf_low"] > 0 or cell["conf_high"] < 0)
    pred = power(delta, n, 0.5, 0.5, n_controls=n_c)  # 2 * 0.5^2 on both sides
    assert 0.6 < pred < 0.8  # an informative regime
    mc_se = math.sqrt(pred * (1 - pred) / reps)
    assert abs(rej / reps - pred) < 3.5 * mc_se


def test_check_power_on_a_simulated_panel() -> None:
    sim = simulate_panel(
        cohorts=[2, 3],
        units_per_cohort=120,
        n_never=400,
        steps=range(1, 5),
        att=_const(0.3),
        noise_sd=0.5,
        seed=7,
    )
    panel = sim.to_panel()
    m = fit_variance(panel, "y")
    chk = check_power(panel, "y", 1, m, ns=[20, 40], draws=300, seed=1)
    assert set(chk["n"]) == {20, 40} and (chk["n_controls"] == 200).all()
    big = chk[chk["n"] == 40]
    assert (big["predicted"] > chk[chk["n"] == 20]["predicted"].to_numpy()).all()
    np.testing.assert_allclose(chk["empirical"], chk["predicted"], atol=0.08)
