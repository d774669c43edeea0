"""`instore cloud ...`: Confluent Cloud + Ably with Terraform: plan, up, down, env."""

from __future__ import annotations

import typer

app = typer.Typer(help="Confluent Cloud + Ably with Terraform: plan, up, down, env.", no_args_is_help=True)
