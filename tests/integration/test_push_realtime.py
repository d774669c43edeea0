"""The push hub's Ably realtime protocol (WebSocket), spoken to by a plain WebSocket client
(`websockets`) frame by frame and by the `ably` Python SDK's own Realtime client, plus token
revocation (``POST /keys/{keyName}/revokeTokens``) closing open connections and streams.

The hub runs as a real child process on a free loopback port; it needs neither the broker nor
Redis (the addresses given to it are never dialled)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import httpx
import pytest
import websockets
from ably import AblyRealtime, AblyRest
from ably.types.message import Message

from bench.processes import wait_http
from instore.ably import RevocationError, make_rest, revoke_client_tokens
from instore.embedded import free_port
from mobile_push.local_hub.protocol import (
    ACK,
    ATTACH,
    ATTACHED,
    AUTH,
    CLOSE,
    CLOSED,
    CONNECTED,
    DETACH,
    DETACHED,
    DISCONNECTED,
    ERROR,
    HAS_BACKLOG,
    HEARTBEAT,
    MESSAGE,
)
from mobile_push.local_hub.sse_client import Subscription, request_token
from mobile_push.local_hub.tokens import sign_token_request
from tests.push_hub import running_hub

pytestmark = pytest.mark.integration

@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with running_hub(tmp_path_factory, "hub-rt") as h:
        yield h


def token_for(hub, client_id: str, channel: str, ops=("subscribe", "history")) -> str:
    tr = sign_token_request(hub["key"], capability={channel: list(ops)}, client_id=client_id)
    return request_token(hub["base"], tr)["token"]


def rest(hub) -> AblyRest:
    """The sink's way of talking to the hub: key (token auth: no Basic without TLS), JSON."""
    return make_rest(hub["settings"])


def publish_twice(hub, channel: str, offer_id: str, data: dict) -> None:
    async def go() -> None:
        r = rest(hub)
        try:
            ch = r.channels.get(channel)
            for _ in range(2):  # a redelivery by the sink: same id, de-duplicated by the hub
                await ch.publish(Message(name="offer", data=data, id=offer_id))
        finally:
            await r.close()

    asyncio.run(go())


class Frames:
    """A raw WebSocket client speaking the JSON protocol."""

    def __init__(self, ws) -> None:
        self.ws = ws

    async def send(self, frame: dict) -> None:
        await self.ws.send(json.dumps(frame))

    async def next(self, timeout: float = 10.0, skip_heartbeats: bool = True) -> dict:
        while True:
            frame = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
            if not (skip_heartbeats and frame["action"] == HEARTBEAT and "id" not in frame):
                return frame


def ws_url(hub, **params: str) -> str:
    q = "&".join(f"{k}={v}" for k, v in {"format": "json", "v": "6", **params}.items())
    return f"ws://127.0.0.1:{hub['port']}/?{q}"


def test_protocol_frames_attach_message_once_capability_detach_close(hub):
    uid, other = uuid.uuid4().hex[:8], uuid.uuid4().hex[:8]
    mine, theirs = f"shopper:{uid}", f"shopper:{other}"
    token = token_for(hub, uid, mine)
    early = f"offer-{uuid.uuid4().hex[:6]}"
    publish_twice(hub, mine, early, {"offer_id": early, "title": "before attach"})

    async def go() -> None:
        url = ws_url(hub, access_token=token, heartbeats="true")
        async with websockets.connect(url) as sock:
            ws = Frames(sock)
            connected = await ws.next()
            assert connected["action"] == CONNECTED and connected["connectionId"]
            details = connected["connectionDetails"]
            assert details["clientId"] == uid
            assert details["maxIdleInterval"] > 0 and details["connectionKey"]

            await ws.send({"action": HEARTBEAT, "id": "ping-1"})
            assert await ws.next() == {"action": HEARTBEAT, "id": "ping-1"}

            # Attach with rewind: ATTACHED (backlog flag), then the earlier offer.
            await ws.send({"action": ATTACH, "channel": mine, "params": {"rewind": "5"}})
            attached = await ws.next()
            assert attached["action"] == ATTACHED and attached["channel"] == mine
            assert attached["flags"] & HAS_BACKLOG
            backlog = await ws.next()
            assert backlog["action"] == MESSAGE
            assert [m["id"] for m in backlog["messages"]] == [early]

            # Another shopper's channel: a channel ERROR with Ably's capability error.
            await ws.send({"action": ATTACH, "channel": theirs})
            denied = await ws.next()
            assert denied["action"] == ERROR and denied["channel"] == theirs
            assert denied["error"]["code"] == 40160 and denied["error"]["statusCode"] == 401

            # A live offer published twice (same id) arrives once, id = offer_id.
            offer_id = f"offer-{uuid.uuid4().hex[:6]}"
            await asyncio.to_thread(
                publish_twice, hub, mine, offer_id, {"offer_id": offer_id, "title": "live"}
            )
            live = await ws.next()
            assert live["action"] == MESSAGE and live["channel"] == mine
            assert [m["id"] for m in live["messages"]] == [offer_id]
            msg = live["messages"][0]
            assert msg["name"] == "offer"
            data = json.loads(msg["data"]) if msg.get("encoding") == "json" else msg["data"]
            assert data["offer_id"] == offer_id
            assert live["channelSerial"]
            with pytest.raises(TimeoutError):  # ... and no second copy
                await ws.next(timeout=1.0)

            # A subscribe-only token cannot publish: NACK with 40160.
            await ws.send(
                {"action": MESSAGE, "channel": mine, "msgSerial": 0, "messages": [{"data": "x"}]}
            )
            nack = await ws.next()
            assert nack["action"] != ACK and nack["error"]["code"] == 40160

            await ws.send({"action": DETACH, "channel": mine})
            assert (await ws.next())["action"] == DETACHED
            await ws.send({"action": CLOSE})
            assert (await ws.next())["action"] == CLOSED
            with pytest.raises(websockets.ConnectionClosed):
                await ws.next(timeout=5)

    asyncio.run(go())


