"""Command-line commands: issue 16: `causalmem sample` and `causalmem score`."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
