"""The hub's state, in memory for as long as the process lives: channels with their history and
de-duplication ids, the live subscribers (SSE streams and realtime connections) and counters;
and ``HubContext``, what every route shares."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.requests import HTTPConnection

from instore.channels import shopper_channel
from instore.settings import Settings
from mobile_push.local_hub.protocol import DISCONNECTED, error_info
from mobile_push.local_hub.tokens import Grant, TokenAuthority

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


@dataclass(frozen=True)
class HubContext:
    """What the routes share: the settings, the channels, the token authority and the file
    that keeps token revocations across restarts (``app.state.ctx``)."""

    settings: Settings
    hub: Hub
    authority: TokenAuthority
    revocations: Path


def context(conn: HTTPConnection) -> HubContext:
    """The hub's context, for a route (a FastAPI dependency) or a WebSocket."""
    ctx: HubContext = conn.app.state.ctx
    return ctx
