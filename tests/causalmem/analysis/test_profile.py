from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import causalmem as cm
from causalmem.analysis.profile import MemorisationProfile, metric_sign, to_memorisation


def test_sign_convention_keeps_se_and_swaps_bounds() -> None:
    t = pd.DataFrame(
        {
            "term": ["a", "b"],
            "estimate": [-2.0, 0.5],
            "std_error": [0.5, 0.25],
            "statistic": [-4.0, 2.0],
            "conf_low": [-3.0, 0.0],
            "conf_high": [-1.0, 1.0],
        }
    )
    m = to_memorisation(t, -1)
    assert m["estimate"].tolist() == [2.0, -0.5]
    assert m["std_error"].tolist() == [0.5, 0.25]  # never negated (pitfall 3)
    assert m["conf_low"].tolist() == [1.0, -1.0] and m["conf_high"].tolist() == [3.0, 0.0]
    assert m["significant"].tolist() == [True, False]
    assert (m["conf_low"] <= m["estimate"]).all() and (m["estimate"] <= m["conf_high"]).all()
    p = to_memorisation(t, +1)
    pd.testing.assert_series_equal(p["conf_low"], t["conf_low"])
    with pytest.raises(ValueError, match="sign"):
        to_memorisation(t, 0)


def test_metric_signs() -> None:
    assert [metric_sign(m) for m in ("sup_seq", "entr_seq", "avg_rank", "acc_seq")] == [
        -1,
        -1,
        -1,
        1,
    ]
    with pytest.raises(ValueError, match="sign=-1"):
        metric_sign("y")


def test_profile_views_from_att_gt() -> None:
    sim = cm.simulate_panel(
        cohorts=(3, 4, 5),
        units_per_cohort=60,
        n_never=100,
        steps=range(1, 8),
        outcome="sup_seq",
        seed=4,
    )
    res = cm.att_gt(sim.frame, "sup_seq", "step", "unit", "cohort", biters=200, seed=2)
    prof = MemorisationProfile.from_result(res)
    assert prof.sign == -1 and prof.source == "att_gt"
    inst = prof.instantaneous()
    # The simulated effect lowers the outcome by 2.5 at e = 0: memorisation +2.5.
    assert inst["estimate"].to_numpy() == pytest.approx([2.5] * 3, abs=0.4)
    assert (inst["significant"]).all() and (inst["band"] == "uniform").all()
    np.testing.assert_allclose(inst["std_error"], res.instantaneous()["std_error"])
    assert prof.residual(at=7)["group"].tolist() == [3.0, 4.0, 5.0]
    pers = prof.persistent()
    assert pers["event_time"].min() == 0 and (pers["estimate"] > 0).all()
    assert prof.cohort_path(4.0)["group"].eq(4.0).all()
    pt = prof.pretrend()
    assert pt["n_placebo"] > 0 and 0 < pt["p_value"] <= 1
    mat = prof.matrix(post_only=True)
    assert mat.shape == (3, 5)  # checkpoints 3..7 carry post-treatment cells
    with pytest.raises(ValueError, match="cohort"):
        prof.cohort_path(9.0)


def test_profile_from_event_study_and_aggte() -> None:
    sim = cm.simulate_panel(seed=1, outcome="acc_seq")
    es = cm.event_study(sim.frame, "acc_seq", "step", "unit", "cohort", estimator="twfe")
    prof = MemorisationProfile.from_result(es, metric="acc_seq")
    assert prof.sign == 1 and prof.cells is None
    with pytest.raises(ValueError, match="path only"):
        prof.instantaneous()
    dyn = cm.aggte(
        cm.att_gt(sim.frame, "acc_seq", "step", "unit", "cohort", bstrap=False), "dynamic"
    )
    assert MemorisationProfile.from_result(dyn).persistent()["estimate"].lt(0).all()
    with pytest.raises(ValueError, match="dynamic"):
        MemorisationProfile.from_result(
            cm.aggte(
                cm.att_gt(sim.frame, "acc_seq", "step", "unit", "cohort", bstrap=False), "group"
            )
        )
    with pytest.raises(TypeError, match="MemorisationProfile"):
        MemorisationProfile.from_result(object())  # type: ignore[arg-type]


@pytest.mark.slow
def test_profile_from_a_bayesian_result_flips_sign_and_swaps_hdi() -> None:
    pytest.importorskip("pymc")
    import warnings

    from causalmem.estimators.bayes import bayes_did

    sim = cm.simulate_panel(
        cohorts=(3, 4, 5),
        units_per_cohort=8,
        n_never=20,
        steps=range(1, 7),
        outcome="sup_seq",
        seed=1,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = cm.att_gt(sim.frame, "sup_seq", "step", "unit", "cohort", bstrap=False)
        post = bayes_did(res, draws=100, tune=100, chains=1, seed=0, sampler="pymc")
    prof = MemorisationProfile.from_result(post, hdi_prob=0.8)
    raw = post.tidy(hdi_prob=0.8)
    assert prof.source == "bayes_did" and prof.sign == -1
    np.testing.assert_allclose(prof.cells["estimate"], -raw["estimate"])
    np.testing.assert_allclose(prof.cells["conf_low"], -raw["conf_high"])
    np.testing.assert_allclose(prof.cells["conf_high"], -raw["conf_low"])
    assert (prof.cells["std_error"] >= 0).all()
    assert (prof.instantaneous()["estimate"] > 0).all()  # memorisation is positive
    assert len(prof.persistent()) == len(post.profile())
    assert np.isnan(prof.pretrend()["p_value"])  # no Wald pre-test for a posterior
