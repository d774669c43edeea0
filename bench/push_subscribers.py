"""The subscribers of `instore bench push`: many browser-like subscribers in one thread, each
recording when an offer arrives (latency = receive time - the offer's event time) and how often
(duplicates)."""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any
from urllib.parse import urlencode

import httpx

from bench.channels import ChannelTasks
from mobile_push.local_hub.protocol import ATTACH as RT_ATTACH
from mobile_push.local_hub.protocol import ATTACHED as RT_ATTACHED
from mobile_push.local_hub.protocol import CONNECTED as RT_CONNECTED
from mobile_push.local_hub.protocol import DISCONNECTED as RT_DISCONNECTED
from mobile_push.local_hub.protocol import ERROR as RT_ERROR
from mobile_push.local_hub.protocol import MESSAGE as RT_MESSAGE
from mobile_push.local_hub.sse_client import stream_events


class Collector(ChannelTasks):
    """Async subscribers for many channels in one thread (one token: ``shopper:*``): one hub
    SSE stream per channel, or one Ably realtime WebSocket connection per channel (what the
    pages' ably-js opens: a connection per phone)."""

    def __init__(self, base: str, channels: list[str], token: str, transport: str = "sse") -> None:
        self.base, self.channels, self.token = base, channels, token
        self.transport = transport
        self.latencies: list[float] = []
        self.ids: Counter[str] = Counter()
        self.attached = 0
        self.measure_from_ms = 0
        super().__init__(channels, "bench-collector")

    async def subscribe(self, client: httpx.AsyncClient, channel: str) -> None:
        await (self._one_ws if self.transport == "websocket" else self._one)(client, channel)

    async def _one(self, client: httpx.AsyncClient, channel: str) -> None:
        url = f"{self.base}/channels/{channel}/stream"
        async for ev in stream_events(client, url, self.token):
            if ev.event == "attached":
                self.attached += 1
            elif ev.event == "message":
                self._message(json.loads(ev.data))

    async def _one_ws(self, _client: httpx.AsyncClient, channel: str) -> None:
        import websockets  # noqa: PLC0415

        url = self.base.replace("http://", "ws://", 1) + "/?" + urlencode(
            {"access_token": self.token, "format": "json", "heartbeats": "true", "v": "6"}
        )
        async with websockets.connect(url, max_queue=None) as ws:
            async for raw in ws:
                frame = json.loads(raw)
                action = frame.get("action")
                if action == RT_CONNECTED:
                    await ws.send(json.dumps({"action": RT_ATTACH, "channel": channel}))
                elif action == RT_ATTACHED:
                    self.attached += 1
                elif action == RT_MESSAGE:
                    for msg in frame.get("messages") or []:
                        self._message(msg)
                elif action in (RT_ERROR, RT_DISCONNECTED):
                    return

    def _message(self, msg: dict[str, Any]) -> None:
        received = time.time_ns() // 1_000_000
        payload = msg.get("data")
        offer: dict[str, Any] = (
            json.loads(payload) if isinstance(payload, str) else dict(payload or {})
        )
        self.ids[msg["id"]] += 1
        if self.ids[msg["id"]] == 1 and offer["ts"] >= self.measure_from_ms:
            self.latencies.append(received - offer["ts"])
