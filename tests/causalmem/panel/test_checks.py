from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from causalmem.errors import (
    AlwaysTreatedError,
    CausalmemWarning,
    ClusterError,
    CohortError,
    CovariateError,
    DuplicateKeyError,
    EmptyPanelError,
    MissingColumnError,
    OutcomeError,
    PanelSchemaError,
    StepError,
    UnbalancedPanelError,
    UnitError,
    WeightsError,
)
from causalmem.panel import CheckedPanel, normalise_cohort, validate_long

ROLES = {"idname": "unit", "tname": "step", "gname": "cohort", "ynames": "y"}


def make_frame() -> pd.DataFrame:
    """6 units x 4 steps: units 1-2 treated at 3, 3-4 at 4, 5-6 never (NaN)."""
    units = np.repeat(np.arange(1, 7), 4)
    steps = np.tile(np.arange(1, 5), 6)
    cohort = np.repeat([3.0, 3.0, 4.0, 4.0, np.nan, np.nan], 4)
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "unit": units,
            "step": steps,
            "cohort": cohort,
            "y": rng.normal(size=units.size),
            "w": np.repeat([1.0, 2.0, 1.0, 0.5, 1.0, 3.0], 4),
            "cl": np.repeat(["a", "a", "b", "b", "c", "c"], 4),
            "x": rng.normal(size=units.size),
            "extra": "ignored",
        }
    )


def check(df: pd.DataFrame, **kwargs: object) -> CheckedPanel:
    return validate_long(df, **{**ROLES, **kwargs})  # type: ignore[arg-type]


def raises(exc: type[Exception], fragment: str, df: pd.DataFrame, **kwargs: object) -> str:
    with pytest.raises(exc, match=fragment) as info:
        check(df, **kwargs)
    return str(info.value)


# --- happy path -------------------------------------------------------------------------------


def test_valid_panel_is_sorted_minimal_and_typed() -> None:
    df = make_frame()
    out = check(df, weightsname="w", clustervars=("unit", "cl"), xnames="x")
    f = out.frame
    assert list(f.columns) == ["unit", "step", "cohort", "y", "w", "cl", "x"]
    assert isinstance(f.index, pd.RangeIndex)
    assert f["step"].dtype == np.int64
    assert f["cohort"].dtype == "Int64"
    assert f["cohort"].isna().sum() == 8
    assert f["y"].dtype == np.float64
    assert out.steps.tolist() == [1, 2, 3, 4]
    assert out.steps.dtype == np.int64
    assert out.balanced is True
    assert out.dropped_always_treated.size == 0
    assert out.ynames == ("y",)
    assert out.clustervars == ("cl",)  # idname skipped
    assert out.xnames == ("x",)
    assert out.weightsname == "w"
    pd.testing.assert_series_equal(f["y"], df["y"], check_index=False)


def test_shuffled_input_gives_the_same_sorted_frame() -> None:
    df = make_frame()
    shuffled = df.sample(frac=1.0, random_state=3)
    a = check(df, weightsname="w").frame
    b = check(shuffled, weightsname="w").frame
    pd.testing.assert_frame_equal(a, b)
    assert b[["unit", "step"]].apply(tuple, axis=1).is_monotonic_increasing


def test_input_frame_is_never_mutated() -> None:
    df = make_frame().sample(frac=1.0, random_state=1)
    df.loc[df["unit"] == 1, "cohort"] = 1.0  # always treated, dropped below
    before = df.copy(deep=True)
    with pytest.warns(CausalmemWarning):
        out = check(df, weightsname="w", clustervars="cl", xnames="x", drop_always_treated=True)
    pd.testing.assert_frame_equal(df, before)
    out.frame.loc[0, "y"] = 123.0  # the output does not alias the input
    pd.testing.assert_frame_equal(df, before)
    df2 = make_frame()
    df2.loc[3, "y"] = np.nan
    before2 = df2.copy(deep=True)
    with pytest.raises(OutcomeError):
        check(df2)
    pd.testing.assert_frame_equal(df2, before2)


def test_string_ids_are_fine() -> None:
    df = make_frame().assign(unit=lambda d: "seq-" + d["unit"].astype(str))
    out = check(df)
    assert out.frame["unit"].iloc[0] == "seq-1"
    assert len(out.frame) == 24


