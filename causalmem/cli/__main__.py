"""``python -m causalmem.cli``."""

from causalmem.cli import app

app()
