"""``python -m steer.cli``."""

from steer.cli import app

app()
