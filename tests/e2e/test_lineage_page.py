"""The lineage page in headless Chromium against the real API (`instore api serve`) on the
broker and Redis: a wrong key is refused on the page, the analyst key draws every contract
topic as an SVG node, and positions produced meanwhile show as a rate on their edge. No
ksqlDB answers here: the page says so and still draws the flow. Screenshot: docs/screenshots/."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from instore import topics as t
from instore.embedded import free_port
from instore.kafka import ensure_topics
from instore.settings import DEV_KEYS
from tests.conftest import child_env, make_settings
from tests.e2e import SCREENSHOTS
from tests.e2e.test_api_dashboard import CHROMIUM_ARGS, wait_for
from tests.integration.api_harness import PositionFeed, stop_proc

pytestmark = pytest.mark.e2e

SHOT = SCREENSHOTS / "lineage.png"


@pytest.fixture(scope="module")
def api(kafka_bootstrap: str, redis_url: str,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    if not Path("/usr/bin/chromium").exists():
        pytest.skip("Debian's chromium is missing: run `make setup`")
    logs = tmp_path_factory.mktemp("e2e-lineage")
    api_port = free_port()
    no_ksqldb = f"http://127.0.0.1:{free_port()}"
    settings = make_settings(kafka_bootstrap, redis_url, api_port=api_port, ksqldb_url=no_ksqldb)
    ensure_topics(settings)
    env = child_env(settings, API_PORT=str(api_port), KSQLDB_URL=no_ksqldb,
                    INSTORE_APP_ID=f"instore-lineage-{uuid.uuid4().hex[:6]}", INSTORE_DATA_DIR=str(logs))
    with (logs / "api.log").open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "instore", "api", "serve", "--log-level",
                                 "warning"], env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=logs, start_new_session=True)
    base = f"http://127.0.0.1:{api_port}"
    try:
        def healthy() -> bool:
            assert proc.poll() is None, (logs / "api.log").read_text()[-2000:]
            try:
                return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, 60, "the API")
        yield {"base": base, "settings": settings}
    finally:
        stop_proc(proc)


def test_lineage_page_draws_the_topics_and_live_rates(api):
    from playwright.sync_api import expect, sync_playwright

    feed = PositionFeed(api["settings"], "lineage-e2e", 52.52, 13.405, every_s=0.05)
    feed.uids.extend(f"lineage-e2e-{i}" for i in range(4))
    feed.start()
    SHOT.parent.mkdir(parents=True, exist_ok=True)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 2400, "height": 900})
                page.goto(f"{api['base']}/lineage/view")
                page.fill("#api-key", DEV_KEYS["kiosk"])  # not a reader of lineage
                page.click("#key-form button")
                expect(page.locator("#error")).to_contain_text("403", timeout=15_000)

                page.fill("#api-key", DEV_KEYS["analyst"])
                page.click("#key-form button")
                expect(page.locator("#who")).to_have_text("connected", timeout=15_000)
                expect(page.locator("#error")).to_be_hidden()
                for topic in t.ALL:
                    node = page.locator(f'#graph g.node-topic[data-id="topic:{topic.name}"]')
                    expect(node).to_have_count(1, timeout=10_000)
                    expect(node.locator("text").first).to_have_text(topic.name)
                expect(page.locator("#graph g.node-agent")).not_to_have_count(0)
                expect(page.locator("#graph g.node-sink")).to_have_count(3)
                assert page.locator("#graph path.edge").count() >= 20
                expect(page.locator("#status .bad", has_text="ksqldb")).to_be_visible()

                label = page.locator('#graph text.edge-label[data-from="source:edge"]'
                                     f'[data-to="topic:{t.CUSTOMERS_LOCATIONS.name}"]')
                # refreshed every few seconds: the second sample gives the positions' rate
                expect(label).to_have_text(re.compile(r"^(?!–)(?!0/s)\S+/s$"), timeout=30_000)
                page.screenshot(path=str(SHOT), full_page=True)
            finally:
                browser.close()
    finally:
        feed.stop()
    assert SHOT.exists() and SHOT.stat().st_size > 10_000
