"""Column roles of a long panel, the never-treated encoding and the schema version.

Never-treated encoding
----------------------
Inside a :class:`~causalmem.panel.Panel` the cohort column (the treatment step ``G``) has the
pandas nullable dtype ``"Int64"``, and ``<NA>`` means *never treated* (``G = ∞``; in the
memorisation setting, an instance the model was never trained on, e.g. the Pile validation
set). Every other value is the first observed step at which the unit is treated.

On input, :func:`normalise_cohort` accepts ``NaN``, ``pd.NA``, ``None`` and ``+inf`` as
never-treated and converts them to ``<NA>``. Anything else that is not a non-negative integer
(strings, booleans, ``2.5``, negative numbers, ``-inf``) raises
:class:`~causalmem.errors.CohortError`.

The same concept is encoded differently elsewhere; translate only at the boundary:

==============================  ================================================
tool                            never-treated
==============================  ================================================
causalmem (this package)        ``<NA>`` in an ``Int64`` cohort column
R ``did`` / ``csdid``           ``0`` (``did`` rejects negative ``gname``)
pyfixest ``lpdid``              ``never_treated=0``
``differences``                 ``NaN`` (``0`` is rejected)
reference repo (memorisation-   ``NaN`` cohort plus a ``BIG_NUM = 2e8`` batch
profiles ``compute_attgt.py``)  sentinel, selected by ``seq_idx <= 0``
==============================  ================================================

``0`` is *not* read as never-treated: in a checkpoint panel step 0 is a real checkpoint, so a
cohort of 0 is a unit treated before any observation (always treated). Recode R-style zeros
with ``cohort.replace(0, pd.NA)`` if that is what they mean.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd

from causalmem._types import as_name_tuple
from causalmem.errors import CohortError, PanelSchemaError

__all__ = ["METRIC_SIGNS", "SCHEMA_VERSION", "PanelSchema", "metric_sign", "normalise_cohort"]

SCHEMA_VERSION = "1"
"""Version of the long-panel schema; stored with every persisted panel."""

METRIC_SIGNS: Mapping[str, int] = MappingProxyType(
    {
        "sup": -1,
        "surprisal": -1,
        "nll": -1,
        "loss": -1,
        "entr": -1,
        "entropy": -1,
        "rank": -1,
        "acc": +1,
        "accuracy": +1,
        "logprob": +1,
        "log_prob": +1,
        "loglik": +1,
    }
)
"""Sign that turns an ATT on an outcome into memorisation, by substring of the outcome's name.

