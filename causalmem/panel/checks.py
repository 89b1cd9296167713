"""Validation of a long (unit × step) panel: the single source of truth for its checks.

:func:`validate_long` checks a long-format frame against the column roles used by
Callaway–Sant'Anna estimators (R ``did`` vocabulary: ``idname``, ``tname``, ``gname``,
``yname``, ``weightsname``, ``clustervars``) and returns a :class:`CheckedPanel` holding a
new, sorted, minimal frame. Every failure raises a specific exception from
:mod:`causalmem.errors` whose message names the column, shows up to five offending values,
counts them and says how to fix the input. All checks are vectorised over integer codes of
the (unit, step) keys; no Python loop runs over units or rows.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from causalmem._types import as_name_tuple
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
from causalmem.panel.schema import _show, normalise_cohort

__all__ = ["CheckedPanel", "validate_long"]

_NEVER = np.int64(-1)  # cohort sentinel on internal int64 arrays (cohorts are non-negative)


@dataclass(frozen=True, slots=True)
class CheckedPanel:
    """A validated long panel.

    Attributes
    ----------
    frame
        A new frame with only the named columns, in the order unit, step, cohort, outcomes,
        weights, clusters, covariates; sorted by (unit, step) with a ``RangeIndex``. The step
        is ``int64``, the cohort ``Int64`` (``<NA>`` = never treated), outcomes, weights and
        covariates ``float64``; unit and cluster columns keep their dtype.
    idname, tname, gname
        Unit, step and cohort column names.
    ynames
        Outcome column names.
    weightsname
        Weight column name or ``None``.
    clustervars
        Cluster columns other than ``idname``.
    xnames
        Covariate column names.
    steps
        Sorted unique steps (``int64``).
    balanced
        Whether every unit is observed at every step.
    dropped_always_treated
        Ids of the always-treated units that were dropped (empty unless
        ``drop_always_treated=True``).
    """

    frame: pd.DataFrame
    idname: str
    tname: str
    gname: str
    ynames: tuple[str, ...]
    weightsname: str | None
    clustervars: tuple[str, ...]
    xnames: tuple[str, ...]
    steps: npt.NDArray[np.int64]
    balanced: bool
    dropped_always_treated: np.ndarray


def _non_numeric_reason(s: pd.Series) -> str | None:
    """Return why ``s`` is not a usable real-valued column, or ``None`` if it is."""
    dtype = s.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "boolean"
    if isinstance(dtype, pd.CategoricalDtype):
        return "categorical"
    if not pd.api.types.is_numeric_dtype(dtype) or dtype.kind == "c":
        return f"non-numeric (dtype {dtype})"
    return None


def _as_float(s: pd.Series) -> npt.NDArray[np.float64]:
    return s.to_numpy(dtype=np.float64, na_value=np.nan)


def _key_examples(units: np.ndarray, steps: np.ndarray, mask: np.ndarray) -> str:
    idx = np.flatnonzero(mask)
    pairs = [(_py(u), int(t)) for u, t in zip(units[idx[:5]], steps[idx[:5]], strict=True)]
    more = ", ..." if idx.size > 5 else ""
    head = ", ".join(f"(unit={u!r}, step={t})" for u, t in pairs)
    return f"[{head}{more}] ({idx.size} rows)"


def _varies_within(codes: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Return the unit codes whose ``values`` vary; rows must be sorted by unit code."""
    same_unit = codes[1:] == codes[:-1]
    changed = values[1:] != values[:-1]
    return np.unique(codes[1:][same_unit & changed])


# Error builders shared with the per-batch checks of causalmem.estimators.streaming (array-based,
# so the in-memory and streamed validations give the same messages).
OUTCOME_NAN_FIX = (
    "If those observations are truly missing, drop those rows and pass "
    "allow_unbalanced_panel=True; otherwise recompute them."
)
WEIGHTS_NAN_FIX = "Every unit needs a weight; fill them or drop those units."
_STEP_FIX = "Steps must be non-negative integers (training steps of the checkpoints)."


def _missing_columns_error(missing: list[str], available: list[str]) -> MissingColumnError:
    shown = ", ".join(repr(c) for c in available[:30])
    more = f", ... ({len(available)} columns)" if len(available) > 30 else ""
    return MissingColumnError(
        f"Columns {missing} are not in the frame ({len(missing)} missing). "
        f"Available columns: [{shown}{more}]. Check the spelling or rename the columns."
    )


