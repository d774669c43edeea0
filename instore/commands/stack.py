"""`instore up`, `instore status` and `instore broker install`: the embedded stack run under
its supervisor, its health, and the broker's jars."""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from instore.commands.output import console, fail
from instore.logs import setup_logging
from instore.settings import get_settings

broker_app = typer.Typer(help="The embedded Apache Kafka broker's jars.", no_args_is_help=True)


def up(
    workers: Annotated[int, typer.Option(help="Faust workers to run (scale by partitions).")] = 1,
    brokers: Annotated[int, typer.Option(
        min=1, max=5, help="Embedded Kafka nodes; 3 gives replication factor 3 and "
        "min.insync.replicas 2.")] = 1,
    data_dir: Annotated[Path | None, typer.Option(
        help="Kafka's data (topics, records, offsets), Redis (append-only) and the logs "
        "(default: INSTORE_DATA_DIR, else the per-user data dir).")] = None,
) -> None:
    """Start the embedded stack (Kafka, Redis, Faust worker, push hub and sink, ksqlDB-compatible
    endpoint, API) and keep it running until Ctrl-C; a crashed service is restarted. Everything
    is kept under the data dir: stop and start again, and topics, records and offsets are there."""
    from instore.embedded import StackError, resolve_data_dir  # noqa: PLC0415
    from instore.embedded.services import start_stack  # noqa: PLC0415
    from instore.health import write_stack_status  # noqa: PLC0415
    from instore.kafka import KafkaUnavailable  # noqa: PLC0415

    setup_logging()
    settings = get_settings()
    if brokers != 1:
        settings = settings.model_copy(update={"kafka_brokers": brokers,
                                               "kafka_replication_factor": min(brokers, 3)})
    data_dir = resolve_data_dir(settings, data_dir)
    stopping = False

    def _stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    try:
        stack = start_stack(settings, data_dir, workers=workers,
                            on_event=lambda m: console.print(f"[cyan]up[/] {m}"))
    except (StackError, KafkaUnavailable) as exc:
        raise fail(str(exc)) from None
    try:
        console.print("[bold green]stack is up[/] (Ctrl-C stops it)")
        console.print(_services_table(stack.status()))
        while not stopping:
            stack.supervise_once()
            write_stack_status(data_dir, stack.status())
            time.sleep(0.5)
    finally:
        stack.stop()
        write_stack_status(data_dir, stack.status(), stopped=True)
        console.print("[cyan]up[/] stack stopped")


def _services_table(rows: list[dict[str, object]]) -> Table:
    table = Table("service", "state", "pid", "restarts", "where")
    for row in rows:
        table.add_row(str(row["name"]), str(row["state"]), str(row["pid"]), str(row["restarts"]),
                      str(row.get("url") or ""))
    return table


def status(
    as_json: Annotated[bool, typer.Option("--json", help="Last line: one JSON object.")] = False,
    data_dir: Annotated[Path | None, typer.Option(help="The data dir `instore up` uses.")] = None,
) -> None:
    """Health of the services `instore up` supervises (state, restarts), the broker, Redis,
    topics, the consumer lag of the Faust worker and the push sink, and data quality (dead
    letters per source topic against DQ thresholds: over one marks the stack degraded, which
    does not fail the exit code). Exit code 1 when something is down."""
    from instore.embedded import resolve_data_dir  # noqa: PLC0415
    from instore.health import DEGRADING, check  # noqa: PLC0415

    settings = get_settings()
    report = check(settings, resolve_data_dir(settings, data_dir))
    if as_json:
        sys.stdout.write(json.dumps(report) + "\n")
    else:
        table = Table("check", "ok", "detail")
        for name, item in report["checks"].items():
            mark = ("[green]yes[/]" if item["ok"] else
                    "[yellow]degraded[/]" if name in DEGRADING else "[red]no[/]")
            table.add_row(name, mark, str(item["detail"]))
        Console().print(table)
        services = report["checks"].get("services", {}).get("services")
        if services:
            Console().print(_services_table(services))
        if not any(item["ok"] for item in report["checks"].values()):
            console.print("nothing is running: start the stack with `instore up` "
                          "(or try it with `make demo`)")
    raise typer.Exit(0 if report["ok"] else 1)


@broker_app.command("install")
def broker_install() -> None:
    """Fetch the pinned Kafka version and its logging binding from Maven Central into the cache
    folder (KAFKA_LIBS_DIR; `make setup` runs this), then start a broker once to record the JVM
    class-data archive that halves every later start. Quick when both are there."""
    from instore.embedded import kafka  # noqa: PLC0415

    settings = get_settings()
    libs = settings.kafka_libs_dir or kafka.default_libs_dir()
    try:
        java = kafka.java_binary(settings.java_home)
        if kafka.installed(libs):
            console.print(f"Kafka {kafka.KAFKA_VERSION} jars already in {libs}")
        else:
            with console.status(f"fetching Kafka {kafka.KAFKA_VERSION} jars with mvn") as status:
                kafka.install(libs, on_line=lambda line: status.update(
                    f"fetching Kafka {kafka.KAFKA_VERSION} jars: {line[-80:]}"))
            console.print(f"Kafka {kafka.KAFKA_VERSION} jars in {libs}")
        if not kafka.class_archive(libs, java).exists():
            with console.status("starting a broker once to record its class-data archive "
                                "(later starts take half the time)"):
                archive = kafka.build_class_archive(libs, settings.java_home)
            console.print(f"class-data archive in {archive}")
    except kafka.BrokerSetupError as exc:
        raise fail(str(exc)) from None
