"""`instore ksql ...`: ksqlDB: migrations, queries, and the local ksqlDB-compatible endpoint.

The commands are here; what they run is beside them: ``client`` (the REST client and its
errors; ``transport`` makes ksql-python-ng work with httpx 0.28), ``migrations`` (the
ksql-migrations history and the NEARBY_CUSTOMERS writer), ``statements`` (splitting and
classifying statements), ``results`` (running one and printing its result), ``shell`` (the
interactive loop) and ``output`` (where they print). ``make_client`` stays importable from
here: the analyst notebook (docs/notebooks/analyst.ipynb) uses it.
"""

from __future__ import annotations

import json
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from instore.commands.ksql.client import KsqlCommandError, make_client
from instore.commands.ksql.migrations import (
    MIGRATIONS_DIR,
    NONE_VERSION,
    SEED_DEMO_DIR,
    applied_versions,
    checksum,
    ensure_metadata,
    migrate,
    migration_files,
    sync_nearby_writer,
)
from instore.commands.ksql.output import console, fail, out, unreachable
from instore.commands.ksql.results import run_statement
from instore.commands.ksql.shell import run_shell
from instore.commands.ksql.statements import first_line, set_property, statements_of
from instore.settings import get_settings

__all__ = ["app", "bench", "make_client"]

app = typer.Typer(
    help="ksqlDB: migrations, queries, and the local ksqlDB-compatible endpoint.",
    no_args_is_help=True,
)


def _server_info(client: Any) -> dict[str, Any]:
    """ksqlDB's ``/info``; an endpoint that does not answer exits with one sentence."""
    import httpx  # noqa: PLC0415

    try:
        info = client.sa.get_request(client.url + "/info").json()
    except (httpx.HTTPError, OSError, ValueError) as exc:
        raise unreachable(exc) from None
    return info if isinstance(info, dict) else {}


def _dir_option(seed_demo: bool, directory: Path | None) -> Path:
    if directory is not None:
        return directory
    return SEED_DEMO_DIR if seed_demo else MIGRATIONS_DIR


@app.command("migrate")
def migrate_cmd(
    seed_demo: Annotated[
        bool, typer.Option("--seed-demo", help="Apply ksql/seed_demo/ instead.")
    ] = False,
    directory: Annotated[Path | None, typer.Option(help="A migrations directory.")] = None,
    until: Annotated[str | None, typer.Option(help="Stop after this version.")] = None,
) -> None:
    """Apply pending migrations in order (records MIGRATION_EVENTS like ksql-migrations); then,
    for ksql/migrations/, start ksqlDB's NEARBY_CUSTOMERS writer (ksql/nearby_writer/) when
    NEARBY_ENGINE=ksqldb, or terminate it when NEARBY_ENGINE=faust (the worker writes it)."""
    settings = get_settings()
    client = make_client(settings)
    ours = not seed_demo and directory is None
    try:
        done = migrate(
            client,
            _dir_option(seed_demo, directory),
            until=until,
            report=lambda v, n: console.print(f"[green]migrated[/] V{int(v):06d} {n}"),
        )
        console.print(f"{len(done)} migration(s) applied" if done else "already up to date")
        if ours:
            console.print(sync_nearby_writer(client, settings.nearby_engine), markup=False)
    except KsqlCommandError as exc:
        raise fail(str(exc)) from None
    except OSError as exc:
        raise unreachable(exc) from None


@app.command("status")
def status_cmd(
    seed_demo: Annotated[
        bool, typer.Option("--seed-demo", help="Compare with ksql/seed_demo/.")
    ] = False,
    directory: Annotated[Path | None, typer.Option(help="A migrations directory.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Last line: one JSON object.")] = False,
) -> None:
    """Which migrations are applied, pending, or changed since they were applied."""
    client = make_client()
    try:
        ensure_metadata(client)
        history = applied_versions(client)
    except (KsqlCommandError, OSError) as exc:
        raise fail(str(exc)) from None
    rows = []
    for version, name, path in migration_files(_dir_option(seed_demo, directory)):
        h = history.get(version)
        state = h.get("STATE") if h else "PENDING"
        if h and h.get("CHECKSUM") != checksum(path) and state == "MIGRATED":
            state = "MIGRATED (file changed)"
        rows.append(
            {
                "version": version,
                "name": name,
                "state": state,
                "started_on": h.get("STARTED_ON") if h else None,
                "completed_on": h.get("COMPLETED_ON") if h else None,
            }
        )
    current = history.get("CURRENT", {}).get("VERSION")
    if as_json:
        sys.stdout.write(json.dumps({"current": current, "migrations": rows}) + "\n")
        return
    table = Table("version", "name", "state", "completed")
    for r in rows:
        done = r["completed_on"]
        when = datetime.fromtimestamp(int(done) / 1000, tz=UTC).isoformat() if done else ""
        table.add_row(r["version"], r["name"], r["state"], when)
    out.print(table)
    out.print(f"current version: {current or NONE_VERSION}")


