"""Command-line commands: issue 15: streamed fitting (`causalmem fit-stream` / `fit --stream`)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