def _unit_na_error(idname: str, rows: np.ndarray) -> UnitError:
    return UnitError(
        f"Unit column {idname!r} has missing values in {rows.size} rows (row positions "
        f"{_show(rows)}). Every row needs a unit id; drop or fill those rows."
    )


def _unit_mixed_error(idname: str, kind: str) -> UnitError:
    return UnitError(
        f"Unit column {idname!r} mixes id types (inferred {kind!r}), e.g. 1 and '1' would "
        f"be different units. Use one id type, e.g. df[{idname!r}].astype(str)."
    )


def _step_non_numeric_error(tname: str, reason: str) -> StepError:
    return StepError(
        f"Step column {tname!r} is {reason}. {_STEP_FIX} Convert it, e.g. "
        f"df[{tname!r}] = pd.to_numeric(df[{tname!r}]).astype('int64')."
    )


def _step_ints(
    vals: np.ndarray, nulls: np.ndarray, units: np.ndarray, tname: str
) -> npt.NDArray[np.int64]:
    """Check numeric step values (``nulls`` marks missing rows); return them as int64."""
    fix = _STEP_FIX
    if vals.dtype.kind == "f":
        nan = nulls | np.isnan(vals)
        if nan.any():
            raise StepError(
                f"Step column {tname!r} has missing values (NaN) in "
                f"{int(nan.sum())} rows, e.g. for units "
                f"{_show(np.unique(units[nan]))}. {fix} Drop or fill those rows."
            )
        infinite = np.isinf(vals)
        if infinite.any():
            raise StepError(
                f"Step column {tname!r} has infinite values in {int(infinite.sum())} rows, "
                f"e.g. for units {_show(np.unique(units[infinite]))}. {fix}"
            )
        fractional = vals != np.floor(vals)
        if fractional.any():
            raise StepError(
                f"Step column {tname!r} has non-integer values "
                f"{_show(np.unique(vals[fractional]))} in {int(fractional.sum())} rows. {fix}"
            )
    elif nulls.any():
        raise StepError(
            f"Step column {tname!r} has missing values in rows for units "
            f"{_show(np.unique(units[nulls]), int(nulls.sum()))}. {fix} "
            "Drop or fill those rows."
        )
    ints = vals.astype(np.int64, copy=False)
    negative = ints < 0
    if negative.any():
        raise StepError(
            f"Step column {tname!r} has negative values {_show(np.unique(ints[negative]))} "
            f"in {int(negative.sum())} rows. {fix}"
        )
    return ints


def _duplicate_keys_error(
    n_keys: int,
    n_rows: int,
    examples: Iterable[tuple[Any, int]],
    idname: str,
    tname: str,
) -> DuplicateKeyError:
    """``examples``: (unit, step) of the first (up to 5) repeated keys."""
    ex = ", ".join(f"(unit={_py(u)!r}, step={int(t)})" for u, t in examples)
    more = ", ..." if n_keys > 5 else ""
    return DuplicateKeyError(
        f"{n_keys} (unit, step) keys of ({idname!r}, {tname!r}) occur more than "
        f"once ({n_rows} rows), e.g. [{ex}{more}]. Keep one row per unit and step, "
        f"e.g. df.drop_duplicates([{idname!r}, {tname!r}]) or aggregate them."
    )


def _cohort_varies_error(gname: str, ids: np.ndarray) -> CohortError:
    return CohortError(
        f"Cohort column {gname!r} varies within units {_show(ids)}; a "
        "unit's treatment step is fixed (absorbing treatment). Give each unit one cohort."
    )


def _always_treated_error(
    gname: str, first_step: int, cohorts: np.ndarray, ids: np.ndarray
) -> AlwaysTreatedError:
    return AlwaysTreatedError(
        f"Cohort column {gname!r}: {ids.size} units are treated at or before the first "
        f"observed step {first_step} (cohorts {_show(np.unique(cohorts))}), so "
        f"they have no pre-period: units {_show(ids)}. If 0 is meant as never-treated "
        "(R did's convention), recode it to NA, e.g. "
        f"df[{gname!r}] = df[{gname!r}].replace(0, pd.NA); otherwise pass "
        "drop_always_treated=True to drop those units (R did drops them with a warning)."
    )


