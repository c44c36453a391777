"""``python -m ssdd_cli``."""

from .cli import app

app()
