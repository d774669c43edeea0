"""ably-js (the npm build the pages load) in headless Chromium against the local push hub's
Ably realtime protocol: an offer published twice arrives once with its offer_id; attaching to
another shopper's channel fails with Ably's capability error; a revoked token disconnects the
client with 40141 and, with its token source refusing (as the API does for an erased
shopper), it stays off. Tokens come the pages' way: authCallback -> a signed TokenRequest ->
ably-js redeems it at the hub's requestToken. The hub is a real child process; nothing else
runs (no broker needed)."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from ably import AblyRest
from ably.types.message import Message

from instore.ably import make_rest, revoke_client_tokens
from mobile_push.local_hub.tokens import sign_token_request
from tests.conftest import ROOT
from tests.e2e.test_push_pages import CHROMIUM_ARGS
from tests.push_hub import running_hub

pytestmark = pytest.mark.e2e

ABLY_JS = ROOT / "mobile_push" / "static" / "vendor" / "ably.min.js"

# In the page: an ably-js client configured exactly as push-client.js does in hub mode, whose
# authCallback asks Python (window.tokenRequest) for a signed TokenRequest.
CLIENT_JS = """([channel]) => {
  window.got = []; window.states = []; window.authCalls = 0;
  const opts = InstorePush.ablyOptions({mode: "hub"}, async () => {
    window.authCalls += 1;
    const tr = await window.tokenRequest(channel);
    if (tr.error) { const e = new Error("refused"); e.status = tr.error; throw e; }
    return tr;
  });
  window.client = new Ably.Realtime(opts);
  window.client.connection.on((c) => window.states.push(
    {current: c.current, code: c.reason ? c.reason.code : null}));
  window.ch = window.client.channels.get(channel);
  return window.ch.subscribe((m) => window.got.push({id: m.id, name: m.name, data: m.data}))
    .then(() => "attached");
}"""


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    if not Path("/usr/bin/chromium").exists():
        pytest.skip("Debian's chromium is missing: run `make setup`")
    if not ABLY_JS.exists():
        pytest.skip("ably-js is not installed: run scripts/install-ably-js.sh")
    with running_hub(tmp_path_factory, "hub-ablyjs") as h:
        yield h


def sdk(hub) -> AblyRest:
    return make_rest(hub["settings"])


def run_async(make_coro):
    """asyncio.run on a thread of its own (Playwright's sync API holds this thread's loop)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(make_coro())).result(timeout=60)


def publish(hub, channel: str, offer_id: str, times: int = 2) -> None:
    async def go() -> None:
        rest = sdk(hub)
        try:
            for _ in range(times):
                await rest.channels.get(channel).publish(
                    Message(name="offer", id=offer_id, data={"offer_id": offer_id, "pct": 20})
                )
        finally:
            await rest.close()

    run_async(go)


