"""`instore`: the one command line. It knows every part and imports a part only inside the
command that runs it."""

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

from instore.commands import api as api_cmds
from instore.commands import cloud as cloud_cmds
from instore.commands import edge as edge_cmds
from instore.commands import ksql as ksql_cmds
from instore.commands import push as push_cmds
from instore.logs import setup_logging
from instore.settings import get_settings

app = typer.Typer(
    help="In-store personalization on Kafka: shoppers near promoted products get offers on "
    "their phone and the nearest kiosk. Embedded by default; Confluent Cloud + ksqlDB + Ably "
    "when KAFKA_BOOTSTRAP_SERVERS / KSQLDB_URL / ABLY_API_KEY are set.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
produce_app = typer.Typer(help="Simulators and replays that write the topic contract.",
                          no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks: they print figures and append them to bench/results.",
                        no_args_is_help=True)
app.add_typer(produce_app, name="produce")
app.add_typer(bench_app, name="bench")
app.add_typer(push_cmds.app, name="push")
app.add_typer(api_cmds.app, name="api")
app.add_typer(ksql_cmds.app, name="ksql")
app.add_typer(cloud_cmds.app, name="cloud")
app.add_typer(edge_cmds.app, name="edge")
# A part's commands module may offer `bench` (-> `instore bench <part>`).
for _name, _mod in (("push", push_cmds), ("ksql", ksql_cmds), ("edge", edge_cmds),
                    ("api", api_cmds), ("cloud", cloud_cmds)):
    if hasattr(_mod, "bench"):
        bench_app.command(_name)(_mod.bench)

console = Console(stderr=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    console.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


@app.command()
def up(
    workers: Annotated[int, typer.Option(help="Faust workers to run (scale by partitions).")] = 1,
    data_dir: Annotated[Path | None, typer.Option(help="Where logs and Redis data go.")] = None,
) -> None:
    """Start the embedded stack (broker, Redis, Faust worker, push hub and sink, API) until Ctrl-C."""
    from instore.embedded import Stack, StackError  # noqa: PLC0415
    from instore.kafka import ensure_topics, wait_for_broker  # noqa: PLC0415
    from instore.stack import service_specs, stack_env  # noqa: PLC0415

    setup_logging()
    settings = get_settings()
    data = data_dir or settings.data_dir
    stack = Stack(data / "logs", env=stack_env(settings), on_event=lambda m: console.print(f"[cyan]up[/] {m}"))
    stopping = False

    def _stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    try:
        specs = service_specs(settings, data, workers=workers)
        for spec in specs:
            if spec.name == "worker" or spec.name.startswith("worker-"):
                wait_for_broker(settings)
                created = ensure_topics(settings)
                if created:
                    console.print(f"[cyan]up[/] created topics: {', '.join(created)}")
            stack.start(spec)
        console.print("[bold green]stack is up[/] (Ctrl-C stops it)")
        _print_status(stack.status())
        while not stopping:
            stack.supervise_once()
            time.sleep(0.5)
    except StackError as exc:
        stack.stop()
        raise fail(str(exc)) from None
    finally:
        stack.stop()
        console.print("[cyan]up[/] stack stopped")


def _print_status(rows: list[dict[str, object]]) -> None:
    table = Table("service", "state", "pid", "restarts", "where")
    for row in rows:
        table.add_row(str(row["name"]), str(row["state"]), str(row["pid"]), str(row["restarts"]),
                      str(row.get("url") or ""))
    console.print(table)


@app.command()
def status(as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False) -> None:
    """Health of the broker, Redis, topics and the Faust worker's consumer lag."""
    from instore.health import check  # noqa: PLC0415

    report = check(get_settings())
    if as_json:
        sys.stdout.write(json.dumps(report) + "\n")
    else:
        table = Table("check", "ok", "detail")
        for name, item in report["checks"].items():
            table.add_row(name, "[green]yes[/]" if item["ok"] else "[red]no[/]", str(item["detail"]))
        Console().print(table)
    raise typer.Exit(0 if report["ok"] else 1)


@app.command()
def worker(
    loglevel: Annotated[str, typer.Option(help="Log level.")] = "warning",
) -> None:
    """Run one Faust worker (proximity -> NEARBY_CUSTOMERS -> policy -> offers). Start more to scale."""
    from stream_apps.app import run_worker  # noqa: PLC0415

    run_worker(loglevel)


@bench_app.command("proximity")
def bench_proximity(
    stores: Annotated[int, typer.Option(help="Stores in the world.")] = 10,
    products: Annotated[int, typer.Option(help="Products per store.")] = 10_000,
    promoted: Annotated[int, typer.Option(help="Promoted products per store.")] = 200,
    events: Annotated[int, typer.Option(help="Positions for the throughput run.")] = 100_000,
    naive: Annotated[bool, typer.Option("--naive", help="The seed demo's scan (baseline).")] = False,
    workers: Annotated[int, typer.Option(help="Faust workers.")] = 1,
    rate: Annotated[float, typer.Option(help="Positions/s for the latency run.")] = 2000.0,
    latency_seconds: Annotated[float, typer.Option(help="Length of the latency run.")] = 10.0,
    ceiling: Annotated[bool, typer.Option(help="Measure the Faust consume-only ceiling.")] = True,
    seed: Annotated[int, typer.Option(help="World and walks seed.")] = 7,
    as_json: Annotated[bool, typer.Option("--json", help="Last line: one JSON object.")] = False,
) -> None:
    """Positions -> Faust worker -> NEARBY_CUSTOMERS on a private embedded stack: positions/s,
    rows/s, matches per position, p50/p99 latency, and the Faust consume-only ceiling."""
    from bench.proximity import run  # noqa: PLC0415

    fig = run(stores=stores, products=products, promoted=promoted, events=events, naive=naive,
              workers=workers, rate=rate, latency_seconds=latency_seconds,
              ceiling=ceiling, seed=seed, progress=lambda m: console.print(f"[cyan]bench[/] {m}"))
    _print_figures(fig)
    if as_json:
        sys.stdout.write(json.dumps(fig) + "\n")


def _print_figures(fig: dict[str, object]) -> None:
    table = Table("figure", "value")
    for key, value in fig.items():
        table.add_row(key, f"{value:,}" if isinstance(value, int | float) else str(value))
    console.print(table)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
