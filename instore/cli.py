"""`instore`: the one command line. It knows every part and imports a part only inside the
command that runs it. This module is the root: the top-level commands and the command groups
(``instore.commands``) mounted in the order `instore --help` lists them."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from instore.commands import analytics as analytics_cmds
from instore.commands import api as api_cmds
from instore.commands import bench as bench_cmds
from instore.commands import cloud as cloud_cmds
from instore.commands import demo as demo_cmds
from instore.commands import edge as edge_cmds
from instore.commands import ksql as ksql_cmds
from instore.commands import produce as produce_cmds
from instore.commands import push as push_cmds
from instore.commands import services as services_cmds
from instore.commands import shopper as shopper_cmds
from instore.commands import stack as stack_cmds
from instore.commands import topics as topics_cmds
from instore.commands.output import console
from instore.errors import InstoreError

app = typer.Typer(
    help="In-store personalization on Kafka: shoppers near promoted products get offers on "
    "their phone and the nearest kiosk. Embedded by default; Confluent Cloud + ksqlDB + Ably "
    "when KAFKA_BOOTSTRAP_SERVERS / KSQLDB_URL / ABLY_API_KEY are set.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

        from instore.embedded.kafka import KAFKA_VERSION  # noqa: PLC0415

        try:
            mine = version("instore")
        except PackageNotFoundError:
            mine = "unknown (not installed: run `make setup`)"
        sys.stdout.write(f"instore {mine} (embedded Apache Kafka {KAFKA_VERSION})\n")
        raise typer.Exit(0)


@app.callback()
def _main(
    _version_flag: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True,
        help="Print the version (and the embedded Kafka's) and exit.")] = False,
) -> None:
    """In-store personalization on Kafka."""


app.command()(stack_cmds.up)
app.command()(stack_cmds.status)
app.command()(services_cmds.worker)
app.command()(services_cmds.archive)
app.command()(services_cmds.report)
app.command()(demo_cmds.demo)
app.add_typer(produce_cmds.app, name="produce")
app.add_typer(bench_cmds.app, name="bench")
app.add_typer(push_cmds.app, name="push")
app.add_typer(api_cmds.app, name="api")
app.add_typer(ksql_cmds.app, name="ksql")
app.add_typer(cloud_cmds.app, name="cloud")
app.add_typer(edge_cmds.app, name="edge")
app.add_typer(topics_cmds.app, name="topics")
app.add_typer(shopper_cmds.app, name="shopper")
app.add_typer(analytics_cmds.app, name="analytics")
app.add_typer(stack_cmds.broker_app, name="broker")


def main() -> None:
    """Run the CLI; a project error (``InstoreError``) that no command turned into its own
    message is printed as one line, exit 1, never as a traceback."""
    try:
        app()
    except InstoreError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()

