"""From a validated long frame to the arrays the numerical engines need."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from causalmem._types import Float64Array, Int64Array
from causalmem.errors import CohortError, CovariateError, StepError
from causalmem.panel.checks import CheckedPanel
from causalmem.panel.panel import Panel


@dataclass(frozen=True, slots=True)
class WideData:
    """Unit-by-period arrays (units in first-appearance order of the sorted frame).

    y : float64[n, T] (NaN where unobserved); cohort : float64[n] (inf = never treated);
    w : float64[n]; cluster : int64[n] (codes, ``arange(n)`` when clustering on units only);
    x : float64[n, T, k] or None; units : object[n] ids; tlist : float64[T].
    """

    y: Float64Array
    cohort: Float64Array
    w: Float64Array
    cluster: Int64Array
    n_clusters: int
    x: Float64Array | None
    x_names: tuple[str, ...]
    units: np.ndarray
    tlist: Float64Array
    balanced: bool
    cluster_ids: np.ndarray | None = None


def covariate_matrix(
    frame: pd.DataFrame, xformla: str | None
) -> tuple[np.ndarray | None, tuple[str, ...]]:
    """Evaluate an R-style covariate formula ``"~ x1 + x2"`` with formulaic (intercept included).

    Returns the row-aligned design (float64[N, k]) and its column names, or ``(None, ())``
    when ``xformla`` is None or ``"~ 1"``. formulaic evaluates the terms as Python: check a
    formula you did not write with :func:`causalmem.estimators.formula.check_formula_text`.
    """
    if xformla is None:
        return None, ()
    import formulaic

    text = xformla.strip()
    if not text.startswith("~"):
        raise CovariateError(
            f"xformla={xformla!r} must be a one-sided formula such as '~ x1 + x2' "
            "(R did's xformla)."
        )
    try:
        mm = formulaic.model_matrix(text, frame, na_action="raise")
    except Exception as exc:  # formulaic raises several types for unknown names / bad syntax
        raise CovariateError(
            f"Could not evaluate xformla={xformla!r}: {exc}. Available columns: "
            f"{', '.join(map(str, frame.columns))}."
        ) from exc
    names = tuple(str(c) for c in mm.columns)
    arr = np.asarray(mm, dtype=np.float64)
    if arr.shape[1] <= 1 and names in (("Intercept",), ()):
        return None, ()
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).any(axis=1).sum())
        raise CovariateError(
            f"xformla={xformla!r} produced non-finite values in {bad} rows; "
            "remove or impute them before estimating."
        )
    return arr, names


def to_wide(checked: CheckedPanel, yname: str) -> WideData:
    """Pivot the checked long frame into unit x period arrays without a Python loop over units."""
    f = checked.frame
    tlist = checked.steps.astype(np.float64)
    t_len = tlist.size
    step_col = f[checked.tname].to_numpy(np.int64)
    regular = (
        checked.balanced
        and len(f) % t_len == 0
        and np.array_equal(
            step_col.reshape(-1, t_len), np.broadcast_to(checked.steps, (len(f) // t_len, t_len))
        )
    )
    if regular:
        # Balanced and sorted by (unit, step): rows reshape to units x steps, no scatter.
        n = len(f) // t_len
        first = np.arange(n, dtype=np.int64) * t_len
        units = f[checked.idname].array[first]
        uid = tpos = None
        y = np.array(f[yname].to_numpy(np.float64).reshape(n, t_len), copy=True)
    else:
        uid, units = pd.factorize(f[checked.idname], sort=False)
        tpos = np.searchsorted(checked.steps, step_col)
        n = units.size
        y = np.full((n, t_len), np.nan)
        y[uid, tpos] = f[yname].to_numpy(np.float64)
        first = np.zeros(n, dtype=np.int64)
        first[uid[::-1]] = np.arange(uid.size)[::-1]
    coh = f[checked.gname].to_numpy(dtype=np.float64, na_value=np.inf)[first]
    w = f[checked.weightsname].to_numpy(np.float64)[first] if checked.weightsname else np.ones(n)
    extra = [c for c in checked.clustervars if c != checked.idname]
    if extra:
        cl, uniq = pd.factorize(f[extra[0]].to_numpy()[first], sort=True)
        cluster, n_cl = cl.astype(np.int64), int(uniq.size)
        cluster_ids: np.ndarray | None = np.asarray(uniq)
    else:
        cluster, n_cl = np.arange(n, dtype=np.int64), n
        cluster_ids = None
    x = None
    xnames = tuple(c.removeprefix("x:") for c in checked.xnames)
    if checked.xnames:
        xv = f[list(checked.xnames)].to_numpy(np.float64)
        if uid is None or tpos is None:
            x = np.array(xv.reshape(n, t_len, len(checked.xnames)), copy=True)
        else:
            x = np.full((n, t_len, len(checked.xnames)), np.nan)
            x[uid, tpos] = xv
    return WideData(
        y=y,
        cohort=coh,
        w=w,
        cluster=cluster,
        n_clusters=n_cl,
        x=x,
        x_names=xnames,
        units=np.asarray(units),
        tlist=tlist,
        balanced=checked.balanced,
        cluster_ids=cluster_ids,
    )


def _formula_name(column: str) -> str:
    """Return a column name as a formulaic term (back-quoted unless a plain identifier)."""
    return column if column.isidentifier() else f"`{column}`"


def panel_arguments(panel: Panel, kw: Mapping[str, Any]) -> dict[str, Any]:
    """Fill ``att_gt``'s arguments from a :class:`~causalmem.panel.Panel`'s stored design.

    Every role the schema carries is used unless the caller passed that argument: outcome (the
    first), step, unit, cohort, ``weightsname``, ``clustervars`` and ``xformla`` (``"~ c1 + c2"``
    from the stored covariates; pass ``xformla="~ 1"`` to fit without them). A panel validated
    with ``allow_unbalanced_panel=True`` is fitted as such. ``data`` becomes the panel's frame.
    """
    sch = panel.schema
    stored = {
        "yname": sch.outcomes[0],
        "tname": sch.step,
        "idname": sch.unit,
        "gname": sch.cohort,
        "weightsname": sch.weights,
        "clustervars": tuple(sch.clusters) or None,
        "xformla": "~ " + " + ".join(map(_formula_name, sch.covariates))
        if sch.covariates
        else None,
    }
    out = {**kw, **{k: v for k, v in stored.items() if kw.get(k) is None}}
    validation = panel.meta.get("validation", {})
    if isinstance(validation, Mapping) and validation.get("allow_unbalanced_panel"):
        out["allow_unbalanced_panel"] = True
    out["data"] = panel.frame
    return out


def numeric_column(data: pd.DataFrame, col: str, role: str, error: type[Exception]) -> Float64Array:
    """Float64 values of a numeric, non-boolean column (NA as NaN); ``error`` otherwise."""
    s = data[col]
    if not (pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)):
        raise error(f"{role} column {col!r} must be numeric, got dtype {s.dtype}.")
    return np.asarray(s.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)


def step_and_cohort(
    data: pd.DataFrame, tname: str, gname: str
) -> tuple[Float64Array, Float64Array]:
    """Row steps (finite whole numbers) and cohorts (NA as ``inf``) of a long frame."""
    step = numeric_column(data, tname, "Step", StepError)
    if not np.isfinite(step).all() or np.any(step != np.round(step)):
        raise StepError(f"Step column {tname!r} must hold finite whole numbers.")
    g = numeric_column(data, gname, "Cohort", CohortError)
    return step, np.where(np.isnan(g), np.inf, g)