def _off_grid_error(gname: str, tname: str, values: np.ndarray, n_units: int) -> CohortError:
    return CohortError(
        f"Cohort column {gname!r} has values {_show(values)} that are not observed "
        f"steps of {tname!r} ({n_units} units); R did requires this too. Map each cohort "
        "to the first observed step at which the unit is treated. Units treated after "
        "the last step: drop them, or recode them to NA only if they may serve as "
        "never-treated controls (not for data re-seen in a second epoch)."
    )


def _unbalanced_error(
    idname: str,
    tname: str,
    n_short: int,
    n_final: int,
    n_missing: int,
    examples: Iterable[tuple[Any, int]],
) -> UnbalancedPanelError:
    """``examples``: (unit, missing steps) of the first (up to 5) short units."""
    ex = ", ".join(f"{_py(u)!r}: {int(k)} missing" for u, k in examples)
    more = ", ..." if n_short > 5 else ""
    return UnbalancedPanelError(
        f"Unit column {idname!r}: {n_short} units are not observed at all "
        f"{n_final} steps of {tname!r} ({n_missing} (unit, step) rows "
        f"missing), e.g. {{{ex}{more}}}. Pass allow_unbalanced_panel=True or complete the "
        "panel (one row per unit and step)."
    )


def _non_numeric_error(error: type[Exception], what: str, name: str, reason: str) -> Exception:
    return error(
        f"{what} column {name!r} is {reason}; it must be numeric (int or float). "
        f"Convert it, e.g. pd.to_numeric(df[{name!r}])."
    )


def _check_weight_values(
    w: np.ndarray,
    weightsname: str,
    units: np.ndarray,
    steps: np.ndarray,
    ucodes: np.ndarray,
    unit_ids: np.ndarray,
    *,
    check_positive: bool,
) -> None:
    """Finite, >= 0, (optionally) not all zero and constant within units (rows sorted by unit)."""
    _check_finite(w, weightsname, WeightsError, "Weights", units, steps, WEIGHTS_NAN_FIX)
    negative = w < 0
    if negative.any():
        raise WeightsError(
            f"Weights column {weightsname!r} has negative values at "
            f"{_key_examples(units, steps, negative)}. Sampling weights must be >= 0."
        )
    if check_positive and not (w > 0).any():
        raise WeightsError(
            f"Weights column {weightsname!r} is zero in all {w.size} rows; at least one "
            "unit needs a positive weight."
        )
    varying = _varies_within(ucodes, w)
    if varying.size:
        raise WeightsError(
            f"Weights column {weightsname!r} varies within {varying.size} units "
            f"{_show(unit_ids[varying])}; panel weights must be time-invariant. Use one "
            "weight per unit (e.g. its weight at the first step)."
        )


def _check_names(
    data: pd.DataFrame,
    idname: str,
    tname: str,
    gname: str,
    ynames: tuple[str, ...],
    weightsname: str | None,
    clustervars: tuple[str, ...],
    xnames: tuple[str, ...],
) -> None:
    for role, name in (("idname", idname), ("tname", tname), ("gname", gname)):
        if not isinstance(name, str):
            raise TypeError(f"{role} must be a column name (str); got {name!r}.")
    if weightsname is not None and not isinstance(weightsname, str):
        raise TypeError(f"weightsname must be a column name (str) or None; got {weightsname!r}.")
    if not ynames:
        raise PanelSchemaError(
            "No outcome column given: pass ynames='col' or ynames=('col1', 'col2')."
        )
    roles: list[tuple[str, str]] = [("idname", idname), ("tname", tname), ("gname", gname)]
    roles += [("ynames", y) for y in ynames]
    if weightsname is not None:
        roles.append(("weightsname", weightsname))
    roles += [("clustervars", c) for c in clustervars if c != idname]
    roles += [("xnames", x) for x in xnames]
    seen: dict[str, str] = {}
    clashes: list[str] = []
    for role, name in roles:
        if name in seen:
            clashes.append(f"{name!r} is used as {seen[name]} and as {role}")
        else:
            seen[name] = role
    if clashes:
        raise PanelSchemaError(
            "The same column is used in two roles: "
            + "; ".join(clashes)
            + ". Give each role its own column (copy the column under a new name if needed)."
        )
    missing = [name for name in seen if name not in data.columns]
    if missing:
        raise _missing_columns_error(missing, [str(c) for c in data.columns])
    dup = data.columns[data.columns.duplicated()]
    dup_used = sorted({str(c) for c in dup if c in seen})
    if dup_used:
        raise PanelSchemaError(
            f"Columns {dup_used} appear more than once in the frame; drop or rename the duplicates."
        )