def test_publish_ack_echo_and_in_band_reauth(hub):
    uid = uuid.uuid4().hex[:8]
    channel = f"kiosk:{uid}"
    token = token_for(hub, uid, channel, ops=("publish", "subscribe"))

    async def go() -> None:
        async with (
            websockets.connect(ws_url(hub, access_token=token)) as a,
            websockets.connect(ws_url(hub, access_token=token, echo="false")) as b,
        ):
            wa, wb = Frames(a), Frames(b)
            for w in (wa, wb):
                assert (await w.next())["action"] == CONNECTED
                await w.send({"action": ATTACH, "channel": channel})
                assert (await w.next())["flags"] & (1 << 17)  # PUBLISH mode granted
            await wb.send(
                {
                    "action": MESSAGE,
                    "channel": channel,
                    "msgSerial": 7,
                    "messages": [{"id": "tap-1", "name": "tap", "data": "x"}],
                }
            )
            assert await wb.next() == {"action": ACK, "msgSerial": 7, "count": 1}
            seen = await wa.next()  # the other connection gets it, with the token's clientId
            assert seen["messages"][0]["id"] == "tap-1"
            assert seen["messages"][0]["clientId"] == uid
            with pytest.raises(TimeoutError):  # echo=false: not back to the publisher
                await wb.next(timeout=1.0)

            # In-band AUTH: a fresh token for the same clientId -> a new CONNECTED ...
            fresh = token_for(hub, uid, channel, ops=("publish", "subscribe"))
            await wa.send({"action": AUTH, "auth": {"accessToken": fresh}})
            again = await wa.next()
            assert again["action"] == CONNECTED and again["connectionDetails"]["clientId"] == uid
            # ... one for somebody else is refused and the connection ends.
            alien = token_for(hub, "someone-else", channel)
            await wb.send({"action": AUTH, "auth": {"accessToken": alien}})
            refused = await wb.next()
            assert refused["action"] == DISCONNECTED and refused["error"]["code"] == 40102

    asyncio.run(go())


def test_bad_credentials_get_an_error_frame_and_the_socket_closes(hub):
    async def first_frame(url: str) -> dict:
        async with websockets.connect(url) as sock:
            frame = json.loads(await asyncio.wait_for(sock.recv(), 10))
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(sock.recv(), 5)
            return frame

    forged = asyncio.run(first_frame(ws_url(hub, access_token="not.a-token")))
    assert forged["action"] == ERROR and "channel" not in forged
    assert forged["error"]["code"] == 40140
    wrong = asyncio.run(first_frame(ws_url(hub, key=f"{hub['key'].name}:wrong")))
    assert wrong["action"] == ERROR and wrong["error"]["code"] == 40101
    none = asyncio.run(first_frame(ws_url(hub)))
    assert none["action"] == ERROR and none["error"]["statusCode"] == 401


def test_ably_python_realtime_sdk_subscribes_over_msgpack(hub):
    """The `ably` SDK's own Realtime client (binary protocol by default) against the hub."""
    uid = uuid.uuid4().hex[:8]
    channel = f"shopper:{uid}"
    token = token_for(hub, uid, channel)
    offer_id = f"offer-{uuid.uuid4().hex[:6]}"

    async def go() -> list[Message]:
        # This SDK's WebSocket URL ignores `port`: the port goes with the host.
        client = AblyRealtime(
            token=token,
            endpoint=f"127.0.0.1:{hub['port']}",
            tls=False,
            fallback_hosts=[],
        )
        got: list[Message] = []
        try:
            await asyncio.wait_for(client.connection.once_async("connected"), 15)
            ch = client.channels.get(channel)
            await asyncio.wait_for(ch.subscribe("offer", lambda m: got.append(m)), 15)
            await asyncio.to_thread(publish_twice, hub, channel, offer_id, {"offer_id": offer_id})
            deadline = time.monotonic() + 15
            while not got and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)  # room for a duplicate, which must not come
        finally:
            await client.close()
        return got

    got = asyncio.run(go())
    assert [m.id for m in got] == [offer_id]
    assert got[0].data == {"offer_id": offer_id}