@pytest.mark.parametrize(
    "never",
    [np.nan, None, pd.NA, np.inf],
    ids=["nan", "none", "pd.NA", "inf"],
)
def test_never_treated_encodings_become_na(never: object) -> None:
    df = make_frame()
    cohort = pd.Series(df["cohort"].tolist(), dtype=object)
    cohort[cohort.isna()] = never
    out = check(df.assign(cohort=cohort))
    expected = check(make_frame()).frame["cohort"]
    pd.testing.assert_series_equal(out.frame["cohort"], expected)
    assert out.frame["cohort"].isna().sum() == 8


def test_integer_valued_float_steps_are_accepted() -> None:
    out = check(make_frame().assign(step=lambda d: d["step"].astype(float)))
    assert out.frame["step"].dtype == np.int64


def test_unbalanced_panel_allowed() -> None:
    df = make_frame().drop(index=[0, 5])
    out = check(df, allow_unbalanced_panel=True)
    assert out.balanced is False
    assert len(out.frame) == 22


# --- structure --------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [{"unit": [1]}, pd.Series([1.0]), np.zeros((2, 2))])
def test_not_a_dataframe(data: object) -> None:
    with pytest.raises(TypeError, match="pandas DataFrame"):
        validate_long(data, **ROLES)  # type: ignore[arg-type]


def test_empty_frame() -> None:
    with pytest.raises(EmptyPanelError, match="no rows"):
        check(make_frame().iloc[:0])


def test_missing_columns_listed_with_available() -> None:
    msg = raises(MissingColumnError, "not in the frame", make_frame(), ynames=("y", "sup_seq"))
    assert "'sup_seq'" in msg
    assert "Available columns" in msg and "'unit'" in msg
    assert isinstance(MissingColumnError("x"), KeyError)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"tname": "unit"}, "'unit' is used as idname and as tname"),
        ({"xnames": "y"}, "'y' is used as ynames and as xnames"),
        ({"weightsname": "y"}, "used as ynames and as weightsname"),
        ({"ynames": ("y", "y")}, "used as ynames and as ynames"),
        ({"clustervars": "cohort"}, "used as gname and as clustervars"),
    ],
)
def test_same_column_in_two_roles(kwargs: dict[str, object], fragment: str) -> None:
    raises(PanelSchemaError, fragment, make_frame(), **kwargs)


def test_no_outcome() -> None:
    raises(PanelSchemaError, "No outcome column", make_frame(), ynames=())


def test_duplicated_column_names_in_frame() -> None:
    df = make_frame()
    df = pd.concat([df, df[["y"]]], axis=1)
    raises(PanelSchemaError, "appear more than once", df)


# --- unit -------------------------------------------------------------------------------------


def test_unit_missing() -> None:
    df = make_frame().assign(unit=lambda d: d["unit"].astype(float))
    df.loc[[2, 7], "unit"] = np.nan
    msg = raises(UnitError, "'unit' has missing values in 2 rows", df)
    assert "[2, 7]" in msg


def test_unit_mixed_unorderable_types() -> None:
    df = make_frame()
    df["unit"] = df["unit"].astype(object)
    df.loc[df["unit"] == 1, "unit"] = "one"
    raises(UnitError, "mixes id types", df)


# --- step -------------------------------------------------------------------------------------


def test_step_non_numeric() -> None:
    df = make_frame().assign(step=lambda d: "s" + d["step"].astype(str))
    raises(StepError, "'step' is non-numeric", df)


def test_step_boolean() -> None:
    df = make_frame().assign(step=lambda d: d["step"] > 2)
    raises(StepError, "'step' is boolean", df)


def test_step_missing_float() -> None:
    df = make_frame().assign(step=lambda d: d["step"].astype(float))
    df.loc[5, "step"] = np.nan
    msg = raises(StepError, "missing values", df)
    assert "1 rows" in msg and "[2]" in msg  # row 5 belongs to unit 2


def test_step_missing_nullable_int() -> None:
    df = make_frame().assign(step=lambda d: d["step"].astype("Int64"))
    df.loc[0, "step"] = pd.NA
    raises(StepError, "missing values", df)


