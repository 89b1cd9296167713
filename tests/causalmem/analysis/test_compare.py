"""Joint bootstrap across models: coverage of the true profile correlation, alignment checks."""

from __future__ import annotations

import numpy as np
import pytest

import causalmem as cm
from causalmem.analysis.compare import compare_profiles
from tests.causalmem.builders import two_models


def test_joint_bootstrap_interval_covers_the_true_profile_correlation() -> None:
    hits, reps = 0, 40
    for rep in range(reps):
        df, true_rho = two_models(rep, rho=0.6)
        fits = {
            m: cm.att_gt(df, f"y_{m}", "step", "unit", "cohort", bstrap=False) for m in ("a", "b")
        }
        comp = compare_profiles(fits, cells="post", biters=400, seed=rep)
        row = comp.tidy().iloc[0]
        hits += row["conf_low"] <= true_rho <= row["conf_high"]
    assert 0.85 <= hits / reps <= 1.0  # nominal 95%


def test_profile_difference_has_joint_standard_errors() -> None:
    df, _ = two_models(1, rho=0.9)
    fits = {m: cm.att_gt(df, f"y_{m}", "step", "unit", "cohort", bstrap=False) for m in ("a", "b")}
    comp = compare_profiles(fits, biters=500, seed=3)
    d = comp.difference("a", "b")
    assert {"estimate", "std_error", "conf_low", "conf_high", "band"} <= set(d.columns)
    # Shared instance difficulty cancels in the difference: joint SEs are below the
    # independent-model SEs sqrt(se_a^2 + se_b^2).
    a, b = fits["a"], fits["b"]
    sel = a.cells.post & ~a.cells.reference
    indep = np.sqrt(a.se[sel] ** 2 + b.se[sel] ** 2)
    assert np.median(d["std_error"].to_numpy() / indep) < 0.9
    with pytest.raises(KeyError, match="Unknown model"):
        comp.difference("a", "c")


def test_alignment_and_bad_inputs() -> None:
    df, _ = two_models(2, rho=0.5)
    a = cm.att_gt(df, "y_a", "step", "unit", "cohort", bstrap=False)
    b_other_units = cm.att_gt(df[df["unit"] != 0], "y_b", "step", "unit", "cohort", bstrap=False)
    with pytest.raises(ValueError, match="same instances"):
        compare_profiles({"a": a, "b": b_other_units})
    with pytest.raises(ValueError, match="at least two"):
        compare_profiles({"a": a})
    with pytest.raises(ValueError, match="epoch_end"):
        compare_profiles({"a": a, "b": a}, cells="post_first_epoch")
    res = compare_profiles({"a": a, "b": a}, cells="post_first_epoch", epoch_end=6, biters=50)
    assert res.tidy()["raw"].iloc[0] == pytest.approx(1.0)
    assert (
        compare_profiles({"a": a, "b": a}, cells="all", biters=50).tidy()["n_cells"].iloc[0]
        > res.tidy()["n_cells"].iloc[0]
    )


def test_mean_difference_is_joint_and_sign_aware() -> None:
    df, _ = two_models(5, rho=0.7)
    df = df.assign(y_c=df["y_a"] + np.where(df["step"] >= df["cohort"].fillna(99), 0.4, 0.0))
    fits = {m: cm.att_gt(df, f"y_{m}", "step", "unit", "cohort", bstrap=False) for m in "ac"}
    comp = compare_profiles(fits, cells="post", biters=400, seed=2)
    d = comp.mean_difference("c", "a").iloc[0]
    # y_c = y_a + 0.4 on every treated post row: every post ATT differs by exactly 0.4, and the
    # joint draws cancel the shared noise completely.
    assert d["estimate"] == pytest.approx(0.4)
    assert d["std_error"] == pytest.approx(0.0, abs=1e-6)
    assert d["conf_low"] == pytest.approx(0.4, abs=1e-6) and d["n_cells"] > 10
    assert comp.difference("c", "a")["estimate"].mean() == pytest.approx(0.4)
    neg = comp.mean_difference("c", "a", sign=-1).iloc[0]
    assert neg["estimate"] == pytest.approx(-0.4) and neg["conf_low"] <= neg["conf_high"]
    df2, _ = two_models(6, rho=0.7)
    fits2 = {m: cm.att_gt(df2, f"y_{m}", "step", "unit", "cohort", bstrap=False) for m in "ab"}
    e = compare_profiles(fits2, biters=300, seed=0).mean_difference("a", "b").iloc[0]
    assert e["std_error"] > 0 and e["conf_low"] < e["estimate"] < e["conf_high"]
    with pytest.raises(ValueError, match="sign"):
        comp.mean_difference("c", "a", sign=2)


