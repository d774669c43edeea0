"""`instore analytics ...`: the analyst's side over the archive (cold storage): SQL with DuckDB.

The archive is what the archiver (`instore archive`, run by `instore up`) wrote: one view per
dataset (positions, kiosk_interactions, nearby, offers, offer_events, dead_letters, products,
promotions), partitioned by ``date`` (and ``store``). See docs/analytics.md.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from instore.settings import get_settings

app = typer.Typer(help="Query the archive (cold storage) with DuckDB.", no_args_is_help=True)
err = Console(stderr=True)


@app.command("sql")
def sql(
    statement: Annotated[str | None, typer.Argument(
        help="One SELECT over the archive's views, e.g. \"SELECT store_id, count(*) FROM "
        "offers GROUP BY 1\". Omit it with -f.")] = None,
    file: Annotated[Path | None, typer.Option("-f", "--file", help="Read the SELECT from a "
                                              "file ('-': standard input).")] = None,
    archive: Annotated[str | None, typer.Option(help="The archive: a folder or an fsspec URL "
                                                "(default: ARCHIVE_URL, else the data dir's).")] = None,
    max_rows: Annotated[int, typer.Option(min=1, help="Rows to print at most.")] = 1000,
    as_json: Annotated[bool, typer.Option("--json", help="Last line: one JSON object with "
                                          "columns, rows and truncated.")] = False,
) -> None:
    """Run one read-only SELECT over the archive with DuckDB and print the rows."""
    from instore.archive import ArchiveQueryError, query  # noqa: PLC0415

    if (statement is None) == (file is None):
        err.print("[bold red]error:[/] give one SELECT, either as the argument or with -f FILE")
        raise typer.Exit(2)
    if file is not None:
        try:
            statement = sys.stdin.read() if str(file) == "-" else file.read_text()
        except OSError as exc:
            err.print(f"[bold red]error:[/] cannot read {file}: {exc.strerror or exc}")
            raise typer.Exit(2) from None
    assert statement is not None
    location = archive or get_settings().archive_location
    try:
        result = query(location, statement, max_rows=max_rows)
    except ArchiveQueryError as exc:
        err.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(1) from None
    if as_json:
        sys.stdout.write(json.dumps({"columns": result.columns, "types": result.types,
                                     "rows": result.rows, "truncated": result.truncated},
                                    default=str) + "\n")
        return
    table = Table(*result.columns)
    for row in result.rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    Console().print(table)
    more = f" (first {max_rows:,}; more not shown)" if result.truncated else ""
    err.print(f"[dim]{len(result.rows):,} row(s){more} from {location}[/]")