def wait_for(cond, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def browser(hub):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(hub, browser):
    refused: set[str] = set()

    def token_request(channel: str) -> dict:
        uid = channel.split(":", 1)[1]
        if uid in refused:
            return {"error": 404}
        return sign_token_request(
            hub["key"], capability={channel: ["subscribe", "history"]}, client_id=uid
        )

    context = browser.new_context()
    try:
        pg = context.new_page()
        pg.expose_function("tokenRequest", token_request)

        def load() -> None:
            pg.goto(f"{hub['base']}/health")
            pg.add_script_tag(url="/static/vendor/ably.min.js")
            pg.add_script_tag(url="/static/push-client.js")

        load()
        pg.load = load  # type: ignore[attr-defined]
        pg.refused = refused  # type: ignore[attr-defined]
        yield pg
        pg.evaluate("() => window.client && window.client.close()")
    finally:
        context.close()


def test_ably_js_receives_an_offer_published_twice_exactly_once(hub, page):
    uid = uuid.uuid4().hex[:8]
    channel = f"shopper:{uid}"
    assert page.evaluate(CLIENT_JS, [channel]) == "attached"
    assert page.evaluate("() => window.client.connection.state") == "connected"
    assert page.evaluate("() => window.client.auth.clientId") == uid
    offer_id = f"offer-{uuid.uuid4().hex[:8]}"
    publish(hub, channel, offer_id, times=2)
    wait_for(lambda: page.evaluate("() => window.got.length") >= 1, 15, "the offer in ably-js")
    # A later offer on the same channel proves the first was not just slow to repeat.
    later = f"offer-{uuid.uuid4().hex[:8]}"
    publish(hub, channel, later, times=1)
    wait_for(lambda: page.evaluate("() => window.got.length") >= 2, 15, "the second offer")
    got = page.evaluate("() => window.got")
    assert [m["id"] for m in got] == [offer_id, later]
    assert got[0]["name"] == "offer" and got[0]["data"] == {"offer_id": offer_id, "pct": 20}
    assert page.evaluate("() => window.client.connection.id")  # a realtime connection


def test_attaching_another_shoppers_channel_fails_with_capability_error(hub, page):
    uid, other = uuid.uuid4().hex[:8], uuid.uuid4().hex[:8]
    assert page.evaluate(CLIENT_JS, [f"shopper:{uid}"]) == "attached"
    err = page.evaluate(
        """(name) => window.client.channels.get(name).attach().then(
             () => null, (e) => ({code: e.code, statusCode: e.statusCode}))""",
        f"shopper:{other}",
    )
    assert err == {"code": 40160, "statusCode": 401}
    assert page.evaluate(f"() => window.client.channels.get('shopper:{other}').state") == "failed"
    # The connection and the own channel are unaffected.
    assert page.evaluate("() => [window.client.connection.state, window.ch.state]") == [
        "connected",
        "attached",
    ]


def test_revoked_token_disconnects_ably_js_and_it_stays_off(hub, page):
    uid = uuid.uuid4().hex[:8]
    channel = f"shopper:{uid}"
    assert page.evaluate(CLIENT_JS, [channel]) == "attached"
    page.refused.add(uid)  # type: ignore[attr-defined]  # as the API after erasure

    async def revoke() -> dict:
        rest = sdk(hub)
        try:
            return await revoke_client_tokens(rest, uid)
        finally:
            await rest.close()

    assert run_async(revoke)["successCount"] == 1
    states = wait_for(
        lambda: [s for s in page.evaluate("() => window.states") if s["code"] == 40141],
        15,
        "a 40141 (token revoked) state change",
    )
    assert states[0]["current"] == "disconnected"
    # ably-js asked for a new token (refused), so it is not connected and gets nothing.
    wait_for(lambda: page.evaluate("() => window.authCalls") >= 2, 15, "a token renewal attempt")
    publish(hub, channel, f"offer-{uuid.uuid4().hex[:8]}", times=1)
    time.sleep(1.0)
    assert page.evaluate("() => window.client.connection.state") != "connected"
    assert page.evaluate("() => window.got") == []


SUBSCRIBE_JS = """async ([channel]) => {
  window.got = []; window.states = [];
  window.sub = await InstorePush.subscribe(channel, () => window.tokenRequest(channel),
    (id, name, data) => window.got.push({id, name, data}), (s) => window.states.push(s));
  return document.body.dataset.transport;
}"""


@pytest.mark.parametrize("websocket", ["open", "blocked"])
def test_push_client_uses_ably_js_and_falls_back_to_sse(hub, page, websocket):
    """push-client.js as the pages use it (config from the hub's /config.json): ably-js over
    the realtime protocol, or, when WebSockets never get through, the hub's SSE stream."""
    if websocket == "blocked":
        page.route_web_socket(re.compile(".*"), lambda ws: ws.close())
        page.load()  # type: ignore[attr-defined]  # routing takes effect on a new document
    uid = uuid.uuid4().hex[:8]
    channel = f"shopper:{uid}"
    first = page.evaluate(SUBSCRIBE_JS, [channel])
    assert first == "ably-js"  # ably-js loaded; with WebSockets blocked it then gives way
    wait_for(lambda: "live" in page.evaluate("() => window.states"), 30, "the page going live")
    transport = page.evaluate("() => document.body.dataset.transport")
    assert transport == ("ably-js" if websocket == "open" else "sse")
    offer_id = f"offer-{uuid.uuid4().hex[:8]}"
    publish(hub, channel, offer_id, times=2)
    wait_for(lambda: page.evaluate("() => window.got.length") >= 1, 15, "the offer")
    time.sleep(0.5)
    assert [m["id"] for m in page.evaluate("() => window.got")] == [offer_id]
    page.evaluate("() => window.sub.close()")
