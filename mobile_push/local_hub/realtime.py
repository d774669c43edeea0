"""The part of Ably's realtime protocol (WebSocket transport) that ably-js and the `ably` Python
SDK use to subscribe, spoken by the local push hub at ``ws://host:port/``.

Facts of the protocol this follows (learnt from ably-js/ably-python sources and Ably's docs):

- The client opens ``/?key=<name:secret>`` or ``/?access_token=<token>``, with ``format=json``
  (text frames) or ``format=msgpack`` (binary frames), ``heartbeats=true`` (browsers: protocol
  HEARTBEAT messages instead of WebSocket pings), ``v``, ``agent``, ``echo``, ``clientId``, and
  on reconnection ``resume=<connectionKey>``.
- Every frame is one ProtocolMessage ``{"action": n, ...}``; actions below (TR2).
- Bad credentials: an ERROR (no channel) then the socket closes; token errors are 4014x, which
  ably-js answers by fetching a new token once (authCallback/authUrl) and reconnecting.
- CONNECTED carries ``connectionId`` and ``connectionDetails`` (clientId, connectionKey,
  maxIdleInterval, connectionStateTtl, maxMessageSize, ...). The client drops a connection that
  stays silent longer than maxIdleInterval + its request timeout, so idle connections get a
  HEARTBEAT every ``HEARTBEAT_S``.
- ATTACH -> ATTACHED (flags: modes, HAS_BACKLOG), or a channel ERROR 40160 (statusCode 401)
  when the capability does not allow ``subscribe``. Channel params ``rewind`` (a count, or a
  time such as ``30s``/``2m``) replay history; an ATTACH with a ``channelSerial`` (ably-js
  after reconnecting) resumes after that message.
- MESSAGE carries ``channel``, ``channelSerial`` and ``messages`` (each with its ``id``, the
  publisher's idempotency key, here the offer_id). A client MESSAGE is a publish: ACK/NACK by
  ``msgSerial``.
- DETACH -> DETACHED; CLOSE -> CLOSED; DISCONNECT -> DISCONNECTED; AUTH (in-band re-auth) ->
  a fresh CONNECTED. Token expiry or revocation while connected: DISCONNECTED with 40142 or
  40141, then the socket closes.
- Resuming a connection is not supported: a reconnect with ``resume`` gets a new connectionId
  and error 80008, after which ably-js re-attaches its channels with their channelSerial, so
  messages published meanwhile are still delivered from history.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import re
import secrets
import time
from typing import TYPE_CHECKING, Any

import msgpack
from starlette.websockets import WebSocket, WebSocketDisconnect

from mobile_push.local_hub import capability as cap
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
    DISCONNECT,
    DISCONNECTED,
    ERROR,
    FLAG_PUBLISH,
    FLAG_SUBSCRIBE,
    HAS_BACKLOG,
    HEARTBEAT,
    MAX_MESSAGE_BYTES,
    MESSAGE,
    NACK,
    error_info,
)
from mobile_push.local_hub.state import Hub, Subscriber
from mobile_push.local_hub.tokens import AuthError, Grant, TokenAuthority, unauthorized

if TYPE_CHECKING:
    from collections.abc import Mapping

log = logging.getLogger(__name__)

HEARTBEAT_S = 10.0
MAX_IDLE_INTERVAL_MS = 15_000
CONNECTION_STATE_TTL_MS = 120_000
MAX_FRAME_BYTES = 524_288
REWIND_MAX = 100
_REWIND_TIME = re.compile(r"^(\d+)([smh])$")


def _ably_error(exc: AuthError) -> dict[str, Any]:
    return error_info(exc.code, exc.status, exc.message)


def rewind_backlog(history: list[dict[str, Any]], rewind: str | None, now_ms: int) -> list[dict]:
    """The messages a ``rewind`` channel param replays (a count up to 100, or a time span)."""
    if not rewind:
        return []
    text = str(rewind).strip()
    if text.isdigit():
        n = min(int(text), REWIND_MAX)
        return history[-n:] if n > 0 else []
    m = _REWIND_TIME.match(text)
    if m is None:
        return []
    span_ms = int(m.group(1)) * {"s": 1_000, "m": 60_000, "h": 3_600_000}[m.group(2)]
    return [msg for msg in history if now_ms - int(msg.get("timestamp") or 0) <= span_ms][
        -REWIND_MAX:
    ]


def after_serial(history: list[dict[str, Any]], serial: str) -> list[dict[str, Any]] | None:
    """Messages after the one with ``serial``; None when that one is no longer in history."""
    for i, msg in enumerate(history):
        if msg.get("serial") == serial:
            return history[i + 1 :]
    return None


def wire_message(msg: dict[str, Any], binary: bool) -> dict[str, Any]:
    """A stored message as it goes out: JSON frames cannot carry bytes (base64 encoding)."""
    data = msg.get("data")
    if not binary and isinstance(data, bytes | bytearray):
        out = dict(msg)
        out["data"] = base64.b64encode(data).decode("ascii")
        enc = msg.get("encoding")
        out["encoding"] = f"{enc}/base64" if enc else "base64"
        return out
    return msg


class RealtimeSession:
    """One WebSocket connection: auth, channels attached, and the single writer task."""

    def __init__(self, ws: WebSocket, hub: Hub, authority: TokenAuthority) -> None:
        self.ws = ws
        self.hub = hub
        self.authority = authority
        self.binary = ws.query_params.get("format") == "msgpack"
        self.echo = ws.query_params.get("echo", "true") != "false"
        self.connection_id = secrets.token_urlsafe(9)
        self.attached: set[str] = set()
        self.sub: Subscriber | None = None
        self.grant: Grant | None = None

    # -- frames ---------------------------------------------------------------------------------
    def _encode(self, frame: dict[str, Any]) -> str | bytes:
        if self.binary:
            return msgpack.packb(frame, use_bin_type=True)
        return json.dumps(frame, separators=(",", ":"))

    async def _send(self, frame: dict[str, Any]) -> None:
        data = self._encode(frame)
        if isinstance(data, bytes):
            await self.ws.send_bytes(data)
        else:
            await self.ws.send_text(data)

    def _decode(self, raw: Mapping[str, Any]) -> dict[str, Any] | None:
        try:
            if raw.get("bytes") is not None:
                frame = msgpack.unpackb(raw["bytes"], raw=False)
            else:
                frame = json.loads(raw.get("text") or "null")
        except (ValueError, msgpack.UnpackException):
            return None
        return frame if isinstance(frame, dict) else None

    # -- lifecycle ------------------------------------------------------------------------------
    def _authenticate(self) -> Grant:
        q = self.ws.query_params
        token = q.get("access_token") or q.get("accessToken")
        if token:
            grant = self.authority.bearer(token)
        elif q.get("key"):
            grant = self.authority.basic(base64.b64encode(q["key"].encode()).decode())
        else:
            msg = "No authentication information provided (key or access_token)"
            raise unauthorized(msg, 40101)
        wanted = q.get("clientId")
        if wanted and grant.client_id not in (None, "*", wanted):
            raise AuthError(401, 40102, "Incompatible clientId and credentials")
        if wanted and grant.client_id is None:
            grant = Grant(grant.key_name, grant.capability, wanted, grant.expires, grant.issued)
        return grant

    def _connected(self, error: dict[str, Any] | None = None) -> dict[str, Any]:
        assert self.grant is not None
        frame: dict[str, Any] = {
            "action": CONNECTED,
            "connectionId": self.connection_id,
            "connectionDetails": {
                "clientId": self.grant.client_id,
                "connectionKey": f"{self.connection_id}!{secrets.token_urlsafe(6)}",
                "maxMessageSize": MAX_MESSAGE_BYTES,
                "maxFrameSize": MAX_FRAME_BYTES,
                "maxInboundRate": 250,
                "maxIdleInterval": MAX_IDLE_INTERVAL_MS,
                "connectionStateTtl": CONNECTION_STATE_TTL_MS,
                "serverId": "instore-push-hub",
            },
        }
        if error is not None:
            frame["error"] = error
        return frame

    async def run(self) -> None:
        await self.ws.accept()
        try:
            self.grant = self._authenticate()
        except AuthError as exc:
            self.hub.stats.auth_failures += 1
            with contextlib.suppress(Exception):
                await self._send({"action": ERROR, "error": _ably_error(exc)})
                await self.ws.close()
            return
        self.sub = Subscriber(self.grant, kind="websocket")
        self.hub.add_subscriber(self.sub)
        q = self.ws.query_params
        resume_error = None
        if q.get("resume") or q.get("recover"):
            resume_error = error_info(80008, 400, "Unable to recover connection (not supported)")
        self.sub.control(self._connected(resume_error))
        self.hub.stats.realtime_connections += 1
        reader = asyncio.create_task(self._read())
        writer = asyncio.create_task(self._write())
        try:
            await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
            if reader.done() and self.sub.closed and not writer.done():
                # The client asked to close (or sent garbage): let the writer send the last
                # queued frame (CLOSED, DISCONNECTED, ERROR) before the socket goes.
                await asyncio.wait({writer}, timeout=5)
        finally:
            for task in (reader, writer):
                task.cancel()
            for task in (reader, writer):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            self.hub.remove_subscriber(self.sub)
            with contextlib.suppress(Exception):
                await self.ws.close()

    async def _write(self) -> None:
        assert self.sub is not None
        queue = self.sub.queue
        while True:
            timeout = HEARTBEAT_S
            expires = self.sub.grant.expires
            if expires is not None:
                timeout = min(timeout, max(0.0, expires / 1000 - time.time()))
            try:
                item = await asyncio.wait_for(queue.get(), timeout=timeout)
            except TimeoutError:
                if expires is not None and time.time() * 1000 >= expires:
                    err = error_info(40142, 401, "Key/token status changed (expire)")
                    await self._send({"action": DISCONNECTED, "error": err})
                    return
                await self._send({"action": HEARTBEAT})
                continue
            kind = item[0]
            if kind == "frame":
                await self._send(item[1])
            elif kind == "message":
                _, channel, msg = item
                if channel not in self.attached:
                    continue
                if not self.echo and msg.get("connectionId") == self.connection_id:
                    continue
                await self._send(self._message_frame(channel, [msg]))
            elif kind == "close":
                _, action, err = item
                frame: dict[str, Any] = {"action": action}
                if err is not None:
                    frame["error"] = err
                await self._send(frame)
                return

    def _message_frame(self, channel: str, msgs: list[dict[str, Any]]) -> dict[str, Any]:
        first = msgs[0]
        return {
            "action": MESSAGE,
            "channel": channel,
            "channelSerial": msgs[-1].get("serial"),
            "id": f"{self.connection_id}:{first.get('serial')}",
            "connectionId": first.get("connectionId") or "hub",
            "timestamp": first.get("timestamp"),
            "messages": [wire_message(m, self.binary) for m in msgs],
        }

    async def _read(self) -> None:
        assert self.sub is not None
        while True:
            try:
                raw = await self.ws.receive()
            except WebSocketDisconnect:
                return
            if raw.get("type") == "websocket.disconnect":
                return
            frame = self._decode(raw)
            if frame is None:
                err = error_info(40000, 400, "Invalid protocol message")
                self.sub.end(ERROR, err)
                return
            if self._handle(frame):
                return

    def _handle(self, frame: dict[str, Any]) -> bool:
        """Act on one client frame; True ends the session (after the queued reply)."""
        assert self.sub is not None
        action = frame.get("action")
        if action == HEARTBEAT:
            reply: dict[str, Any] = {"action": HEARTBEAT}
            if frame.get("id"):
                reply["id"] = frame["id"]
            self.sub.control(reply)
        elif action == ATTACH:
            self._attach(frame)
        elif action == DETACH:
            channel = str(frame.get("channel") or "")
            self.attached.discard(channel)
            self.hub.unsubscribe(channel, self.sub)
            self.sub.control({"action": DETACHED, "channel": channel})
        elif action == MESSAGE:
            self._publish(frame)
        elif action == AUTH:
            return self._reauth(frame)
        elif action == CLOSE:
            self.sub.end(CLOSED, None)
            return True
        elif action == DISCONNECT:
            self.sub.end(DISCONNECTED, None)
            return True
        return False

    def _current_grant(self) -> Grant:
        """The connection's grant, refused if it expired or was revoked since."""
        assert self.sub is not None
        grant = self.sub.grant
        if grant.expires is not None and time.time() * 1000 >= grant.expires:
            msg = "Token expired"
            raise unauthorized(msg, 40142)
        self.authority.check_revoked(grant)
        return grant

    def _attach(self, frame: dict[str, Any]) -> None:
        assert self.sub is not None
        channel = str(frame.get("channel") or "")
        try:
            grant = self._current_grant()
        except AuthError as exc:
            self.sub.end(DISCONNECTED, _ably_error(exc))
            return
        if not channel or not cap.allows(grant.capability, channel, "subscribe"):
            self.hub.stats.auth_failures += 1
            err = error_info(
                40160,
                401,
                f"Channel denied access based on given capability; channelId = {channel}",
            )
            self.sub.control({"action": ERROR, "channel": channel, "error": err})
            return
        given = frame.get("params")
        params: dict[str, Any] = given if isinstance(given, dict) else {}
        ch = self.hub.channel(channel)
        history = list(ch.history)
        backlog: list[dict[str, Any]] = []
        if channel not in self.attached:
            serial = frame.get("channelSerial")
            resumed = after_serial(history, str(serial)) if serial else None
            if resumed is not None:
                backlog = resumed
            else:
                backlog = rewind_backlog(history, params.get("rewind"), int(time.time() * 1000))
        flags = FLAG_SUBSCRIBE
        if cap.allows(grant.capability, channel, "publish"):
            flags |= FLAG_PUBLISH
        if backlog:
            flags |= HAS_BACKLOG
        attached: dict[str, Any] = {
            "action": ATTACHED,
            "channel": channel,
            "flags": flags,
            "channelSerial": history[-1].get("serial") if history else None,
        }
        if params:
            attached["params"] = {k: str(v) for k, v in params.items() if k == "rewind"}
        # Reply, backlog and the live subscription are queued without yielding to the loop,
        # so no live message can overtake (or repeat) the backlog.
        self.sub.control(attached)
        for i in range(0, len(backlog), 50):
            self.sub.control(self._message_frame(channel, backlog[i : i + 50]))
        self.attached.add(channel)
        self.hub.subscribe(channel, self.sub)

    def _publish(self, frame: dict[str, Any]) -> None:
        assert self.sub is not None
        channel = str(frame.get("channel") or "")
        serial = frame.get("msgSerial")
        messages = frame.get("messages") or []
        try:
            grant = self._current_grant()
            if not cap.allows(grant.capability, channel, "publish"):
                msg = f"Unable to perform channel operation 'publish' on channel '{channel}'"
                raise AuthError(401, 40160, msg)
            if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
                raise AuthError(400, 40000, "messages must be a list of message objects")
            for m in messages:
                cid = m.get("clientId")
                if cid is not None and grant.client_id not in (None, "*", cid):
                    raise AuthError(400, 40012, "Message clientId is incompatible")
                if len(json.dumps(m, default=str)) > MAX_MESSAGE_BYTES:
                    raise AuthError(400, 40009, "Maximum message length exceeded")
            self.hub.publish(
                channel,
                [{**m, "connectionId": self.connection_id} for m in messages],
                grant.client_id,
            )
        except AuthError as exc:
            self.sub.control(
                {"action": NACK, "msgSerial": serial, "count": 1, "error": _ably_error(exc)}
            )
            return
        self.sub.control({"action": ACK, "msgSerial": serial, "count": 1})

    def _reauth(self, frame: dict[str, Any]) -> bool:
        assert self.sub is not None
        given = frame.get("auth")
        auth: dict[str, Any] = given if isinstance(given, dict) else {}
        token = auth.get("accessToken")
        try:
            if not token:
                msg = "AUTH without an accessToken"
                raise unauthorized(msg, 40101)
            grant = self.authority.bearer(str(token))
            if self.sub.grant.client_id not in (None, grant.client_id):
                raise AuthError(401, 40102, "Incompatible clientId and credentials")
        except AuthError as exc:
            self.sub.end(DISCONNECTED, _ably_error(exc))
            return True
        self.sub.grant = self.grant = grant
        for channel in list(self.attached):
            if not cap.allows(grant.capability, channel, "subscribe"):
                self.attached.discard(channel)
                self.hub.unsubscribe(channel, self.sub)
                err = error_info(40160, 401, "Channel denied access based on given capability")
                self.sub.control({"action": DETACHED, "channel": channel, "error": err})
        self.sub.control(self._connected())
        return False
