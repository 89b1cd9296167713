"""Option aliases (``Literal``) and their validation at the API boundary."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal, TypeAlias, get_args

import numpy as np
import numpy.typing as npt

Float64Array: TypeAlias = npt.NDArray[np.float64]
Float32Array: TypeAlias = npt.NDArray[np.float32]
FloatArray: TypeAlias = npt.NDArray[np.floating[Any]]
Int64Array: TypeAlias = npt.NDArray[np.int64]
BoolArray: TypeAlias = npt.NDArray[np.bool_]

ControlGroup = Literal["nevertreated", "notyettreated"]
BasePeriod = Literal["varying", "universal"]
EstMethod = Literal["dr", "reg", "ipw"]
AggType = Literal["simple", "dynamic", "group", "calendar"]
InferenceKind = Literal["analytic", "bootstrap"]
BandKind = Literal["pointwise", "uniform"]


def check_literal(name: str, value: Any, alias: Any) -> Any:
    """Return ``value`` if it is one of the ``Literal`` alias's values, else raise ``ValueError``.

    Parameters
    ----------
    name
        Argument name, used in the message.
    value
        The value passed by the caller.
    alias
        A ``typing.Literal`` alias such as :data:`ControlGroup`.

    Returns
    -------
    The validated value.

    Examples
    --------
    >>> check_literal("control_group", "nevertreated", ControlGroup)
    'nevertreated'
    """
    allowed = get_args(alias)
    if value not in allowed:
        raise ValueError(
            f"{name}={value!r} is not supported; use one of {', '.join(map(repr, allowed))}."
        )
    return value


def as_name_tuple(name: str, value: str | Iterable[str] | None) -> tuple[str, ...]:
    """Normalise ``None`` / a column name / an iterable of names to a tuple of names."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    out = tuple(value)
    bad = [v for v in out if not isinstance(v, str)]
    if bad:
        raise TypeError(f"{name} must be column names (str); got {bad!r}.")
    return out
