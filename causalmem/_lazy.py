"""Lazy package exports: import a submodule only when one of its names is first used.

Used by subpackages whose modules need heavy optional dependencies (torch, tokenizers) so that
``import causalmem.lab`` stays cheap.
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
        Exported name -> submodule (relative to ``package``) that defines it.
    exported
        The package's ``__all__`` (listed by ``dir()``).
    """

    def __getattr__(name: str) -> Any:
        if name in where:
            return getattr(importlib.import_module(f"{package}.{where[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(exported)

    return __getattr__, __dir__
