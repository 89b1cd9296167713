"""Re-exposure estimands on simulated two-exposure panels with known effects.

References nobody here wrote: (i) the simulated truth of
:func:`causalmem.panel.simulate_reexposure.simulate_reexposure` (noise-free panels must be
recovered exactly; noisy ones without bias and with nominal coverage over replications);
(ii) statsmodels OLS with HC0 / cluster-robust covariance as the oracle of each cell's standard
error (a DiD of means is the slope of ``ΔY ~ 1 + treated`` on treated and control rows).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from causalmem.errors import CohortError, OptionError, UnbalancedPanelError
from causalmem.estimators.reexposure import reexposure_att
from causalmem.panel.simulate_reexposure import simulate_reexposure
from causalmem.results.reexposure import ReexposureAggregate, ReexposureResult
from lmecon.result import check_result


def _merge(res: ReexposureResult, truth: pd.DataFrame) -> pd.DataFrame:
    return res.tidy().merge(truth, on=["g1", "g2", "time"], how="left", validate="one_to_one")


def test_noise_free_second_exposure_is_exact_despite_cohort_specific_trends() -> None:
    sim = simulate_reexposure(noise_sd=0.0, cohort_trend=0.7, n_per_cohort=60, n_never=20)
    res = reexposure_att(sim.frame, "y", bstrap=False)
    m = _merge(res, sim.truth)
    assert len(m) == 9 * 8  # 9 (g1, g2) groups x 8 non-base checkpoints
    np.testing.assert_allclose(m["estimate"], m["second"], atol=1e-10)
    assert np.allclose(m.loc[m["phase"] == "pre", "estimate"], 0.0, atol=1e-10)
    once = reexposure_att(sim.frame, "y", control="once", bstrap=False)
    np.testing.assert_allclose(_merge(once, sim.truth)["estimate"], m["second"], atol=1e-10)


def test_noise_free_combined_path_is_exact_and_needs_common_trends() -> None:
    sim = simulate_reexposure(noise_sd=0.0, n_per_cohort=60, n_never=30)
    res = reexposure_att(sim.frame, "y", estimand="combined", bstrap=False)
    m = _merge(res, sim.truth)
    np.testing.assert_allclose(m["estimate"], m["combined"], atol=1e-10)
    # once-trained groups (g2 missing) are estimated as well
    assert m["g2"].isna().any()
    # with first-cohort-specific trends the combined design is biased, the second one is not
    bad = simulate_reexposure(noise_sd=0.0, cohort_trend=0.7, n_per_cohort=60, n_never=30)
    mb = _merge(reexposure_att(bad.frame, "y", estimand="combined", bstrap=False), bad.truth)
    assert np.abs(mb["estimate"] - mb["combined"]).max() > 1.0


def test_forgetting_and_event_aggregations_match_the_truth_when_noise_free() -> None:
    sim = simulate_reexposure(noise_sd=0.0, cohort_trend=0.3, n_per_cohort=60, n_never=20)
    res = reexposure_att(sim.frame, "y", bstrap=False)
    m = _merge(res, sim.truth)
    post = m[m["phase"] == "post"].copy()
    w = post["n_treated"].astype(float)
    event = res.aggregate("event").tidy().set_index("event_period")["estimate"]
    for e, d in post.groupby("event_period"):
        wd = w.loc[d.index]
        assert event.loc[e] == pytest.approx(float((wd * d["second"]).sum() / wd.sum()), abs=1e-10)
    inst = post[post["event_period"] == 0].set_index(["g1", "g2"])["second"]
    forg = res.aggregate("forgetting").tidy().set_index("event_period")["estimate"]
    for e, d in post[post["event_period"] >= 1].groupby("event_period"):
        drop = inst.reindex(pd.MultiIndex.from_frame(d[["g1", "g2"]])).to_numpy() - d["second"]
        wd = w.loc[d.index]
        assert forg.loc[e] == pytest.approx(float((wd * drop).sum() / wd.sum()), abs=1e-10)
    assert (forg > 0).all()  # the simulated re-memorisation decays
    coh = res.aggregate("cohort").tidy()
    assert coh["g1"].tolist() == [10.0, 20.0, 30.0]
    assert coh["estimate"].is_monotonic_increasing  # tau2 grows with the first cohort's rank


def test_cell_se_equals_statsmodels_hc0_and_cluster_robust() -> None:
    sm = pytest.importorskip("statsmodels.api")
    sim = simulate_reexposure(n_per_cohort=80, n_never=10, cohort_trend=0.2, seed=3)
    res = reexposure_att(sim.frame, "y", bstrap=False)
    resc = reexposure_att(sim.frame, "y", bstrap=False, cluster="batch")
    wide = sim.frame.pivot(index="unit", columns="step", values="y")
    units = sim.frame.drop_duplicates("unit").set_index("unit")
    t, tc = res.tidy(), resc.tidy()
    for g1, g2, time in [(10.0, 50.0, 50.0), (20.0, 60.0, 80.0), (30.0, 70.0, 20.0)]:
        base = 40.0 if g2 == 50.0 else (50.0 if g2 == 60.0 else 60.0)
        u = units[units["cohort"] == g1]
        treated = u["cohort2"] == g2
        ctrl = u["cohort2"].isna() | ((u["cohort2"] > max(time, base)) & ~treated)
        keep = u.index[treated | ctrl]
        dy = (wide.loc[keep, time] - wide.loc[keep, base]).to_numpy()
        x = sm.add_constant(treated.loc[keep].to_numpy(float))
        ols = sm.OLS(dy, x)
        hc0 = ols.fit(cov_type="HC0")
        cl = ols.fit(
            cov_type="cluster",
            cov_kwds={"groups": units.loc[keep, "batch"].to_numpy(), "use_correction": False},
        )
        row = t[(t.g1 == g1) & (t.g2 == g2) & (t.time == time)].iloc[0]
        rowc = tc[(tc.g1 == g1) & (tc.g2 == g2) & (tc.time == time)].iloc[0]
        assert row["estimate"] == pytest.approx(hc0.params[1], rel=1e-10)
        assert row["std_error"] == pytest.approx(hc0.bse[1], rel=1e-10)
        # statsmodels' cluster-robust covariance without the small-sample correction;
        # clusters (batches) here nest the cell's rows (units of one first cohort).
        assert rowc["std_error"] == pytest.approx(cl.bse[1], rel=1e-8)


@pytest.mark.parametrize(("n_per_cohort", "welch"), [(150, False), (40, True)])
def test_monte_carlo_unbiased_with_nominal_coverage(n_per_cohort: int, welch: bool) -> None:
    """Groups of ~35 units (plug-in SE) and of ~9 units (Welch-corrected SE)."""
    errs, cover = [], []
    for rep in range(100):
        sim = simulate_reexposure(
            n_per_cohort=n_per_cohort, n_never=5, cohort_trend=0.5, seed=100 + rep
        )
        res = reexposure_att(sim.frame, "y", bstrap=False, se_correction=welch)
        m = _merge(res, sim.truth)
        p = m[m["phase"] == "post"]
        errs.append((p["estimate"] - p["second"]).to_numpy())
        cover.append(((p["conf_low"] <= p["second"]) & (p["second"] <= p["conf_high"])).to_numpy())
    err, cov = np.concatenate(errs), np.concatenate(cover)
    per_rep = np.array([e.mean() for e in errs])  # replications are independent, cells are not
    mc_se = per_rep.std(ddof=1) / np.sqrt(per_rep.size)
    assert abs(err.mean()) < 4 * mc_se
    assert abs(err.mean()) < 0.05  # the mean post-cell truth is about 1
    assert 0.93 <= cov.mean() <= 0.97  # pointwise 95 % intervals, 100 x 27 cells


def test_bootstrap_se_close_to_analytic_and_band_is_uniform() -> None:
    sim = simulate_reexposure(seed=7)
    a = reexposure_att(sim.frame, "y", bstrap=False).tidy()
    b = reexposure_att(sim.frame, "y", biters=2000, seed=1)
    bt = b.tidy()
    ratio = bt["std_error"] / a["std_error"]
    assert 0.85 < ratio.median() < 1.15
    assert bt["band"].iloc[0] == "uniform"
    assert b.crit_val > 1.96
    assert b.crit_val == b.aggregate("event").crit_val or b.aggregate("event").band == "uniform"
    again = reexposure_att(sim.frame, "y", biters=2000, seed=1).tidy()
    pd.testing.assert_frame_equal(bt, again)  # seeded


def test_results_honour_the_result_protocol_and_plot() -> None:
    sim = simulate_reexposure(n_per_cohort=40, n_never=10)
    res = reexposure_att(sim.frame, "y", biters=200)
    check_result(res)
    agg = res.aggregate("event")
    assert isinstance(agg, ReexposureAggregate)
    check_result(agg)
    assert "Re-exposure" in res.summary()
    assert res.to_markdown().count("\n") > 10
    pytest.importorskip("altair")
    for kind in ("event", "forgetting", "cohort"):
        chart = res.plot(kind)
        assert chart.to_dict()["$schema"]
    with pytest.raises(ValueError, match="kind="):
        res.aggregate("calendar")


def test_bad_input_is_refused_with_specific_errors() -> None:
    sim = simulate_reexposure(n_per_cohort=20, n_never=5)
    f = sim.frame
    with pytest.raises(UnbalancedPanelError, match="balanced"):
        reexposure_att(f.iloc[1:], "y")
    bad = f.copy()
    bad.loc[bad["cohort2"].notna(), "cohort2"] = 10.0
    with pytest.raises(CohortError, match="exceed"):
        reexposure_att(bad, "y")
    with pytest.raises(OptionError, match="control="):
        reexposure_att(f, "y", control="never")
    with pytest.raises(OptionError, match="estimand="):
        reexposure_att(f, "y", estimand="third")
    with pytest.raises(KeyError):
        reexposure_att(f, "nope")


@pytest.mark.parametrize("cluster", [None, "pair"])
def test_bootstrap_is_keyed_by_unit_or_cluster_id(cluster: str | None) -> None:
    """Multipliers keyed by (seed, unit or cluster id), as att_gt's: row order does not matter."""
    f = simulate_reexposure(n_per_cohort=30, n_never=5, seed=4).frame
    units = np.unique(f["unit"])
    f = f.assign(pair=f["unit"].map(dict(zip(units, np.arange(units.size) // 2, strict=True))))
    a = reexposure_att(f, "y", cluster=cluster, biters=199, seed=3)
    shuffled = f.sample(frac=1.0, random_state=1).reset_index(drop=True)
    b = reexposure_att(shuffled, "y", cluster=cluster, biters=199, seed=3)
    ta, tb = a.tidy(), b.tidy()
    np.testing.assert_allclose(tb["estimate"], ta["estimate"], rtol=1e-12)
    np.testing.assert_allclose(tb["std_error"], ta["std_error"], rtol=1e-12)
    np.testing.assert_array_equal(np.sort(a.keys), np.sort(b.keys))
    ea, eb = a.aggregate("event").tidy(), b.aggregate("event").tidy()
    np.testing.assert_allclose(eb["std_error"], ea["std_error"], rtol=1e-12)
