"""Validation metrics against a known truth: hand values, and a planted simulated truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from causalmem.panel.simulate import simulate_panel
from causalmem.workflows.estimator_validation import (
    ESTIMATORS,
    METRIC_COLUMNS,
    estimate_all,
    metrics_table,
    validate_estimators,
    validation_metrics,
    validation_section,
)
from tests.causalmem.builders import fake_truth


def test_metrics_equal_hand_values() -> None:
    f = pd.DataFrame(
        {
            "estimator": ["a", "a", "a", "a", "b", "b"],
            "estimate": [1.0, 2.0, 4.0, 5.0, 0.0, 1.0],
            "truth": [1.5, 2.5, 3.0, 5.0, 0.0, 0.0],
            "conf_low": [0.0, 2.1, 3.5, 4.0, -1.0, 0.5],
            "conf_high": [2.0, 3.0, 4.5, 6.0, 1.0, 1.5],
            "std_error": [0.5, 0.25, 0.25, 0.5, 0.5, 0.25],
        }
    )
    m = validation_metrics(f, by=["estimator"]).set_index("estimator")
    # a: errors -0.5, -0.5, +1, 0 -> bias 0, MAE 0.5, RMSE sqrt(1.5/4); truth 3 inside 2 of 4
    assert m.loc["a", "n"] == 4
    assert m.loc["a", "mean_truth"] == pytest.approx(3.0)
    assert m.loc["a", "bias"] == pytest.approx(0.0)
    assert m.loc["a", "rel_bias"] == pytest.approx(0.0)
    assert m.loc["a", "mae"] == pytest.approx(0.5)
    assert m.loc["a", "rmse"] == pytest.approx(np.sqrt(1.5 / 4))
    assert m.loc["a", "coverage"] == pytest.approx(0.75)  # 1.5 in, 2.5 in, 3.0 out, 5 in
    assert m.loc["a", "mean_width"] == pytest.approx((2 + 0.9 + 1 + 2) / 4)
    assert m.loc["a", "corr"] == pytest.approx(np.corrcoef([1, 2, 4, 5], [1.5, 2.5, 3, 5])[0, 1])
    assert m.loc["a", "mean_se"] == pytest.approx(0.375)
    # b: truth 0 -> relative bias undefined; one of two intervals covers 0
    assert m.loc["b", "bias"] == pytest.approx(0.5) and np.isnan(m.loc["b", "rel_bias"])
    assert m.loc["b", "coverage"] == pytest.approx(0.5) and np.isnan(m.loc["b", "corr"])


def test_validate_recovers_a_planted_truth() -> None:
    gts = [fake_truth(1), fake_truth(2)]
    res = validate_estimators(gts, estimators=[e for e in ESTIMATORS if e != "bayes"])
    m = res.tidy()
    assert set(m["estimator"]) == {"cs_never", "cs_notyet", "twfe", "sunab", "diff"}
    assert res.provenance["replicates"] == [1, 2]
    cs = m.query("estimator == 'cs_never' and level == 'cell' and period == 'post'").iloc[0]
    # 2 replicates × 14 post cells (4 cohorts on 6 steps: 5 + 4 + 3 + 2)
    assert cs["n"] == 28
    assert abs(cs["rel_bias"]) < 0.05 and cs["coverage"] >= 0.8 and cs["corr"] > 0.95
    # the comparison rows are the estimator's own numbers, sign-flipped, next to the truth
    comp = res.comparisons.query("estimator == 'cs_never' and level == 'cell' and replicate == 1")
    from causalmem.estimators.att_gt import att_gt

    raw = att_gt(gts[0].panel, yname="y", bstrap=False, cband=False).tidy()
    row = comp.query("group == 100 and time == 150").iloc[0]
    ref = raw.query("group == 100 and time == 150").iloc[0]
    assert row["estimate"] == pytest.approx(-ref["estimate"])
    assert row["conf_low"] == pytest.approx(-ref["conf_high"])
    truth = gts[0].tidy().query("group == 100 and time == 150")["estimate"].item()
    assert row["truth"] == pytest.approx(truth)
    # placebo rows are judged against zero
    assert (res.comparisons.query("period == 'pre'")["truth"] == 0).all()
    assert res.recommended in {"cs_never", "cs_notyet", "diff"}
    assert len(res.findings()) >= 5
    title, html = validation_section(res)
    assert "Validation" in title and "<svg" in html and "<table" in html
    assert "CS, never-trained controls" in html


def test_estimate_all_refuses_unbalanced_and_unknown() -> None:
    sim = simulate_panel(unbalanced_fraction=0.2, seed=0)
    with pytest.raises(ValueError, match="unbalanced"):
        estimate_all(sim.to_panel(), "y", -1, estimators=["cs_never"])
    with pytest.raises(ValueError, match="unknown estimators"):
        estimate_all(simulate_panel(seed=0).to_panel(), "y", -1, estimators=["nope"])


def test_metrics_table_selects_and_labels() -> None:
    frame = pd.DataFrame(
        {c: [1, 2] for c in METRIC_COLUMNS if c != "estimator"}
        | {"estimator": ["cs_never", "diff"], "extra": [0, 0]},
        index=[3, 7],
    )
    t = metrics_table(frame)
    assert list(t.columns) == list(METRIC_COLUMNS) and list(t.index) == [3, 7]
    assert t["estimator"].tolist() == ["CS, never-trained controls", "Difference estimator"]
    assert frame["estimator"].tolist() == ["cs_never", "diff"]  # input untouched
