"""The marketer dashboard in headless Chromium against the real API (`instore api serve`), the
Faust worker, broker and Redis: the marketer connects with their key, creates a promotion
through the form, sees it listed, and sees an offer for it appear in the feed once simulated
shoppers stand near the product; the floor map shows them. Screenshot: docs/screenshots/."""

from __future__ import annotations

import math
import random
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from instore import records as r
from instore import topics as t
from instore.embedded import free_port, port_open, redis_argv
from instore.kafka import ensure_topics, make_producer, produce
from instore.settings import DEV_KEYS
from tests.conftest import ROOT, child_env, make_settings
from tests.e2e import SCREENSHOTS
from tests.integration.api_harness import faust_web_env, redeem_at_till, stop_proc

pytestmark = pytest.mark.e2e

SHOT = SCREENSHOTS / "dashboard.png"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LAT0, LON0 = 52.5200, 13.4050  # the store's anchor (Berlin)
M_LAT = 111_320.0
M_LON = M_LAT * math.cos(math.radians(LAT0))
SEGMENTS = ["bakery", "coffee", "dairy", "snacks", "produce", "wine"]
TARGET_SKU = 1013
MARKETER = {"X-API-Key": DEV_KEYS["marketer"]}
# columns of the promotions table: title, for, discount, reach, status, offers sent, delivered,
# opened, redeemed, conversion, actions
SENT, DELIVERED, OPENED, REDEEMED = 5, 6, 7, 8


def at(x_m: float, y_m: float) -> tuple[float, float]:
    return LAT0 + y_m / M_LAT, LON0 + x_m / M_LON


def wait_for(check: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def spawn(args: list[str], env: dict[str, str], logs: Path, name: str) -> subprocess.Popen[bytes]:
    with (logs / f"{name}.log").open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "instore", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=logs,
            start_new_session=True,
        )


class Shoppers:
    """Two shoppers stand at the promoted shelf, four wander the aisles; positions at 4 Hz."""

    def __init__(self, settings: Any, store: str, target: tuple[float, float]) -> None:
        self.producer = make_producer(settings)
        self.store = store
        run = uuid.uuid4().hex[:6]
        self.standing = [f"stand-{run}-{i}" for i in range(2)]
        self.walking = [f"walk-{run}-{i}" for i in range(4)]
        self.target = target
        self.rng = random.Random(7)
        self.spots = {
            uid: [self.rng.uniform(-45, 45), self.rng.uniform(-25, 25)] for uid in self.walking
        }
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.is_set():
            ts = r.now_ms()
            for uid in self.standing:
                lat, lon = self.target
                self.send(uid, lat + self.rng.uniform(-3e-6, 3e-6), lon, ts)
            for uid, spot in self.spots.items():
                spot[0] = max(-48, min(48, spot[0] + self.rng.uniform(-1.5, 1.5)))
                spot[1] = max(-28, min(28, spot[1] + self.rng.uniform(-1.5, 1.5)))
                self.send(uid, *at(spot[0], spot[1]), ts)
            self.producer.poll(0)
            self.stop.wait(0.25)
        self.producer.flush(10)

    def send(self, uid: str, lat: float, lon: float, ts: int) -> None:
        rec = r.CustomerLocation(
            uid=uid,
            store_id=self.store,
            latitude=lat,
            longitude=lon,
            ts=ts,
            source="sim",
            accuracy_m=0.5,
        )
        produce(self.producer, t.CUSTOMERS_LOCATIONS, rec, timestamp_ms=ts)


