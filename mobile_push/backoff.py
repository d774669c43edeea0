"""How the push sink retries what may come back (Redis, Ably, the network): exponential
backoff from 0.1 s to 5 s (tenacity), without limit while the sink runs, so an outage delays
offers instead of losing them; once the sink is stopping it gives up when the wait reached the
cap. Every retry is counted and logged (what failed, the error, the wait)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, TypeVar

import redis.exceptions as redis_errors
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    before_sleep_log,
    retry_if_exception_type,
    wait_exponential,
)
from tenacity.retry import retry_base

log = logging.getLogger(__name__)

BACKOFF_START_S = 0.1
BACKOFF_MAX_S = 5.0
# A Redis that restarts or is briefly unreachable; any other Redis error is a bug, not weather.
REDIS_TRANSIENT = (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError)

T = TypeVar("T")


class _What(logging.LoggerAdapter[logging.Logger]):
    """Prefixes tenacity's retry line with what was being done (``redis consent failed: ...``)."""

    def __init__(self, logger: logging.Logger, what: str) -> None:
        super().__init__(logger, {"what": what})
        self.what = what

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        return f"{self.what} failed: {msg}", kwargs


class Backoff:
    """The sink's retry policy: ``stopping`` says the sink is shutting down, ``on_retry`` is
    called once per failed attempt that qualifies for a retry (the sink's ``retries`` count)."""

    def __init__(self, stopping: Callable[[], bool], on_retry: Callable[[], None]) -> None:
        self.stopping = stopping
        self.on_retry = on_retry

    def _give_up(self, state: RetryCallState) -> bool:
        return self.stopping() and state.upcoming_sleep >= BACKOFF_MAX_S

    def policy(self, what: str, retry: retry_base, *, reraise: bool = True) -> AsyncRetrying:
        """Retry while ``retry`` says so; giving up re-raises the last error (``reraise``) or
        raises tenacity's ``RetryError``."""
        return AsyncRetrying(
            retry=retry,
            wait=wait_exponential(multiplier=BACKOFF_START_S, max=BACKOFF_MAX_S),
            stop=self._give_up,
            after=lambda _state: self.on_retry(),
            before_sleep=before_sleep_log(_What(log, what), logging.WARNING),
            reraise=reraise,
        )

    async def redis(self, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        """``await fn()``, retried through Redis restarts and timeouts. ``fn`` may be any
        callable returning an awaitable (a lambda around a client call): tenacity would not
        await what a plain function returns, so it is called from a coroutine function that
        carries its name (for the retry line)."""

        @functools.wraps(fn)
        async def attempt() -> T:
            return await fn()

        result: T = await self.policy(what, retry_if_exception_type(REDIS_TRANSIENT))(attempt)
        return result
