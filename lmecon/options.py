"""Validation of options at the API boundary (``Literal`` aliases, column-name arguments)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, get_args

__all__ = ["as_name_tuple", "check_literal"]


def check_literal(name: str, value: Any, alias: Any) -> Any:
    """Return ``value`` if it is one of the ``Literal`` alias's values, else raise ``ValueError``.

    Parameters
    ----------
    name
        Argument name, used in the message.
    value
        The value passed by the caller.
    alias
        A ``typing.Literal`` alias.

    Returns
    -------
    The validated value.

    Examples
    --------
    >>> from typing import Literal
    >>> check_literal("control_group", "nevertreated", Literal["nevertreated", "notyettreated"])
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