@pytest.fixture(scope="module")
def stack(broker_factory, tmp_path_factory) -> Iterator[dict[str, Any]]:
    if not Path("/usr/bin/chromium").exists():
        pytest.skip("Debian's chromium is missing: run `make setup`")
    broker = broker_factory()
    logs = tmp_path_factory.mktemp("e2e-dashboard")
    # its own Redis too: the dashboard shows global counters and the feed of every store
    redis_port, api_port = free_port(), free_port()
    redis_proc = subprocess.Popen(
        redis_argv(redis_port, logs),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    wait_for(lambda: port_open("127.0.0.1", redis_port), 20, "redis-server")
    settings = make_settings(
        broker.bootstrap, f"redis://127.0.0.1:{redis_port}/0", api_port=api_port
    )
    ensure_topics(settings)
    env = child_env(
        settings,
        API_PORT=str(api_port),
        DWELL_S="1",
        COOLDOWN_S="20",
        CAP_PER_HOUR="1000",
        INSTORE_APP_ID=f"instore-dash-{uuid.uuid4().hex[:6]}",
        INSTORE_DATA_DIR=str(logs),
        # the archiver writes every second, so the charts (from the archive) move within seconds
        ARCHIVE_URL=str(logs / "archive"),
        ARCHIVE_FLUSH_S="1",
        **faust_web_env(),
    )
    procs = [
        spawn(["api", "serve", "--log-level", "warning"], env, logs, "api"),
        spawn(["worker", "--loglevel", "warn"], env, logs, "worker"),
        spawn(["archive"], env, logs, "archive"),
    ]
    base = f"http://127.0.0.1:{api_port}"
    try:

        def healthy() -> bool:
            assert all(p.poll() is None for p in procs), (logs / "api.log").read_text()[-2000:]
            try:
                return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, 60, "the API")
        yield {"settings": settings, "base": base, "logs": logs}
    finally:
        for p in reversed(procs):
            stop_proc(p)
        stop_proc(redis_proc)


def create_promotion(page: Any, title: str, sku: int, discount_pct: int, radius_ft: int) -> Any:
    """Create a promotion through the dashboard's form; its row in the promotions table."""
    from playwright.sync_api import expect

    form = page.locator("#promo-form")
    form.locator("input[name=title]").fill(title)
    form.locator("input[name=sku]").fill(str(sku))
    form.locator("input[name=discount_pct]").fill(str(discount_pct))
    form.locator("input[name=radius_ft]").fill(str(radius_ft))
    form.locator("button[type=submit]").click()
    expect(page.locator("#promo-result")).to_contain_text("created", timeout=15_000)
    row = page.locator("#promotions tbody tr", has_text=title)
    expect(row).to_be_visible(timeout=10_000)
    return row


