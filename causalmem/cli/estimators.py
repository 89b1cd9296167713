"""Command-line commands: issue 18: imputation / two-stage / comparison commands."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
