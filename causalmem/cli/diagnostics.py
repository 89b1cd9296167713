"""Command-line commands: pre-trend power and TWFE diagnostics (issue 14)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