def test_step_negative() -> None:
    df = make_frame()
    df.loc[df["step"] == 1, "step"] = -1
    msg = raises(StepError, "negative values", df)
    assert "[-1]" in msg and "6 rows" in msg


def test_step_non_integer() -> None:
    df = make_frame().assign(step=lambda d: d["step"].astype(float))
    df.loc[df["step"] == 2, "step"] = 2.5
    msg = raises(StepError, "non-integer values", df)
    assert "2.5" in msg


def test_step_infinite() -> None:
    df = make_frame().assign(step=lambda d: d["step"].astype(float))
    df.loc[3, "step"] = np.inf
    raises(StepError, "infinite values", df)


def test_fewer_than_two_steps() -> None:
    df = make_frame().query("step == 1").assign(cohort=np.nan)
    raises(StepError, "at least 2 steps", df)


# --- keys -------------------------------------------------------------------------------------


def test_duplicate_keys_dense() -> None:
    df = make_frame()
    df = pd.concat([df, df.iloc[[1, 6]]], ignore_index=True)
    msg = raises(DuplicateKeyError, "2 \\(unit, step\\) keys", df)
    assert "(unit=1, step=2)" in msg and "(unit=2, step=3)" in msg
    assert "4 rows" in msg and "drop_duplicates" in msg


def test_duplicate_keys_sparse_grid() -> None:
    # Many distinct steps, each unit seen twice: takes the argsort path.
    n = 300
    df = pd.DataFrame(
        {
            "unit": np.repeat(np.arange(n), 2),
            "step": np.arange(2 * n),
            "cohort": np.nan,
            "y": 0.0,
        }
    )
    df = pd.concat([df, df.iloc[[10]]], ignore_index=True)
    msg = raises(DuplicateKeyError, "1 \\(unit, step\\) keys", df, allow_unbalanced_panel=True)
    assert "(unit=5, step=10)" in msg


def test_sparse_grid_without_duplicates_is_sorted() -> None:
    n = 300
    df = pd.DataFrame(
        {
            "unit": np.repeat(np.arange(n), 2)[::-1],
            "step": np.arange(2 * n)[::-1],
            "cohort": np.nan,
            "y": np.arange(2 * n, dtype=float),
        }
    )
    out = check(df, allow_unbalanced_panel=True)
    assert out.frame["step"].tolist() == list(range(2 * n))
    assert out.balanced is False


# --- cohort -----------------------------------------------------------------------------------


def test_cohort_non_numeric() -> None:
    df = make_frame().assign(cohort=lambda d: d["cohort"].map({3.0: "three", 4.0: "four"}))
    raises(CohortError, "'cohort'", df)


def test_cohort_non_integer() -> None:
    df = make_frame()
    df.loc[df["unit"] == 1, "cohort"] = 2.5
    raises(CohortError, "non-integer values \\[2.5\\]", df)


def test_cohort_negative_and_minus_inf() -> None:
    df = make_frame()
    df.loc[df["unit"] == 1, "cohort"] = -3
    raises(CohortError, "negative values", df)
    df.loc[df["unit"] == 1, "cohort"] = -np.inf
    raises(CohortError, "-inf", df)


def test_cohort_varies_within_unit() -> None:
    df = make_frame()
    df.loc[(df["unit"] == 2) & (df["step"] == 4), "cohort"] = 4.0
    df.loc[(df["unit"] == 5) & (df["step"] == 1), "cohort"] = 3.0
    msg = raises(CohortError, "varies within units", df)
    assert "[2, 5]" in msg


def test_cohort_not_an_observed_step() -> None:
    df = make_frame()
    df.loc[df["unit"].isin([1, 2]), "cohort"] = 7.0
    msg = raises(CohortError, "not observed steps", df)
    assert "[7]" in msg and "2 units" in msg and "R did" in msg


def test_always_treated_raises_with_r_hint() -> None:
    df = make_frame()
    df.loc[df["unit"].isin([5, 6]), "cohort"] = 0  # R did's "never" convention
    msg = raises(AlwaysTreatedError, "no pre-period", df)
    assert "recode it to NA" in msg and "drop_always_treated=True" in msg
    assert "[5, 6]" in msg
    assert issubclass(AlwaysTreatedError, CohortError)


