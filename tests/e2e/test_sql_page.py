"""The analyst's SQL page (`/ksql/editor`) in headless Chromium against the real API
(`instore api serve`) and the local ksqlDB-compatible endpoint (in this process, our
migrations applied) on a private broker: a marketer key is refused, the analyst key lists the
streams and tables with their columns, a pull query fills the grid, a push query streams
shoppers' positions in until Stop (which ends the query in ksqlDB), and a bad statement shows
ksqlDB's own message. Screenshot: docs/screenshots/sql.png."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from instore.commands.ksql.client import make_client
from instore.commands.ksql.migrations import MIGRATIONS_DIR, migrate
from instore.embedded import free_port
from instore.kafka import ensure_topics
from instore.settings import DEV_KEYS
from tests.conftest import child_env, make_settings
from tests.e2e import SCREENSHOTS
from tests.e2e.test_api_dashboard import CHROMIUM_ARGS, wait_for
from tests.integration.api_harness import PositionFeed, stop_proc
from tests.integration.test_ksql_endpoint import Endpoint

pytestmark = pytest.mark.e2e

SHOT = SCREENSHOTS / "sql.png"
STORE = "store-001"
KIOSK_EVENTS = [("k1", "checkin"), ("k1", "view"), ("k1", "view"), ("k2", "checkin")]


@pytest.fixture(scope="module")
def stack(broker_factory: Callable[[], Any], redis_url: str,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    if not Path("/usr/bin/chromium").exists():
        pytest.skip("Debian's chromium is missing: run `make setup`")
    logs = tmp_path_factory.mktemp("e2e-sql")
    broker = broker_factory()
    settings = make_settings(broker.bootstrap, redis_url)
    ensure_topics(settings)
    endpoint = Endpoint(settings)
    api_port = free_port()
    proc = None
    try:
        migrate(make_client(settings, endpoint.url), MIGRATIONS_DIR)
        ts = 1_767_225_600_000  # 2026-01-01T00:00Z
        endpoint.ksql(" ".join(
            f"INSERT INTO KIOSK_INTERACTIONS (id, store_id, kiosk_id, uid, action, sku, ts) "
            f"VALUES ('{STORE}:{k}', '{STORE}', '{k}', 'shopper-{i}', '{a}', 1013, {ts + i});"
            for i, (k, a) in enumerate(KIOSK_EVENTS)))
        env = child_env(settings, API_PORT=str(api_port), KSQLDB_URL=endpoint.url,
                        INSTORE_APP_ID=f"instore-sql-{uuid.uuid4().hex[:6]}", INSTORE_DATA_DIR=str(logs))
        with (logs / "api.log").open("ab") as out:
            proc = subprocess.Popen([sys.executable, "-m", "instore", "api", "serve",
                                     "--log-level", "warning"], env=env, stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=logs,
                                    start_new_session=True)
        base = f"http://127.0.0.1:{api_port}"

        def healthy() -> bool:
            assert proc is not None and proc.poll() is None, (logs / "api.log").read_text()[-2000:]
            try:
                return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, 60, "the API")
        yield {"base": base, "settings": settings, "endpoint": endpoint}
    finally:
        if proc is not None:
            stop_proc(proc)
        endpoint.stop()
        broker.stop()


def pull_rows(endpoint: Endpoint, sql: str) -> list[list[Any]]:
    res = httpx.post(f"{endpoint.url}/query-stream", json={"sql": sql, "properties": {}},
                     timeout=30)
    lines = [line for line in res.text.splitlines() if line.strip()]
    import json

    return [row for row in map(json.loads, lines[1:]) if isinstance(row, list)]


def test_analyst_runs_pull_and_push_queries_in_the_browser(stack: dict[str, Any]) -> None:
    from playwright.sync_api import expect, sync_playwright

    endpoint: Endpoint = stack["endpoint"]
    pull = f"SELECT * FROM KIOSK_ACTIVITY WHERE STORE_ID = '{STORE}';"
    # the table is materialized from the kiosk events: wait until all of them are counted
    expected = wait_for(lambda: (rows := pull_rows(endpoint, pull))
                        and sum(r[-1] for r in rows) == 3 * len(KIOSK_EVENTS) and rows,
                        60, "KIOSK_ACTIVITY")
    bad = "SELECT * FROM NO_SUCH_STREAM EMIT CHANGES;"
    bad_message = httpx.post(f"{endpoint.url}/query-stream", json={"sql": bad}).json()["message"]
    assert "NO_SUCH_STREAM" in bad_message

    feed = PositionFeed(stack["settings"], STORE, 52.52, 13.405, every_s=0.2).start()
    SHOT.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.goto(f"{stack['base']}/ksql/editor")

            page.fill("#api-key", DEV_KEYS["marketer"])  # ksqlDB is the analyst's
            page.click("#key-form button")
            expect(page.locator("#error")).to_contain_text("403", timeout=15_000)
            expect(page.locator("#source-list li")).to_have_count(0)

            page.fill("#api-key", DEV_KEYS["analyst"])
            page.click("#key-form button")
            expect(page.locator("#who")).to_have_text("connected", timeout=15_000)
            expect(page.locator("#error")).to_be_hidden()
            for name in ("POSITIONS", "NEARBY_CUSTOMERS", "KIOSK_ACTIVITY", "PROMOTIONS"):
                expect(page.locator(f'#source-list li[data-name="{name}"]')).to_have_count(1)
            positions = page.locator('#source-list li[data-name="POSITIONS"]')
            positions.locator("summary").click()
            expect(positions.locator(".columns .col.key")).to_have_text("UID")
            expect(positions.locator(".columns li", has_text="LATITUDE")).to_contain_text("DOUBLE")

            # a pull query fills the grid (Ctrl+Enter in the editor)
            page.fill("#editor", pull)
            page.press("#editor", "Control+Enter")
            grid = page.locator("#results table.grid")
            expect(grid.locator("tbody tr")).to_have_count(len(expected), timeout=15_000)
            headers = grid.locator("thead th .col-name").all_inner_texts()
            assert headers[:2] == ["STORE_ID", "ACTION"] and headers[-1] == "EVENTS", headers
            expect(page.locator("#status")).to_contain_text(f"{len(expected)} rows")
            first = grid.locator("tbody tr").first.locator("td")
            expect(first.first).to_have_text(STORE)

            # a push query: rows stream in as shoppers move, until Stop
            page.select_option("#offset", "latest")
            page.fill("#editor", "SELECT UID, STORE_ID, LATITUDE, LONGITUDE, SOURCE FROM "
                                 "POSITIONS EMIT CHANGES;")
            page.click("#run")
            expect(page.locator("#status")).to_contain_text("push query running", timeout=15_000)
            feed.uids.extend(f"shopper-{i:03d}" for i in range(3))  # they start walking
            expect(page.locator("#stop")).to_be_enabled()
            wait_for(lambda: grid.locator("tbody tr").count() >= 6, 30, "streamed rows")
            uids = set(grid.locator("tbody tr td:first-child").all_inner_texts())
            assert uids <= set(feed.uids) and uids, uids
            assert any(q.startswith("transient_POSITIONS") for q in endpoint.engine.transient)
            page.screenshot(path=str(SHOT))
            page.click("#stop")
            expect(page.locator("#status")).to_contain_text("stopped", timeout=10_000)
            expect(page.locator("#run")).to_be_enabled()
            # Stop ended the query in ksqlDB too (the API closed it upstream)
            wait_for(lambda: not any(q.startswith("transient_POSITIONS")
                                     for q in endpoint.engine.transient), 30, "the query's end")

            # ksqlDB's error, as ksqlDB words it
            page.fill("#editor", bad)
            page.press("#editor", "Control+Enter")
            expect(page.locator("#message")).to_have_text(bad_message, timeout=10_000)
            expect(page.locator("#message")).to_have_class("error")
        finally:
            browser.close()
            feed.stop()
    assert SHOT.exists() and SHOT.stat().st_size > 10_000