@app.command("query")
def query_cmd(
    sql: Annotated[
        str | None,
        typer.Argument(
            help="A statement: SELECT (pull, or push with EMIT CHANGES), SHOW, DESCRIBE, CREATE..."
        ),
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option("--file", "-f", help="Run each statement of this .sql file in order.",
                     exists=True, dir_okay=False, readable=True),
    ] = None,
    earliest: Annotated[
        bool, typer.Option(help="Push queries start from the earliest offset.")
    ] = False,
    limit: Annotated[int | None, typer.Option(help="Stop a push query after N rows.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Rows as JSON lines (an object per "
                                          "row); the last line: one JSON object, {\"query\": "
                                          "{columns, rows, push}} or {\"entities\": [...]}.")] = False,
) -> None:
    """Run a statement (or each of a file's, `-f`); push queries stream rows until Ctrl-C (or
    LIMIT). A file's SET/UNSET apply to its later statements; the first error stops it."""
    if (sql is None) == (file is None):
        msg = "give a statement or --file FILE (one of them)"
        raise fail(msg)
    client = make_client()
    props: dict[str, Any] = {"auto.offset.reset": "earliest"} if earliest else {}
    # Ctrl-C ends a push query, even when started where SIGINT was ignored (a background job)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if file is not None:
        statements = statements_of(file)
        if not statements:
            msg = f"{file} holds no statement"
            raise fail(msg)
        _server_info(client)  # before the first statement: down is one sentence
    else:
        text = (sql or "").strip()
        statements = [text if text.endswith(";") else text + ";"]
    try:
        for stmt in statements:
            if set_property(stmt, props):
                continue
            if file is not None and not as_json:
                console.print(f"[dim]> {escape(first_line(stmt))}[/]", highlight=False)
            try:
                run_statement(client, stmt, props, limit=limit, as_json=as_json)
            except KeyboardInterrupt:  # Ctrl-C while a statement or pull query runs
                console.print("[cyan]cancelled[/]")
                raise typer.Exit(130) from None
    except KsqlCommandError as exc:
        raise fail(str(exc)) from None
    except OSError as exc:
        raise unreachable(exc) from None


@app.command("shell")
def shell_cmd(
    earliest: Annotated[
        bool, typer.Option(help="Push queries start from the earliest offset.")
    ] = False,
) -> None:
    """An interactive ksqlDB shell: statements end with ';' (multi-line), results as tables,
    push queries print rows as they arrive until Ctrl-C; history; exit or Ctrl-D leaves."""
    settings = get_settings()
    client = make_client(settings)
    version = _server_info(client).get("KsqlServerInfo", {}).get("version", "?")
    props: dict[str, Any] = {"auto.offset.reset": "earliest"} if earliest else {}
    run_shell(client, settings, version, props)


@app.command("info")
def info_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="Last line: one JSON object.")] = False,
) -> None:
    """The ksqlDB server's version, cluster and health."""
    import httpx  # noqa: PLC0415

    settings = get_settings()
    client = make_client(settings)
    try:
        info = client.sa.get_request(client.url + "/info").json()
        health = client.sa.get_request(client.url + "/healthcheck").json()
    except (httpx.HTTPError, OSError) as exc:
        raise unreachable(exc) from None
    body = {"url": settings.ksqldb_address, **info, "health": health}
    if as_json:
        sys.stdout.write(json.dumps(body) + "\n")
        return
    s = info.get("KsqlServerInfo", {})
    table = Table("key", "value")
    table.add_row("url", settings.ksqldb_address)
    table.add_row("version", str(s.get("version")))
    table.add_row("service id", str(s.get("ksqlServiceId")))
    table.add_row("kafka cluster", str(s.get("kafkaClusterId")))
    table.add_row("status", str(s.get("serverStatus")))
    table.add_row("healthy", str(health.get("isHealthy")))
    out.print(table)


@app.command("serve")
def serve_cmd(
    port: Annotated[int | None, typer.Option(help="Port (default: settings.ksql_port).")] = None,
) -> None:
    """Run the local ksqlDB-compatible endpoint on the embedded broker (started by `instore up`)."""
    from instore.logs import setup_logging  # noqa: PLC0415

    setup_logging()
    try:
        from stream_apps.ksqldb.server import serve  # noqa: PLC0415
    except ImportError as exc:
        msg = f"the local ksqlDB endpoint is not installed ({exc}); run `make setup`"
        raise fail(msg) from None
    serve(get_settings(), port=port)


def bench(
    products: Annotated[int, typer.Option(help="Products per store.")] = 10_000,
    promoted: Annotated[int, typer.Option(help="Promoted products per store.")] = 200,
    stores: Annotated[int, typer.Option(help="Stores.")] = 10,
    events: Annotated[int, typer.Option(help="Positions to process.")] = 20_000,
    as_json: Annotated[bool, typer.Option("--json", help="Last line: one JSON object.")] = False,
    profile: Annotated[
        Path | None,
        typer.Option(help="Write a cProfile of the NEARBY query's thread (pstats) to this file."),
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(help="Processes for NEARBY_CUSTOMERS (ksql.streams.num.stream.threads)."),
    ] = None,
) -> None:
    """NEARBY_CUSTOMERS from ksql/migrations/ on the local endpoint: positions/s, rows/s."""
    from bench.ksql import run_bench  # noqa: PLC0415

    result = run_bench(
        products=products,
        promoted=promoted,
        stores=stores,
        events=events,
        progress=None if as_json else console.print,
        profile=profile,
        threads=threads,
    )
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
        return
    table = Table("figure", "value")
    for k, v in result.items():
        table.add_row(k, f"{v:,.2f}" if isinstance(v, float) else str(v))
    out.print(table)
