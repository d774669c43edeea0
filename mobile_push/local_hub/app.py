"""The local push hub: the small part of Ably's REST API the `ably` SDK uses here, plus a
Server-Sent Events stream per channel for browsers, and the phone and kiosk pages.

Routes (Ably's shapes): ``GET /time``, ``POST /keys/{keyName}/requestToken``,
``POST /channels/{name}/messages`` (Basic or Bearer; capability ``publish``; message ``id``
de-duplicated per channel), ``GET /channels/{name}/messages`` (capability ``history``).
``POST /keys/{keyName}/revokeTokens`` (Basic auth with that key; revocable tokens), and Ably's
realtime protocol over WebSocket at ``/`` (see ``mobile_push.local_hub.realtime``: what ably-js and the
Python SDK need to subscribe and publish).
Ours: ``GET /channels/{name}/stream?accessToken=..&rewind=N`` (SSE; capability ``subscribe``;
the pages' fallback when ably-js cannot load), ``/phone``, ``/kiosk``, ``/config.json``,
``/health``.

Memory only: history and de-duplication ids live as long as the process (Ably keeps
de-duplication ids for two minutes, so the sink's redelivery window is covered). Revoking a
shopper's tokens (``clientId:<uid>``, what erasure does) also drops their channel's history at
once (Ably keeps un-persisted history for two minutes). Token
revocations are also saved to ``<data_dir>/push-hub/revocations.json``: tokens are
self-contained and outlive a restart, so their revocations must too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
from fastapi import FastAPI, Request, WebSocket
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sse_starlette.sse import EventSourceResponse

from instore.bodylimit import BodyLimit
from instore.channels import shopper_channel
from instore.ratelimit import RateLimiter
from instore.settings import Settings
from mobile_push.ably_client import page_config
from mobile_push.local_hub.realtime import DISCONNECTED, RealtimeSession, error_info
from mobile_push.local_hub.tokens import ApiKey, AuthError, Grant, TokenAuthority, unauthorized

log = logging.getLogger(__name__)

STATIC = Path(__file__).parents[1] / "static"  # the pages are the product's, served here
MAX_MESSAGE_BYTES = 65_536  # Ably's default maximum message size
HISTORY_KEEP = 200
DEDUPE_KEEP = 20_000
SUBSCRIBER_QUEUE = 1_000


class Subscriber:
    """A live reader of channels (an SSE stream or a realtime WebSocket connection).

    One unbounded queue carries, in order, control frames ``("frame", dict)``, messages
    ``("message", channel, msg)`` and a final ``("close", action, error)``. Messages count
    against ``SUBSCRIBER_QUEUE``: a reader that falls that far behind is closed (Ably
    disconnects slow consumers too); control frames always fit.
    """

    def __init__(self, grant: Grant, kind: str) -> None:
        self.grant = grant
        self.kind = kind
        self.queue: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
        self.channels: set[str] = set()
        self.closed = False

    def control(self, frame: dict[str, Any]) -> None:
        if not self.closed:
            self.queue.put_nowait(("frame", frame))

    def offer(self, channel: str, msg: dict[str, Any]) -> bool:
        if self.closed:
            return True
        if self.queue.qsize() >= SUBSCRIBER_QUEUE:
            return False
        self.queue.put_nowait(("message", channel, msg))
        return True

    def end(self, action: int, error: dict[str, Any] | None) -> None:
        """Close after what is queued: the reader sends ``action`` (with ``error``) and stops."""
        if not self.closed:
            self.closed = True
            self.queue.put_nowait(("close", action, error))

    def abort(self, action: int, error: dict[str, Any] | None) -> None:
        """Close now: drop what is queued (revoked, too slow)."""
        if not self.closed:
            while not self.queue.empty():
                self.queue.get_nowait()
            self.end(action, error)


@dataclass
class Channel:
    name: str
    history: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=HISTORY_KEEP))
    seen_ids: OrderedDict[str, None] = field(default_factory=OrderedDict)
    subscribers: set[Subscriber] = field(default_factory=set)
    serial: int = 0

    def seen(self, message_id: str) -> bool:
        return message_id in self.seen_ids

    def remember(self, message_id: str) -> None:
        self.seen_ids[message_id] = None
        while len(self.seen_ids) > DEDUPE_KEEP:
            self.seen_ids.popitem(last=False)


@dataclass
class HubStats:
    published: int = 0
    duplicates: int = 0
    fanout: int = 0
    dropped_subscribers: int = 0
    auth_failures: int = 0
    realtime_connections: int = 0
    revoked_streams: int = 0


class Hub:
    """Channels, their history and live subscribers (one process, one event loop)."""

    def __init__(self) -> None:
        self.channels: dict[str, Channel] = {}
        self.subscribers: set[Subscriber] = set()
        self.stats = HubStats()

    def channel(self, name: str) -> Channel:
        ch = self.channels.get(name)
        if ch is None:
            ch = self.channels[name] = Channel(name)
        return ch

    def add_subscriber(self, sub: Subscriber) -> None:
        self.subscribers.add(sub)

    def remove_subscriber(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)
        for name in list(sub.channels):
            self.unsubscribe(name, sub)

    def subscribe(self, name: str, sub: Subscriber) -> None:
        self.channel(name).subscribers.add(sub)
        sub.channels.add(name)

    def unsubscribe(self, name: str, sub: Subscriber) -> None:
        ch = self.channels.get(name)
        if ch is not None:
            ch.subscribers.discard(sub)
        sub.channels.discard(name)

    def forget_client(self, client_id: str) -> int:
        """Drop the history of a shopper's channel (erasure: their tokens were revoked), so
        nothing they were sent can be read back; returns the messages dropped."""
        ch = self.channels.get(shopper_channel(client_id))
        if ch is None:
            return 0
        dropped = len(ch.history)
        ch.history.clear()
        return dropped

    def close_revoked(self, authority: TokenAuthority) -> int:
        """End every live stream and connection whose token is now revoked (40141)."""
        closed = 0
        for sub in list(self.subscribers):
            if not sub.closed and authority.revoked(sub.grant) is not None:
                sub.abort(DISCONNECTED, error_info(40141, 401, "Token revoked"))
                closed += 1
        self.stats.revoked_streams += closed
        return closed

    def publish(
        self, name: str, messages: list[dict[str, Any]], client_id: str | None
    ) -> list[str]:
        ch = self.channel(name)
        now = time.time_ns() // 1_000_000
        serials: list[str] = []
        for raw in messages:
            msg_id = raw.get("id")
            if msg_id is not None and ch.seen(str(msg_id)):
                self.stats.duplicates += 1
                serials.append("")
                continue
            ch.serial += 1
            serial = f"{now:013d}-{ch.serial:09d}"
            msg = {
                k: v
                for k, v in raw.items()
                if k in ("id", "name", "data", "encoding", "extras", "clientId", "connectionId")
            }
            msg.setdefault("id", f"{serial}:0")
            msg["timestamp"] = raw.get("timestamp") or now
            msg["serial"] = serial
            if client_id and client_id != "*" and "clientId" not in msg:
                msg["clientId"] = client_id
            ch.remember(str(msg["id"]))
            ch.history.append(msg)
            self.stats.published += 1
            serials.append(serial)
            for sub in list(ch.subscribers):
                if sub.offer(name, msg):
                    self.stats.fanout += 1
                else:
                    self.stats.dropped_subscribers += 1
                    sub.abort(DISCONNECTED, error_info(80020, 500, "subscriber too slow"))
                    self.remove_subscriber(sub)
        return serials


def _error(exc: AuthError) -> JSONResponse:
    return JSONResponse(
        exc.as_json(),
        status_code=exc.status,
        headers={"X-Ably-ErrorCode": str(exc.code), "X-Ably-ErrorMessage": exc.message[:200]},
    )


def _grant(request: Request, authority: TokenAuthority) -> Grant:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "basic" and value:
        return authority.basic(value.strip())
    if scheme.lower() == "bearer" and value:
        return authority.bearer(value.strip())
    token = request.query_params.get("accessToken")
    if token:
        return authority.bearer(token)
    key = request.query_params.get("key")
    if key:
        import base64  # noqa: PLC0415

        return authority.basic(base64.b64encode(key.encode()).decode())
    msg = "Authentication required: Basic key or Bearer token"
    raise unauthorized(msg, 40101)


async def _body(request: Request) -> Any:
    raw = await request.body()
    if len(raw) > 4 * MAX_MESSAGE_BYTES:
        raise AuthError(413, 40009, "Maximum message length exceeded")
    ctype = request.headers.get("content-type", "")
    try:
        if ctype.startswith("application/x-msgpack"):
            return msgpack.unpackb(raw, raw=False)
        return json.loads(raw or b"null")
    except (ValueError, msgpack.UnpackException):
        raise AuthError(400, 40000, "Request body is not valid JSON/msgpack") from None


def _reply(request: Request, data: Any, status: int = 200) -> Response:
    if request.headers.get("accept", "").startswith("application/x-msgpack"):
        return Response(
            msgpack.packb(data, use_bin_type=True),
            status_code=status,
            media_type="application/x-msgpack",
        )
    return JSONResponse(data, status_code=status)


def _message_size(msg: dict[str, Any]) -> int:
    data = msg.get("data")
    size = len(str(msg.get("name") or "").encode()) + len(str(msg.get("clientId") or "").encode())
    if isinstance(data, bytes | bytearray):
        size += len(data)
    elif isinstance(data, str):
        size += len(data.encode())
    elif data is not None:
        size += len(json.dumps(data).encode())
    if msg.get("extras") is not None:
        size += len(json.dumps(msg["extras"]).encode())
    return size


def revocations_file(settings: Settings) -> Path:
    return Path(settings.data_dir) / "push-hub" / "revocations.json"


def _load_revocations(authority: TokenAuthority, path: Path) -> None:
    try:
        items = json.loads(path.read_text())
    except FileNotFoundError:
        return
    except (OSError, ValueError) as exc:
        log.warning("push hub: revocations file unreadable (%s); starting without", exc)
        return
    if isinstance(items, list):
        log.info("push hub: %d token revocation(s) loaded", authority.load_revocations(items))


def _save_revocations(authority: TokenAuthority, path: Path) -> None:
    """Small and rare (one write per erasure): the whole set, replaced atomically."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(authority.revocations_json()))
        tmp.replace(path)
    except OSError as exc:
        log.warning("push hub: could not save revocations (%s); they hold until restart", exc)


