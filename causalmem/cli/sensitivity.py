"""Command-line commands: issue 14: HonestDiD sensitivity (`causalmem sensitivity`)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
