"""Lazy package exports: import a submodule only when one of its names is first used.

Used by subpackages whose modules need heavy optional dependencies (torch, tokenizers) so that
``import causalmem`` and ``import steer`` stay cheap.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, where: Mapping[str, str], exported: list[str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Return ``(__getattr__, __dir__)`` for ``package`` exporting ``where[name]``'s ``name``.

    Parameters
    ----------
    package
        The package's ``__name__``.
    where
        Exported name -> module that defines it: a submodule relative to ``package``, or an
        absolute module name when it contains a dot (``"causalmem.instances"``).
    exported
        The package's ``__all__`` (listed by ``dir()``).
    """

    def __getattr__(name: str) -> Any:
        if name in where:
            target = where[name]
            module = target if "." in target else f"{package}.{target}"
            return getattr(importlib.import_module(module), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(exported)

    return __getattr__, __dir__
