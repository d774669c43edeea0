"""One batched publish of offers to one Ably channel with the `ably` SDK: message ``id`` =
``offer_id`` (Ably de-duplicates a redelivery), 5xx answers, timeouts and network errors retried
with backoff (``mobile_push.backoff``), and an answer that the same request would get again
(``routing.is_permanent``: 4xx, too big) returned as the reason, for `dead_letters`.

At most ``concurrency`` requests are in flight at once, whatever the batch: a backlog after a
broker restart is hundreds of channels in one batch, and hundreds of requests queued in the
SDK's HTTP connection pool cost the pool time quadratic in their number (the sink spent
seconds of CPU assigning requests to connections while the offers waited)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from tenacity import RetryError, retry_if_exception

from instore.records import Offer
from mobile_push import routing
from mobile_push.backoff import Backoff


class AblyPublisher:
    def __init__(self, rest: Any, backoff: Backoff, concurrency: int = 16) -> None:
        self.rest = rest
        self.backoff = backoff
        self.in_flight = asyncio.Semaphore(concurrency)

    async def publish(self, channel: str, chunk: list[Offer], payloads: dict[str, Any]) -> str | None:
        """Publish one chunk; None on success, else the reason it was refused for good. Raises
        RuntimeError when the sink stops while Ably is unreachable (the batch is not committed,
        so it is published again after a restart)."""
        from ably.util.exceptions import AblyException  # noqa: PLC0415

        def transient(exc: BaseException) -> bool:
            if isinstance(exc, AblyException):
                return not routing.is_permanent(exc.status_code, exc.code)
            return isinstance(exc, httpx.HTTPError | OSError | TimeoutError)

        what = f"ably publish to a {channel.split(':')[0]} channel"
        try:
            await self.backoff.policy(what, retry_if_exception(transient), reraise=False)(
                self._send, channel, chunk, payloads
            )
        except AblyException as exc:  # permanent: not retried
            return f"{exc.code} {exc.status_code} {exc.message}"[:300]
        except RetryError as exc:
            msg = "stopping while Ably is unreachable"
            raise RuntimeError(msg) from exc.last_attempt.exception()
        return None

    async def _send(self, channel: str, chunk: list[Offer], payloads: dict[str, Any]) -> None:
        from ably.types.message import Message as AblyMessage  # noqa: PLC0415

        messages = [
            AblyMessage(name=routing.MESSAGE_NAME, data=payloads[o.offer_id], id=o.offer_id)
            for o in chunk
        ]
        async with self.in_flight:
            await self.rest.channels.get(channel).publish(messages=messages, timeout=10)