def _step_values(s: pd.Series, tname: str, units: np.ndarray) -> npt.NDArray[np.int64]:
    reason = _non_numeric_reason(s)
    if reason is not None:
        raise _step_non_numeric_error(tname, reason)
    if pd.api.types.is_integer_dtype(s.dtype):
        missing = s.isna().to_numpy()
        if missing.any():
            return _step_ints(np.zeros(missing.size, dtype=np.int64), missing, units, tname)
        return _step_ints(s.to_numpy(dtype=np.int64), missing, units, tname)
    values = _as_float(s)
    return _step_ints(values, np.zeros(values.size, dtype=bool), units, tname)


def _py(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def _real_values(
    s: pd.Series,
    name: str,
    error: type[Exception],
    what: str,
    rows: Any,
) -> npt.NDArray[np.float64]:
    """Check the dtype of ``s`` and return its float64 values in final row order."""
    reason = _non_numeric_reason(s)
    if reason is not None:
        raise _non_numeric_error(error, what, name, reason)
    return rows(_as_float(s))


def _check_finite(
    values: np.ndarray,
    name: str,
    error: type[Exception],
    what: str,
    units: np.ndarray,
    steps: np.ndarray,
    nan_fix: str,
) -> None:
    nan = np.isnan(values)
    if nan.any():
        raise error(
            f"{what} column {name!r} has missing values (NaN/NA) at "
            f"{_key_examples(units, steps, nan)}. {nan_fix}"
        )
    inf = np.isinf(values)
    if inf.any():
        raise error(
            f"{what} column {name!r} has infinite values at {_key_examples(units, steps, inf)}. "
            "Remove or recompute them; estimators need finite values."
        )


@dataclass(frozen=True, slots=True)
class _Units:
    """The unit column factorised: ``ids[codes]`` is the unit of each input row."""

    codes: np.ndarray
    ids: np.ndarray


@dataclass(frozen=True, slots=True)
class _Rows:
    """Maps per-row input arrays to output rows: sorted by (unit, step), then ``keep``-ed."""

    order: np.ndarray | None
    keep: np.ndarray | None = None

    def sort(self, a: np.ndarray) -> np.ndarray:
        """Return ``a`` in (unit, step) order (all rows)."""
        return a if self.order is None else a[self.order]

    def __call__(self, a: np.ndarray) -> np.ndarray:
        """Return ``a`` in output row order (sorted, always-treated rows dropped)."""
        a = self.sort(a)
        return a if self.keep is None else a[self.keep]

    def column(self, s: pd.Series) -> Any:
        """Return the values of ``s`` (keeping its dtype) in output row order."""
        arr = s.array
        if self.order is not None:
            arr = arr.take(self.order)
        if self.keep is not None:
            arr = arr[self.keep]
        return arr


@dataclass(frozen=True, slots=True)
class _Layout:
    """Per-row arrays in output row order, with the unit ids and the observed steps."""

    rows: _Rows
    unit_ids: np.ndarray
    ucodes: np.ndarray
    units: np.ndarray
    steps: npt.NDArray[np.int64]
    cohorts: npt.NDArray[np.int64]
    step_grid: npt.NDArray[np.int64]


def _check_units(unit_s: pd.Series, idname: str) -> _Units:
    """Check the unit column (no missing values, one id type) and factorise it, sorted."""
    unit_na = unit_s.isna().to_numpy()
    if unit_na.any():
        raise _unit_na_error(idname, np.flatnonzero(unit_na))
    kind = pd.api.types.infer_dtype(unit_s, skipna=True)
    if kind in ("mixed", "mixed-integer"):
        raise _unit_mixed_error(idname, kind)
    if isinstance(unit_s.dtype, np.dtype) and unit_s.dtype.kind in "iu":
        vals = unit_s.to_numpy()
        change = vals[1:] != vals[:-1]
        if vals.size and bool(np.all(vals[1:] >= vals[:-1])):  # sorted: codes from runs
            codes = np.zeros(vals.size, dtype=np.intp)
            np.cumsum(change, out=codes[1:])
            return _Units(codes=codes, ids=vals[np.r_[True, change]])
    try:
        ucodes, uniques = pd.factorize(unit_s, sort=True)
    except TypeError as exc:  # pragma: no cover - defensive, unorderable ids
        raise UnitError(
            f"Unit column {idname!r} holds ids that cannot be ordered ({exc}). Use one id "
            f"type, e.g. df[{idname!r}].astype(str)."
        ) from exc
    return _Units(codes=ucodes, ids=np.asarray(uniques))


def _check_steps(
    s: pd.Series, tname: str, units_raw: np.ndarray
) -> tuple[np.ndarray, npt.NDArray[np.int64]]:
    """Check the step column; return per-row step codes and the sorted unique steps (>= 2)."""
    steps_raw = _step_values(s, tname, units_raw)
    scodes, step_uniques = pd.factorize(steps_raw, sort=True)
    step_uniques = np.asarray(step_uniques, dtype=np.int64)
    n_steps = step_uniques.size
    if n_steps < 2:
        raise StepError(
            f"Step column {tname!r} has {n_steps} distinct value(s) "
            f"{_show(step_uniques)}; difference-in-differences needs at least 2 steps."
        )
    return scodes, step_uniques


def _sort_order(key: np.ndarray, n_cells: int) -> tuple[np.ndarray | None, np.ndarray, int]:
    """Return the order sorting ``key`` (``None`` if sorted), the repeated keys and their rows."""
    order: np.ndarray | None = None
    dup_keys = np.empty(0, dtype=np.int64)
    n_dup_rows = 0
    if key.size > 1 and bool(np.all(key[1:] > key[:-1])):
        pass  # already sorted, no duplicates
    elif n_cells <= 4 * key.size + 4096:  # dense grid: O(rows) counting sort
        counts = np.bincount(key, minlength=n_cells)
        dup_keys = np.flatnonzero(counts > 1)
        n_dup_rows = int(counts[dup_keys].sum())
        if not dup_keys.size:
            slot = np.empty(n_cells, dtype=np.int64)
            slot[key] = np.arange(key.size, dtype=np.int64)
            order = slot[counts > 0]
    else:
        order = np.argsort(key, kind="stable")
        key_sorted = key[order]
        repeated = key_sorted[1:] == key_sorted[:-1]
        if repeated.any():
            dup_keys = np.unique(key_sorted[1:][repeated])
            n_dup_rows = int(np.isin(key_sorted, dup_keys).sum())
    return order, dup_keys, n_dup_rows


def _check_keys(
    units: _Units,
    scodes: np.ndarray,
    step_uniques: npt.NDArray[np.int64],
    idname: str,
    tname: str,
) -> np.ndarray | None:
    """Check that (unit, step) keys are unique; return the order sorting rows by them."""
    n_steps = step_uniques.size
    key = units.codes.astype(np.int64) * n_steps + scodes
    order, dup_keys, n_dup_rows = _sort_order(key, units.ids.size * n_steps)
    if dup_keys.size:
        examples = ((units.ids[k // n_steps], step_uniques[k % n_steps]) for k in dup_keys[:5])
        raise _duplicate_keys_error(dup_keys.size, n_dup_rows, examples, idname, tname)
    return order


def _check_cohort(
    s: pd.Series, gname: str, uc: np.ndarray, unit_ids: np.ndarray, sort: _Rows
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Normalise the cohort and check it is constant within units.

    ``uc`` are the sorted unit codes. Returns the sorted per-row cohorts and one cohort per
    unit code (``_NEVER`` = never treated).
    """
    starts = np.flatnonzero(np.r_[True, uc[1:] != uc[:-1]])
    fast = _unit_cohort_fast(s, gname, uc, starts, sort)
    if fast is not None:
        return fast
    cohort = normalise_cohort(s, gname)
    g = sort.sort(cohort.to_numpy(dtype=np.int64, na_value=_NEVER))
    bad_units = _varies_within(uc, g)
    if bad_units.size:
        raise _cohort_varies_error(gname, unit_ids[bad_units])
    return g, g[starts]


def _unit_cohort_fast(
    s: pd.Series, gname: str, uc: np.ndarray, starts: np.ndarray, sort: _Rows
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]] | None:
    """Normalise the cohort once per unit when its raw values are constant within units.

    Returns None (the row-wise path then runs and raises the exact message) when the column is
    not a plain numeric numpy column, varies within a unit, or a unit's value is invalid.
    """
    if not isinstance(s.dtype, np.dtype) or s.dtype.kind not in "iuf":
        return None
    raw = sort.sort(s.to_numpy())
    first = raw[starts]
    runs = np.diff(np.r_[starts, raw.size])
    rep = np.repeat(first, runs)
    same = raw == rep
    if raw.dtype.kind == "f":
        same |= np.isnan(raw) & np.isnan(rep)
    if not same.all():
        return None
    try:
        unit_g = normalise_cohort(pd.Series(first), gname)
    except CohortError:
        return None
    g_unit = unit_g.to_numpy(dtype=np.int64, na_value=_NEVER)
    return np.repeat(g_unit, runs), g_unit


def _check_always_treated(
    unit_g: npt.NDArray[np.int64],
    uc: np.ndarray,
    unit_ids: np.ndarray,
    first_step: int,
    gname: str,
    drop_always_treated: bool,
) -> tuple[npt.NDArray[np.bool_], np.ndarray | None]:
    """Raise on always-treated units, or drop them with a warning.

    Returns the always-treated mask per unit code and the mask of sorted rows to keep
    (``None`` when nothing is dropped).
    """
    always = (unit_g != _NEVER) & (unit_g <= first_step)
    if not always.any():
        return always, None
    ids = unit_ids[always]
    if not drop_always_treated:
        raise _always_treated_error(gname, first_step, unit_g[always], ids)
    warnings.warn(
        f"Dropped {ids.size} always-treated units (cohort <= first step {first_step} in "
        f"{gname!r}): {_show(ids)}.",
        CausalmemWarning,
        stacklevel=3,  # the caller of validate_long
    )
    keep = ~always[uc]
    if not keep.any():
        raise EmptyPanelError(
            f"Every unit is always treated (cohort <= first step {first_step}); nothing "
            "is left after dropping them."
        )
    return always, keep


def _check_cohort_grid(
    unit_g: npt.NDArray[np.int64],
    always: npt.NDArray[np.bool_],
    step_uniques: npt.NDArray[np.int64],
    gname: str,
    tname: str,
) -> None:
    """Check that every cohort of a (kept) treated unit is an observed step."""
    treated_g = np.unique(unit_g[(unit_g != _NEVER) & ~always])
    off_grid = treated_g[~np.isin(treated_g, step_uniques)]
    if off_grid.size:
        n_units = int(np.isin(unit_g, off_grid).sum())
        raise _off_grid_error(gname, tname, off_grid, n_units)


def _layout(
    rows: _Rows,
    units: _Units,
    scodes: np.ndarray,
    step_uniques: npt.NDArray[np.int64],
    g_sorted: npt.NDArray[np.int64],
    tname: str,
) -> _Layout:
    """Put the key arrays in output row order; check >= 2 steps remain after dropping units."""
    uc = rows(units.codes)
    sc = rows(scodes)
    g = g_sorted if rows.keep is None else g_sorted[rows.keep]
    step_grid = step_uniques
    if rows.keep is not None:
        present = np.bincount(sc, minlength=step_uniques.size) > 0
        step_grid = step_uniques[present]
        if step_grid.size < 2:
            raise StepError(
                f"After dropping always-treated units, step column {tname!r} has "
                f"{step_grid.size} distinct value(s); at least 2 are needed."
            )
    return _Layout(
        rows=rows,
        unit_ids=units.ids,
        ucodes=uc,
        units=units.ids[uc],
        steps=step_uniques[sc],
        cohorts=g,
        step_grid=step_grid,
    )


def _real_columns(
    data: pd.DataFrame,
    names: tuple[str, ...],
    error: type[Exception],
    what: str,
    layout: _Layout,
    nan_fix: str,
) -> dict[str, np.ndarray]:
    """Check numeric, finite columns; return their float64 values in output row order."""
    out: dict[str, np.ndarray] = {}
    for name in names:
        values = _real_values(data[name], name, error, what, layout.rows)
        _check_finite(values, name, error, what, layout.units, layout.steps, nan_fix)
        out[name] = values
    return out


def _check_outcomes(
    data: pd.DataFrame, ynames: tuple[str, ...], layout: _Layout
) -> dict[str, np.ndarray]:
    """Check the outcome columns (numeric, finite)."""
    return _real_columns(
        data,
        ynames,
        OutcomeError,
        "Outcome",
        layout,
        OUTCOME_NAN_FIX,
    )


def _check_balance(layout: _Layout, idname: str, tname: str, allow_unbalanced: bool) -> bool:
    """Return whether every unit is observed at every step; raise if not and not allowed."""
    unit_ids = layout.unit_ids
    n_final = layout.step_grid.size
    counts = np.bincount(layout.ucodes, minlength=unit_ids.size)
    n_missing = np.where(counts > 0, n_final - counts, 0)
    balanced = not bool(n_missing.any())
    if not balanced and not allow_unbalanced:
        short = np.flatnonzero(n_missing)
        examples = ((unit_ids[i], n_missing[i]) for i in short[:5])
        raise _unbalanced_error(idname, tname, short.size, n_final, int(n_missing.sum()), examples)
    return balanced


def _check_weights(s: pd.Series, weightsname: str, layout: _Layout) -> np.ndarray:
    """Check the weight column (finite, >= 0, not all zero, constant within units)."""
    w = _real_values(s, weightsname, WeightsError, "Weights", layout.rows)
    _check_weight_values(
        w,
        weightsname,
        layout.units,
        layout.steps,
        layout.ucodes,
        layout.unit_ids,
        check_positive=True,
    )
    return w


def _check_clusters(data: pd.DataFrame, clustervars: tuple[str, ...], layout: _Layout) -> None:
    """Check the cluster columns (no missing values, constant within units)."""
    for c in clustervars:
        codes = layout.rows(pd.factorize(data[c], use_na_sentinel=True)[0])
        na = codes < 0
        if na.any():
            raise ClusterError(
                f"Cluster column {c!r} has missing values at "
                f"{_key_examples(layout.units, layout.steps, na)}. Every unit needs a cluster; "
                "fill them or drop those units."
            )
        varying = _varies_within(layout.ucodes, codes)
        if varying.size:
            raise ClusterError(
                f"Cluster column {c!r} varies within {varying.size} units "
                f"{_show(layout.unit_ids[varying])}; clusters must be constant within a unit "
                "(units are nested in clusters)."
            )


def _check_covariates(
    data: pd.DataFrame, xnames: tuple[str, ...], layout: _Layout
) -> dict[str, np.ndarray]:
    """Check the covariate columns (numeric, finite)."""
    return _real_columns(
        data,
        xnames,
        CovariateError,
        "Covariate",
        layout,
        "Covariates must be observed; drop those units or impute the values.",
    )


def _assemble(
    data: pd.DataFrame,
    layout: _Layout,
    names: tuple[str, str, str],
    outcomes: dict[str, np.ndarray],
    weights: dict[str, np.ndarray],
    clustervars: tuple[str, ...],
    covariates: dict[str, np.ndarray],
) -> pd.DataFrame:
    """Build the output frame: unit, step, cohort, outcomes, weights, clusters, covariates."""
    idname, tname, gname = names
    g = layout.cohorts
    # Rows that were neither sorted nor filtered may still be views of the caller's columns:
    # copy those; every other array is new. The frame is then built without copying again or
    # consolidating columns into 2-D blocks (that consolidation cost more than all the checks).
    identity = layout.rows.order is None and layout.rows.keep is None

    def own(a: Any) -> Any:
        return a.copy() if identity else a

    out: dict[str, Any] = {idname: own(layout.rows.column(data[idname])), tname: layout.steps}
    out[gname] = pd.arrays.IntegerArray(np.where(g == _NEVER, 0, g), g == _NEVER)
    out.update({k: own(v) for k, v in outcomes.items()})
    out.update({k: own(v) for k, v in weights.items()})
    for c in clustervars:
        out[c] = own(layout.rows.column(data[c]))
    out.update({k: own(v) for k, v in covariates.items()})
    return pd.DataFrame(out, copy=False)


def validate_long(
    data: pd.DataFrame,
    *,
    idname: str,
    tname: str,
    gname: str,
    ynames: str | Iterable[str],
    weightsname: str | None = None,
    clustervars: str | Iterable[str] = (),
    xnames: str | Iterable[str] = (),
    allow_unbalanced_panel: bool = False,
    drop_always_treated: bool = False,
) -> CheckedPanel:
    """Validate a long (unit × step) panel and return a sorted, minimal copy.

    Parameters
    ----------
    data
        Long frame, one row per (unit, step). It is never modified.
    idname
        Unit identifier column; any hashable, sortable type (ints, strings); no missing values.
    tname
        Step column: non-negative integers (integer-valued floats are accepted).
    gname
        Cohort column: the first treated step, a value of ``tname``; never-treated units have
        NA/NaN/None/+inf (see :func:`~causalmem.panel.normalise_cohort`). Must be constant
        within a unit.
    ynames
        One or more numeric outcome columns; finite, no missing values.
    weightsname
        Optional sampling weight column: finite, non-negative, not all zero, constant within
        a unit.
    clustervars
        Optional cluster columns: no missing values, constant within a unit. ``idname`` may be
        listed and is skipped.
    xnames
        Optional numeric covariate columns; finite.
    allow_unbalanced_panel
        If False (default), every unit must be observed at every step.
    drop_always_treated
        If True, units treated at or before the first observed step are dropped with a
        :class:`~causalmem.errors.CausalmemWarning` (R ``did``'s behaviour); if False they
        raise :class:`~causalmem.errors.AlwaysTreatedError`.

    Returns
    -------
    CheckedPanel
        The validated panel; ``frame`` is a new frame sorted by (unit, step).

    Raises
    ------
    TypeError
        If ``data`` is not a DataFrame or a name is not a string.
    EmptyPanelError, MissingColumnError, PanelSchemaError, UnitError, StepError,
    DuplicateKeyError, CohortError, AlwaysTreatedError, OutcomeError, UnbalancedPanelError,
    WeightsError, ClusterError, CovariateError
        One per failed check; see :mod:`causalmem.errors`.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"unit": [1, 1, 2, 2], "step": [1, 2, 1, 2],
    ...                    "cohort": [2, 2, None, None], "y": [0.0, 1.0, 0.5, 0.4]})
    >>> checked = validate_long(df, idname="unit", tname="step", gname="cohort", ynames="y")
    >>> checked.frame["cohort"].tolist(), checked.steps.tolist(), checked.balanced
    ([2, 2, <NA>, <NA>], [1, 2], True)
    """
    if not isinstance(data, pd.DataFrame):
        raise TypeError(
            f"data must be a pandas DataFrame in long format; got {type(data).__name__}."
        )
    y_t = as_name_tuple("ynames", ynames)
    c_t = as_name_tuple("clustervars", clustervars)
    x_t = as_name_tuple("xnames", xnames)
    if len(data) == 0:
        raise EmptyPanelError(
            "The panel has no rows; pass a long frame with one row per (unit, step)."
        )
    _check_names(data, idname, tname, gname, y_t, weightsname, c_t, x_t)
    c_t = tuple(dict.fromkeys(c for c in c_t if c != idname))

    units = _check_units(data[idname], idname)
    scodes, step_uniques = _check_steps(data[tname], tname, units.ids[units.codes])
    order = _check_keys(units, scodes, step_uniques, idname, tname)
    uc = _Rows(order).sort(units.codes)
    g, unit_g = _check_cohort(data[gname], gname, uc, units.ids, _Rows(order))
    always, keep = _check_always_treated(
        unit_g, uc, units.ids, int(step_uniques[0]), gname, drop_always_treated
    )
    _check_cohort_grid(unit_g, always, step_uniques, gname, tname)

    # From here on all per-row arrays are sorted and restricted to kept rows.
    layout = _layout(_Rows(order, keep), units, scodes, step_uniques, g, tname)
    outcomes = _check_outcomes(data, y_t, layout)
    balanced = _check_balance(layout, idname, tname, allow_unbalanced_panel)
    weights: dict[str, np.ndarray] = {}
    if weightsname is not None:
        weights[weightsname] = _check_weights(data[weightsname], weightsname, layout)
    _check_clusters(data, c_t, layout)
    covariates = _check_covariates(data, x_t, layout)

    return CheckedPanel(
        frame=_assemble(data, layout, (idname, tname, gname), outcomes, weights, c_t, covariates),
        idname=idname,
        tname=tname,
        gname=gname,
        ynames=y_t,
        weightsname=weightsname,
        clustervars=c_t,
        xnames=x_t,
        steps=np.asarray(layout.step_grid, dtype=np.int64),
        balanced=balanced,
        dropped_always_treated=np.asarray(units.ids[always]),
    )
