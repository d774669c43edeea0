"""`instore api ...`: The HTTP API and dashboard (FastAPI)."""

from __future__ import annotations

import typer

app = typer.Typer(help="The HTTP API and dashboard (FastAPI).", no_args_is_help=True)
