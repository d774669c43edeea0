"""`instore worker`, `instore archive` and `instore report`: the stream apps' services, run in
this process (`instore up` starts each as its own `instore ...` process)."""

from __future__ import annotations

import json
import signal
import sys
from typing import Annotated

import typer

from instore.commands.output import console, fail
from instore.logs import setup_logging
from instore.settings import get_settings


def worker(
    loglevel: Annotated[str, typer.Option(help="Log level.")] = "warning",
) -> None:
    """Run one Faust worker (proximity -> NEARBY_CUSTOMERS -> policy -> offers). Start more to scale.
    With NEARBY_ENGINE=ksqldb it runs no proximity agent, even if WORKER_AGENTS names it: ksqlDB
    writes NEARBY_CUSTOMERS (`instore ksql migrate` starts that query) and the worker's policy
    and analytics read the topic."""
    from stream_apps.app import run_worker  # noqa: PLC0415

    run_worker(loglevel)



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
