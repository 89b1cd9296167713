"""TWFE, event studies and etable against pyfixest / linearmodels and simulated truth.

Tolerances: pyfixest parity on coefficients 1e-8 and standard errors 1e-6 (the issue's bar;
observed ~1e-14). Simulated-truth checks use the estimators' own confidence intervals.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pandas as pd
import pytest

import causalmem as cm
from causalmem.errors import (
    CausalmemWarning,
    FormulaError,
    IdentificationError,
    SingularDesignError,
)

COEF_TOL, SE_TOL = 1e-8, 1e-6
VCOVS = ["iid", "hetero", {"CRV1": "unit"}, {"CRV1": "unit+step"}, {"CRV1": "cl"}]


def _frame(seed: int = 1, **kw: object) -> pd.DataFrame:
    args = dict(cohorts=(3, 4, 6), units_per_cohort=20, n_never=30, steps=range(1, 9), seed=seed)
    args.update(kw)
    df = cm.simulate_panel(**args).frame  # type: ignore[arg-type]
    g = df["cohort"].astype("Float64").astype(float)
    rng = np.random.default_rng(seed)
    return df.assign(
        g=g,
        treated=(df["step"] >= g.fillna(np.inf)).astype(float),
        x2=rng.normal(size=len(df)),
        x3=rng.normal(size=len(df)) + 0.1 * df["step"],
        cl=df["unit"] % 7,
    )


def _dummies(df: pd.DataFrame, window: tuple[int, int] | None = None) -> tuple[pd.DataFrame, list]:
    rel = df["step"] - df["g"]
    if window:
        rel = rel.clip(*window)
    names = []
    out = df.copy()
    for k in sorted(k for k in rel.dropna().unique() if k != -1):
        nm = f"d_{'m' if k < 0 else 'p'}{abs(int(k))}"
        out[nm] = (rel == k).astype(float)
        names.append(nm)
    return out, names


@pytest.mark.peers
@pytest.mark.parametrize("vcov", VCOVS, ids=str)
@pytest.mark.parametrize("unbalanced", [False, True])
def test_twfe_matches_pyfixest(vcov: object, unbalanced: bool) -> None:
    pf = pytest.importorskip("pyfixest")
    df = _frame(seed=3)
    if unbalanced:
        df = df.sample(frac=0.85, random_state=0).sort_index()
    ours = cm.twfe("y ~ treated + x2 + x3 | unit + step", df, vcov=vcov)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peer = pf.feols("y ~ treated + x2 + x3 | unit + step", data=df, vcov=vcov)
    np.testing.assert_allclose(ours.coef, peer.coef().to_numpy(), atol=COEF_TOL)
    np.testing.assert_allclose(ours.se, peer.se().to_numpy(), atol=SE_TOL)
    np.testing.assert_allclose(ours.tidy()["conf_low"], peer.confint().iloc[:, 0], atol=SE_TOL)


@pytest.mark.peers
def test_twfe_coefficients_match_linearmodels_panelols() -> None:
    lm = pytest.importorskip("linearmodels")
    df = _frame(seed=4)
    ours = cm.twfe("y ~ treated + x2 | unit + step", df)
    mod = lm.PanelOLS.from_formula(
        "y ~ treated + x2 + EntityEffects + TimeEffects", df.set_index(["unit", "step"])
    )
    fit = mod.fit(cov_type="clustered", cluster_entity=True)
    np.testing.assert_allclose(ours.coef, fit.params.to_numpy(), atol=COEF_TOL)


@pytest.mark.peers
@pytest.mark.parametrize(
    "vcov",
    [None, "iid", "hetero", {"CRV1": "step"}, {"CRV1": "unit+step"}, {"CRV1": "cl"}],
    ids=str,
)
@pytest.mark.parametrize("window", [None, (-3, 3)], ids=str)
def test_event_study_twfe_matches_pyfixest_with_explicit_indicators(
    vcov: object, window: tuple[int, int] | None
) -> None:
    pf = pytest.importorskip("pyfixest")
    df = _frame(seed=2)
    ours = cm.event_study(
        df, "y", "step", "unit", "cohort", estimator="twfe", vcov=vcov, window=window
    )
    d, names = _dummies(df, window)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peer = pf.feols(
            "y ~ " + " + ".join(names) + " | unit + step", data=d, vcov=vcov or {"CRV1": "unit"}
        )
    assert isinstance(ours.path, cm.TwfeResult)
    np.testing.assert_allclose(ours.path.coef, peer.coef().to_numpy(), atol=COEF_TOL)
    np.testing.assert_allclose(ours.path.se, peer.se().to_numpy(), atol=SE_TOL)
    assert ours.tidy()["event_time"].tolist() == [
        float(n.replace("d_m", "-").replace("d_p", "")) for n in names
    ]


def test_sun_abraham_cohort_effects_equal_the_saturated_regression() -> None:
    """CATT(g, e) of the saturated cohort x relative-period TWFE regression with never-treated
    controls equals ATT(g, g + e) with a universal base period (balanced panel)."""
    df = _frame(seed=5)
    rel = df["step"] - df["g"]
    cols, keys = [], []
    out = df.copy()
    for g in sorted(df["g"].dropna().unique()):
        for k in sorted(rel[df["g"] == g].unique()):
            if k == -1:
                continue
            nm = f"c{int(g)}_{'m' if k < 0 else 'p'}{abs(int(k))}"
            out[nm] = ((df["g"] == g) & (rel == k)).astype(float)
            cols.append(nm)
            keys.append((g, g + k))
    reg = cm.twfe("y ~ " + " + ".join(cols) + " | unit + step", out)
    cs = cm.att_gt(df, "y", "step", "unit", "cohort", base_period="universal", bstrap=False)
    cells = dict(zip(zip(cs.group, cs.time, strict=True), cs.att, strict=True))
    np.testing.assert_allclose(reg.coef, [cells[k] for k in keys], atol=1e-10)
    # The IW estimator averages them with cohort shares by relative period.
    sa = cm.event_study(df, "y", "step", "unit", "cohort", estimator="sunab")
    shares = df.drop_duplicates("unit")["g"].value_counts()
    e0 = np.average([cells[(g, g)] for g in shares.index], weights=shares.to_numpy())
    assert sa.tidy().set_index("term").loc["event_time=0", "estimate"] == pytest.approx(e0)


def test_twfe_is_biased_under_dynamic_effects_while_cs_and_sunab_recover_the_truth() -> None:
    def att(g: np.ndarray, t: np.ndarray, e: np.ndarray) -> np.ndarray:
        # Dynamic and cohort-heterogeneous: later cohorts react more strongly.
        return np.where(e >= 0, -(1.0 + 0.6 * (g - 3)) * np.exp(-e / 3.0) - 0.3, 0.0)

    sim = cm.simulate_panel(
        cohorts=(3, 5, 7), units_per_cohort=200, n_never=300, steps=range(1, 10), att=att, seed=6
    )
    df = sim.frame.assign(g=sim.frame["cohort"].astype("Float64").astype(float))
    df = df.assign(treated=(df["step"] >= df["g"].fillna(np.inf)).astype(float))
    post = sim.truth[sim.truth["event_time"] >= 0]
    truth_static = post["att"].mean()  # equal cohort sizes: every post cell counts once
    static = cm.twfe("y ~ treated | unit + step", df)
    assert abs(static.coef[0] - truth_static) > 4 * static.se[0]  # the known TWFE bias
    res = cm.att_gt(df, "y", "step", "unit", "cohort", bstrap=False)
    simple = cm.aggte(res, "simple")
    assert abs(simple.overall_estimate - truth_static) < 2.5 * simple.overall_std_error
    truth_e = sim.truth.groupby("event_time")["att"].mean()
    for est in (
        cm.aggte(res, "dynamic", event_time="periods"),
        cm.event_study(df, "y", "step", "unit", "cohort", estimator="sunab"),
    ):
        t = est.tidy().dropna(subset=["event_time"]).set_index("event_time")
        t = t[t.index >= 0]
        z = (t["estimate"] - truth_e.loc[t.index]) / t["std_error"]
        assert (z.abs() < 3).all()
    # The dynamic TWFE event study is contaminated by the other cohorts' dynamics.
    es_ = (
        cm.event_study(df, "y", "step", "unit", "cohort", estimator="twfe")
        .tidy()
        .set_index("event_time")
    )
    common = es_.index[es_.index >= 0]
    zt = (es_.loc[common, "estimate"] - truth_e.loc[common]) / es_.loc[common, "std_error"]
    assert zt.abs().max() > 3


def test_difference_estimator_is_the_difference_of_means_and_needs_random_assignment() -> None:
    df = _frame(seed=7, level_shift=1.0)
    d = cm.event_study(df, "y", "step", "unit", "cohort", estimator="diff").att_gt
    assert d is not None
    wide = df.pivot(index="unit", columns="step", values="y")
    g = df.groupby("unit")["g"].first()
    for j in [0, 5, 11]:
        gg, tt = d.group[j], d.time[j]
        expect = wide.loc[g == gg, int(tt)].mean() - wide.loc[g.isna(), int(tt)].mean()
        assert d.att[j] == pytest.approx(expect, abs=1e-10)
        ys, yc = wide.loc[g == gg, int(tt)], wide.loc[g.isna(), int(tt)]
        se = np.sqrt(ys.var(ddof=0) / len(ys) + yc.var(ddof=0) / len(yc))
        assert d.se[j] == pytest.approx(se, rel=1e-8)
    assert np.isnan(d.cells.base).all()
    # Cohort level shifts break Assumption 1: pre-treatment differences are not zero ...
    pre = d.tidy().query("not post")
    assert (pre["p_value"] < 0.01).any()
    # ... while DiD removes them.
    did_pre = cm.att_gt(df, "y", "step", "unit", "cohort", bstrap=False).tidy().query("not post")
    assert (did_pre["p_value"] > 0.001).all()


def test_reference_baseline_has_the_sign_of_the_effect() -> None:
    df = _frame(seed=8)
    with pytest.warns(CausalmemWarning, match="simple_diff"):
        sd = cm.event_study(df, "y", "step", "unit", "cohort", estimator="simple_diff").att_gt
    assert sd is not None
    inst = sd.tidy().query("time == group")
    assert (inst["estimate"] < 0).all()  # the simulated effect lowers y (pitfall 2 fixed)


def test_with_vcov_returns_a_new_result() -> None:
    res = cm.twfe("y ~ treated | unit + step", _frame())
    iid = res.with_vcov("iid")
    assert iid is not res and iid.vcov_type == "iid" and res.vcov_type == "CRV1:unit"
    # The call is a frozen spec; another covariance comes from the recorded design, no closure.
    assert (
        res.spec.vcov is None
        and iid.spec.vcov == "iid"
        and iid.spec
        == res.spec.__class__(
            formula="y ~ treated | unit + step",
            outcome="y",
            fixed_effects=("unit", "step"),
            vcov="iid",
        )
    )
    two = res.with_vcov({"CRV1": "unit+step"})
    assert two.spec.vcov == {"CRV1": "unit+step"} and two.vcov_type == "CRV1:unit+step"
    with pytest.raises(TypeError):
        two.spec.vcov["CRV1"] = "unit"  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.spec.alp = 0.1  # type: ignore[misc]
    direct = cm.twfe("y ~ treated | unit + step", _frame(), vcov={"CRV1": "unit+step"})
    np.testing.assert_array_equal(two.vcov, direct.vcov)
    np.testing.assert_array_equal(iid.coef, res.coef)
    with pytest.raises(ValueError):
        res.coef[0] = 0.0
    assert "Within R2" in res.summary() and "\\begin{tabular}" in res.to_latex()


def test_bad_inputs() -> None:
    df = _frame()
    with pytest.raises(FormulaError, match="Unknown column"):
        cm.twfe("y ~ treated | unit + nope", df)
    with pytest.raises(FormulaError, match="nope"):
        cm.twfe("y ~ nope | unit + step", df)
    with pytest.raises(FormulaError, match="needs fixed effects"):
        cm.twfe("y ~ treated", df)
    with pytest.raises(FormulaError, match="y ~ x1"):
        cm.twfe("treated + unit", df)
    with pytest.raises(SingularDesignError, match="collinear"):
        cm.twfe(
            "y ~ treated + g_level | unit + step", df.assign(g_level=df["unit"].astype(float))
        )  # time-invariant: absorbed
    with pytest.raises(ValueError, match="vcov"):
        cm.twfe("y ~ treated | unit + step", df, vcov="HC3")
    with pytest.raises(FormulaError, match="Cluster column"):
        cm.twfe("y ~ treated | unit + step", df, vcov={"CRV1": "nope"})
    with pytest.raises(ValueError, match="use one of"):
        cm.event_study(df, "y", "step", "unit", "cohort", estimator="did2s")  # type: ignore[arg-type]
    with pytest.raises(IdentificationError, match="balanced"):
        cm.event_study(
            df.sample(frac=0.9, random_state=0), "y", "step", "unit", "cohort", estimator="twfe"
        )
    treated_only = df[df["g"].notna()]
    with pytest.raises(SingularDesignError, match="second reference"):
        cm.event_study(treated_only, "y", "step", "unit", "cohort", estimator="twfe")


def test_etable_renders_every_format_and_checks_inputs() -> None:
    df = _frame()
    res = cm.att_gt(df, "y", "step", "unit", "cohort", biters=100, seed=0)
    cs = cm.aggte(res, "dynamic", event_time="periods")
    tw = cm.event_study(df, "y", "step", "unit", "cohort", estimator="twfe")
    static = cm.twfe("y ~ treated | unit + step", df)
    tab = cm.etable([cs, tw, static], ["CS", "TWFE ES", "TWFE"], caption="Comparison")
    frame = tab.to_frame()
    assert frame.loc["event_time=0", ("estimate", "CS")] == pytest.approx(
        cs.tidy().set_index("term").loc["event_time=0", "estimate"]
    )
    assert np.isnan(frame.loc["treated", ("estimate", "CS")])
    md = tab.to_markdown()
    assert "| event_time=0" in md and "bootstrap" in md and "CRV1:unit" in md
    assert "\\begin{tabular}" in tab.to_latex() and "<table" in tab.to_html()
    assert list(cm.etable([cs], keep=r"event_time=[0-2]$").to_frame().index) == [
        "event_time=0",
        "event_time=1",
        "event_time=2",
    ]
    with pytest.raises(ValueError, match="at least one"):
        cm.etable([])
    with pytest.raises(ValueError, match="names"):
        cm.etable([cs, tw], ["one"])
    with pytest.raises(TypeError, match="tidy"):
        cm.etable([object()])


def test_event_study_returns_one_type_with_the_same_tidy_columns() -> None:
    from causalmem.results.event_study import EVENT_STUDY_COLUMNS, EventStudyResult

    df = _frame(seed=9)
    for est in ("twfe", "sunab", "diff"):
        res = cm.event_study(df, "y", "step", "unit", "cohort", estimator=est)  # type: ignore[arg-type]
        assert isinstance(res, EventStudyResult) and res.spec.estimator == est
        t = res.tidy()
        assert tuple(t.columns) == EVENT_STUDY_COLUMNS and (t["estimator"] == est).all()
        assert t["event_time"].notna().all() and len(res.glance()) == 1
        # The numbers are the estimator's own fit's, unchanged.
        path = res.path.tidy().dropna(subset=["event_time"])
        np.testing.assert_array_equal(res.estimate, path["estimate"].to_numpy())
        np.testing.assert_array_equal(res.std_error, path["std_error"].to_numpy())
    diff = cm.event_study(df, "y", "step", "unit", "cohort", estimator="diff")
    assert diff.att_gt is not None
    agg = cm.aggte(diff.att_gt, "dynamic", event_time="periods", na_rm=True).tidy()
    np.testing.assert_array_equal(diff.estimate, agg["estimate"].to_numpy()[:-1])
    with pytest.raises(TypeError):
        cm.event_study(df, "y", "step", "unit", "cohort", "twfe")  # type: ignore[misc]
