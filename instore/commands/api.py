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
                log_level=log_level, access_log=False, log_config=None)
