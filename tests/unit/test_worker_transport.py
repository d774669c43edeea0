"""The worker's consumer fetches with WORKER_FETCH_WAIT_MS, not Faust's hard-coded 1.5 s:
aiokafka keeps one fetch in flight per broker, so a fetch waiting at the broker for the quiet
topics held the positions back that long (1-2 s at 2,000 positions/s)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from instore.settings import Settings
from stream_apps.app import _faust_app


def test_the_worker_consumer_fetches_with_the_configured_wait(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, worker_fetch_wait_ms=37)

    async def created() -> int:  # aiokafka creates its client inside a running loop
        app = _faust_app(settings)
        consumer = app.consumer._thread._create_worker_consumer(app.transport)
        wait: int = consumer._fetch_max_wait_ms
        await consumer.stop()
        return wait

    assert asyncio.run(created()) == 37
