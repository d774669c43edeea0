"""`instore ksql ...`: ksqlDB: migrations, queries, and the local ksqlDB-compatible endpoint."""

from __future__ import annotations

import typer

app = typer.Typer(help="ksqlDB: migrations, queries, and the local ksqlDB-compatible endpoint.", no_args_is_help=True)