``-1``: lower is memorised (surprisal, loss, entropy, rank); ``+1``: higher is memorised
(accuracy, log-probability). The single table of the distribution: :func:`metric_sign` reads
it, and so do :data:`causalmem.analysis.profile.METRIC_SIGNS` and
:data:`causalmem.scoring.metrics.MEMORISATION_SIGN` (its values for the scored metrics).
"""

_MAX_SHOW = 5
_NUMERIC_OBJECT_KINDS = frozenset(
    {"integer", "floating", "mixed-integer-float", "decimal", "empty", "integer-na"}
)


def _show(values: Iterable[Any], n: int | None = None) -> str:
    """Format up to five values for an error message, with a total count."""
    items = list(values)
    total = len(items) if n is None else n
    head = ", ".join(repr(v.item() if isinstance(v, np.generic) else v) for v in items[:_MAX_SHOW])
    more = ", ..." if total > _MAX_SHOW else ""
    return f"[{head}{more}] ({total} in total)"


def metric_sign(metric: str) -> int:
    """Sign turning an ATT on ``metric`` into memorisation (-1 surprisal/entropy/rank, +1 accuracy).

    Parameters
    ----------
    metric
        Outcome column name; matched case-insensitively against the substrings of
        :data:`METRIC_SIGNS`.

    Returns
    -------
    int
        ``-1`` or ``+1``.

    Raises
    ------
    ValueError
        For an unknown metric (or one whose substrings disagree): pass ``sign=`` explicitly then.

    Examples
    --------
    >>> metric_sign("sup_seq"), metric_sign("acc_seq"), metric_sign("avg_rank")
    (-1, 1, -1)
    """
    name = metric.lower()
    hits = {s for key, s in METRIC_SIGNS.items() if key in name}
    if len(hits) != 1:
        raise ValueError(
            f"Cannot tell whether memorisation is +ATT or -ATT for the metric {metric!r}; pass "
            "sign=-1 (lower is memorised: surprisal, entropy, rank) or sign=+1 (higher is "
            "memorised: accuracy, log-probability)."
        )
    return hits.pop()


def normalise_cohort(values: pd.Series, column: str) -> pd.Series:
    """Convert a cohort column to ``Int64`` with ``<NA>`` meaning never treated.

    Parameters
    ----------
    values
        The cohort (first treated step) of every row. ``NaN``, ``pd.NA``, ``None`` and
        ``+inf`` mean never treated; every other value must be a non-negative integer (an
        integer-valued float such as ``3.0`` is accepted).
    column
        The column name, used in error messages.

    Returns
    -------
    pandas.Series
        A new series of dtype ``"Int64"`` with the input's index and name; ``<NA>`` = never.

    Raises
    ------
    CohortError
        If the values are non-numeric (strings, booleans, categories, datetimes), non-integer,
        negative or ``-inf``.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> normalise_cohort(pd.Series([3.0, np.nan, np.inf, 5]), "cohort").tolist()
    [3, <NA>, <NA>, 5]
    """
    if not isinstance(values, pd.Series):
        values = pd.Series(values)
    dtype = values.dtype
    fix = (
        f"Encode the treatment step as a non-negative integer and never-treated units as "
        f"NA (NaN/None/+inf are accepted), e.g. pd.to_numeric(df[{column!r}])."
    )
    if pd.api.types.is_bool_dtype(dtype):
        raise CohortError(f"Cohort column {column!r} is boolean; it must hold steps. {fix}")
    if pd.api.types.is_object_dtype(dtype):
        values = _numeric_object_cohort(values, column, fix)
        dtype = values.dtype
    elif not pd.api.types.is_numeric_dtype(dtype) or dtype.kind == "c":
        raise CohortError(f"Cohort column {column!r} has non-numeric dtype {dtype}. {fix}")
    if pd.api.types.is_integer_dtype(dtype):
        return _integer_cohort(values, column, fix)
    return _float_cohort(values, column, fix)


def _numeric_object_cohort(values: pd.Series, column: str, fix: str) -> pd.Series:
    """Convert an object-dtype cohort column to numbers; raise on non-numeric values."""
    kind = pd.api.types.infer_dtype(values, skipna=True)
    if kind not in _NUMERIC_OBJECT_KINDS:
        coerced = pd.to_numeric(values, errors="coerce")
        bad = values[coerced.isna() & values.notna()]
        if bad.empty:  # e.g. booleans mixed with numbers
            bad = values[values.map(lambda v: isinstance(v, bool | np.bool_))]
        raise CohortError(
            f"Cohort column {column!r} holds non-numeric values {_show(bad.unique())} "
            f"(inferred type {kind!r}). {fix}"
        )
    return pd.to_numeric(values)


def _integer_cohort(values: pd.Series, column: str, fix: str) -> pd.Series:
    """Normalise an integer-dtype cohort column (NA = never treated; no negatives)."""
    missing = values.isna().to_numpy()
    ints = values.to_numpy(dtype=np.int64, na_value=0)
    negative = ~missing & (ints < 0)
    if negative.any():
        raise CohortError(
            f"Cohort column {column!r} has negative values {_show(np.unique(ints[negative]))}"
            f" in {int(negative.sum())} rows. {fix}"
        )
    return pd.Series(
        pd.arrays.IntegerArray(ints, missing.copy()),
        index=values.index,
        name=values.name,
    )


def _float_cohort(values: pd.Series, column: str, fix: str) -> pd.Series:
    """Normalise a float-dtype cohort column (NaN/+inf = never treated; integer-valued)."""
    floats = values.to_numpy(dtype=np.float64, na_value=np.nan)
    never = np.isnan(floats) | (floats == np.inf)
    finite = np.where(never, 0.0, floats)
    neg_inf = floats == -np.inf
    if neg_inf.any():
        raise CohortError(
            f"Cohort column {column!r} has -inf in {int(neg_inf.sum())} rows; only +inf "
            f"(or NA) means never treated. {fix}"
        )
    negative = finite < 0
    if negative.any():
        raise CohortError(
            f"Cohort column {column!r} has negative values {_show(np.unique(finite[negative]))}"
            f" in {int(negative.sum())} rows. {fix}"
        )
    fractional = finite != np.floor(finite)
    if fractional.any():
        raise CohortError(
            f"Cohort column {column!r} has non-integer values "
            f"{_show(np.unique(finite[fractional]))} in {int(fractional.sum())} rows; cohorts "
            f"are steps. {fix}"
        )
    return pd.Series(
        pd.arrays.IntegerArray(finite.astype(np.int64), never),
        index=values.index,
        name=values.name,
    )


def _name_tuple(role: str, value: Any) -> tuple[str, ...]:
    return as_name_tuple(f"PanelSchema.{role}", value)


@dataclass(frozen=True, slots=True)
class PanelSchema:
    """The column roles of a long (unit × step) panel.

    Parameters
    ----------
    unit
        Unit identifier column (an instance, e.g. a sequence index).
    step
        Time column: the training step of the checkpoint (non-negative integer).
    cohort
        Treatment step column, ``Int64`` with ``<NA>`` = never treated (see module docstring).
    outcomes
        One or more numeric outcome columns (e.g. ``sup_seq``).
    weights
        Optional time-invariant sampling weight column.
    clusters
        Optional time-invariant cluster columns.
    covariates
        Optional numeric covariate columns.
    version
        Schema version, :data:`SCHEMA_VERSION` for panels written by this release.

    Examples
    --------
    >>> s = PanelSchema(unit="seq_idx", step="step", cohort="cohort", outcomes=("sup_seq",))
    >>> PanelSchema.from_dict(s.to_dict()) == s
    True
    """

    unit: str
    step: str
    cohort: str
    outcomes: tuple[str, ...]
    weights: str | None = None
    clusters: tuple[str, ...] = ()
    covariates: tuple[str, ...] = ()
    version: str = SCHEMA_VERSION

    def __post_init__(self) -> None:
        for role in ("unit", "step", "cohort", "version"):
            if not isinstance(getattr(self, role), str):
                raise TypeError(f"PanelSchema.{role} must be a str; got {getattr(self, role)!r}.")
        if self.weights is not None and not isinstance(self.weights, str):
            raise TypeError(f"PanelSchema.weights must be a str or None; got {self.weights!r}.")
        for role in ("outcomes", "clusters", "covariates"):
            object.__setattr__(self, role, _name_tuple(role, getattr(self, role)))
        if not self.outcomes:
            raise PanelSchemaError("PanelSchema.outcomes is empty; name at least one outcome.")

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict of the schema.

        Returns
        -------
        dict
            Keys are the field names; tuples become lists.

        Examples
        --------
        >>> PanelSchema("u", "t", "g", ("y",)).to_dict()["outcomes"]
        ['y']
        """
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PanelSchema:
        """Build a schema from :meth:`to_dict` output.

        Parameters
        ----------
        data
            Mapping with the field names as keys; ``version`` defaults to
            :data:`SCHEMA_VERSION` when absent.

        Returns
        -------
        PanelSchema

        Raises
        ------
        PanelSchemaError
            If keys are unknown or required ones are missing, or the version is unsupported.

        Examples
        --------
        >>> PanelSchema.from_dict({"unit": "u", "step": "t", "cohort": "g", "outcomes": ["y"]})
        PanelSchema(unit='u', step='t', cohort='g', outcomes=('y',), weights=None, clusters=(), covariates=(), version='1')
        """  # noqa: E501
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise PanelSchemaError(
                f"Unknown PanelSchema keys {unknown}; expected a subset of {sorted(known)}."
            )
        missing = sorted({"unit", "step", "cohort", "outcomes"} - set(data))
        if missing:
            raise PanelSchemaError(f"PanelSchema dict lacks required keys {missing}.")
        version = str(data.get("version", SCHEMA_VERSION))
        if version != SCHEMA_VERSION:
            raise PanelSchemaError(
                f"Unsupported panel schema version {version!r}; this release of causalmem "
                f"reads version {SCHEMA_VERSION!r}. Re-create the panel with this release."
            )
        kwargs = dict(data)
        kwargs["version"] = version
        return cls(**kwargs)
