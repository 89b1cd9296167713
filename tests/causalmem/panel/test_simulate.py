from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from causalmem.panel import Panel, SimulatedPanel, simulate_panel
from causalmem.panel.simulate import memorisation_att


def cohort_mean_did(frame: pd.DataFrame, y: str = "y") -> pd.DataFrame:
    """Plain 2x2 DiD per (g, t) vs never-treated, varying base period, with analytic SEs."""
    wide = frame.pivot(index="unit", columns="step", values=y)
    cohort = frame.groupby("unit")["cohort"].first().reindex(wide.index)
    steps = list(wide.columns)
    never = cohort.isna().to_numpy()
    rows = []
    for g in sorted(cohort.dropna().unique()):
        treated = (cohort == g).fillna(False).to_numpy()
        gpos = steps.index(g)
        for k, t in enumerate(steps):
            if k == 0:
                continue
            base = steps[gpos - 1] if k >= gpos else steps[k - 1]
            d = (wide[t] - wide[base]).to_numpy()
            dt, dc = d[treated], d[never]
            est = dt.mean() - dc.mean()
            se = np.sqrt(dt.var(ddof=1) / dt.size + dc.var(ddof=1) / dc.size)
            rows.append({"group": int(g), "time": int(t), "est": est, "se": se})
    return pd.DataFrame(rows)


def test_default_shape_and_dtypes() -> None:
    sim = simulate_panel()
    assert isinstance(sim, SimulatedPanel)
    f = sim.frame
    assert f.shape == (250 * 6, 5)
    assert list(f.columns) == ["unit", "step", "cohort", "y", "x"]
    assert f["unit"].dtype == np.int64 and f["step"].dtype == np.int64
    assert f["cohort"].dtype == "Int64"
    assert f["y"].dtype == np.float64 and f["x"].dtype == np.float64
    assert isinstance(f.index, pd.RangeIndex)
    assert f["unit"].tolist() == np.repeat(np.arange(250), 6).tolist()
    assert f["step"].unique().tolist() == [1, 2, 3, 4, 5, 6]
    assert f.drop_duplicates("unit")["cohort"].value_counts(dropna=False).to_dict() == {
        3: 50,
        4: 50,
        5: 50,
        pd.NA: 100,
    }
    assert (f.groupby("unit")["x"].nunique() == 1).all()
    t = sim.truth
    assert list(t.columns) == ["group", "time", "event_time", "att"]
    assert len(t) == 3 * 6
    assert [str(d) for d in t.dtypes] == ["int64", "int64", "int64", "float64"]


def test_custom_outcome_name() -> None:
    sim = simulate_panel(outcome="sup_seq")
    assert "sup_seq" in sim.frame.columns and "y" not in sim.frame.columns
    assert sim.to_panel().schema.outcomes == ("sup_seq",)


def test_truth_equals_the_default_att() -> None:
    t = simulate_panel().truth
    post = t["time"] >= t["group"]
    expected = -(2.0 * np.exp(-t["event_time"] / 2.0) + 0.5)
    np.testing.assert_allclose(t.loc[post, "att"], expected[post])
    assert (t.loc[~post, "att"] == 0).all()
    row = t.query("group == 4 and time == 6").iloc[0]
    assert row["event_time"] == 2
    assert row["att"] == pytest.approx(-(2 * np.exp(-1) + 0.5))
    assert t.query("group == 5 and time == 1")["event_time"].item() == -4


def test_truth_equals_a_custom_att_and_event_time_is_in_checkpoints() -> None:
    steps = [0, 1000, 2000, 4000, 8000]

    def att(g: np.ndarray, t: np.ndarray, e: np.ndarray) -> np.ndarray:
        return g / 1000 + 10 * e

    sim = simulate_panel(steps=steps, cohorts=(1000, 4000), att=att)
    t = sim.truth.set_index(["group", "time"])
    assert t.loc[(1000, 8000), "event_time"] == 3  # positions, not steps
    assert t.loc[(1000, 8000), "att"] == pytest.approx(1 + 30)
    assert t.loc[(4000, 4000), "att"] == pytest.approx(4.0)
    assert t.loc[(4000, 2000), "att"] == 0.0
    assert sim.params["att"] == "att"


def test_constant_att_broadcasts() -> None:
    t = simulate_panel(att=lambda g, t, e: 1.5).truth
    assert set(t["att"]) == {0.0, 1.5}


def test_noiseless_outcome_is_exactly_the_effect() -> None:
    sim = simulate_panel(unit_sd=0.0, noise_sd=0.0, trend=np.zeros(6))
    f = sim.frame.merge(
        sim.truth, left_on=["cohort", "step"], right_on=["group", "time"], how="left"
    )
    treated = f["cohort"].notna()
    np.testing.assert_allclose(f.loc[treated, "y"], f.loc[treated, "att"])
    assert (f.loc[~treated, "y"] == 0).all()


def test_trend_callable_and_array() -> None:
    a = simulate_panel(trend=lambda s: 0.1 * s, unit_sd=0, noise_sd=0, n_never=1)
    never = a.frame[a.frame["cohort"].isna()]
    np.testing.assert_allclose(never["y"], 0.1 * np.arange(1, 7))
    with pytest.raises(ValueError, match="one per step"):
        simulate_panel(trend=[1.0, 2.0])


