"""att_gt / aggte: engine equivalence, inference, invariances, truth recovery, bad inputs.

Tolerances: two algebraically identical computations (structured vs dense engine, permuted
rows) agree to 1e-10; invariances under adding unit/step constants to 1e-8 (the constants enter
sums before they cancel); bootstrap quantities carry Monte Carlo error, so they are compared
with statistical tolerances stated at each assertion.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import causalmem as cm
from causalmem.errors import (
    AlwaysTreatedError,
    CausalmemWarning,
    CovariateError,
    IdentificationError,
)
from causalmem.estimators.att_gt import _att_gt

TIGHT = 1e-10
AGG_TYPES = ("simple", "dynamic", "group", "calendar")


def _panel(seed: int = 0, **kw: object) -> pd.DataFrame:
    args = dict(cohorts=(3, 4, 6), units_per_cohort=30, n_never=40, steps=range(1, 8), seed=seed)
    args.update(kw)
    return cm.simulate_panel(**args).frame  # type: ignore[arg-type]


def _fit(df: pd.DataFrame, engine: str = "auto", **kw: object) -> cm.AttGtResult:
    kw.setdefault("bstrap", False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CausalmemWarning)
        return _att_gt(
            _engine=engine, data=df, yname="y", tname="step", idname="unit", gname="cohort", **kw
        )


def _with_weights_clusters(df: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    units = df["unit"].unique()
    w = pd.Series(rng.uniform(0.2, 3.0, units.size), index=units)
    out = df.assign(w=df["unit"].map(w))
    # Clusters nested in cohorts: cohort code x a few groups.
    coh = out["cohort"].astype("Float64").fillna(-1).astype(float)
    out["cl_nested"] = (coh * 100 + out["unit"] % 4).astype(int)
    out["cl_cross"] = out["unit"] % 7  # spans cohorts
    return out


# --------------------------------------------------------------------- engine equivalence
@pytest.mark.parametrize("control_group", ["nevertreated", "notyettreated"])
@pytest.mark.parametrize("base_period", ["varying", "universal"])
@pytest.mark.parametrize("anticipation", [0, 1])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("cluster", [None, "cl_nested"])
def test_structured_engine_equals_dense_engine(
    control_group: str, base_period: str, anticipation: int, weighted: bool, cluster: str | None
) -> None:
    df = _with_weights_clusters(_panel(seed=3))
    kw = dict(
        control_group=control_group,
        base_period=base_period,
        anticipation=anticipation,
        weightsname="w" if weighted else None,
        clustervars=cluster,
    )
    a = _fit(df, "structured", **kw)
    b = _fit(df, "dense", **kw)
    np.testing.assert_allclose(a.att, b.att, atol=TIGHT)
    np.testing.assert_allclose(a.se, b.se, atol=TIGHT)
    for typ in AGG_TYPES:
        ga, gb = cm.aggte(a, typ), cm.aggte(b, typ)
        np.testing.assert_allclose(ga.estimate, gb.estimate, atol=TIGHT)
        np.testing.assert_allclose(ga.std_error, gb.std_error, atol=TIGHT)
        assert ga.overall_std_error == pytest.approx(gb.overall_std_error, abs=TIGHT)


def test_clusters_spanning_cohorts_use_cluster_sums_of_the_unit_influence_function() -> None:
    df = _with_weights_clusters(_panel(seed=5))
    unit = _fit(df, "dense")
    clus = _fit(df, clustervars="cl_cross")
    # R did >= 2.5 (mboot.R): cluster SUMS of the IF, se = sqrt(sum_c S_c^2) / n.
    rows = unit.engine.rc  # unit-level r = psi / n (dense engine, one row per unit)
    first = df.drop_duplicates("unit").set_index("unit")
    codes = pd.factorize(first.loc[np.sort(df["unit"].unique()), "cl_cross"])[0]
    sums = np.zeros((codes.max() + 1, rows.shape[1]))
    np.add.at(sums, codes, rows)
    expect = np.sqrt((sums**2).sum(axis=0))
    ok = ~clus.cells.reference
    np.testing.assert_allclose(clus.se[ok], expect[ok], rtol=1e-10)
    assert clus.n_clusters == 7


def test_covariates_fix_conditional_parallel_trends_for_dr_reg_ipw() -> None:
    sim = cm.simulate_panel(
        cohorts=(3, 5),
        units_per_cohort=150,
        n_never=250,
        steps=range(1, 7),
        covariate_effect=0.3,
        seed=11,
    )
    truth = sim.truth.set_index(["group", "time"])["att"]
    no_cov = _fit(sim.frame)
    post = no_cov.cells.post
    key = list(zip(no_cov.group[post], no_cov.time[post], strict=True))
    err_raw = np.abs(no_cov.att[post] - truth.loc[key].to_numpy()).mean()
    # x shifts trends and differs by cohort: unconditional parallel trends fail, conditional hold.
    for m in ("dr", "reg", "ipw"):
        fit = _fit(sim.frame, xformla="~ x", est_method=m)
        err = np.abs(fit.att[post] - truth.loc[key].to_numpy()).mean()
        assert err < err_raw / 2, m
        t = (fit.att[post] - truth.loc[key].to_numpy()) / fit.se[post]
        assert np.mean(np.abs(t) < 1.96) >= 0.8, m  # pointwise 95% coverage, 10 cells


# ------------------------------------------------------------------------ identification
def test_did_estimand_is_exact_under_parallel_trends_and_no_anticipation() -> None:
    """Eqs. (21a)-(21f) of Lesci et al. on a sample where PT and NA hold exactly.

    Y(inf) = a_i + l_t (unit and period effects, cohort-dependent unit levels: Assumption 1,
    random assignment, fails), Y(g) = Y(inf) + tau(g, t) for t >= g. Then the DiD estimand equals
    tau(g, t) exactly while the difference estimator is biased by the cohort level gap.
    """
    rng = np.random.default_rng(0)
    steps = np.arange(1, 7)
    cohorts = np.repeat([3.0, 5.0, np.nan], [20, 25, 30])
    a = rng.normal(size=cohorts.size) + np.nan_to_num(cohorts, nan=0.0)  # level differs
    lam = rng.normal(size=steps.size)
    g = np.nan_to_num(cohorts, nan=np.inf)
    tau = np.where(steps[None, :] >= g[:, None], 1.0 + 0.3 * (steps[None, :] - g[:, None]), 0.0)
    y = a[:, None] + lam[None, :] + tau
    df = pd.DataFrame(
        {
            "unit": np.repeat(np.arange(cohorts.size), steps.size),
            "step": np.tile(steps, cohorts.size),
            "cohort": pd.array(np.repeat(cohorts, steps.size)).astype("Int64"),
            "y": y.ravel(),
        }
    )
    res = _fit(df)
    true = np.where(res.cells.post, 1.0 + 0.3 * (res.time - res.group), 0.0)
    np.testing.assert_allclose(res.att, true, atol=1e-12)
    # The difference estimator (Estimator 1) is off by the level gap between cohorts.
    diff = df[df.step == 3].groupby(df["cohort"].isna())["y"].mean()
    assert abs((diff[False] - diff[True]) - 1.0) > 0.5


def test_recovers_simulated_effects_within_uniform_bands() -> None:
    sim = cm.simulate_panel(
        cohorts=(3, 4, 5, 6), units_per_cohort=150, n_never=300, steps=range(1, 9), seed=2
    )
    res = cm.att_gt(sim.frame, "y", "step", "unit", "cohort", biters=999, seed=4)
    assert res.band == "uniform" and res.se_method == "bootstrap"
    t = res.tidy().merge(sim.truth, on=["group", "time"])
    inside = (t["conf_low"] <= t["att"]) & (t["att"] <= t["conf_high"])
    assert inside.all()  # 95% simultaneous band: all cells jointly with probability ~0.95
    dyn = cm.aggte(res, "dynamic")
    truth_e = sim.truth.groupby("event_time")["att"].mean()
    te = dyn.tidy().dropna(subset=["event_time"]).set_index("event_time")
    cover = (te["conf_low"] <= truth_e.loc[te.index]) & (truth_e.loc[te.index] <= te["conf_high"])
    assert cover.all()
    # Bootstrap and analytic SEs estimate the same quantity (Monte Carlo error ~ 1/sqrt(2B)).
    ok = np.isfinite(res.se_analytic)
    assert np.median(res.se[ok] / res.se_analytic[ok]) == pytest.approx(1.0, abs=0.05)


def test_uniform_band_is_wider_than_pointwise_and_uniform_pvalues_are_larger() -> None:
    res = cm.att_gt(_panel(seed=1), "y", "step", "unit", "cohort", biters=500, seed=0)
    assert res.crit_val > 1.96
    t = res.tidy().dropna(subset=["p_value"])
    # The sup-t p-value is never below the pointwise one beyond Monte Carlo error, and never
    # below the bootstrap's resolution 1 / (B + 1).
    assert (t["p_value_uniform"] >= t["p_value"] - 0.03).all()
    assert t["p_value_uniform"].min() == pytest.approx(1 / 501)


# ----------------------------------------------------------------------- reproducibility
def test_seeded_bootstrap_is_reproducible_and_unseeded_records_its_seed() -> None:
    df = _panel()
    a = cm.att_gt(df, "y", "step", "unit", "cohort", biters=200, seed=7)
    b = cm.att_gt(df, "y", "step", "unit", "cohort", biters=200, seed=7)
    c = cm.att_gt(df, "y", "step", "unit", "cohort", biters=200, seed=8)
    np.testing.assert_array_equal(a.se, b.se)
    assert a.crit_val == b.crit_val
    assert not np.array_equal(a.se, c.se)
    d = cm.att_gt(df, "y", "step", "unit", "cohort", biters=200)  # seed=None
    assert isinstance(d.spec.seed, int)
    e = cm.att_gt(df, "y", "step", "unit", "cohort", biters=200, seed=d.spec.seed)
    np.testing.assert_array_equal(d.se, e.se)
    g = cm.att_gt(df, "y", "step", "unit", "cohort", biters=200, seed=np.random.default_rng(7))
    assert g.spec.seed is None and g.provenance["seed"] == "caller Generator"


def test_seed_zero_is_a_seed() -> None:  # differences treats random_state=0 as unseeded
    df = _panel()
    a = cm.att_gt(df, "y", "step", "unit", "cohort", biters=100, seed=0)
    b = cm.att_gt(df, "y", "step", "unit", "cohort", biters=100, seed=0)
    np.testing.assert_array_equal(a.se, b.se)


# --------------------------------------------------------------- hypothesis invariances
_SETTINGS = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_SETTINGS
@given(seed=st.integers(0, 10_000), nyt=st.booleans(), universal=st.booleans())
def test_invariant_to_row_order_and_unit_relabelling(seed: int, nyt: bool, universal: bool) -> None:
    df = _panel(seed=seed % 50, units_per_cohort=8, n_never=10)
    kw = dict(
        control_group="notyettreated" if nyt else "nevertreated",
        base_period="universal" if universal else "varying",
    )
    ref = _fit(df, **kw)
    rng = np.random.default_rng(seed)
    shuffled = df.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    relabel = dict(zip(df["unit"].unique(), rng.permutation(df["unit"].nunique()), strict=True))
    renamed = shuffled.assign(unit=shuffled["unit"].map(lambda u: f"id-{relabel[u]:05d}"))
    for other in (shuffled, renamed):
        res = _fit(other, **kw)
        np.testing.assert_allclose(res.att, ref.att, atol=TIGHT)
        np.testing.assert_allclose(res.se, ref.se, atol=TIGHT, equal_nan=True)
        for typ in AGG_TYPES:
            assert cm.aggte(res, typ).overall_std_error == pytest.approx(
                cm.aggte(ref, typ).overall_std_error, abs=TIGHT
            )


@_SETTINGS
@given(seed=st.integers(0, 10_000), scale=st.floats(0.1, 1e3))
def test_invariant_to_unit_and_step_constants(seed: int, scale: float) -> None:
    df = _panel(seed=seed % 50, units_per_cohort=8, n_never=10)
    rng = np.random.default_rng(seed)
    a_i = pd.Series(rng.normal(scale=scale, size=df["unit"].nunique()), index=df["unit"].unique())
    b_t = pd.Series(rng.normal(scale=scale, size=df["step"].nunique()), index=df["step"].unique())
    shifted = df.assign(y=df["y"] + df["unit"].map(a_i) + df["step"].map(b_t))
    ref, res = _fit(df), _fit(shifted)
    tol = 1e-8 * max(1.0, scale)
    np.testing.assert_allclose(res.att, ref.att, atol=tol)
    np.testing.assert_allclose(res.se, ref.se, atol=tol, equal_nan=True)


@_SETTINGS
@given(seed=st.integers(0, 10_000), n_always=st.integers(1, 6))
def test_always_treated_units_do_not_change_the_result(seed: int, n_always: int) -> None:
    df = _panel(seed=seed % 50, units_per_cohort=8, n_never=10)
    rng = np.random.default_rng(seed)
    steps = np.sort(df["step"].unique())
    extra = pd.DataFrame(
        {
            "unit": np.repeat(np.arange(10_000, 10_000 + n_always), steps.size),
            "step": np.tile(steps, n_always),
            "cohort": pd.array(np.full(n_always * steps.size, steps[0])).astype("Int64"),
            "y": rng.normal(size=n_always * steps.size),
            "x": 0.0,
        }
    )
    both = pd.concat([df, extra[df.columns]], ignore_index=True)
    with pytest.raises(AlwaysTreatedError):
        _fit(both)
    ref, res = _fit(df), _fit(both, drop_always_treated=True)
    np.testing.assert_allclose(res.att, ref.att, atol=TIGHT)
    np.testing.assert_allclose(res.se, ref.se, atol=TIGHT, equal_nan=True)


def test_callers_frame_is_never_mutated() -> None:
    df = _with_weights_clusters(_panel())
    df["cohort"] = df["cohort"].astype("Float64").astype(float)  # NaN-coded never treated
    before = df.copy(deep=True)
    res = cm.att_gt(
        df,
        "y",
        "step",
        "unit",
        "cohort",
        xformla="~ x",
        weightsname="w",
        clustervars="cl_nested",
        biters=50,
        seed=0,
    )
    cm.aggte(res, "dynamic")
    pd.testing.assert_frame_equal(df, before)


def test_integer_weights_equal_duplicated_units_for_point_estimates() -> None:
    df = _panel(seed=9)
    rng = np.random.default_rng(9)
    units = df["unit"].unique()
    w = pd.Series(rng.integers(1, 3, units.size), index=units)
    weighted = _fit(df.assign(w=df["unit"].map(w).astype(float)), weightsname="w")
    dup_units = units[w.to_numpy() == 2]
    copy = df[df["unit"].isin(dup_units)].assign(unit=lambda d: d["unit"] + 100_000)
    dup = _fit(pd.concat([df, copy], ignore_index=True))
    np.testing.assert_allclose(weighted.att, dup.att, atol=TIGHT)


# --------------------------------------------------------------------- results contract
def test_results_are_immutable_and_tidy_follows_the_contract() -> None:
    res = cm.att_gt(_panel(), "y", "step", "unit", "cohort", biters=100, seed=0)
    with pytest.raises(ValueError):
        res.att[0] = 1.0
    t = res.tidy()
    assert list(t.columns[:7]) == list(cm.results.TIDY_COLUMNS)
    t.loc[0, "estimate"] = 99.0
    assert res.tidy().loc[0, "estimate"] != 99.0
    assert set(t["se_method"]) == {"bootstrap"} and set(t["band"]) == {"uniform"}
    g = res.glance()
    assert g.loc[0, "n_units"] == 130 and g.loc[0, "n_groups"] == 3
    for typ in AGG_TYPES:
        a = cm.aggte(res, typ)
        at = a.tidy()
        assert list(at.columns[:7]) == list(cm.results.TIDY_COLUMNS)
        assert at["term"].iloc[-1] == "overall"
        assert "\\begin{tabular}" in a.to_latex() and "|" in a.to_markdown()
        assert "Signif. codes" in a.summary()
    text = res.summary()
    assert "Group-Time Average Treatment Effects" in text and "pre-test" in text
    assert f"{res.att[0]:.4f}" in res.to_markdown()


def test_memorisation_views() -> None:
    sim = cm.simulate_panel(
        cohorts=(3, 4, 5), units_per_cohort=60, n_never=100, steps=range(1, 8), seed=3
    )
    res = cm.att_gt(sim.frame, "y", "step", "unit", "cohort", biters=200, seed=1)
    inst = res.instantaneous()
    assert inst["group"].tolist() == [3.0, 4.0, 5.0]
    assert (inst["time"] == inst["group"]).all() and (inst["band"] == "uniform").all()
    resid = res.residual(at=7)
    assert resid["time"].eq(7).all() and resid["group"].tolist() == [3.0, 4.0, 5.0]
    with pytest.raises(ValueError, match="not an observed step"):
        res.residual(at=7.5)
    pers = cm.aggte(res, "dynamic", min_e=0)  # persistent memorisation by event time
    assert pers.labels.min() == 0 and pers.spec.type == "dynamic"
    assert {"se_method", "band"} <= set(pers.tidy().columns)


def test_pretest_rejects_when_pre_trends_differ() -> None:
    df = _panel(seed=4, units_per_cohort=80, n_never=150)
    w, p, dof = _fit(df).pretest()
    assert dof > 0 and 0 < p <= 1
    bad = df.assign(y=df["y"] + np.where(df["cohort"].fillna(0) == 6, 0.5 * df["step"], 0.0))
    assert _fit(bad).pretest()[1] < 1e-6


def test_aggte_balance_and_window() -> None:
    res = _fit(_panel())
    dyn = cm.aggte(res, "dynamic", min_e=-2, max_e=2)
    assert dyn.labels.tolist() == [-2, -1, 0, 1, 2]
    bal = cm.aggte(res, "dynamic", balance_e=1)
    assert bal.labels.max() <= 1
    simple_all = cm.aggte(res, "simple").overall_estimate
    simple_short = cm.aggte(res, "simple", max_e=0).overall_estimate
    assert simple_all != simple_short


# -------------------------------------------------------------------------- bad inputs
def test_bad_literal_arguments_list_the_allowed_values() -> None:
    df = _panel()
    for arg, val in [("control_group", "never"), ("base_period", "fixed"), ("est_method", "ols")]:
        with pytest.raises(ValueError, match="use one of"):
            cm.att_gt(df, "y", "step", "unit", "cohort", **{arg: val})
    with pytest.raises(ValueError, match="biters"):
        cm.att_gt(df, "y", "step", "unit", "cohort", biters=0)
    with pytest.raises(ValueError, match="alp"):
        cm.att_gt(df, "y", "step", "unit", "cohort", alp=1.5)
    with pytest.raises(ValueError, match="anticipation"):
        cm.att_gt(df, "y", "step", "unit", "cohort", anticipation=-1)
    with pytest.raises(TypeError, match="seed"):
        cm.att_gt(df, "y", "step", "unit", "cohort", seed="abc")  # type: ignore[arg-type]
    res = cm.att_gt(df, "y", "step", "unit", "cohort", bstrap=False)
    with pytest.raises(ValueError, match="use one of"):
        cm.aggte(res, "event")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="bstrap=False"):
        cm.aggte(res, "simple", bstrap=True)


def test_too_many_cluster_variables() -> None:
    df = _with_weights_clusters(_panel())
    with pytest.raises(ValueError, match="at most one cluster variable"):
        cm.att_gt(df, "y", "step", "unit", "cohort", clustervars=["cl_nested", "cl_cross"])


def test_no_comparison_units() -> None:
    df = _panel()
    treated_only = df[df["cohort"].notna()]
    with pytest.raises(IdentificationError, match="no never-treated units"):
        cm.att_gt(treated_only, "y", "step", "unit", "cohort")
    never_only = df[df["cohort"].isna()]
    with pytest.raises(IdentificationError, match="no unit is ever treated"):
        cm.att_gt(never_only, "y", "step", "unit", "cohort")


def test_notyettreated_without_never_treated_uses_last_cohort_like_r() -> None:
    df = _panel()
    treated_only = df[df["cohort"].notna()]
    with pytest.warns(CausalmemWarning, match="comparison group"):
        res = cm.att_gt(
            treated_only, "y", "step", "unit", "cohort", control_group="notyettreated", bstrap=False
        )
    assert res.cells.glist.tolist() == [3.0, 4.0]
    assert res.time.max() < 6


def test_bad_covariate_formula() -> None:
    df = _panel()
    with pytest.raises(CovariateError, match="nope"):
        cm.att_gt(df, "y", "step", "unit", "cohort", xformla="~ nope")
    with pytest.raises(CovariateError, match="one-sided"):
        cm.att_gt(df, "y", "step", "unit", "cohort", xformla="y ~ x")
    with pytest.raises(CovariateError, match="non-finite|Could not"):
        cm.att_gt(
            df.assign(x=np.where(df["unit"] == 0, np.nan, df["x"])),
            "y",
            "step",
            "unit",
            "cohort",
            xformla="~ x",
        )


def test_anticipation_drops_cohorts_without_base_period_with_warning() -> None:
    df = _panel()  # steps 1..7, cohorts 3, 4, 6
    with pytest.warns(CausalmemWarning, match=r"Cohorts \[3\.0\]"):
        res = cm.att_gt(df, "y", "step", "unit", "cohort", anticipation=2, bstrap=False)
    assert res.cells.glist.tolist() == [4.0, 6.0]
    assert res.n_units == 130 - 30


def test_unbalanced_panel_uses_units_observed_in_both_periods() -> None:
    sim = cm.simulate_panel(
        cohorts=(3, 5),
        units_per_cohort=40,
        n_never=60,
        steps=range(1, 7),
        unbalanced_fraction=0.15,
        seed=8,
    )
    df = sim.frame
    from causalmem.errors import UnbalancedPanelError

    with pytest.raises(UnbalancedPanelError):
        cm.att_gt(df, "y", "step", "unit", "cohort")
    res = _fit(df, allow_unbalanced_panel=True)
    wide = df.pivot(index="unit", columns="step", values="y")
    coh = df.groupby("unit")["cohort"].first()
    for j in range(res.cells.n_cells):
        g, t, b = res.group[j], res.time[j], res.cells.base[j]
        dy = (wide[int(t)] - wide[int(b)]).dropna()
        treated = dy[coh.loc[dy.index] == g]
        control = dy[coh.loc[dy.index].isna()]
        assert res.att[j] == pytest.approx(treated.mean() - control.mean(), abs=TIGHT)
        n = len(coh)  # R did's n: all units; psi = n * (...) and se = sqrt(sum psi^2) / n
        psi_t = (treated - treated.mean()) / len(treated)
        psi_c = (control - control.mean()) / len(control)
        assert res.se[j] == pytest.approx(np.sqrt((psi_t**2).sum() + (psi_c**2).sum()), rel=1e-10)
        assert n == res.n_units


def test_overlap_violations_are_na_with_a_warning_as_in_r_did() -> None:
    df = cm.simulate_panel(
        cohorts=(3, 5), units_per_cohort=(60, 40), n_never=60, steps=range(1, 7), seed=7
    ).frame
    coh = df.groupby("unit")["cohort"].first().fillna(0).to_numpy()
    x = np.random.default_rng(7).normal(0.0, 1.0, coh.size) + np.where(coh == 3, 3.0, 0.0)
    df = df.assign(x=x[df["unit"].to_numpy()])  # x nearly separates cohort 3 from the never treated
    for m in ("dr", "ipw"):
        with pytest.warns(CausalmemWarning, match="overlap condition violated"):
            res = cm.att_gt(
                df, "y", "step", "unit", "cohort", xformla="~ x", est_method=m, bstrap=False
            )
        assert np.isnan(res.att[res.group == 3]).all()
        assert np.isfinite(res.att[res.group == 5]).all()
        with pytest.raises(ValueError, match="na_rm=True"):
            cm.aggte(res, "simple")
        assert np.isfinite(cm.aggte(res, "simple", na_rm=True).overall_estimate)
    reg = cm.att_gt(
        df, "y", "step", "unit", "cohort", xformla="~ x", est_method="reg", bstrap=False
    )
    assert np.isfinite(reg.att).all()  # outcome regression needs no overlap check in R did


def test_panel_input_defaults_to_its_schema() -> None:
    sim = cm.simulate_panel(seed=2)
    panel = sim.to_panel()
    a = cm.att_gt(panel, bstrap=False)
    b = cm.att_gt(sim.frame, "y", "step", "unit", "cohort", bstrap=False)
    np.testing.assert_array_equal(a.att, b.att)
    with pytest.raises(TypeError, match="idname"):
        cm.att_gt(sim.frame, "y", "step")
