"""Option aliases (``Literal``) and their validation at the API boundary."""

from __future__ import annotations

from typing import Any, Literal, get_args

LabelMode = Literal["graded", "binary"]
VaderSource = Literal["movie", "tweets", "amazon", "nyt"]
HiddenCache = Literal["auto", "always", "never"]

VADER_SOURCES: tuple[str, ...] = get_args(VaderSource)


def check_literal(name: str, value: Any, alias: Any) -> Any:
    """Return ``value`` if it is one of the ``Literal`` alias's values, else raise ``ValueError``.

    Parameters
    ----------
    name
        Argument name, used in the message.
    value
        The value passed by the caller.
    alias
        A ``typing.Literal`` alias such as :data:`LabelMode`.

    Returns
    -------
    The validated value.

    Examples
    --------
    >>> check_literal("label_mode", "graded", LabelMode)
    'graded'
    """
    allowed = get_args(alias)
    if value not in allowed:
        raise ValueError(
            f"{name}={value!r} is not supported; use one of {', '.join(map(repr, allowed))}."
        )
    return value