def test_too_few_joint_bootstrap_draws_are_refused() -> None:
    from causalmem.errors import OptionError

    df, _ = two_models(0, rho=0.5)
    fits = {m: cm.att_gt(df, f"y_{m}", "step", "unit", "cohort", bstrap=False) for m in ("a", "b")}
    with pytest.raises(OptionError, match="biters=5 is too few joint-bootstrap draws"):
        compare_profiles(fits, cells="post", biters=5, seed=0)


def test_a_correlation_without_sampling_variation_is_nan_with_a_warning() -> None:
    from causalmem.errors import CausalmemWarning

    df, _ = two_models(1, rho=0.5)
    # noise-free outcomes: every influence function is 0, so no draw moves the correlation
    cells = df.groupby(["cohort", "step"], dropna=False)["y_a"].transform("mean")
    flat = df.assign(y_a=cells, y_b=2 * cells + 1)
    fits = {
        m: cm.att_gt(flat, f"y_{m}", "step", "unit", "cohort", bstrap=False) for m in ("a", "b")
    }
    with pytest.warns(CausalmemWarning, match="no sampling variation"):
        comp = compare_profiles(fits, cells="post", biters=50, seed=0)
    row = comp.tidy().iloc[0]
    assert np.isnan(row["std_error"]) and np.isnan(row["conf_low"]) and np.isnan(row["conf_high"])


def test_joint_draws_are_keyed_by_unit_id_and_equal_each_models_att_gt_bootstrap() -> None:
    """Keyed multipliers (issue 15): a model's comparison draws are its own att_gt draws with
    the same seed, and refitting a model on the rows in another order changes nothing."""
    df, _ = two_models(3, rho=0.6)
    fits = {m: cm.att_gt(df, f"y_{m}", "step", "unit", "cohort", bstrap=False) for m in "ab"}
    comp = compare_profiles(fits, cells="post", biters=300, seed=11)
    boot = cm.att_gt(df, "y_a", "step", "unit", "cohort", biters=300, seed=11)
    sel = boot.cells.post & ~boot.cells.reference & np.isfinite(boot.att)
    assert boot.draws is not None
    np.testing.assert_allclose(comp._draws["a"], boot.draws.cells[sel], rtol=0, atol=1e-15)
    # Units in another row order (and so another order of the engine's rows): same draws.
    perm = np.random.default_rng(0).permutation(df["unit"].unique())
    shuffled = df.set_index("unit").loc[perm].reset_index()
    fits_b = {
        "a": fits["a"],
        "b": cm.att_gt(shuffled, "y_b", "step", "unit", "cohort", bstrap=False),
    }
    comp_b = compare_profiles(fits_b, cells="post", biters=300, seed=11)
    np.testing.assert_allclose(comp_b._draws["b"], comp._draws["b"], rtol=0, atol=1e-14)
    pd_cols = ["estimate", "std_error", "conf_low", "conf_high"]
    np.testing.assert_allclose(
        comp_b.tidy()[pd_cols].to_numpy(float), comp.tidy()[pd_cols].to_numpy(float), atol=1e-12
    )
