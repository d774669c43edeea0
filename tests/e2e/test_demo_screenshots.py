"""What the demo shows, in Chromium, from the demo's own world (`instore demo`: two stores of
the benchmark world, 40 walking shoppers): the README's screenshot and the docs' demo
screenshots are taken here. The first shopper opts in on the phone page and gets an offer, checks
in at the kiosk with its code and the kiosk shows their offers, the marketer's dashboard shows
the store, the promotions and their funnel, the analyst runs a push query on the live positions
in the SQL editor, and the lineage page and the ops view show the running stack."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from instore.embedded.services import child_env_for, isolated_settings
from instore.settings import DEV_KEYS, get_settings
from tests.conftest import ROOT
from tests.e2e import SCREENSHOTS
from tests.e2e.test_api_dashboard import CHROMIUM_ARGS, wait_for

pytestmark = pytest.mark.e2e
SHOTS = SCREENSHOTS


def test_the_demo_as_its_users_see_it(tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    if not Path("/usr/bin/chromium").exists():
        pytest.skip("Debian's chromium is missing: run `make setup-dev`")
    settings = isolated_settings(get_settings())
    env = {k: v for k, v in (os.environ | child_env_for(settings)).items()
           if k not in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL")}
    env["ARCHIVE_FLUSH_S"] = "3"  # the dashboard's charts read the archive: fill them soon
    out = (tmp_path / "demo.log").open("ab")
    demo = subprocess.Popen([sys.executable, "-m", "instore", "demo", "--seconds", "150",
                             "--keep-running"],
                            env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True)
    api = f"http://127.0.0.1:{settings.api_port}"
    hub = f"http://127.0.0.1:{settings.hub_port}"

    def api_up() -> bool:
        assert demo.poll() is None, (tmp_path / "demo.log").read_text()[-3000:]
        try:
            return httpx.get(f"{api}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(api_up, 240, "the demo's API")
        wait_for(lambda: "walking" in (tmp_path / "demo.log").read_text()
                 or "phone page:" in (tmp_path / "demo.log").read_text(), 120, "the walk")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            try:
                phone = browser.new_page(viewport={"width": 420, "height": 900})
                phone.goto(f"{hub}/phone?uid=shopper-00001")
                phone.click("#opt-in")
                expect(phone.locator("#offers > *").first).to_be_visible(timeout=120_000)
                phone.screenshot(path=str(SHOTS / "demo-phone.png"), full_page=True)

                kiosk = browser.new_page(viewport={"width": 1100, "height": 800})
                kiosk.goto(f"{hub}/kiosk?store=store-001&kiosk=kiosk-1&key={DEV_KEYS['kiosk']}")
                code = kiosk.locator("#code")
                expect(code).to_have_text(re.compile(r"\d{4,}"), timeout=30_000)
                phone.fill("#kiosk-code", code.inner_text().strip())
                phone.click("#kiosk-checkin")
                expect(kiosk.locator("#who")).not_to_be_empty(timeout=30_000)
                expect(kiosk.locator("#offers > *").first).to_be_visible(timeout=30_000)
                kiosk.screenshot(path=str(SHOTS / "demo-kiosk.png"), full_page=True)

                marketer = {"X-API-Key": DEV_KEYS["marketer"]}

                def charted() -> bool:
                    res = httpx.get(f"{api}/analytics/timeseries?metric=offers&bucket=minute",
                                    headers=marketer, timeout=10)
                    return res.status_code == 200 and any(
                        series["total"] > 0 for series in res.json()["series"])

                wait_for(charted, 90, "the offers in the archive (the dashboard's charts)")
                dash = browser.new_page(viewport={"width": 1400, "height": 1000})
                dash.goto(f"{api}/dashboard")
                dash.fill("#api-key", DEV_KEYS["marketer"])
                dash.click("#key-form button")
                expect(dash.locator("#promotions tbody tr").first).to_be_visible(timeout=30_000)
                expect(dash.locator("#floor *").first).to_be_attached(timeout=30_000)
                dash.wait_for_timeout(3000)  # a few polls: shoppers and heat on the floor
                dash.screenshot(path=str(SHOTS / "demo-dashboard.png"), full_page=True)

                # the analyst: the migrations, then a push query on the live positions
                migrated = subprocess.run([sys.executable, "-m", "instore", "ksql", "migrate"],
                                          env=env, cwd=ROOT, capture_output=True, text=True,
                                          timeout=240, check=False)
                assert migrated.returncode == 0, migrated.stderr[-2000:]
                sql = browser.new_page(viewport={"width": 1400, "height": 900})
                sql.goto(f"{api}/ksql/editor")
                sql.fill("#api-key", DEV_KEYS["analyst"])
                sql.click("#key-form button")
                expect(sql.locator('#source-list li[data-name="POSITIONS"]')).to_have_count(
                    1, timeout=30_000)
                sql.fill("#editor", "SELECT UID, STORE_ID, LATITUDE, LONGITUDE, TS "
                                    "FROM POSITIONS EMIT CHANGES LIMIT 12;")
                sql.click("#run")
                expect(sql.locator("#results table.grid tbody tr")).to_have_count(
                    12, timeout=60_000)
                sql.screenshot(path=str(SHOTS / "demo-sql.png"), full_page=True)

                lineage = browser.new_page(viewport={"width": 2600, "height": 700})
                lineage.goto(f"{api}/lineage/view")
                lineage.fill("#api-key", DEV_KEYS["analyst"])
                lineage.click("#key-form button")
                expect(lineage.locator('#graph g.node[data-id="topic:customers_locations"]')) \
                    .to_have_count(1, timeout=30_000)
                lineage.wait_for_timeout(7000)  # a second sample: rates on the edges
                lineage.screenshot(path=str(SHOTS / "demo-lineage.png"), full_page=True)

                ops = browser.new_page(viewport={"width": 1200, "height": 800})
                ops.goto(f"{api}/ops")
                ops.fill("#api-key", DEV_KEYS["ops"])
                ops.click("#key-form button")
                expect(ops.locator("#checks tbody tr").first).to_be_visible(timeout=30_000)
                ops.screenshot(path=str(SHOTS / "demo-ops.png"), full_page=True)
            finally:
                browser.close()
    finally:
        demo.send_signal(signal.SIGINT)
        try:
            demo.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait(10)
