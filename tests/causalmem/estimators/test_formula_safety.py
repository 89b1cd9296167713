"""Formulas from files or the command line cannot run Python (issue 13, item 13)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import causalmem as cm
from causalmem.errors import FormulaError
from causalmem.estimators import formula as formula_module
from causalmem.estimators._prepare import covariate_matrix
from causalmem.estimators.formula import SAFE_FUNCTIONS, check_formula_text

SAFE = [
    "y ~ x + C(g) + I(x ** 2) | unit + step",
    "~ x1 + log(x2) + exp(x1) + center(x1) + scale(x2) + poly(x1, 2)",
    "~ np.log(x2) + np.log1p(x2) + np.sqrt(x2) + np.abs(x1) + np.exp(x1)",
    "~ x1:x2 + x1*x2 - 1 + I(x1 / 2 - 3e-2 * x2)",
    "~ `odd name` + poly(x1, degree=2)",
    "~ 1",
]
UNSAFE = [
    ("~ x1 + {__import__('os').getcwd()}", "'{' is not allowed"),
    ("~ __import__('os')", "the function '__import__'"),
    ("~ np.array(x1)", "the function 'np.array'"),
    ("~ eval('1')", "the function 'eval'"),
    ("~ x1.__class__", "the name 'x1.__class__'"),
    ("~ os.system", "the name 'os.system'"),
    ("~ x1[0]", "'[' is not allowed"),
    ("~ I(x1)(2)", "calling the result of a call"),
    ("~ `x1`(2)", "calling '`x1`'"),
    ("~ lambda", "the name 'lambda'"),
    ("y ~ a=1", "'=' outside a keyword argument"),
    ("~ x1; x2", "';' is not allowed"),
    ("~ x1 @ x2", "'@' is not allowed"),
]


@pytest.mark.parametrize("text", SAFE)
def test_documented_formulas_are_accepted(text: str) -> None:
    assert check_formula_text(text) == text


@pytest.mark.parametrize(("text", "fragment"), UNSAFE)
def test_code_in_a_formula_is_refused(text: str, fragment: str) -> None:
    with pytest.raises(FormulaError, match="allowed") as info:
        check_formula_text(text)
    assert fragment in str(info.value)
    assert "column names" in str(info.value)  # says what is allowed


def test_columns_are_checked_when_known() -> None:
    assert check_formula_text("~ x1 + log(x2)", columns=["x1", "x2"])
    with pytest.raises(FormulaError, match="'x3', which is not a column"):
        check_formula_text("~ x1 + x3", columns=["x1", "x2"])


def test_safe_formulas_evaluate_as_before() -> None:
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"x1": rng.normal(size=20), "x2": rng.uniform(1, 2, size=20)})
    for text in SAFE[1:4]:
        arr, names = covariate_matrix(df, check_formula_text(text))
        assert arr is not None and np.isfinite(arr).all() and len(names) == arr.shape[1]


def test_library_calls_keep_formulaic_power_and_say_so() -> None:
    sim = cm.simulate_panel(n_never=20, units_per_cohort=5, seed=1)
    df = sim.frame.assign(x=lambda d: d["unit"] % 3)
    # A Python block is not allowed on the command line but works from Python.
    res = cm.att_gt(df, "y", "step", "unit", "cohort", xformla="~ {x * 2}", bstrap=False)
    assert np.isfinite(res.tidy()["estimate"]).all()
    assert "evaluates every term as a Python expression" in (formula_module.__doc__ or "")
    assert "check_formula_text" in (cm.att_gt.__doc__ or "")
    assert {"C", "I"} <= SAFE_FUNCTIONS
