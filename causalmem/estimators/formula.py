"""fixest-style formulas: ``"y ~ x1 + x2 | fe1 + fe2"``.

The right-hand side before ``|`` is a Wilkinson formula evaluated by formulaic (interactions,
transformations and categorical expansion work as in formulaic); the part after ``|`` lists the
fixed-effect columns, absorbed by the within transformation. No intercept is estimated when
fixed effects are present (they absorb it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from causalmem.errors import FormulaError


@dataclass(frozen=True, slots=True)
class ParsedFormula:
    """The pieces of a fixest formula."""

    outcome: str
    rhs: str
    fixed_effects: tuple[str, ...]


def parse_formula(formula: str) -> ParsedFormula:
    """Split ``"y ~ x1 + x2 | fe1 + fe2"`` into outcome, right-hand side and fixed effects.

    Examples
    --------
    >>> parse_formula("y ~ treated + x | unit + step")
    ParsedFormula(outcome='y', rhs='treated + x', fixed_effects=('unit', 'step'))
    """
    if not isinstance(formula, str) or "~" not in formula:
        raise FormulaError(
            f"formula={formula!r} must look like 'y ~ x1 + x2 | unit + step' (fixest syntax)."
        )
    lhs, rest = formula.split("~", 1)
    parts = rest.split("|")
    if len(parts) > 2:
        raise FormulaError(
            f"formula={formula!r} has {len(parts) - 1} '|' separators; use one: "
            "'y ~ x | fe1 + fe2' (IV parts are not supported)."
        )
    outcome = lhs.strip()
    if not re.fullmatch(r"[A-Za-z_.][\w.]*", outcome):
        raise FormulaError(f"formula={formula!r}: the outcome must be one column name.")
    rhs = parts[0].strip()
    fes: tuple[str, ...] = ()
    if len(parts) == 2:
        fes = tuple(f.strip() for f in parts[1].split("+") if f.strip())
        if not fes or any(f == "0" for f in fes):
            raise FormulaError(f"formula={formula!r}: list fixed-effect columns after '|'.")
    return ParsedFormula(outcome=outcome, rhs=rhs, fixed_effects=fes)


def design(
    parsed: ParsedFormula, data: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], list[np.ndarray]]:
    """Evaluate outcome, regressors (no intercept) and fixed-effect codes on ``data``.

    Returns ``(y, X, names, fe_codes)``; raises :class:`~causalmem.errors.FormulaError` for
    unknown columns, missing values or non-numeric outcomes.
    """
    import formulaic

    cols = set(map(str, data.columns))
    unknown = [c for c in (parsed.outcome, *parsed.fixed_effects) if c not in cols]
    if unknown:
        raise FormulaError(
            f"Unknown column(s) {unknown} in the formula; available: {sorted(cols)}."
        )
    try:
        mm = formulaic.model_matrix(f"0 + {parsed.rhs}", data, na_action="raise")
    except Exception as exc:  # formulaic raises several types
        raise FormulaError(
            f"Could not evaluate the right-hand side {parsed.rhs!r}: {exc}. "
            f"Available columns: {sorted(cols)}."
        ) from exc
    x = np.asarray(mm, dtype=np.float64)
    names = tuple(str(c) for c in mm.columns)
    ycol = data[parsed.outcome]
    if not pd.api.types.is_numeric_dtype(ycol) or pd.api.types.is_bool_dtype(ycol):
        raise FormulaError(f"Outcome {parsed.outcome!r} must be numeric, got {ycol.dtype}.")
    y = ycol.to_numpy(dtype=np.float64)
    bad = ~np.isfinite(y) | ~np.isfinite(x).all(axis=1)
    if bad.any():
        raise FormulaError(
            f"{int(bad.sum())} rows have missing or non-finite outcome/regressor values; "
            "drop or impute them first (nothing is dropped silently)."
        )
    fe_codes = []
    for fe in parsed.fixed_effects:
        s = data[fe]
        if s.isna().any():
            raise FormulaError(f"Fixed-effect column {fe!r} has missing values.")
        fe_codes.append(pd.factorize(s, sort=True)[0].astype(np.int64))
    return y, x, names, fe_codes
