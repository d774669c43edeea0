"""`instore`: the one command line. It knows every part and imports a part only inside the
command that runs it."""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from instore.commands import analytics as analytics_cmds
from instore.commands import api as api_cmds
from instore.commands import cloud as cloud_cmds
from instore.commands import edge as edge_cmds
from instore.commands import ksql as ksql_cmds
from instore.commands import push as push_cmds
from instore.commands import shopper as shopper_cmds
from instore.commands import topics as topics_cmds
from instore.errors import InstoreError
from instore.logs import setup_logging
from instore.settings import get_settings

if TYPE_CHECKING:
    import threading

    from instore.settings import Settings
    from producers.demo import CameraFeed

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


produce_app = typer.Typer(help="Simulators and replays that write the topic contract.",
                          no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks: they print figures and append them to bench/results.",
                        no_args_is_help=True)
app.add_typer(produce_app, name="produce")
app.add_typer(bench_app, name="bench")


@bench_app.callback()
def _bench_stops_cleanly() -> None:
    """A benchmark's private stack is stopped in its ``finally``: make SIGTERM run it too
    (Python's default SIGTERM ends the process at once and left every service running)."""

    def _exit(signum: int, _frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut the clean-up
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _exit)
app.add_typer(push_cmds.app, name="push")
app.add_typer(api_cmds.app, name="api")
app.add_typer(ksql_cmds.app, name="ksql")
app.add_typer(cloud_cmds.app, name="cloud")
app.add_typer(edge_cmds.app, name="edge")
app.add_typer(topics_cmds.app, name="topics")
app.add_typer(shopper_cmds.app, name="shopper")
app.add_typer(analytics_cmds.app, name="analytics")
# A part's commands module may offer `bench` (-> `instore bench <part>`).
for _name, _mod in (("push", push_cmds), ("ksql", ksql_cmds), ("edge", edge_cmds),
                    ("api", api_cmds), ("cloud", cloud_cmds)):
    if hasattr(_mod, "bench"):
        bench_app.command(_name)(_mod.bench)