def create_app(settings: Settings, *, extra_keys: list[str] | None = None) -> FastAPI:
    keys = [ApiKey.parse(settings.ably_key)] + [ApiKey.parse(k) for k in (extra_keys or [])]
    authority = TokenAuthority(keys)
    saved = revocations_file(settings)
    _load_revocations(authority, saved)
    hub = Hub()

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        log.info(
            "push hub ready on %s:%s (keys: %s)",
            settings.host,
            settings.hub_port,
            ", ".join(k.name for k in keys),
        )
        yield
        s = hub.stats
        log.info(
            "push hub stopped: published=%d duplicates=%d fanout=%d dropped_subscribers=%d "
            "auth_failures=%d channels=%d",
            s.published,
            s.duplicates,
            s.fanout,
            s.dropped_subscribers,
            s.auth_failures,
            len(hub.channels),
        )

    app = FastAPI(title="instore push hub", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.hub = hub
    app.state.authority = authority
    app.add_middleware(BodyLimit, max_bytes=settings.hub_max_body_bytes)  # 413 before auth
    app.add_middleware(
        CORSMiddleware,
        allow_origins=["*"],
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["*"],
        expose_headers=["X-Ably-ErrorCode", "X-Ably-ErrorMessage"],
    )

    token_limit = RateLimiter(settings.hub_token_rate_per_min)
    failure_limit = RateLimiter(settings.hub_auth_failures_per_min)

    @app.middleware("http")
    async def rate_limit(request: Request, call_next: Any) -> Response:
        """Per client address: token requests, and failed authentications (a client whose
        budget of those is spent gets 429 for every request that presents a credential until
        it refills; health, time and the pages stay open)."""
        client = request.client.host if request.client else "unknown"
        presents = "authorization" in request.headers or request.url.path.startswith("/keys/")
        if presents and failure_limit.exhausted(client):
            return _error(AuthError(429, 42910, "too many failed authentications: try later"))
        if request.method == "POST" and request.url.path.endswith("/requestToken") \
                and not token_limit.allow(client):
            return _error(AuthError(429, 42910, "too many token requests: try later"))
        response: Response = await call_next(request)
        if response.status_code in (401, 403):
            failure_limit.allow(client)
        return response

    @app.exception_handler(AuthError)
    async def _auth_error(_request: Request, exc: AuthError) -> JSONResponse:
        if exc.status in (401, 403):
            hub.stats.auth_failures += 1
        return _error(exc)

    @app.get("/time")
    async def server_time() -> list[int]:
        return [time.time_ns() // 1_000_000]

    @app.get("/health")
    async def health() -> dict[str, Any]:
        s = hub.stats
        return {
            "ok": True,
            "channels": len(hub.channels),
            "published": s.published,
            "duplicates": s.duplicates,
            "subscribers": sum(len(c.subscribers) for c in hub.channels.values()),
            "connections": len(hub.subscribers),
            "realtime_connections": s.realtime_connections,
            "revoked_streams": s.revoked_streams,
        }

    @app.post("/keys/{key_name}/requestToken")
    async def request_token(key_name: str, request: Request) -> Response:
        body = await _body(request)
        if not isinstance(body, dict):
            raise AuthError(400, 40000, "TokenRequest must be a JSON object")
        return _reply(request, authority.request_token(key_name, body))

    @app.post("/channels/{name}/messages")
    async def publish(name: str, request: Request) -> Response:
        grant = _grant(request, authority)
        grant.require(name, "publish")
        body = await _body(request)
        messages = body if isinstance(body, list) else [body]
        if not messages or not all(isinstance(m, dict) for m in messages):
            raise AuthError(400, 40000, "Expected a message object or a list of them")
        for m in messages:
            if _message_size(m) > MAX_MESSAGE_BYTES:
                raise AuthError(
                    400, 40009, f"Maximum message length exceeded ({MAX_MESSAGE_BYTES} bytes)"
                )
            cid = m.get("clientId")
            if cid is not None and grant.client_id not in (None, "*", cid):
                raise AuthError(
                    400, 40012, "Message clientId is incompatible with the token's clientId"
                )
        serials = hub.publish(name, messages, grant.client_id)
        return _reply(
            request,
            {"channel": name, "messageId": messages[0].get("id"), "serials": serials},
            status=201,
        )

    @app.get("/channels/{name}/messages")
    async def history(
        name: str, request: Request, limit: int = 100, direction: str = "backwards"
    ) -> Response:
        grant = _grant(request, authority)
        grant.require(name, "history")
        limit = max(1, min(limit, 1000))
        items = list(hub.channel(name).history)
        items = list(reversed(items))[:limit] if direction != "forwards" else items[:limit]
        return _reply(request, items)

    @app.get("/channels/{name}/stream")
    async def stream(name: str, request: Request, rewind: int = 0) -> EventSourceResponse:
        grant = _grant(request, authority)
        grant.require(name, "subscribe")
        ch = hub.channel(name)
        backlog: list[dict[str, Any]] = []
        last_id = request.headers.get("last-event-id")
        past = list(ch.history)
        if last_id:
            ids = [m.get("id") for m in past]
            if last_id in ids:
                backlog = past[ids.index(last_id) + 1 :]
            else:
                backlog = past[-max(rewind, 0) :] if rewind > 0 else []
        elif rewind > 0:
            backlog = past[-min(rewind, HISTORY_KEEP) :]
        sub = Subscriber(grant, kind="sse")
        hub.add_subscriber(sub)
        hub.subscribe(name, sub)
        expires = grant.expires

        async def events() -> AsyncIterator[dict[str, Any]]:
            try:
                yield {
                    "event": "attached",
                    "data": json.dumps({"channel": name, "expires": expires}),
                }
                for msg in backlog:
                    yield {"id": str(msg["id"]), "data": json.dumps(msg)}
                while True:
                    timeout = None
                    if expires is not None:
                        timeout = max(0.0, expires / 1000 - time.time())
                    try:
                        item = await asyncio.wait_for(sub.queue.get(), timeout=timeout)
                    except TimeoutError:
                        err = unauthorized("Token expired", 40142).as_json()
                        yield {"event": "error", "data": json.dumps(err)}
                        return
                    if item[0] == "close":  # revoked, or dropped for being too slow
                        yield {"event": "error", "data": json.dumps({"error": item[2]})}
                        return
                    if item[0] == "message":
                        msg = item[2]
                        yield {"id": str(msg["id"]), "data": json.dumps(msg, default=str)}
            finally:
                hub.remove_subscriber(sub)

        return EventSourceResponse(events(), ping=15, headers={"Cache-Control": "no-store"})

    @app.post("/keys/{key_name}/revokeTokens")
    async def revoke_tokens(key_name: str, request: Request) -> Response:
        """Ably's token revocation: Basic auth with the issuing key; targets ``clientId:<id>``
        or ``channel:<name>``. Later requests with those tokens get 401/40141, and their open
        streams and WebSocket connections are closed (at once, or after the reauth margin)."""
        grant = _grant(request, authority)
        body = await _body(request)
        if not isinstance(body, dict):
            raise AuthError(400, 40000, "Expected {targets: [...]}")
        result = authority.revoke(grant, key_name, body)
        if result["successCount"]:
            _save_revocations(authority, saved)
        forgotten = 0
        for r in result["results"]:
            target = str(r.get("target", ""))
            if "issuedBefore" in r and target.startswith("clientId:"):
                forgotten += hub.forget_client(target.removeprefix("clientId:"))
        delays = {
            r["appliesAt"] - time.time_ns() // 1_000_000
            for r in result["results"]
            if "appliesAt" in r
        }
        closed = hub.close_revoked(authority)
        for delay in sorted(d for d in delays if d > 0):
            asyncio.get_running_loop().call_later(
                delay / 1000 + 0.01, hub.close_revoked, authority
            )
        log.info(
            "tokens revoked: %d target(s), %d open stream(s) closed, %d message(s) forgotten",
            result["successCount"],
            closed,
            forgotten,
        )
        return _reply(request, result)

    @app.websocket("/")
    async def realtime(ws: WebSocket) -> None:
        await RealtimeSession(ws, hub, authority).run()

    # -- pages ----------------------------------------------------------------------------------
    @app.get("/config.json")
    async def config() -> dict[str, Any]:
        return page_config(settings)

    @app.get("/phone", include_in_schema=False)
    async def phone() -> FileResponse:
        return FileResponse(STATIC / "phone.html")

    @app.get("/kiosk", include_in_schema=False)
    async def kiosk() -> FileResponse:
        return FileResponse(STATIC / "kiosk.html")

    @app.get("/", include_in_schema=False)
    async def index() -> RedirectResponse:
        return RedirectResponse("/phone")

    app.mount("/static", StaticFiles(directory=STATIC, check_dir=False), name="static")
    return app


def serve(settings: Settings, *, port: int | None = None) -> None:
    import uvicorn  # noqa: PLC0415

    app = create_app(settings)
    uvicorn.run(
        app,
        host=settings.host,
        port=port or settings.hub_port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=3,
        **settings.uvicorn_tls(),  # type: ignore[arg-type]
    )
