"""Many hub subscribers at once, for the benchmarks: one asyncio loop in a background thread,
one task per channel, all sharing one HTTP client sized for them. Subclasses say what one
subscription does (``subscribe``); ``start`` and ``stop`` run and end them all."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import httpx


class ChannelTasks:
    def __init__(self, keys: Sequence[str], name: str) -> None:
        self._keys = list(keys)
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name=name)

    async def subscribe(self, client: httpx.AsyncClient, key: str) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=20)

    def _run(self) -> None:
        self._loop.run_until_complete(self._main())

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        n = len(self._keys) + 10
        limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
        async with httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=None),
                                     limits=limits) as client:
            tasks = [asyncio.create_task(self.subscribe(client, k)) for k in self._keys]
            await self._stop.wait()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