def test_seeds_reproducible_and_distinct() -> None:
    a = simulate_panel(seed=7)
    b = simulate_panel(seed=7)
    c = simulate_panel(seed=8)
    pd.testing.assert_frame_equal(a.frame, b.frame)
    assert not np.allclose(a.frame["y"], c.frame["y"])
    g1 = simulate_panel(seed=np.random.default_rng(7))
    pd.testing.assert_frame_equal(a.frame, g1.frame)
    assert g1.params["seed"] is None


def test_global_rng_untouched() -> None:
    state = np.random.get_state()
    simulate_panel(seed=1, unbalanced_fraction=0.1)
    after = np.random.get_state()
    assert state[0] == after[0] and np.array_equal(state[1], after[1])


def test_unbalanced_fraction_drops_rows_not_units() -> None:
    sim = simulate_panel(unbalanced_fraction=0.5, seed=2)
    f = sim.frame
    assert len(f) == 1500 - 750
    assert f["unit"].nunique() == 250
    assert isinstance(f.index, pd.RangeIndex)
    panel = sim.to_panel()
    assert not panel.is_balanced
    with pytest.raises(ValueError, match="whole units"):
        simulate_panel(unbalanced_fraction=0.9)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"cohorts": (3, 7)}, "not steps after the first step"),
        ({"cohorts": (1, 3)}, "not steps after the first step"),
        ({"cohorts": (3, 3)}, "distinct"),
        ({"steps": [1, 3, 2]}, "strictly increasing"),
        ({"steps": [-1, 0, 1]}, "non-negative"),
        ({"steps": [1]}, "at least two"),
        ({"steps": [1.0, 2.0]}, "integers"),
        ({"unbalanced_fraction": 1.0}, "unbalanced_fraction"),
        ({"units_per_cohort": (1, 2)}, "one integer per cohort"),
        ({"n_never": -1}, ">= 0"),
        ({"att": lambda g, t, e: np.full(3, 1.0)}, "one value per cell"),
        ({"att": lambda g, t, e: np.nan * e}, "non-finite"),
    ],
)
def test_invalid_arguments(kwargs: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        simulate_panel(**kwargs)  # type: ignore[arg-type]


def test_units_per_cohort_sequence() -> None:
    f = simulate_panel(units_per_cohort=(1, 2, 3), n_never=4).frame
    sizes = f.drop_duplicates("unit")["cohort"].value_counts(dropna=False)
    assert sizes.to_dict() == {3: 1, 4: 2, 5: 3, pd.NA: 4}


def test_to_panel() -> None:
    sim = simulate_panel(seed=4)
    p = sim.to_panel()
    assert isinstance(p, Panel)
    assert p.n_units == 250 and p.n_never == 100 and p.cohorts.tolist() == [3, 4, 5]
    assert p.meta["user"]["simulation"] == sim.params
    assert list(p.frame.columns) == ["unit", "step", "cohort", "y"]
    assert "x" in sim.to_panel(include_covariate=True).frame.columns


def test_frozen() -> None:
    sim = simulate_panel()
    with pytest.raises(AttributeError):
        sim.truth = sim.truth  # type: ignore[misc]


def test_memorisation_att_default() -> None:
    e = np.array([-2, 0, 1, 10])
    out = memorisation_att(e, e, e)
    assert out[0] == 0.0 and out[1] == pytest.approx(-2.5)
    assert out[-1] == pytest.approx(-(2 * np.exp(-5) + 0.5))


def test_cohort_mean_did_recovers_truth() -> None:
    sim = simulate_panel(
        units_per_cohort=2000, n_never=4000, level_shift=1.0, steps=range(1, 9), seed=11
    )
    est = cohort_mean_did(sim.frame).merge(sim.truth, on=["group", "time"])
    assert len(est) == 3 * 7
    z = (est["est"] - est["att"]) / est["se"]
    assert (z.abs() < 4.5).all(), est.assign(z=z)
    assert est["se"].max() < 0.05
    # Level differences across cohorts (level_shift) bias the plain difference of means,
    # but not DiD: a check that the DGP differs by cohort in levels.
    wide = sim.frame.pivot(index="unit", columns="step", values="y")
    cohort = sim.frame.groupby("unit")["cohort"].first()
    naive = wide.loc[cohort == 5, 8].mean() - wide.loc[cohort.isna(), 8].mean()
    truth = sim.truth.query("group == 5 and time == 8")["att"].item()
    assert abs(naive - truth) > 1.0


def test_covariate_effect_breaks_unconditional_parallel_trends() -> None:
    sim = simulate_panel(units_per_cohort=2000, n_never=4000, covariate_effect=0.5, seed=12)
    est = cohort_mean_did(sim.frame).merge(sim.truth, on=["group", "time"])
    z = (est["est"] - est["att"]) / est["se"]
    assert (z.abs() > 10).any()
    # Within a cohort the effect of x is common, so the truth is unchanged.
    pd.testing.assert_frame_equal(sim.truth, simulate_panel(seed=12).truth)
