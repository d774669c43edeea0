"""Where the top-level commands print (``instore up``, ``demo``, ``produce ...``, ``bench ...``):
everything but a ``--json`` line on stderr, a failure as one sentence, figures as a table."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

console = Console(stderr=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    console.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


def print_figures(fig: dict[str, object]) -> None:
    table = Table("figure", "value")
    for key, value in fig.items():
        table.add_row(key, f"{value:,}" if isinstance(value, int | float) else str(value))
    console.print(table)