def test_cohort_at_first_step_is_always_treated() -> None:
    df = make_frame()
    df.loc[df["unit"] == 3, "cohort"] = 1
    raises(AlwaysTreatedError, "first observed step 1", df)


def test_drop_always_treated_warns_and_drops() -> None:
    df = make_frame()
    df.loc[df["unit"].isin([1, 4]), "cohort"] = 1
    with pytest.warns(CausalmemWarning, match="Dropped 2 always-treated units"):
        out = check(df, drop_always_treated=True)
    assert out.dropped_always_treated.tolist() == [1, 4]
    assert sorted(out.frame["unit"].unique().tolist()) == [2, 3, 5, 6]
    assert len(out.frame) == 16
    assert out.balanced


def test_drop_always_treated_everything() -> None:
    df = make_frame().assign(cohort=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CausalmemWarning)
        raises(EmptyPanelError, "always treated", df, drop_always_treated=True)


# --- outcomes ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("convert", "fragment"),
    [
        (lambda s: s.astype(str), "non-numeric"),
        (lambda s: s.astype(object), "non-numeric \\(dtype object\\)"),
        (lambda s: s.round().astype("category"), "categorical"),
        (lambda s: s > 0, "boolean"),
    ],
    ids=["string", "object", "category", "bool"],
)
def test_outcome_non_numeric(convert, fragment: str) -> None:  # type: ignore[no-untyped-def]
    df = make_frame()
    df["y"] = convert(df["y"])
    raises(OutcomeError, f"'y' is {fragment}", df)


def test_outcome_nan() -> None:
    df = make_frame()
    df.loc[[1, 2], "y"] = np.nan
    msg = raises(OutcomeError, "missing values", df)
    assert "(unit=1, step=2)" in msg and "2 rows" in msg
    assert "allow_unbalanced_panel=True" in msg


def test_outcome_nullable_na() -> None:
    df = make_frame().assign(y=lambda d: d["y"].astype("Float64"))
    df.loc[0, "y"] = pd.NA
    raises(OutcomeError, "missing values", df)


def test_outcome_infinite() -> None:
    df = make_frame()
    df.loc[3, "y"] = -np.inf
    raises(OutcomeError, "infinite values at \\[\\(unit=1, step=4\\)\\]", df)


def test_integer_outcome_becomes_float() -> None:
    df = make_frame().assign(y=lambda d: (d["y"] * 10).round().astype("Int64"))
    assert check(df).frame["y"].dtype == np.float64


# --- balance ----------------------------------------------------------------------------------


def test_unbalanced_panel_raises() -> None:
    df = make_frame().drop(index=[0, 1, 9])
    msg = raises(UnbalancedPanelError, "2 units are not observed at all 4 steps", df)
    assert "1: 2 missing" in msg and "3: 1 missing" in msg
    assert "allow_unbalanced_panel=True" in msg


# --- weights ----------------------------------------------------------------------------------


def test_weights_missing() -> None:
    df = make_frame()
    df.loc[4, "w"] = np.nan
    raises(WeightsError, "'w' has missing values", df, weightsname="w")


def test_weights_non_numeric() -> None:
    df = make_frame().assign(w=lambda d: d["w"].astype(str))
    raises(WeightsError, "'w' is non-numeric", df, weightsname="w")


def test_weights_non_finite() -> None:
    df = make_frame()
    df.loc[df["unit"] == 2, "w"] = np.inf
    raises(WeightsError, "infinite", df, weightsname="w")


def test_weights_negative() -> None:
    df = make_frame()
    df.loc[df["unit"] == 2, "w"] = -1.0
    raises(WeightsError, "negative values at \\[\\(unit=2, step=1\\)", df, weightsname="w")


def test_weights_all_zero() -> None:
    raises(WeightsError, "zero in all 24 rows", make_frame().assign(w=0.0), weightsname="w")


def test_weights_vary_within_unit() -> None:
    df = make_frame()
    df.loc[(df["unit"] == 3) & (df["step"] == 2), "w"] = 9.0
    msg = raises(WeightsError, "time-invariant", df, weightsname="w")
    assert "[3]" in msg