def seed_store(base: str, target_sku: int = TARGET_SKU) -> tuple[str, tuple[float, float]]:
    """A 100 m x 60 m store: double-sided shelves every 6 m, 60 products, via the API."""
    store = f"berlin-{uuid.uuid4().hex[:4]}"
    with httpx.Client(base_url=base, headers=MARKETER, timeout=30) as c:
        res = c.put(
            f"/stores/{store}",
            json={
                "name": "Berlin Mitte",
                "latitude": LAT0,
                "longitude": LON0,
                "geofence_radius_m": 70,
                "country": "DE",
            },
        )
        assert res.status_code == 200, res.text
        lines = ["sku,store_id,segment,variant,name,latitude,longitude,country"]
        target = (0.0, 0.0)
        for i in range(60):
            x = -42 + (i % 10) * 9.3
            y = -24 + (i // 10) * 9.6
            lat, lon = at(x, y)
            sku = 1000 + i
            lines.append(
                f"{sku},{store},{SEGMENTS[i // 10]},,{SEGMENTS[i // 10]} item {i},"
                f"{lat:.7f},{lon:.7f},DE"
            )
            if sku == target_sku:
                target = (lat, lon)
        report = c.post(
            "/products/bulk", files={"file": ("catalog.csv", "\n".join(lines), "text/csv")}
        ).json()
        assert report["accepted"] == 60, report
        # another promotion already running, so the table and map are not a single row
        res = c.post(
            "/promotions",
            json={"segment": "wine", "title": "Wine weekend", "discount_pct": 10, "radius_ft": 20},
        )
        assert res.status_code == 201, res.text
    return store, target


def test_marketer_creates_a_promotion_and_sees_offers(stack):
    from playwright.sync_api import expect, sync_playwright

    base = stack["base"]
    store, target = seed_store(base)
    shoppers = Shoppers(stack["settings"], store, target)
    tokens = {}
    for uid in shoppers.standing + shoppers.walking:
        res = httpx.post(f"{base}/shoppers/{uid}/consent", json={"opted_in": True}, timeout=30)
        assert res.status_code == 200
        tokens[uid] = {"Authorization": f"Bearer {res.json()['shopper_token']}"}
    shoppers.thread.start()
    SHOT.parent.mkdir(parents=True, exist_ok=True)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.goto(f"{base}/dashboard")
                page.fill("#api-key", DEV_KEYS["marketer"])
                page.click("#key-form button")
                expect(page.locator("#who")).to_have_text("connected", timeout=15_000)
                page.select_option("#store-select", store)
                expect(page.locator("#floor .product").first).to_be_attached(timeout=15_000)

                row = create_promotion(page, "Espresso beans -30%", TARGET_SKU, 30, 15)
                form = page.locator("#promo-form")
                expect(row.locator(".status")).to_have_text("active")
                expect(page.locator("#floor .promoted-product").first).to_be_attached(
                    timeout=10_000
                )

                # a bad promotion is refused with the reason on the form
                form.locator("input[name=title]").fill("Too generous")
                form.locator("input[name=sku]").fill(str(TARGET_SKU))
                form.locator("input[name=discount_pct]").fill("95")
                form.locator("button[type=submit]").click()
                expect(page.locator("#promo-result")).to_contain_text(
                    "discount_pct", timeout=10_000
                )
                form.locator("input[name=discount_pct]").fill("30")
                page.locator("#promo-form").evaluate("f => f.reset()")
                page.locator("#promo-result").evaluate("el => el.textContent = ''")

                # shoppers standing at the shelf get an offer; the feed and funnel show it
                feed = page.locator("#feed li", has_text="Espresso beans -30%")
                expect(feed.first).to_be_visible(timeout=90_000)
                expect(page.locator("#floor .shopper-dot").first).to_be_attached(timeout=30_000)
                expect(row.locator("td").nth(SENT)).not_to_have_text("0", timeout=15_000)
                # the analytics agent ranks the shelf where shoppers dwell
                expect(page.locator("#top-dwell li").first).to_contain_text(
                    f"item {TARGET_SKU - 1000}", timeout=30_000
                )
                # one shopper opens and redeems their offer (as the phone page does)
                uid = shoppers.standing[0]
                offers = httpx.get(f"{base}/shoppers/{uid}/offers", headers=tokens[uid]).json()
                res = httpx.post(
                    f"{base}/offers/{offers[0]['offer_id']}/events",
                    json={"event": "opened"},
                    headers=tokens[uid],
                )
                assert res.status_code == 200, res.text
                with httpx.Client(base_url=base, timeout=30) as till:
                    res = redeem_at_till(till, uid, tokens[uid]["Authorization"].split()[1],
                                         offers[0]["offer_id"], store)
                assert res.status_code == 201, res.text
                expect(row.locator("td").nth(REDEEMED)).to_have_text("1", timeout=15_000)
                expect(page.locator("#top-redemptions li").first).to_contain_text(
                    f"item {TARGET_SKU - 1000}", timeout=30_000
                )
                # the bought-together list is served too (one product redeemed: no pair yet)
                expect(page.locator("#bought-together li").first).to_have_text(
                    "nothing yet", timeout=15_000
                )
                page.wait_for_timeout(2500)  # let the map and totals refresh once more
                page.screenshot(path=str(SHOT), full_page=True)
            finally:
                browser.close()
    finally:
        shoppers.stop.set()
        shoppers.thread.join(10)
    assert SHOT.exists() and SHOT.stat().st_size > 10_000


def test_openapi_docs_render_offline(stack):
    from playwright.sync_api import expect, sync_playwright

    if not (ROOT / "api" / "static" / "vendor" / "swagger-ui" / "swagger-ui-bundle.js").exists():
        pytest.skip("Swagger UI is not installed: run `make setup` (scripts/install-swagger-ui.sh)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(f"{stack['base']}/docs")
            expect(
                page.locator(".opblock-summary-path", has_text="/promotions").first
            ).to_be_visible(timeout=20_000)
            assert page.locator(".opblock").count() >= 30
        finally:
            browser.close()


def test_ops_view_shows_data_quality(stack):
    """The ops view: the checks and, per source topic, dead letters against the threshold
    (counts as the archiver writes them); a topic over it is marked and the stack degraded."""
    import redis
    from playwright.sync_api import expect, sync_playwright

    from instore import quality
    from instore.records import now_ms

    rds = redis.Redis.from_url(stack["settings"].redis_address)
    minute = now_ms() // 60_000
    pipe = rds.pipeline()
    quality.add(pipe, {(minute, "records:kiosk_interactions"): 40,
                       (minute, "dead:kiosk_interactions:invalid KioskInteraction"): 10,
                       (minute, "records:customers_locations"): 900, (minute, "late"): 3})
    pipe.execute()
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1200, "height": 800})
                page.goto(f"{stack['base']}/ops")
                page.fill("#api-key", DEV_KEYS["ops"])
                page.click("#key-form button")
                kiosk = page.locator('#quality tr[data-topic="kiosk_interactions"]')
                expect(kiosk).to_have_class("degraded", timeout=20_000)
                expect(kiosk).to_contain_text("25.0 %")
                expect(kiosk).to_contain_text("invalid KioskInteraction: 10")
                expect(page.locator('#quality tr[data-topic="customers_locations"]')) \
                    .not_to_have_class("degraded")
                expect(page.locator("#checks")).to_contain_text("degraded")
                expect(page.locator("#positions-quality")).to_contain_text("late: 3")
                page.screenshot(path=str(SCREENSHOTS / "ops.png"),
                                full_page=True)
                page.fill("#api-key", DEV_KEYS["marketer"])  # another role's key: refused
                page.click("#key-form button")
                expect(page.locator("#error")).to_contain_text("not the ops role")
            finally:
                browser.close()
    finally:
        for key in rds.scan_iter(match="instore:quality:*"):
            rds.delete(key)
        rds.close()