def test_revocation_closes_connections_and_streams_and_refuses_old_tokens(hub):
    uid = uuid.uuid4().hex[:8]
    channel = f"shopper:{uid}"
    old = token_for(hub, uid, channel)
    bystander_uid = uuid.uuid4().hex[:8]
    bystander = token_for(hub, bystander_uid, f"shopper:{bystander_uid}")
    sse_errors: list = []
    sse = Subscription(hub["base"], channel, old, lambda _m, _t: None).start()

    async def go() -> tuple[dict, dict, dict]:
        async with (
            websockets.connect(ws_url(hub, access_token=old)) as a,
            websockets.connect(ws_url(hub, access_token=bystander)) as b,
        ):
            wa, wb = Frames(a), Frames(b)
            assert (await wa.next())["action"] == CONNECTED
            assert (await wb.next())["action"] == CONNECTED
            await wa.send({"action": ATTACH, "channel": channel})
            assert (await wa.next())["action"] == ATTACHED
            # Revoked the way the API's erasure does it: the ably SDK with the key.
            r = rest(hub)
            try:
                result = await revoke_client_tokens(r, uid)
                # Token auth may not revoke (Ably's rule): 40162.
                tok_rest = AblyRest(
                    token=bystander,
                    endpoint="127.0.0.1",
                    port=hub["port"],
                    tls=False,
                    use_binary_protocol=False,
                    fallback_hosts=[],
                )
                refused = await tok_rest.request(
                    "POST",
                    f"/keys/{hub['key'].name}/revokeTokens",
                    "3",
                    body={"targets": [f"clientId:{bystander_uid}"]},
                )
                await tok_rest.close()
            finally:
                await r.close()
            disconnected = await wa.next()
            with pytest.raises(websockets.ConnectionClosed):
                await wa.next(timeout=5)
            # The other shopper's connection is untouched.
            await wb.send({"action": HEARTBEAT, "id": "still-here"})
            assert (await wb.next())["id"] == "still-here"
        async with websockets.connect(ws_url(hub, access_token=old)) as c:
            again = await Frames(c).next()
        assert refused.status_code == 401 and int(refused.error_code) == 40162
        return result, disconnected, again

    try:
        result, disconnected, again = asyncio.run(go())
        deadline = time.monotonic() + 10
        while sse.error is None and time.monotonic() < deadline:
            time.sleep(0.05)
        sse_errors.append(sse.error)
    finally:
        sse.stop()
    assert result["successCount"] == 1 and result["results"][0]["target"] == f"clientId:{uid}"
    assert disconnected["action"] == DISCONNECTED and disconnected["error"]["code"] == 40141
    assert again["action"] == ERROR and again["error"]["code"] == 40141
    assert sse_errors[0] is not None and sse_errors[0]["error"]["code"] == 40141
    # REST with the old token: 401/40141; a token issued after the revocation works.
    r = httpx.get(
        f"{hub['base']}/channels/{channel}/messages",
        headers={"Authorization": f"Bearer {old}"},
    )
    assert r.status_code == 401 and r.json()["error"]["code"] == 40141
    time.sleep(0.01)
    fresh = token_for(hub, uid, channel)
    r = httpx.get(
        f"{hub['base']}/channels/{channel}/messages",
        headers={"Authorization": f"Bearer {fresh}"},
    )
    assert r.status_code == 200


def test_revocations_survive_a_hub_restart(hub):
    """Tokens are self-contained (a restarted hub honours them), so revocations are saved."""
    uid = uuid.uuid4().hex[:8]
    channel = f"shopper:{uid}"
    old = token_for(hub, uid, channel)
    k = hub["key"]
    r = httpx.post(
        f"{hub['base']}/keys/{k.name}/revokeTokens",
        json={"targets": [f"clientId:{uid}"]},
        auth=(k.name, k.secret),
    )
    assert r.status_code == 200 and r.json()["successCount"] == 1
    assert (hub["data"] / "push-hub" / "revocations.json").exists()
    hub["child"].stop()
    hub["child"].start()
    wait_http(f"{hub['base']}/time", hub["child"])
    r = httpx.get(
        f"{hub['base']}/channels/{channel}/messages", headers={"Authorization": f"Bearer {old}"}
    )
    assert r.status_code == 401 and r.json()["error"]["code"] == 40141


def test_revocation_failure_is_reported_not_raised_elsewhere(hub):
    """Nothing listening: the API's erasure gets a RevocationError (it logs and goes on)."""
    k = hub["key"]

    async def go() -> None:
        r = AblyRest(
            key=f"{k.name}:{k.secret}",
            endpoint="127.0.0.1",
            port=free_port(),
            tls=False,
            fallback_hosts=[],
        )
        try:
            await revoke_client_tokens(r, "nobody")
        finally:
            await r.close()

    with pytest.raises(RevocationError):
        asyncio.run(go())
