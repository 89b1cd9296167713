"""Predicting one model's profile from others: planted linear relations, exact OOS errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import causalmem as cm
from causalmem.analysis.compare import compare_profiles
from causalmem.analysis.predict import holdout_mask, predict_profile
from tests.causalmem.builders import two_models as _two_models


def _wide(seed: int, noise: float) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    rows = [(g, t) for g in range(1, 11) for t in range(g, 13)]
    w = pd.DataFrame(rows, columns=["group", "time"])
    w["s1"] = rng.normal(size=len(w))
    w["s2"] = rng.normal(size=len(w))
    eps = rng.normal(size=len(w)) * noise
    w["big"] = 0.5 + 2.0 * w["s1"] - 1.0 * w["s2"] + eps
    return w, eps


def test_holdout_mask() -> None:
    g = np.array([3, 1, 2, 2, 4, 5])
    assert holdout_mask(g, "alternate").tolist() == [False, False, True, True, True, False]
    assert holdout_mask(g, "last", frac=0.4).tolist() == [False, False, False, False, True, True]
    with pytest.raises(ValueError, match="two cohorts"):
        holdout_mask([1, 1])
    with pytest.raises(ValueError, match="'alternate' or 'last'"):
        holdout_mask(g, "random")  # type: ignore[arg-type]


def test_exact_linear_relation_is_recovered() -> None:
    w, _ = _wide(0, noise=0.0)
    p = predict_profile(w, "big", ["s1", "s2"])
    assert p.coefficients["estimate"].tolist() == pytest.approx([0.5, 2.0, -1.0])
    assert p.metric("linear", "rmse") == pytest.approx(0.0, abs=1e-12)
    assert p.metric("linear", "r2") == pytest.approx(1.0)
    assert p.metric("nearest", "rmse") > 0.5  # the baseline does not know the relation


def test_out_of_sample_error_matches_a_hand_computation() -> None:
    w, eps = _wide(1, noise=0.3)
    p = predict_profile(w, "big", ["s1", "s2"], holdout="last", frac=0.3)
    test = holdout_mask(w["group"], "last", 0.3)
    x = np.column_stack([np.ones(len(w)), w["s1"], w["s2"]])
    coef = np.linalg.lstsq(x[~test], w["big"][~test], rcond=None)[0]
    res = w["big"][test] - x[test] @ coef
    rmse = float(np.sqrt(np.mean(res**2)))
    r2 = 1 - float(np.sum(res**2)) / float(np.sum((w["big"][test] - w["big"][test].mean()) ** 2))
    assert p.metric("linear", "rmse") == pytest.approx(rmse)
    assert p.metric("linear", "mae") == pytest.approx(float(np.mean(np.abs(res))))
    assert p.metric("linear", "r2") == pytest.approx(r2)
    # what is left out of sample is the planted noise (plus a little coefficient error)
    assert rmse == pytest.approx(float(np.sqrt(np.mean(eps[test] ** 2))), abs=0.05)
    assert p.coefficients["estimate"].tolist() == pytest.approx([0.5, 2.0, -1.0], abs=0.15)
    # nearest baseline = the last predictor's cells as they are
    assert p.metric("nearest", "rmse") == pytest.approx(
        float(np.sqrt(np.mean((w["big"][test] - w["s2"][test]) ** 2)))
    )
    cells = p.cells
    assert (cells["split"] == "test").sum() == int(test.sum())
    # sign-invariance of the errors
    q = predict_profile(w, "big", ["s1", "s2"], holdout="last", frac=0.3, sign=-1)
    assert q.metric("linear", "rmse") == pytest.approx(rmse)
    assert q.coefficients["estimate"].iloc[0] == pytest.approx(-coef[0])


def test_joint_bootstrap_prediction_of_a_scaled_model() -> None:
    # model 'b' scores every instance at exactly twice model 'a': tau_b = 2 tau_a in every
    # cell and every joint bootstrap draw, so the prediction is exact with zero spread.
    df, _ = _two_models(0, rho=0.5)
    df = df.assign(y_b=2.0 * df["y_a"])
    fits = {m: cm.att_gt(df, f"y_{m}", "step", "unit", "cohort", bstrap=False) for m in "ab"}
    comp = compare_profiles(fits, cells="post", biters=60, seed=0)
    p = predict_profile(comp, "b", ["a"])
    assert p.biters == 60
    c = p.coefficients.set_index("term")
    assert c.loc["a", "estimate"] == pytest.approx(2.0)
    assert c.loc["a", "std_error"] == pytest.approx(0.0, abs=1e-6)
    lin = p.metrics[p.metrics["method"] == "linear"].set_index("metric")
    assert lin.loc["rmse", "estimate"] == pytest.approx(0.0, abs=1e-9)
    assert lin.loc["rmse", "conf_high"] == pytest.approx(0.0, abs=1e-5)
    assert p.metric("noise_floor", "rmse") > 0


def test_bootstrap_intervals_on_independent_noise() -> None:
    df, _ = _two_models(3, rho=0.9)
    fits = {m: cm.att_gt(df, f"y_{m}", "step", "unit", "cohort", bstrap=False) for m in "ab"}
    comp = compare_profiles(fits, cells="post", biters=200, seed=1)
    p = predict_profile(comp, "b", ["a"])
    m = p.tidy()
    lin = m[m["method"] == "linear"].set_index("metric")
    assert (lin["std_error"] > 0).all()
    assert (lin["conf_low"] <= lin["conf_high"]).all()
    assert {"linear", "nearest", "event_mean", "noise_floor"} == set(m["method"])


def test_bad_inputs() -> None:
    w, _ = _wide(0, noise=0.1)
    with pytest.raises(KeyError, match="Unknown target"):
        predict_profile(w, "huge")
    with pytest.raises(ValueError, match="other than the target"):
        predict_profile(w, "big", ["big"])
    with pytest.raises(KeyError, match="'group' and 'time'"):
        predict_profile(w.drop(columns=["time"]), "big")
    with pytest.raises(TypeError, match="ProfileComparison"):
        predict_profile(np.zeros(3), "big")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Too few cells"):
        predict_profile(w[w["group"] <= 2].iloc[[0, 1, 12, 13]], "big", ["s1", "s2"])


def test_bootstrap_draws_vectorised_equal_the_per_draw_fits() -> None:
    from causalmem.analysis.predict import _all_methods, _all_methods_draws, _errors

    rng = np.random.default_rng(3)
    n, p, b = 40, 2, 7
    e = rng.integers(0, 6, n).astype(float)
    test = np.arange(n) % 2 == 1
    test[-1] = True
    e[-1] = 99.0  # a held-out event time absent from training: the fallback mean
    y = rng.normal(size=(n, b))
    x = rng.normal(size=(n, p, b))
    coef, errs = _all_methods_draws(y, x, e, test)
    for j in range(b):
        fit, preds = _all_methods(y[:, j], x[:, :, j], e, test)
        np.testing.assert_allclose(coef[j], fit.coef, rtol=1e-10, atol=1e-12)
        for i, k in enumerate(("linear", "nearest", "event_mean")):
            np.testing.assert_allclose(errs[j, i], _errors(y[test, j], preds[k]), rtol=1e-10)
