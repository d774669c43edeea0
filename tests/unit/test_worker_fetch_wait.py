"""The adaptive fetch wait (stream_apps/fetch_wait.py) against aiokafka's own assignment state."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka.consumer.subscription_state import SubscriptionState
from aiokafka.structs import TopicPartition

from stream_apps.fetch_wait import AdaptiveFetchWait

TP0 = TopicPartition("customers_locations", 0)
TP1 = TopicPartition("customers_locations", 1)


class Fetcher:
    """The two attributes of aiokafka's Fetcher the wait reads and the method it wraps."""

    def __init__(self) -> None:
        self._fetch_max_wait_ms = 500
        self._records: dict[TopicPartition, Any] = {}
        self.answer: dict[TopicPartition, int] = {}  # tp -> records the "broker" returns
        self.arrive: dict[TopicPartition, int] = {}  # tp -> high watermark after the wait

    async def _proc_fetch_request(self, assignment: Any, node_id: int, request: Any) -> bool:
        for tp, highwater in self.arrive.items():
            assignment.state_value(tp).highwater = highwater
        for tp, n in self.answer.items():
            if n:
                self._records[tp] = n
        return bool(self._records)


class Request:
    def __init__(self, offsets: dict[TopicPartition, int]) -> None:
        self.topics = [(TP0.topic, [(tp.partition, off, 1 << 20) for tp, off in offsets.items()])]


def _assignment(positions: dict[TopicPartition, int], highwater: dict[TopicPartition, int]) -> Any:
    subs = SubscriptionState()
    subs.assign_from_user(set(positions))
    assignment = subs.subscription.assignment
    for tp, pos in positions.items():
        state = assignment.state_value(tp)
        state.seek(pos)
        state.highwater = highwater[tp]
    return assignment


async def _fetch(wait: AdaptiveFetchWait, assignment: Any,
                 offsets: dict[TopicPartition, int]) -> None:
    await wait.fetcher._proc_fetch_request(assignment, 0, Request(offsets))


def in_loop(test: Any) -> Any:
    """aiokafka's state objects want a running loop: run the test body in one."""
    def run() -> None:
        asyncio.run(test())
    run.__name__ = test.__name__
    run.__doc__ = test.__doc__
    return run


@in_loop
async def test_starved_fetches_double_the_wait_up_to_the_cap() -> None:
    fetcher = Fetcher()
    wait = AdaptiveFetchWait(fetcher, base_ms=20, max_ms=1000)
    assert fetcher._fetch_max_wait_ms == 20  # noqa: SLF001 - the base replaces the configured wait
    offsets = {TP0: 67_551, TP1: 54_677}
    assignment = _assignment(offsets, {TP0: 68_673, TP1: 55_804})
    seen = []
    for _ in range(8):  # the broker answers nothing although records wait
        await _fetch(wait, assignment, offsets)
        seen.append(wait.wait_ms)
    assert seen == [50, 100, 200, 400, 800, 1000, 1000, 1000]
    assert wait.raised == 6


@in_loop
async def test_data_deep_in_a_backlog_keeps_the_wait_and_catching_up_restores_it() -> None:
    fetcher = Fetcher()
    wait = AdaptiveFetchWait(fetcher, base_ms=20, max_ms=4000, behind_ms=1000, near_lag=2000)
    offsets = {TP0: 1_000}
    assignment = _assignment(offsets, {TP0: 100_000})
    await _fetch(wait, assignment, offsets)
    await _fetch(wait, assignment, offsets)
    assert wait.wait_ms == 2000  # starved far behind: the behind deadline, then doubled
    fetcher.answer = {TP0: 5000}  # records arrive: still 99,000 behind, keep the long deadline
    await _fetch(wait, assignment, offsets)
    assert wait.wait_ms == 2000
    fetcher._records.clear()  # noqa: SLF001 - the consumer took them
    assignment.state_value(TP0).consumed_to(99_000)
    await _fetch(wait, assignment, {TP0: 99_000})
    assert wait.wait_ms == 20


@in_loop
async def test_an_idle_partition_is_not_starved() -> None:
    """Nothing after the fetch offset (position == high watermark): the broker is right to
    answer nothing, the wait stays short (it bounds the latency of the next record)."""
    fetcher = Fetcher()
    wait = AdaptiveFetchWait(fetcher, base_ms=20)
    offsets = {TP0: 500, TP1: 700}
    assignment = _assignment(offsets, {TP0: 500, TP1: 700})
    for _ in range(5):
        await _fetch(wait, assignment, offsets)
    assert wait.wait_ms == 20
    assert wait.raised == 0


@in_loop
async def test_records_that_arrive_during_the_wait_are_not_starvation() -> None:
    """The broker answers a wait that found nothing at its start with nothing, even if records
    arrived meanwhile: the next fetch gets them, no longer wait is needed."""
    fetcher = Fetcher()
    wait = AdaptiveFetchWait(fetcher, base_ms=20)
    offsets = {TP0: 500}
    assignment = _assignment(offsets, {TP0: 500})
    fetcher.arrive = {TP0: 640}
    await _fetch(wait, assignment, offsets)
    assert wait.wait_ms == 20
    fetcher.answer = {TP0: 140}  # the next fetch returns them
    await _fetch(wait, assignment, offsets)
    assert wait.wait_ms == 20
    assert wait.raised == 0


@in_loop
async def test_a_revoked_assignment_is_ignored() -> None:
    fetcher = Fetcher()
    wait = AdaptiveFetchWait(fetcher, base_ms=20)
    offsets = {TP0: 10}
    assignment = _assignment(offsets, {TP0: 10_000})
    assignment._unassign()  # noqa: SLF001
    await _fetch(wait, assignment, offsets)
    assert wait.wait_ms == 20


@in_loop
async def test_far_behind_the_wait_is_a_long_deadline_until_caught_up() -> None:
    fetcher = Fetcher()
    wait = AdaptiveFetchWait(fetcher, base_ms=20, behind_ms=1000, near_lag=2000)
    offsets = {TP0: 0}
    assignment = _assignment(offsets, {TP0: 50_000})
    fetcher.answer = {TP0: 4000}
    await _fetch(wait, assignment, offsets)
    assert (wait.wait_ms, wait.raised) == (1000, 0)
    fetcher._records.clear()  # noqa: SLF001
    assignment.state_value(TP0).consumed_to(49_500)
    await _fetch(wait, assignment, {TP0: 49_500})
    assert wait.wait_ms == 20


@in_loop
async def test_starved_far_behind_jumps_to_at_least_the_behind_deadline() -> None:
    fetcher = Fetcher()
    wait = AdaptiveFetchWait(fetcher, base_ms=20, behind_ms=1000, near_lag=2000)
    offsets = {TP0: 100}
    assignment = _assignment(offsets, {TP0: 30_000})
    await _fetch(wait, assignment, offsets)  # nothing came back, 29,900 waiting
    assert wait.wait_ms == 1000
    await _fetch(wait, assignment, offsets)
    assert wait.wait_ms == 2000