console = Console(stderr=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    console.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


@contextlib.contextmanager
def _progress(what: str, total: int) -> Iterator[Any]:
    """A progress bar with the time left (on a terminal); yields ``advance(n=1)``."""
    from rich.progress import (  # noqa: PLC0415
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("left"), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(what, total=total)
        yield lambda n=1: progress.advance(task, n)


@contextlib.contextmanager
def _writing() -> Iterator[Any]:
    """A producer for a `produce` command: one sentence and exit 1 when the broker is not
    there or a record was not delivered (never a "wrote ..." line for records that were not)."""
    from instore.kafka import KafkaUnavailable, NotDelivered, command_producer  # noqa: PLC0415

    try:
        producer = command_producer(get_settings())
        yield producer
        producer.finish()
    except (KafkaUnavailable, NotDelivered) as exc:
        raise fail(str(exc)) from None


@app.command()
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
        _print_status(stack.status())
        while not stopping:
            stack.supervise_once()
            write_stack_status(data_dir, stack.status())
            time.sleep(0.5)
    finally:
        stack.stop()
        write_stack_status(data_dir, stack.status(), stopped=True)
        console.print("[cyan]up[/] stack stopped")


def _print_status(rows: list[dict[str, object]]) -> None:
    table = Table("service", "state", "pid", "restarts", "where")
    for row in rows:
        table.add_row(str(row["name"]), str(row["state"]), str(row["pid"]), str(row["restarts"]),
                      str(row.get("url") or ""))
    console.print(table)


@app.command()
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
            svc = Table("service", "state", "pid", "restarts", "where")
            for row in services:
                svc.add_row(str(row["name"]), str(row["state"]), str(row["pid"]),
                            str(row["restarts"]), str(row.get("url") or ""))
            Console().print(svc)
        if not any(item["ok"] for item in report["checks"].values()):
            console.print("nothing is running: start the stack with `instore up` "
                          "(or try it with `make demo`)")
    raise typer.Exit(0 if report["ok"] else 1)


broker_app = typer.Typer(help="The embedded Apache Kafka broker's jars.", no_args_is_help=True)
app.add_typer(broker_app, name="broker")


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


@app.command()
def worker(
    loglevel: Annotated[str, typer.Option(help="Log level.")] = "warning",
) -> None:
    """Run one Faust worker (proximity -> NEARBY_CUSTOMERS -> policy -> offers). Start more to scale.
    With NEARBY_ENGINE=ksqldb it runs no proximity agent, even if WORKER_AGENTS names it: ksqlDB
    writes NEARBY_CUSTOMERS (`instore ksql migrate` starts that query) and the worker's policy
    and analytics read the topic."""
    from stream_apps.app import run_worker  # noqa: PLC0415

    run_worker(loglevel)


@app.command()
def archive(
    once: Annotated[bool, typer.Option("--once", help="Archive what the topics hold now, "
                                       "then exit.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Last line: one JSON object "
                                          "(records, files, invalid).")] = False,
) -> None:
    """Run the archiver: the streams to Parquet by date and store (ARCHIVE_URL, else the data
    dir's archive/), exactly once per offset, shoppers pseudonymized. `instore up` runs it."""
    from instore.kafka import KafkaUnavailable  # noqa: PLC0415
    from stream_apps.archive.service import ArchiveIncomplete, run_archiver  # noqa: PLC0415

    setup_logging()
    try:
        stats = run_archiver(get_settings(), once=once)
    except (KafkaUnavailable, ArchiveIncomplete) as exc:
        raise fail(str(exc)) from None
    if as_json:
        sys.stdout.write(json.dumps(stats) + "\n")
    elif once:
        console.print(f"archived {stats.get('records', 0):,} records in "
                      f"{stats.get('files', 0):,} files to {get_settings().archive_location}")


@app.command()
def report(
    store: Annotated[str | None, typer.Option(help="The store's id.")] = None,
    day: Annotated[str | None, typer.Option(help="The UTC day, YYYY-MM-DD (default: "
                                            "yesterday).")] = None,
    archive: Annotated[str | None, typer.Option(help="The archive: a folder or an fsspec URL "
                                                "(default: ARCHIVE_URL, else the data dir's).")] = None,
    out: Annotated[str | None, typer.Option(help="Write the files here (default: "
                                            "<archive>/reports/<day>/).")] = None,
    pdf: Annotated[bool, typer.Option("--pdf/--no-pdf", help="Also write a PDF.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Last line: one JSON object with the "
                                          "figures and the paths written.")] = False,
    daily: Annotated[bool, typer.Option("--daily", help="Run until stopped: every day after "
                                        "REPORT_HOUR_UTC, yesterday's report of every store "
                                        "with data (existing ones skipped). `instore up` runs "
                                        "it.")] = False,
) -> None:
    """Render a store's daily report from the archive: one HTML file with its plots (funnel per
    promotion, offers and redemptions over the day, the floor's dwell heatmap, top 10 %
    products by dwell and by redemptions, bought-together pairs), a PDF, and the figures as
    JSON. See docs/analytics.md, "Daily reports"."""
    from datetime import UTC, date, datetime, timedelta  # noqa: PLC0415

    from stream_apps.reports.daily import run_daily, write_report  # noqa: PLC0415
    from stream_apps.reports.exceptions import ReportError  # noqa: PLC0415

    settings = get_settings()
    location = archive or settings.archive_location
    if daily:
        if settings.report_hour_utc < 0:
            msg = "daily reports are off (REPORT_HOUR_UTC=-1); set an hour 0-23 to run them"
            raise fail(msg)
        import threading  # noqa: PLC0415

        setup_logging()
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        run_daily(location, settings.report_hour_utc, stop, dwell_gap_s=settings.dwell_gap_s,
                  basket_window_s=settings.basket_window_s)
        return
    if store is None:
        msg = "give the store with --store ID (or run the daily loop with --daily)"
        raise fail(msg)
    today = datetime.now(UTC).date()
    try:
        when = date.fromisoformat(day) if day is not None else today - timedelta(days=1)
    except ValueError:
        msg = f"--day must be a date like {today.isoformat()}, not {day!r}"
        raise fail(msg) from None
    try:
        written = write_report(location, store, when, dwell_gap_s=settings.dwell_gap_s,
                               basket_window_s=settings.basket_window_s, out=out, pdf=pdf)
    except ReportError as exc:
        raise fail(str(exc)) from None
    rep = written.report
    note = "" if rep.has_data else " (no data that day: the report says so)"
    console.print(f"report of {store} on {when.isoformat()}{note}: "
                  + ", ".join(written.paths[k] for k in ("html", "pdf") if k in written.paths))
    if as_json:
        sys.stdout.write(json.dumps({"store_id": store, "day": when.isoformat(),
                                     "has_data": rep.has_data, "paths": written.paths,
                                     "figures": rep.model_dump(mode="json")}) + "\n")


@app.command()
def demo(
    seconds: Annotated[float, typer.Option(help="How long shoppers walk.")] = 60.0,
    shoppers: Annotated[int, typer.Option(help="Simulated shoppers (4 in 5 opt in).")] = 40,
    seed: Annotated[int, typer.Option(help="Same seed, same store and walks.")] = 7,
    as_json: Annotated[bool, typer.Option("--json", help="Last line: one JSON object (the "
                                          "summary).")] = False,
    camera: Annotated[bool, typer.Option("--camera",
                                         help="Shoppers from the synthetic depth camera.")] = False,
    keep_running: Annotated[bool, typer.Option("--keep-running", help="Leave the stack up "
                                               "after the walk, until Ctrl-C.")] = False,
) -> None:
    """Start the embedded stack, walk simulated shoppers through a store, show offers arriving
    and the URLs of the phone page, the kiosk page, the dashboard and the API docs."""
    from instore.embedded import StackError  # noqa: PLC0415
    from instore.kafka import KafkaUnavailable  # noqa: PLC0415

    setup_logging("WARNING")
    settings = get_settings()
    from producers.demo import run_demo  # noqa: PLC0415

    feed = _camera_feed(seconds) if camera else None
    try:
        summary = run_demo(settings, seconds=seconds, shoppers=shoppers, seed=seed,
                           console=console, live=not as_json and console.is_terminal,
                           on_event=lambda m: console.print(f"[cyan]demo[/] {m}"), camera=feed,
                           keep_running=keep_running)
    except (StackError, KafkaUnavailable) as exc:
        raise fail(str(exc)) from None
    _print_figures(summary)
    if as_json:
        sys.stdout.write(json.dumps(summary) + "\n")


def _camera_feed(seconds: float) -> CameraFeed:
    """`demo --camera`: the synthetic depth camera's check-in scene (one shopper checks in at
    the kiosk, then stops at a shelf) through the edge pipeline, and a catalog on its shelves."""
    from edge.pipeline import run_pipeline  # noqa: PLC0415
    from edge.scene import checkin_scene, shelf_products  # noqa: PLC0415
    from edge.sources import SyntheticSource  # noqa: PLC0415
    from instore.records import Promotion, StoreProduct  # noqa: PLC0415
    from producers.demo import CameraFeed  # noqa: PLC0415

    scene = checkin_scene("640x480", seconds=max(seconds, 60.0), fps=15.0)
    products = [StoreProduct(sku=sku, store_id=scene.store_id, segment=seg, name=name,
                             latitude=lat, longitude=lon, country="GB")
                for sku, seg, name, lat, lon in shelf_products(scene)]
    promotions = [Promotion(pid=f"camera-{p.sku}", sku=p.sku, title=f"15% off {p.name}",
                            discount_pct=15, radius_ft=6) for p in products[::2]]
    kiosk_id = next(iter(scene.kiosks))

    def run(settings: Settings, stop: threading.Event) -> object:
        return run_pipeline(settings, SyntheticSource(scene, real_time=True), stop)

    return CameraFeed(products, promotions, scene.store_id, kiosk_id, run)


@produce_app.command("catalog")
def produce_catalog(
    stores: Annotated[int, typer.Option(help="Stores.")] = 2,
    products: Annotated[int, typer.Option(help="Products per store.")] = 400,
    promoted: Annotated[int, typer.Option(help="Promoted SKUs (chain-wide).")] = 12,
    segment_promotions: Annotated[int, typer.Option(help="Segment-wide promotions.")] = 0,
    seed: Annotated[int, typer.Option(help="Same seed, same catalog.")] = 7,
) -> None:
    """Write stores' products (aisles with real lat/lon) and promotions."""
    from producers.publish import publish_world  # noqa: PLC0415
    from producers.world import build_world  # noqa: PLC0415

    world = build_world(stores, products, promoted, seed=seed,
                        segment_promotions=segment_promotions)
    total = len(world.products) + len(world.promotions)
    with _writing() as producer, _progress("catalog records", total) as advance:
        n_p, n_q = publish_world(producer, world.products, world.promotions,
                                 on_sent=lambda _r: advance())
    console.print(f"wrote {n_p:,} products in {stores} stores and {n_q} promotions")


@produce_app.command("shoppers")
def produce_shoppers(
    shoppers: Annotated[int, typer.Option(help="Shoppers.")] = 40,
    hz: Annotated[float, typer.Option(min=1, max=10, help="Positions per second each.")] = 2.0,
    seconds: Annotated[float, typer.Option(help="Stop after this much (sim) time.")] = 60.0,
    stores: Annotated[int, typer.Option(help="Stores (as for `produce catalog`).")] = 2,
    products: Annotated[int, typer.Option(help="Products per store.")] = 400,
    promoted: Annotated[int, typer.Option(help="Promoted SKUs.")] = 12,
    opt_in: Annotated[bool, typer.Option(help="Also write their consents (opted in).")] = True,
    realtime: Annotated[bool, typer.Option(help="Pace in real time (else: as fast as possible).")] = True,
    seed: Annotated[int, typer.Option(help="Same seed, same walks.")] = 7,
) -> None:
    """Walk shoppers through the aisles with stops at shelves, writing `customers_locations`."""
    import itertools  # noqa: PLC0415

    from producers.publish import publish_consents, publish_positions  # noqa: PLC0415
    from producers.shoppers import walk_positions  # noqa: PLC0415
    from producers.world import build_world  # noqa: PLC0415

    world = build_world(stores, products, promoted, seed=seed)
    with _writing() as producer:
        if opt_in:
            publish_consents(producer, [f"shopper-{i + 1:05d}" for i in range(shoppers)])
        horizon = int(seconds * 1000)
        walks = itertools.takewhile(lambda p: (p.ts or 0) < horizon,
                                    walk_positions(world, shoppers=shoppers, hz=hz, seed=seed,
                                                   start_anywhere=True))
        with _progress("positions", int(shoppers * hz * seconds)) as advance:
            n = publish_positions(producer, walks, realtime=realtime,
                                  on_sent=lambda _p: advance())
    console.print(f"wrote {n:,} positions")


@produce_app.command("kiosks")
def produce_kiosks(
    shoppers: Annotated[int, typer.Option(help="Shoppers who check in.")] = 5,
    seed: Annotated[int, typer.Option(help="Same seed, same sessions.")] = 7,
) -> None:
    """Kiosk sessions: check in, views and taps of promoted products, check out."""
    from instore import topics as t  # noqa: PLC0415
    from instore.kafka import produce  # noqa: PLC0415
    from instore.records import now_ms  # noqa: PLC0415
    from producers.kiosks import kiosk_sessions  # noqa: PLC0415
    from producers.world import build_world  # noqa: PLC0415

    world = build_world(2, 400, 12, seed=seed)
    events = list(kiosk_sessions(world, [f"shopper-{i + 1:05d}" for i in range(shoppers)],
                                 seed=seed, start_ms=now_ms()))
    n = 0
    with _writing() as producer, _progress("kiosk interactions", len(events)) as advance:
        for event in events:
            produce(producer, t.KIOSK_INTERACTIONS, event)
            n += 1
            advance()
    console.print(f"wrote {n} kiosk interactions")


@produce_app.command("seed-demo")
def produce_seed_demo(
    positions: Annotated[int, typer.Option(help="Positions to write.")] = 1000,
    seed: Annotated[int, typer.Option(help="Same seed, same records.")] = 7,
) -> None:
    """The seed demo's three generators' shape: customers_locations (uid/lat/lon/country),
    stores_products, products_promotions (segment promotions)."""
    from instore import topics as t  # noqa: PLC0415
    from instore.kafka import produce  # noqa: PLC0415
    from producers.publish import publish_world  # noqa: PLC0415
    from producers.seed_demo import seed_catalog, seed_positions  # noqa: PLC0415

    products, promos = seed_catalog(seed)
    n = 0
    with _writing() as producer:
        publish_world(producer, products, promos)
        for pos in seed_positions(positions, seed):
            produce(producer, t.CUSTOMERS_LOCATIONS, pos.model_dump_json(exclude_none=True,
                    exclude={"source", "accuracy_m"}).encode(), key=pos.uid)
            n += 1
    console.print(f"wrote {len(products)} products, {len(promos)} promotions, {n} positions")


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
    consenting: Annotated[float, typer.Option(min=0.0, max=1.0, help="Share of the walking "
                                              "shoppers who opted in to offers.")] = 0.3,
    agents: Annotated[str, typer.Option(help="The worker's agents (WORKER_AGENTS).")] =
        "proximity,policy,analytics",
    peers: Annotated[bool, typer.Option(help="After the worker is stopped, run the same "
                                        "proximity step written with quix-streams and with "
                                        "bytewax, each in its own process on the same broker, "
                                        "timed like the throughput run: peer_<engine>_* "
                                        "figures, best_peer, ratio_to_best_peer.")] = False,
    warmup: Annotated[int, typer.Option(min=0, help="Positions run through first, not "
                                        "measured (JIT, caches).")] = 20_000,
    as_json: Annotated[bool, typer.Option("--json", help="Last line: one JSON object.")] = False,
) -> None:
    """Positions -> Faust worker -> NEARBY_CUSTOMERS and offers on a private embedded stack:
    positions/s, rows/s, matches per position, p50/p99 latency to the row and to the offer,
    the Faust consume-only ceiling and, with --peers, the same step on quix-streams and bytewax."""
    from bench.proximity import run  # noqa: PLC0415

    fig = run(stores=stores, products=products, promoted=promoted, events=events, naive=naive,
              workers=workers, rate=rate, latency_seconds=latency_seconds,
              ceiling=ceiling, seed=seed, consenting=consenting, agents=agents, peers=peers,
              warmup=warmup, progress=lambda m: console.print(f"[cyan]bench[/] {m}"))
    _print_figures(fig)
    if as_json:
        sys.stdout.write(json.dumps(fig) + "\n")


@bench_app.command("soak")
def bench_soak(
    minutes: Annotated[float, typer.Option(help="How long shoppers walk.")] = 10.0,
    rate: Annotated[float, typer.Option(help="Positions/s (2 per shopper).")] = 2000.0,
    faults: Annotated[bool, typer.Option("--faults", help="SIGKILL worker, sink, Redis, API "
                                         "and the broker (with --brokers 3: the leader of "
                                         "customers_locations partition 0), each once.")] = False,
    brokers: Annotated[int, typer.Option(min=1, max=5, help="Embedded Kafka nodes (3: "
                                         "replication factor 3, min.insync.replicas 2).")] = 1,
    seed: Annotated[int, typer.Option(help="Same seed, same walks and fault order.")] = 7,
    keep: Annotated[bool, typer.Option("--keep", help="Keep the data dir and logs.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Last line: one JSON object.")] = False,
) -> None:
    """Embedded stack + simulated shoppers + a subscriber on every shopper channel, with faults;
    reconciles offers produced vs received (lost, duplicates, consent violations), recovery
    times, and scans the logs (figures appended to bench/results/soak.jsonl)."""
    from bench.soak import run as run_soak  # noqa: PLC0415

    fig = run_soak(minutes=minutes, rate=rate, faults=faults, seed=seed, keep_dir=keep, brokers=brokers,
                   progress=lambda m: console.print(f"[cyan]soak[/] {m}"))
    _print_figures({k: v for k, v in fig.items() if not isinstance(v, dict | list)})
    if as_json:
        sys.stdout.write(json.dumps(fig) + "\n")
    bad = (fig["lost"] or fig["duplicates"] or fig["consent_violations"] or fig["log_leaks"]
           or not fig["services_back"] or fig["faults_recovered"] < fig["faults_injected"])
    raise typer.Exit(1 if bad else 0)


@bench_app.command("archive")
def bench_archive(
    positions: Annotated[int, typer.Option(min=1000, help="Positions to archive (and a NEARBY "
                                           "row for every 4th).")] = 200_000,
    seed: Annotated[int, typer.Option(help="World and walks seed.")] = 7,
    as_json: Annotated[bool, typer.Option("--json", help="Last line: one JSON object.")] = False,
) -> None:
    """The archiver on a private embedded stack: records/s archived, files, bytes per record,
    and two DuckDB queries' times (figures appended to bench/results/archive.jsonl)."""
    from bench.archive import run_and_record  # noqa: PLC0415

    fig = run_and_record(positions=positions, seed=seed,
                         progress=lambda m: console.print(f"[cyan]archive[/] {m}"))
    _print_figures(fig)
    if as_json:
        sys.stdout.write(json.dumps(fig) + "\n")


@bench_app.command("report")
def bench_report() -> None:
    """Markdown tables of every benchmark run stamped with its broker and commit
    (bench/results/*.jsonl), for docs/benchmarks.md."""
    from bench.report import report  # noqa: PLC0415

    text = report()
    if not text:
        msg = "no stamped results in bench/results yet: run a benchmark first"
        raise fail(msg)
    sys.stdout.write(text)


@bench_app.command("fuzz")
def bench_fuzz(
    inputs: Annotated[int, typer.Option(help="Inputs per topic decoder.")] = 100_000,
    seed: Annotated[int, typer.Option(help="Same seed, same inputs.")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Last line: one JSON object.")] = False,
) -> None:
    """Hostile inputs through every topic decoder and the agents' input path: every one must
    end as a record or a dead letter (figures appended to bench/results/fuzz.jsonl)."""
    from bench.fuzz import run as run_fuzz  # noqa: PLC0415

    fig = run_fuzz(inputs, seed, progress=lambda m: console.print(f"[cyan]fuzz[/] {m}"))
    _print_figures({k: v for k, v in fig.items() if not isinstance(v, dict)})
    if as_json:
        sys.stdout.write(json.dumps(fig) + "\n")
    raise typer.Exit(1 if fig["crashes"] else 0)


def _print_figures(fig: dict[str, object]) -> None:
    table = Table("figure", "value")
    for key, value in fig.items():
        table.add_row(key, f"{value:,}" if isinstance(value, int | float) else str(value))
    console.print(table)


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