def test_weights_zero_for_some_units_are_fine() -> None:
    df = make_frame()
    df.loc[df["unit"] == 2, "w"] = 0.0
    assert check(df, weightsname="w").frame["w"].min() == 0.0


# --- clusters ---------------------------------------------------------------------------------


def test_cluster_missing() -> None:
    df = make_frame()
    df.loc[6, "cl"] = None
    raises(ClusterError, "'cl' has missing values at \\[\\(unit=2, step=3\\)", df, clustervars="cl")


def test_cluster_varies_within_unit() -> None:
    df = make_frame()
    df.loc[(df["unit"] == 6) & (df["step"] == 4), "cl"] = "z"
    raises(ClusterError, "varies within 1 units \\[6\\]", df, clustervars=["cl"])


def test_idname_as_cluster_is_skipped() -> None:
    out = check(make_frame(), clustervars=("unit",))
    assert out.clustervars == ()
    assert list(out.frame.columns) == ["unit", "step", "cohort", "y"]


# --- covariates -------------------------------------------------------------------------------


def test_covariate_non_numeric() -> None:
    raises(CovariateError, "'cl' is non-numeric", make_frame(), xnames="cl")


def test_covariate_non_finite() -> None:
    df = make_frame()
    df.loc[2, "x"] = np.nan
    raises(CovariateError, "'x' has missing values", df, xnames="x")
    df.loc[2, "x"] = np.inf
    raises(CovariateError, "'x' has infinite values", df, xnames="x")


# --- normalise_cohort -------------------------------------------------------------------------


def test_normalise_cohort_accepts_never_encodings() -> None:
    s = pd.Series([3, None, np.nan, np.inf, 5.0, pd.NA], dtype=object, index=list("abcdef"))
    out = normalise_cohort(s, "g")
    assert out.dtype == "Int64"
    assert out.isna().tolist() == [False, True, True, True, False, True]
    assert out.dropna().tolist() == [3, 5]
    assert list(out.index) == list("abcdef")


def test_normalise_cohort_int_and_nullable() -> None:
    assert normalise_cohort(pd.Series([1, 2]), "g").dtype == "Int64"
    out = normalise_cohort(pd.Series([1, None], dtype="Int64"), "g")
    assert out.isna().tolist() == [False, True]


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        (pd.Series(["3", "x"]), "non-numeric"),
        (pd.Series([True, False]), "boolean"),
        (pd.Series([3, True], dtype=object), "non-numeric"),
        (pd.Series([1.5]), "non-integer"),
        (pd.Series([-2, 3]), "negative"),
        (pd.Series([-np.inf]), "-inf"),
        (pd.Series(pd.to_datetime(["2020-01-01"])), "non-numeric dtype"),
    ],
)
def test_normalise_cohort_rejects(values: pd.Series, fragment: str) -> None:
    with pytest.raises(CohortError, match=fragment):
        normalise_cohort(values, "g")


def test_normalise_cohort_does_not_mutate() -> None:
    s = pd.Series([3.0, np.nan, np.inf])
    before = s.copy()
    normalise_cohort(s, "g")
    pd.testing.assert_series_equal(s, before)


# --- scale (speed is measured in bench/, not asserted here) -------------------------------


@pytest.mark.slow
def test_validation_at_pythia_scale_is_order_invariant() -> None:
    rng = np.random.default_rng(0)
    steps = np.concatenate([[0], 2 ** np.arange(10), np.arange(1000, 143_001, 1000)])
    n_units = 16_300
    cohort = np.where(np.arange(n_units) < 14_300, rng.integers(1, 96, n_units) * 1000, np.nan)
    df = pd.DataFrame(
        {
            "unit": np.repeat(np.arange(n_units), steps.size),
            "step": np.tile(steps, n_units),
            "cohort": np.repeat(cohort, steps.size),
            "y": rng.normal(size=n_units * steps.size),
        }
    )
    shuffled = df.sample(frac=1.0, random_state=0)
    a, b = check(df), check(shuffled)
    assert len(a.frame) == 2_510_200 and a.balanced
    pd.testing.assert_frame_equal(a.frame, b.frame)
