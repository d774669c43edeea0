"""Where the ``instore ksql`` commands print: results on stdout (``out``), everything else on
stderr (``console``), and a failure as one sentence and exit 1."""

from __future__ import annotations

import typer
from rich.console import Console

from instore.commands.ksql.client import KsqlUnavailable
from instore.settings import get_settings

console = Console(stderr=True)
out = Console()


def fail(message: str) -> typer.Exit:
    console.print(f"[bold red]error:[/] {message}")
    return typer.Exit(1)


def unreachable(exc: Exception) -> typer.Exit:
    """One sentence for an endpoint that did not answer."""
    if isinstance(exc, KsqlUnavailable):
        return fail(str(exc))
    return fail(f"cannot reach ksqlDB at {get_settings().ksqldb_address} ({exc}); run "
                "`instore up` or set KSQLDB_URL")
