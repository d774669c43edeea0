"""Write a store's daily report into the archive's ``reports/`` folder (or any folder), and the
once-a-day loop ``instore up`` runs (``instore report --daily``).

Files: ``<reports>/<day>/<store>_<day>.html`` (self-contained), ``.pdf`` and ``.json`` (the
figures), each written under a temporary name and moved into place, so a report that exists
is whole; the loop skips reports that exist.
"""

from __future__ import annotations

import json
import logging
import posixpath
import threading
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from urllib.parse import quote

from instore import archive as a
from stream_apps.reports.exceptions import BadDay, NoArchive, ReportError, UnknownStore
from stream_apps.reports.figures import Report, compute, store_known, stores_on
from stream_apps.reports.render import render

log = logging.getLogger(__name__)
PARTIAL = ".partial"  # not the archiver's .tmp: its recovery deletes stray .tmp files
POLL_S = 300.0


@dataclass
class Written:
    report: Report
    paths: dict[str, str]  # html, pdf, json -> where


def report_dir(location: str, out: str | None, day: date) -> str:
    """Where a day's reports go: ``out`` as given, else ``<archive>/reports/<day>``."""
    return out if out is not None else posixpath.join(
        location.rstrip("/"), a.REPORTS, day.isoformat())


def report_stem(store_id: str, day: date) -> str:
    return f"{quote(store_id, safe='')}_{day.isoformat()}"


def check_day(day: date, today: date) -> None:
    if day > today:
        msg = f"{day.isoformat()} has not begun yet (today is {today.isoformat()} UTC)"
        raise BadDay(msg)


def write_report(location: str, store_id: str, day: date, *, dwell_gap_s: float,
                 basket_window_s: int, out: str | None = None, pdf: bool = True,
                 now: datetime | None = None) -> Written:
    """Compute, render and write one report; ``ReportError`` (one sentence) when the archive
    is not there, the store was never seen, or the day has not begun."""
    now = now or datetime.now(UTC)
    check_day(day, now.date())
    fs, root = a.filesystem(location)
    if not fs.exists(root):
        msg = f"no archive at {location}: run `instore up` (or `instore archive --once`) first"
        raise NoArchive(msg)
    con = a.connect(location)
    try:
        report = compute(con, store_id, day, dwell_gap_s=dwell_gap_s,
                         basket_window_s=basket_window_s)
        if not report.has_data and not store_known(con, store_id):
            seen = stores_seen(con)
            listed = ", ".join(seen[:10]) + (" ..." if len(seen) > 10 else "")
            msg = (f"no store {store_id!r} in the archive at {location} "
                   f"({'stores: ' + listed if seen else 'it holds no store yet'})")
            raise UnknownStore(msg)
    finally:
        con.close()
    rendered = render(report, pdf=pdf, generated_at=now)
    folder = report_dir(location, out, day)
    out_fs, out_root = a.filesystem(folder)
    out_fs.makedirs(out_root, exist_ok=True)
    stem = posixpath.join(out_root, report_stem(store_id, day))
    files: dict[str, bytes] = {"json": json.dumps(report.model_dump(mode="json")).encode(),
             "html": rendered.html.encode()}
    if rendered.pdf is not None:
        files["pdf"] = rendered.pdf
    paths: dict[str, str] = {}
    for ext in ("json", "pdf", "html"):  # the HTML last: its presence means the report is done
        if ext not in files:
            continue
        path = f"{stem}.{ext}"
        with out_fs.open(path + PARTIAL, "wb") as f:
            f.write(files[ext])
        out_fs.mv(path + PARTIAL, path)
        paths[ext] = _address(out_fs, path)
    return Written(report, paths)


def _address(fs: object, path: str) -> str:
    """A path as the user gives it: plain on the local filesystem, else a URL."""
    protocol = fs.protocol  # type: ignore[attr-defined]
    protocol = protocol if isinstance(protocol, str) else protocol[0]
    return path if protocol in ("file", "local") else f"{protocol}://{path.lstrip('/')}"


def stores_seen(con: object) -> list[str]:
    rows = con.execute(" UNION ".join(  # type: ignore[attr-defined]
        f"SELECT DISTINCT store FROM {ds.name}"  # noqa: S608 - dataset names
        for ds in (a.POSITIONS, a.KIOSK, a.NEARBY, a.OFFERS, a.PRODUCTS))).fetchall()
    return sorted(s for (s,) in rows if s)


def due_day(now: datetime, report_hour_utc: int) -> date | None:
    """The day whose reports are due at ``now``: yesterday once the report hour has come."""
    if report_hour_utc < 0 or now.hour < report_hour_utc:
        return None
    return now.date() - timedelta(days=1)


def render_day(location: str, day: date, *, dwell_gap_s: float, basket_window_s: int,
               out: str | None = None, pdf: bool = True) -> dict[str, str]:
    """Every store's report of ``day`` that is not there yet: {store: written | skipped}."""
    fs, root = a.filesystem(location)
    if not fs.exists(root):
        return {}
    con = a.connect(location)
    try:
        stores = stores_on(con, day)
    finally:
        con.close()
    out_fs, out_root = a.filesystem(report_dir(location, out, day))
    done = {}
    for store in stores:
        if out_fs.exists(posixpath.join(out_root, report_stem(store, day) + ".html")):
            done[store] = "skipped"
            continue
        write_report(location, store, day, dwell_gap_s=dwell_gap_s,
                     basket_window_s=basket_window_s, out=out, pdf=pdf)
        done[store] = "written"
        log.info("reports: %s on %s written", store, day.isoformat())
    return done


def run_daily(location: str, report_hour_utc: int, stop: threading.Event, *,
              dwell_gap_s: float, basket_window_s: int, poll_s: float = POLL_S) -> int:
    """Until ``stop``: once a day, after the report hour (UTC), render yesterday's reports of
    every store with data that day. A failure is logged and retried at the next poll.
    Returns how many reports were written."""
    log.info("reports: started (yesterday's reports after %02d:00 UTC, into %s/%s)",
             report_hour_utc, location.rstrip("/"), a.REPORTS)
    written = failures = 0
    finished: date | None = None
    while not stop.is_set():
        day = due_day(datetime.now(UTC), report_hour_utc)
        if day is not None and day != finished:
            try:
                done = render_day(location, day, dwell_gap_s=dwell_gap_s,
                                  basket_window_s=basket_window_s)
            except (ReportError, OSError, ValueError) as exc:
                failures += 1
                log.warning("reports: %s not finished (%s: %s); retrying in %.0f s",
                            day.isoformat(), type(exc).__name__, exc, poll_s)
            else:
                finished = day
                new = sum(1 for v in done.values() if v == "written")
                written += new
                log.info("reports: %s done (%d written, %d already there)", day.isoformat(),
                         new, len(done) - new)
        stop.wait(poll_s)
    log.info("reports: stopped (%d written, %d failed attempts)", written, failures)
    return written