def chart_total(page: Any, metric: str, label: str) -> int:
    """The sum of one line of a chart, as Chart.js holds it (what the marketer sees drawn)."""
    return int(page.evaluate(
        """([id, label]) => {
             const chart = Chart.getChart(id);
             const set = chart && chart.data.datasets.find((d) => d.label === label);
             return set ? set.data.reduce((a, b) => a + b, 0) : 0;
           }""", [f"chart-{metric}", label]))


def test_marketer_edits_withdraws_and_sees_the_charts_move(stack):
    """Create a promotion, edit it, watch its offers and a redemption reach the charts (offers
    -> archive -> chart), read the funnel in plain words, upload a catalog with a bad row, and
    withdraw the promotion."""
    from playwright.sync_api import expect, sync_playwright

    if not (ROOT / "api" / "static" / "vendor" / "chartjs" / "chart.umd.min.js").exists():
        pytest.skip("Chart.js is not installed: run `make setup` (scripts/install-chartjs.sh)")
    base = stack["base"]
    sku = 1027
    store, target = seed_store(base, sku)
    shoppers = Shoppers(stack["settings"], store, target)
    tokens = {}
    for uid in shoppers.standing + shoppers.walking:
        res = httpx.post(f"{base}/shoppers/{uid}/consent", json={"opted_in": True}, timeout=30)
        assert res.status_code == 200
        tokens[uid] = {"Authorization": f"Bearer {res.json()['shopper_token']}"}
    shoppers.thread.start()
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1100})
                page.on("dialog", lambda d: d.accept())
                page.goto(f"{base}/dashboard")
                expect(page.locator("#ops-link")).to_be_hidden()
                page.fill("#api-key", DEV_KEYS["marketer"])
                page.click("#key-form button")
                expect(page.locator("#who")).to_have_text("connected", timeout=15_000)
                page.select_option("#store-select", store)
                # the floor: shelves derived from the products, and a scale bar in metres
                expect(page.locator("#floor .shelf").first).to_be_attached(timeout=15_000)
                expect(page.locator("#floor .scale-bar")).to_contain_text(" m")

                row = create_promotion(page, "Croissants -20%", sku, 20, 15)
                form = page.locator("#promo-form")
                pid = row.get_attribute("data-pid")
                assert pid
                expect(row).not_to_contain_text(pid)  # plain words: no ids
                expect(row).to_contain_text(f"item {sku - 1000}")  # the product by its name

                # edit it from the page (PATCH)
                row.locator("button.edit").click()
                expect(page.locator("#promo-heading")).to_contain_text("Edit")
                expect(form.locator("input[name=title]")).to_have_value("Croissants -20%")
                form.locator("input[name=title]").fill("Croissants -25%")
                form.locator("input[name=discount_pct]").fill("25")
                form.locator("button[type=submit]").click()
                expect(page.locator("#promo-result")).to_contain_text("saved", timeout=15_000)
                row = page.locator(f'#promotions tbody tr[data-pid="{pid}"]')
                expect(row.locator("td").first).to_have_text("Croissants -25%", timeout=10_000)
                expect(row.locator("td").nth(2)).to_have_text("25 %")
                expect(page.locator("#promo-heading")).to_have_text("New promotion")

                # offers are made, archived (every second) and drawn, per promotion
                page.select_option("#chart-form select[name=by]", "promotion")
                page.click("#chart-form button[type=submit]")
                expect(row.locator("td").nth(SENT)).not_to_have_text("0", timeout=90_000)
                wait_for(lambda: chart_total(page, "offers", "Croissants -25%") > 0, 90,
                         "the promotion's offers on the chart")
                expect(page.locator("#chart-delay")).to_contain_text("every 1 s")

                # a shopper redeems: the funnel counts every stage once, the chart moves
                uid = shoppers.standing[0]
                offers = httpx.get(f"{base}/shoppers/{uid}/offers", headers=tokens[uid]).json()
                mine = [o for o in offers if o["pid"] == pid]
                assert mine, offers
                assert chart_total(page, "redemptions", "Croissants -25%") == 0
                token = tokens[uid]["Authorization"].split()[1]
                with httpx.Client(base_url=base, timeout=30) as till:
                    res = redeem_at_till(till, uid, token, mine[0]["offer_id"], store)
                    assert res.status_code == 201, res.text
                    again = redeem_at_till(till, uid, token, mine[0]["offer_id"], store)
                    assert again.status_code == 409, again.text
                expect(row.locator("td").nth(REDEEMED)).to_have_text("1", timeout=30_000)
                cells = [int(row.locator("td").nth(i).inner_text())
                         for i in (SENT, DELIVERED, OPENED, REDEEMED)]
                assert cells[1] >= cells[2] >= cells[3] == 1, cells

                def redeemed_drawn() -> bool:
                    page.click("#chart-form button[type=submit]")
                    page.wait_for_timeout(500)
                    return chart_total(page, "redemptions", "Croissants -25%") == 1

                wait_for(redeemed_drawn, 90, "the redemption on the chart")
                strip = page.locator("#totals")
                expect(strip).to_contain_text("offers sent")
                expect(strip).not_to_contain_text("dead")
                page.wait_for_timeout(1000)
                page.screenshot(path=str(SCREENSHOTS / "dashboard-marketer.png"),
                                full_page=True)

                # a catalog upload with a bad row: the report names the line and the reason
                csv_text = "\n".join([
                    "sku,store_id,segment,variant,name,latitude,longitude,country",
                    f"2001,{store},bakery,,Baguette,{target[0]:.7f},{target[1]:.7f},DE",
                    f"2002,{store},bakery,,Brioche,{target[0]:.7f},{target[1]:.7f},DE",
                    f"2003,{store},bakery,,Nowhere,95.0,{target[1]:.7f},DE",
                ])
                page.set_input_files("#catalog-form input[type=file]", files=[{
                    "name": "catalog.csv", "mimeType": "text/csv",
                    "buffer": csv_text.encode()}])
                page.click("#catalog-form button[type=submit]")
                expect(page.locator("#catalog-summary")).to_contain_text(
                    "3 rows, 2 saved, 1 rejected", timeout=15_000)
                bad = page.locator('#catalog-errors tr[data-row="4"]')
                expect(bad).to_contain_text("latitude")

                # withdraw: the row goes
                row.locator("button.withdraw").click()
                expect(row).to_have_count(0, timeout=15_000)

                # the ops view is linked for whoever holds the ops key in this tab
                page.evaluate("sessionStorage.setItem('instore-ops-key', 'set by the ops page')")
                page.reload()
                expect(page.locator("#ops-link")).to_be_visible()
            finally:
                browser.close()
    finally:
        shoppers.stop.set()
        shoppers.thread.join(10)
