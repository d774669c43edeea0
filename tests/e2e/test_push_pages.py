"""The phone and kiosk pages in headless Chromium against the whole embedded push path:
broker, Redis, the Faust worker, the push sink, the push hub and the API, all real.

A shopper opts in on the phone page and checks in at a kiosk by the code it shows; positions
near a promoted product are produced; the offer card appears on the phone and on the kiosk
(which greets the shopper without name or uid); "show me where" draws the floor map on both;
the phone shows the offer's code and a cashier redeems it once at the till, which writes
``redeemed`` to ``offer_events``. The pages subscribe with ably-js over the hub's Ably
realtime protocol (the SSE fallback is exercised by the simulated-shopper test); erasing the
shopper revokes their token, which takes the phone page off the channel. Screenshots go to
docs/screenshots/."""

from __future__ import annotations

import re
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
import redis
from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from bench.processes import Child, wait_http
from instore import serving
from instore import topics as t
from instore.embedded import free_port
from instore.kafka import ensure_topics, make_consumer, make_producer, produce
from instore.records import CustomerLocation, OfferEvent, Promotion, StoreProduct, decode, now_ms
from instore.settings import DEV_KEYS
from tests.conftest import ROOT, child_env, make_settings
from tests.e2e import SCREENSHOTS
from tests.integration.test_tls import make_cert

pytestmark = pytest.mark.e2e

SHOTS = SCREENSHOTS
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LAT, LON = 40.741895, -73.989308  # the chocolate shelf
CASHIER = {"X-API-Key": DEV_KEYS["cashier"]}  # the till


