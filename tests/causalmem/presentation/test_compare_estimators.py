"""compare_estimators: one panel, five estimators, one table and one chart.

The estimators' numbers are tested against their references elsewhere (test_att_gt*,
test_twfe_event_study, test_imputation, test_two_stage); here: that the comparison fits each
of them as documented (same numbers as calling them directly, event time in checkpoints), that
post-treatment imputation and two-stage estimates coincide (a property of the estimators), and
that the table and the chart carry every estimator.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import causalmem as cm
from causalmem.errors import OptionError
from causalmem.estimators.imputation import did2s, did_imputation
from causalmem.presentation.compare_estimators import (
    ESTIMATOR_LABELS,
    EstimatorComparison,
    compare_estimators,
)


@pytest.fixture(scope="module")
def panel() -> pd.DataFrame:
    return cm.simulate_panel(seed=1).frame


@pytest.fixture(scope="module")
def cmp(panel: pd.DataFrame) -> EstimatorComparison:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return compare_estimators(panel, "y", "step", "unit", "cohort", window=(-3, 3))


def test_fits_every_estimator_as_documented(panel: pd.DataFrame, cmp: EstimatorComparison) -> None:
    assert cmp.estimators == tuple(ESTIMATOR_LABELS)
    t = cmp.tidy()
    assert set(t["estimator"]) == set(ESTIMATOR_LABELS)
    e = t["event_time"].dropna()
    assert e.min() >= -3 and e.max() <= 3
    # same numbers as the direct calls
    imp = did_imputation(
        panel, "y", "step", "unit", "cohort", horizon=True, pretrends=True, event_time="periods"
    )
    got = t[t["estimator"] == "imputation"].set_index("term")["estimate"]
    want = imp.tidy().set_index("term")["estimate"].loc[got.index]
    np.testing.assert_allclose(got, want)
    cs = cm.aggte(
        cm.att_gt(panel, "y", "step", "unit", "cohort", bstrap=False),
        "dynamic",
        event_time="periods",
    )
    got_cs = t[(t["estimator"] == "cs") & t["event_time"].notna()].set_index("event_time")
    want_cs = cs.tidy().set_index("event_time").loc[got_cs.index]
    np.testing.assert_allclose(got_cs["estimate"], want_cs["estimate"])
    np.testing.assert_allclose(got_cs["std_error"], want_cs["std_error"])
    # post-treatment imputation == two-stage point estimates
    ts = did2s(panel, "y", "step", "unit", "cohort", horizon=True, event_time="periods")
    post = imp.tidy().query("kind == 'post'")["estimate"].to_numpy()
    np.testing.assert_allclose(post, ts.estimate, atol=1e-10)


def test_table_and_chart(cmp: EstimatorComparison) -> None:
    tab = cmp.etable()
    frame = tab.to_frame()
    assert "event_time=0" in frame.index and "event_time=-4" not in frame.index
    md = tab.to_markdown()
    for label in ESTIMATOR_LABELS.values():
        assert label in md
    assert "Two-stage (Gardner)" in md  # footer names the estimator
    chart = cmp.chart().to_dict()
    data = next(iter(chart["datasets"].values()))
    assert {d["label"] for d in data} == set(ESTIMATOR_LABELS.values())
    # points are dodged: same event time, distinct x
    xs = {(d["event_time"], d["x"]) for d in data}
    assert len(xs) == len(data)
    assert cmp.by_estimator().shape[0] == 5
    g = cmp.glance().iloc[0]
    assert g["n_estimators"] == 5 and g["max_spread_post"] >= 0
    from lmecon.result import check_result

    check_result(cmp)
    assert "Event studies" in cmp.to_markdown()


def test_options_and_errors(panel: pd.DataFrame) -> None:
    with pytest.raises(OptionError, match="choose among"):
        compare_estimators(panel, "y", "step", "unit", "cohort", estimators=["magic"])
    with pytest.raises(OptionError, match="twice"):
        compare_estimators(panel, "y", "step", "unit", "cohort", estimators=["cs", "cs"])
    with pytest.raises(OptionError, match="not fitted"):
        compare_estimators(
            panel, "y", "step", "unit", "cohort", estimators=["cs"], options={"sa": {}}
        )
    c = compare_estimators(
        panel,
        "y",
        "step",
        "unit",
        "cohort",
        estimators=["cs", "two_stage"],
        options={"cs": {"control_group": "notyettreated"}, "two_stage": {"pretrends": None}},
    )
    assert c.results["cs"].tidy().shape[0] > 0
    assert (c.results["two_stage"].tidy()["kind"] == "post").all()
