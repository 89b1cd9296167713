"""fixest-style formulas: ``"y ~ x1 + x2 | fe1 + fe2"``.

The right-hand side before ``|`` is a Wilkinson formula evaluated by formulaic (interactions,
transformations and categorical expansion work as in formulaic); the part after ``|`` lists the
fixed-effect columns, absorbed by the within transformation. No intercept is estimated when
fixed effects are present (they absorb it).

Security: formulaic evaluates every term as a Python expression (``{...}`` blocks, function
calls, attribute access), so a formula can run arbitrary code. Library calls from Python keep
formulaic's full power: pass only formulas you wrote or trust. Every path that reads a formula
from a file or the command line first calls :func:`check_formula_text`, which accepts only
column names, numbers, the operators ``~ + - * / : ** ^ | ( ) ,``, ``C()``, ``I()`` and the
documented transforms :data:`SAFE_FUNCTIONS`.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from causalmem.errors import FormulaError

__all__ = ["SAFE_FUNCTIONS", "ParsedFormula", "check_formula_text", "design", "parse_formula"]

SAFE_FUNCTIONS: frozenset[str] = frozenset(
    {"C", "I", "log", "exp", "center", "scale", "poly",
     "np.log", "np.log1p", "np.exp", "np.sqrt", "np.abs"}
)  # fmt: skip
"""Functions a formula from a file or the command line may call (see :func:`check_formula_text`)."""

_TOKEN = re.compile(
    r"\s+|(?P<quoted>`[^`]*`)|(?P<number>\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)"
    r"|(?P<op>\*\*|[~+\-*/:^|(),=])"
)


def _refuse(formula: str, what: str, where: int) -> FormulaError:
    return FormulaError(
        f"{what} at character {where} of the formula {formula!r}: formulas read from a file or "
        "the command line may use only column names, numbers, ~ + - * / : ** ^ | ( ) and "
        f"the functions {sorted(SAFE_FUNCTIONS)}. Back-quote unusual column names (`my col`); "
        "for anything else call the estimator from Python."
    )


def check_formula_text(formula: str, columns: Sequence[str] | None = None) -> str:
    """Refuse a formula that could run Python code; return it unchanged when it is safe.

    formulaic evaluates formula terms as Python. A formula taken from a file or the command
    line must consist only of column names (bare identifiers or back-quoted), numbers, the
    operators ``~ + - * / : ** ^ | ( ) , =``, and calls of :data:`SAFE_FUNCTIONS` (``C()``,
    ``I()`` with arithmetic inside, ``log``, ``exp``, ``center``, ``scale``, ``poly`` and
    ``np.log``/``np.log1p``/``np.exp``/``np.sqrt``/``np.abs``). Library calls from Python are
    not checked.

    Parameters
    ----------
    formula
        The formula text, e.g. ``"~ x1 + log(x2)"`` or ``"y ~ treated | unit + step"``.
    columns
        When given, every bare name that is not a function or keyword argument must be one of
        these columns.

    Returns
    -------
    str
        ``formula``.

    Raises
    ------
    FormulaError
        Naming the first offending piece, its position and what is allowed.

    Examples
    --------
    >>> check_formula_text("y ~ x + C(g) + I(x ** 2) | unit")
    'y ~ x + C(g) + I(x ** 2) | unit'
    >>> check_formula_text("~ x + {__import__('os').getcwd()}")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    causalmem.errors.FormulaError: '{' is not allowed at character 6 of the formula ...
    """
    if not isinstance(formula, str):
        raise FormulaError(f"formula must be a string, got {type(formula).__name__}.")
    tokens: list[tuple[str, str, int]] = []
    pos = 0
    while pos < len(formula):  # tokens up to the first character that is not allowed
        m = _TOKEN.match(formula, pos)
        if m is None or m.end() == pos:
            break
        if m.lastgroup is not None:
            tokens.append((m.lastgroup, m.group(), pos))
        pos = m.end()
    _check_tokens(formula, tokens, columns)
    if pos < len(formula):
        raise _refuse(formula, f"{formula[pos]!r} is not allowed", pos)
    return formula


def _check_tokens(
    formula: str, tokens: list[tuple[str, str, int]], columns: Sequence[str] | None
) -> None:
    """Refuse calls of anything but :data:`SAFE_FUNCTIONS`, stray ``=`` and unsafe names."""
    known = None if columns is None else set(map(str, columns))
    for i, (kind, text, at) in enumerate(tokens):
        prev = tokens[i - 1] if i else ("op", "~", 0)
        nxt = tokens[i + 1][1] if i + 1 < len(tokens) else ""
        if text == "(" and prev[0] != "op" and prev[1] not in SAFE_FUNCTIONS:
            raise _refuse(formula, f"calling {prev[1]!r} is not allowed", prev[2])
        if text == "(" and prev[1] == ")":
            raise _refuse(formula, "calling the result of a call is not allowed", at)
        if text == "=" and not (prev[0] == "name" and i > 1 and tokens[i - 2][1] in "(,"):
            raise _refuse(formula, "'=' outside a keyword argument is not allowed", at)
        if kind == "name":
            _check_name(formula, text, at, nxt, prev[1], known)


def _check_name(
    formula: str, text: str, at: int, nxt: str, prev: str, known: set[str] | None
) -> None:
    """Refuse a bare name that is a keyword, a dunder, an attribute or (given) not a column."""
    if nxt == "(":
        if text not in SAFE_FUNCTIONS:
            raise _refuse(formula, f"the function {text!r} is not allowed", at)
        return
    if nxt == "=" and prev in "(,":
        return  # a keyword argument of an allowed function, e.g. poly(x, degree=2)
    if "." in text or "__" in text or keyword.iskeyword(text):
        raise _refuse(formula, f"the name {text!r} is not allowed", at)
    if known is not None and text not in known:
        raise FormulaError(
            f"The formula {formula!r} names {text!r}, which is not a column; "
            f"available: {sorted(known)}."
        )


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
    unknown columns, missing values or non-numeric outcomes. The right-hand side is evaluated
    by formulaic as Python (full power, no check): run :func:`check_formula_text` first on a
    formula you did not write.
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