def wait_for(cond, timeout: float, what: str, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module", params=["http", "https"])
def world(request, broker_factory, redis_url, tmp_path_factory):
    """The stack behind the pages, plain or (privacy finding 5) with TLS on: then everything a
    phone touches is https/wss (the pages, the API they call, the push hub's realtime)."""
    if not Path("/usr/bin/chromium").exists():
        pytest.skip("Debian's chromium is missing: run `make setup`")
    if not (ROOT / "stream_apps" / "app.py").exists():
        pytest.skip("the Faust worker (stream_apps/app.py) is not there yet")
    broker = broker_factory()
    hub_port, api_port = free_port(), free_port()
    run = uuid.uuid4().hex[:6]
    settings = make_settings(broker.bootstrap, redis_url, hub_port=hub_port, api_port=api_port)
    ensure_topics(settings)
    scheme = request.param
    tls_env: dict[str, str] = {}
    verify: object = True
    chromium_args = list(CHROMIUM_ARGS)
    if scheme == "https":
        cert, key = make_cert(tmp_path_factory.mktemp("e2e-tls"))
        # the children trust the self-signed certificate (httpx reads SSL_CERT_FILE)
        tls_env = {"TLS_CERT_FILE": str(cert), "TLS_KEY_FILE": str(key),
                   "SSL_CERT_FILE": str(cert)}
        verify = str(cert)
        chromium_args.append("--ignore-certificate-errors")  # a test's self-signed certificate
    env = child_env(
        settings,
        HUB_PORT=str(hub_port),
        API_PORT=str(api_port),
        DWELL_S="0.5",
        INSTORE_APP_ID=f"instore-e2e-{run}",
        WEB_PORT=str(free_port()),
        WEB_BIND="127.0.0.1",
        **tls_env,
    )
    logs = tmp_path_factory.mktemp("e2e-push")
    (logs / ".instore" / "faust").mkdir(parents=True)  # the worker's relative data dir
    children = [
        Child("hub", ["push", "hub"], env, logs / "hub.log", cwd=logs),
        Child("api", ["api", "serve", "--log-level", "warning"], env, logs / "api.log", cwd=logs),
        Child("worker", ["worker", "--loglevel", "warn"], env, logs / "worker.log", cwd=logs),
        Child("sink", ["push", "sink"], env, logs / "sink.log", cwd=logs),
    ]
    for c in children:
        c.start()
    try:
        wait_http(f"{scheme}://127.0.0.1:{hub_port}/time", children[0], 60, verify=verify)
        wait_http(f"{scheme}://127.0.0.1:{api_port}/healthz", children[1], 60, verify=verify)
        store, kiosk = f"store-{run}", "k1"
        p = make_producer(settings)
        products = [
            StoreProduct(
                sku=4242,
                store_id=store,
                segment="snacks",
                name="Dark chocolate 70%",
                latitude=LAT,
                longitude=LON,
                country="US",
            ),
            StoreProduct(
                sku=4243,
                store_id=store,
                segment="snacks",
                name="Sea-salt caramels",
                latitude=LAT + 0.00002,
                longitude=LON,
                country="US",
            ),
        ]
        for prod in products:
            produce(p, t.STORES_PRODUCTS, prod)
        produce(
            p,
            t.PRODUCTS_PROMOTIONS,
            Promotion(
                pid=f"choc-{run}",
                sku=4242,
                title="Dark chocolate 70%",
                discount_pct=25,
                radius_ft=50,
            ),
        )
        produce(
            p,
            t.PRODUCTS_PROMOTIONS,
            Promotion(
                pid=f"caramel-{run}",
                sku=4243,
                title="Sea-salt caramels, 2 for 1",
                discount_pct=50,
                radius_ft=50,
            ),
        )
        p.flush(10)
        yield {
            "settings": settings,
            "hub": f"{scheme}://127.0.0.1:{hub_port}",
            "api": f"{scheme}://127.0.0.1:{api_port}",
            "verify": verify,
            "chromium_args": chromium_args,
            "store": store,
            "kiosk": kiosk,
            "run": run,
            "children": children,
        }
    finally:
        for c in reversed(children):
            c.stop()


def _positions_until(settings, uid: str, store: str, stop: threading.Event) -> None:
    p = make_producer(settings)
    while not stop.is_set():
        produce(
            p,
            t.CUSTOMERS_LOCATIONS,
            CustomerLocation(
                uid=uid,
                store_id=store,
                latitude=LAT,
                longitude=LON,
                ts=now_ms(),
                source="phone",
                accuracy_m=1.0,
            ),
        )
        p.flush(5)
        stop.wait(0.2)


def _offer_events(settings, offer_id: str, event: str, timeout: float = 30.0) -> bool:
    consumer = make_consumer(settings)
    meta = consumer.list_topics(t.OFFER_EVENTS.name, timeout=10)
    parts = list(meta.topics[t.OFFER_EVENTS.name].partitions)
    consumer.assign([TopicPartition(t.OFFER_EVENTS.name, i, OFFSET_BEGINNING) for i in parts])
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            for m in consumer.consume(200, 0.5):
                if m.error() is None:
                    ev = decode(OfferEvent, m.value())
                    if ev.offer_id == offer_id and ev.event == event:
                        return True
    finally:
        consumer.close()
    return False


def test_offer_reaches_phone_and_kiosk_and_the_till_redeems_its_code_once(world):
    from playwright.sync_api import expect, sync_playwright

    settings, hub = world["settings"], world["hub"]
    uid = f"ana-{world['run']}"
    r = redis.Redis.from_url(settings.redis_address)
    SHOTS.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()

    def till(code: str) -> httpx.Response:
        return httpx.post(f"{world['api']}/redemptions", headers=CASHIER, timeout=30,
                          json={"code": code, "store_id": world["store"]},
                          verify=world["verify"])

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium",
                                     args=world["chromium_args"])
        try:
            phone = browser.new_page(viewport={"width": 390, "height": 780})
            phone.goto(f"{hub}/phone?uid={uid}")
            # the two choices, one sentence each, before opting in
            expect(phone.locator("#choices")).to_contain_text("On this phone")
            expect(phone.locator("#choices")).to_contain_text("At a kiosk")
            phone.get_by_test_id("opt-in").click()
            expect(phone.get_by_test_id("state")).to_have_text("live", timeout=30_000)
            expect(phone.get_by_test_id("opt-out")).to_be_enabled()
            expect(phone.get_by_test_id("erase")).to_be_enabled()
            assert phone.evaluate("() => document.body.dataset.transport") == "ably-js"
            # the API the page calls has the page's scheme (https with TLS on)
            api_url = phone.evaluate(
                "async () => (await (await fetch('/config.json')).json()).api_url")
            assert api_url.startswith(world["hub"].split(":")[0] + "://"), api_url

            kiosk = browser.new_page(viewport={"width": 1100, "height": 760})
            kiosk.goto(f"{hub}/kiosk?store={world['store']}&kiosk={world['kiosk']}"
                       f"&key={DEV_KEYS['kiosk']}")
            expect(kiosk.get_by_test_id("state")).to_have_text("live", timeout=30_000)
            assert kiosk.evaluate("() => document.body.dataset.transport") == "ably-js"
            # Check-in: the kiosk shows a one-time code by itself, the phone confirms it.
            expect(kiosk.get_by_test_id("checkin-code")).to_have_text(
                re.compile(r"^[0-9]{6}$"), timeout=10_000)
            code = kiosk.get_by_test_id("checkin-code").inner_text()
            phone.get_by_test_id("kiosk-code").fill(code)
            phone.get_by_test_id("kiosk-checkin").click()
            expect(kiosk.get_by_test_id("who")).to_contain_text("Welcome back", timeout=10_000)
            # The sink has seen the check-in (so the offer also goes to this kiosk's channel).
            wait_for(lambda: r.get(serving.checkin(uid)), 60, "the check-in in Redis")

            walker = threading.Thread(
                target=_positions_until, args=(settings, uid, world["store"], stop), daemon=True
            )
            walker.start()
            cards = phone.locator(".offer-card")
            expect(cards).to_have_count(2, timeout=120_000)
            expect(phone.locator(".offer-card .title").first).to_be_visible()
            titles = sorted(phone.locator(".offer-card .title").all_inner_texts())
            assert titles == ["Dark chocolate 70%", "Sea-salt caramels, 2 for 1"]
            stop.set()
            expect(phone.get_by_test_id("redeem")).to_have_count(0)  # no self-declared redeem

            kiosk_cards = kiosk.locator(".offer-card")
            expect(kiosk_cards).to_have_count(2, timeout=30_000)
            assert uid not in kiosk.locator("body").inner_text()  # greeted, not named
            # "show me where" on the kiosk: the floor map with the way to the shelf
            kiosk.locator(".offer-card", has_text="Sea-salt caramels").get_by_test_id(
                "where").click()
            expect(kiosk.locator("#map svg.floor-map")).to_be_visible(timeout=10_000)
            expect(kiosk.locator("#map .route")).to_have_count(1)
            expect(kiosk.get_by_test_id("map-caption")).to_contain_text("Sea-salt caramels")

            card = phone.locator(".offer-card", has_text="Dark chocolate 70%")
            offer_id = card.get_attribute("data-offer-id")
            assert offer_id
            # "show me where" on the phone: the store is in the US, so feet
            card.get_by_test_id("where").click()
            expect(card.locator("svg.floor-map")).to_be_visible(timeout=10_000)
            expect(card.get_by_test_id("map-caption")).to_contain_text(
                re.compile(r"Dark chocolate 70%: [0-9]+ ft from you"))
            expect(card.get_by_test_id("distance")).to_have_text(re.compile(r"^[0-9]+ ft away$"))
            expect(card.get_by_test_id("badge")).to_have_text("Opened", timeout=10_000)
            # the code for the till: a QR code and the same code as text
            card.get_by_test_id("show-code").click()
            expect(card.locator(".qr svg")).to_be_visible(timeout=10_000)
            expect(card.get_by_test_id("redeem-code")).to_have_text(
                re.compile(r"^[0-9A-Z]{5}-[0-9A-Z]{5}$"))
            redeem_code = card.get_by_test_id("redeem-code").inner_text()
            phone.screenshot(path=str(SHOTS / "phone.png"), full_page=True)
            kiosk.screenshot(path=str(SHOTS / "kiosk.png"))

            # the cashier: a wrong code is refused, the right one redeems once
            wrong = "ZZZZZ-ZZZZZ" if redeem_code != "ZZZZZ-ZZZZZ" else "00000-00000"
            assert till(wrong).status_code == 404
            first = till(redeem_code)
            assert first.status_code == 201, first.text
            assert (first.json()["title"], first.json()["product"]) == (
                "Dark chocolate 70%", "Dark chocolate 70%")
            again = till(redeem_code)
            assert again.status_code == 409 and "already redeemed" in again.json()["detail"]
            # the phone sees the till's redemption
            expect(card.get_by_test_id("badge")).to_have_text("Redeemed ✓", timeout=15_000)

            # Erasure from the page revokes the shopper's push token: the phone's realtime
            # connection is closed (40141), and the old token is refused.
            shopper_token = phone.evaluate(
                "(uid) => localStorage.getItem(`instore.shopper_token.${uid}`)", uid
            )
            phone.get_by_test_id("erase").click()
            phone.get_by_test_id("erase-confirm").click()
            expect(phone.locator("#consent-text")).to_contain_text("Erased", timeout=15_000)
            expect(phone.get_by_test_id("state")).not_to_have_text("live", timeout=15_000)
            assert phone.locator(".offer-card").count() == 0
            refused = httpx.get(f"{world['api']}/shoppers/{uid}/consent",
                                headers={"Authorization": f"Bearer {shopper_token}"},
                                timeout=30, verify=world["verify"])
            assert refused.status_code == 401
            expect(kiosk.get_by_test_id("state")).to_have_text("live")
        finally:
            stop.set()
            browser.close()
    assert _offer_events(settings, offer_id, "redeemed"), "redeemed is in offer_events"
    assert _offer_events(settings, offer_id, "delivered"), "delivered is in offer_events"


