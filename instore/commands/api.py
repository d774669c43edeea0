"""`instore api ...`: The HTTP API and dashboard (FastAPI)."""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(help="The HTTP API and dashboard (FastAPI).", no_args_is_help=True)


@app.command()
def serve(
    port: Annotated[int | None, typer.Option(help="Port (default: settings api_port).")] = None,
    log_level: Annotated[str, typer.Option(help="Log level.")] = "info",
) -> None:
    """Serve the API (OpenAPI docs at /docs) and the dashboard (/dashboard) with uvicorn."""
    import uvicorn  # noqa: PLC0415

    from api.main import create_app  # noqa: PLC0415
    from instore.logs import setup_logging  # noqa: PLC0415
    from instore.settings import get_settings  # noqa: PLC0415

    setup_logging(log_level.upper())
    settings = get_settings()
    uvicorn.run(create_app(settings), host=settings.host, port=port or settings.api_port,
                log_level=log_level, access_log=False, log_config=None,
                **settings.uvicorn_tls())  # type: ignore[arg-type]


def bench(
    requests: Annotated[int, typer.Option(help="Requests per measured path.")] = 300,
    concurrency: Annotated[int, typer.Option(help="Concurrent clients.")] = 8,
    as_json: Annotated[bool, typer.Option("--json", help="Last line: one JSON object.")] = False,
) -> None:
    """API latency and throughput (consent, promotions, Ably tokens, floor map) on a fresh
    embedded broker and Redis."""
    import json  # noqa: PLC0415
    import sys  # noqa: PLC0415

    from bench.api import run_bench  # noqa: PLC0415

    result = run_bench(requests=requests, concurrency=concurrency)
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
        return
    from rich.console import Console  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415

    table = Table("path", "req/s", "p50 ms", "p99 ms", "errors")
    for row in result["paths"]:
        table.add_row(row["path"], str(row["req_per_s"]), str(row["p50_ms"]), str(row["p99_ms"]),
                      str(row["errors"]))
    console = Console()
    console.print(table)
    console.print(f"bulk CSV, 1000 rows: {result['bulk_csv_1000_rows_s']} s "
                  f"({result['bulk_accepted']} accepted)")
