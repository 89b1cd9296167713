"""Errors of :mod:`steer.export` (each refines a :mod:`steer.errors` class and a built-in)."""

from __future__ import annotations

from steer.errors import SteerError, SteerFormatError

__all__ = ["ExportFormatError", "UnsupportedExportError"]


class UnsupportedExportError(SteerError, ValueError):
    """The model (architecture, head) or the steer cannot be written in the requested format."""


class ExportFormatError(SteerFormatError):
    """A checkpoint to import (official LM-Steer layout) is malformed or unsafe to read."""