def test_simulated_shopper_link_with_token_shows_offers(world):
    """The demo path: a simulated shopper (consent produced by a simulator, not the page) is
    opened with a link carrying their shopper token; the page goes live and shows offers
    (here over the SSE fallback, ``?transport=sse``)."""
    from playwright.sync_api import expect, sync_playwright

    from instore import shopper_tokens as tokens
    from instore.records import ShopperConsent

    settings, hub = world["settings"], world["hub"]
    uid = f"sim-{world['run']}"
    p = make_producer(settings)
    produce(p, t.SHOPPER_CONSENTS, ShopperConsent(uid=uid, opted_in=True, updated_at=now_ms()))
    p.flush(10)
    token = tokens.issue(settings.shopper_secret, uid)
    stop = threading.Event()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium",
                                     args=world["chromium_args"])
        try:
            page = browser.new_page(viewport={"width": 390, "height": 780})
            # The hub's SSE stream: what the pages fall back to without ably-js.
            page.goto(f"{hub}/phone?uid={uid}&transport=sse#token={token}")
            expect(page.get_by_test_id("state")).to_have_text("live", timeout=30_000)
            expect(page.get_by_test_id("opt-out")).to_be_enabled()
            assert "#token" not in page.url
            assert page.evaluate("() => document.body.dataset.transport") == "sse"
            walker = threading.Thread(
                target=_positions_until, args=(settings, uid, world["store"], stop), daemon=True
            )
            walker.start()
            expect(page.locator(".offer-card")).to_have_count(2, timeout=120_000)
        finally:
            stop.set()
            browser.close()
