"""A small Server-Sent Events subscriber for the hub's channel streams (tests, bench, CLI
tools), the Python twin of the pages' EventSource, and the SSE parser it and the benchmarks'
subscribers share."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx


def decode_data(msg: dict[str, Any]) -> Any:
    """An Ably wire message's data, decoded the way the SDKs do for ``encoding: json``."""
    data = msg.get("data")
    if msg.get("encoding") == "json" and isinstance(data, str):
        return json.loads(data)
    return data


@dataclass(frozen=True)
class SseEvent:
    event: str
    data: str
    id: str | None


class SseParser:
    """Server-Sent Events, a line at a time (the WHATWG rules the hub's streams follow): fields
    ``event``, ``data`` (lines joined with newlines) and ``id``; a blank line ends an event;
    lines starting with ``:`` are comments (the hub's keep-alives). The one parser of the
    tree: this module's Subscription and the benchmarks' many-channel subscribers use it."""

    def __init__(self) -> None:
        self._event = "message"
        self._data: list[str] = []
        self._id: str | None = None

    def feed(self, line: str) -> SseEvent | None:
        """The event this line completes, if it does (a blank line after some data)."""
        if line == "":
            done = SseEvent(self._event, "\n".join(self._data), self._id) if self._data else None
            self._event, self._data, self._id = "message", [], None
            return done
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id":
            self._id = value
        return None


async def stream_events(client: httpx.AsyncClient, url: str, token: str,
                        last_id: str | None = None) -> AsyncIterator[SseEvent]:
    """The events of one channel stream (``url``), read with ``client`` under ``token``, from
    after ``last_id`` when given (the benchmarks' many-channel subscribers)."""
    headers = {"Last-Event-ID": last_id} if last_id else {}
    async with client.stream("GET", url, params={"accessToken": token},
                             headers=headers) as resp:
        resp.raise_for_status()
        parser = SseParser()
        async for line in resp.aiter_lines():
            if (ev := parser.feed(line)) is not None:
                yield ev


@dataclass
class Subscription:
    """Streams one channel in a background thread; every message is handed to ``on_message``
    with the local receive time in ms."""

    base_url: str
    channel: str
    token: str
    on_message: Callable[[dict[str, Any], int], None]
    rewind: int = 0
    attached: threading.Event = field(default_factory=threading.Event)
    error: dict[str, Any] | None = None
    status: int | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _client: httpx.Client | None = None

    def start(self) -> Subscription:
        self._thread = threading.Thread(target=self._run, name=f"sse-{self.channel}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        client = self._client
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        url = (
            f"{self.base_url}/channels/{quote(self.channel, safe=':')}/stream"
            f"?accessToken={quote(self.token)}&rewind={self.rewind}"
        )
        last_id: str | None = None
        while not self._stop.is_set():
            headers = {"Accept": "text/event-stream"}
            if last_id:
                headers["Last-Event-ID"] = last_id
            try:
                self._client = httpx.Client(timeout=httpx.Timeout(5.0, read=60.0))
                with self._client as client, client.stream("GET", url, headers=headers) as resp:
                    self.status = resp.status_code
                    if resp.status_code != 200:
                        self.error = json.loads(resp.read() or b"{}")
                        return
                    last_id = self._read(resp, last_id)
                    if self.error is not None:
                        return
            except (httpx.HTTPError, RuntimeError, OSError):
                if self._stop.is_set():
                    return
                time.sleep(0.1)

    def _read(self, resp: httpx.Response, last_id: str | None) -> str | None:
        parser = SseParser()
        lines = resp.iter_lines()
        while not self._stop.is_set():
            try:
                line = next(lines)
            except StopIteration:
                return last_id
            ev = parser.feed(line)
            if ev is None:
                continue
            if ev.event == "attached":
                self.attached.set()
            elif ev.event == "error":
                self.error = json.loads(ev.data)
                return last_id
            elif ev.event == "message":
                received = time.time_ns() // 1_000_000
                self.on_message(json.loads(ev.data), received)
                if ev.id:
                    last_id = ev.id
        return last_id


def request_token(base_url: str, token_request: dict[str, Any]) -> dict[str, Any]:
    """Exchange a signed TokenRequest at the hub (what the pages do)."""
    resp = httpx.post(
        f"{base_url}/keys/{quote(token_request['keyName'])}/requestToken",
        json=token_request,
        timeout=10,
    )
    resp.raise_for_status()
    return dict(resp.json())
