"""The push sink's retries (mobile_push.backoff, mobile_push.publisher): what is retried, the
waits (0.1 s doubling to 5 s), giving up only once stopping and at the cap, each retry counted
and logged with what failed. Sleeps are recorded, not slept."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
import redis.exceptions as redis_errors
from ably.util.exceptions import AblyException

from instore.records import Offer
from mobile_push.backoff import BACKOFF_MAX_S, Backoff
from mobile_push.publisher import AblyPublisher


@pytest.fixture
def slept(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    waits: list[float] = []
    real_sleep = asyncio.sleep

    async def record(seconds: float, *args: Any) -> None:
        waits.append(seconds)
        await real_sleep(0)

    monkeypatch.setattr(asyncio, "sleep", record)
    return waits


class Failing:
    """Raises each of ``errors`` in turn, then returns ``result``."""

    def __init__(self, errors: list[BaseException], result: Any = "ok") -> None:
        self.errors = list(errors)
        self.result = result
        self.calls = 0

    async def __call__(self, *_: Any) -> Any:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return self.result


def _backoff(stopping: bool = False) -> tuple[Backoff, list[int]]:
    counted: list[int] = []
    return Backoff(lambda: stopping, lambda: counted.append(1)), counted


async def test_redis_outages_are_retried_with_doubling_waits_up_to_the_cap(slept, caplog):
    backoff, counted = _backoff()
    fn = Failing([redis_errors.ConnectionError("down")] * 8 + [OSError("reset")])
    with caplog.at_level(logging.WARNING, logger="mobile_push.backoff"):
        assert await backoff.redis("redis lookup", fn) == "ok"
    assert slept == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0]
    assert fn.calls == 10 and len(counted) == 9
    first = caplog.records[0].getMessage()
    assert first.startswith("redis lookup failed: Retrying") and "ConnectionError: down" in first


async def test_a_plain_function_returning_an_awaitable_is_awaited(slept):
    """As ``lambda: client.set(...)`` is: its coroutine is awaited, and retried."""
    backoff, _ = _backoff()
    fn = Failing([redis_errors.ConnectionError("down")], result=7)
    assert await backoff.redis("redis consent", lambda: fn()) == 7
    assert fn.calls == 2


async def test_other_redis_errors_are_not_retried(slept):
    backoff, counted = _backoff()
    fn = Failing([redis_errors.ResponseError("WRONGTYPE")])
    with pytest.raises(redis_errors.ResponseError):
        await backoff.redis("redis consent", fn)
    assert fn.calls == 1 and slept == [] and counted == []


async def test_a_stopping_sink_gives_up_at_the_cap_with_the_redis_error(slept):
    backoff, counted = _backoff(stopping=True)
    fn = Failing([redis_errors.TimeoutError("slow")] * 20)
    with pytest.raises(redis_errors.TimeoutError):
        await backoff.redis("redis mark delivered", fn)
    assert slept == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2]  # the next wait would be the 5 s cap
    assert fn.calls == 7 and len(counted) == 7
    assert max(slept) < BACKOFF_MAX_S


def _ably(status: int, code: int) -> AblyException:
    return AblyException("refused", status, code)


OFFER = Offer(offer_id="o1", uid="u1", store_id="s1", pid="p1", sku=1, title="t",
              discount_pct=10, distance_ft=1.0, ts=1, expires_at=2)


class Rest:
    def __init__(self, fn: Failing) -> None:
        self.channels = self
        self.fn = fn

    def get(self, _name: str) -> Rest:
        return self

    async def publish(self, **_: Any) -> None:
        await self.fn()


async def test_ably_5xx_and_timeouts_are_retried_4xx_is_the_reason(slept):
    backoff, counted = _backoff()
    fn = Failing([_ably(503, 50003), TimeoutError(), _ably(400, 40009)])
    reason = await AblyPublisher(Rest(fn), backoff).publish("shopper:u1", [OFFER], {"o1": {}})
    assert reason is not None and reason.startswith("40009 400")
    assert fn.calls == 3 and slept == [0.1, 0.2] and len(counted) == 2


async def test_ably_401_is_retried_and_succeeds(slept):
    backoff, _ = _backoff()
    fn = Failing([_ably(401, 40140)])
    assert await AblyPublisher(Rest(fn), backoff).publish("shopper:u1", [OFFER], {"o1": {}}) is None
    assert fn.calls == 2


async def test_a_stopping_sink_gives_up_on_an_unreachable_ably(slept):
    backoff, _ = _backoff(stopping=True)
    fn = Failing([OSError("unreachable")] * 20)
    with pytest.raises(RuntimeError, match="stopping while Ably is unreachable"):
        await AblyPublisher(Rest(fn), backoff).publish("kiosk:s1:k1", [OFFER], {"o1": {}})
    assert fn.calls == 7


async def test_publishes_in_flight_are_bounded(slept):
    """A backlog batch is hundreds of channels: they are published at most ``concurrency`` at
    a time (hundreds queued in the SDK's connection pool cost it quadratic time), all of them."""
    import asyncio

    backoff, _ = _backoff()
    in_flight, most, done = 0, 0, []

    async def publish() -> None:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0)
        in_flight -= 1
        done.append(1)

    publisher = AblyPublisher(Rest(publish), backoff, concurrency=4)
    reasons = await asyncio.gather(*(publisher.publish(f"shopper:u{i}", [OFFER], {"o1": {}})
                                     for i in range(50)))
    assert reasons == [None] * 50 and len(done) == 50 and most == 4
