"""A Faust Kafka transport tuned for fast restarts on the embedded broker.

Use it with the broker URL scheme ``instore://host:port``. On top of the stock aiokafka driver:

- **Short fetch wait.** Faust fixes ``fetch_max_wait_ms`` at 1500 ms. A broker that answers an
  empty fetch only when that wait is over (the embedded Tansu does) then holds every record
  that arrives meanwhile for up to 1.5 s. This transport uses ``settings.consumer_fetch_wait_ms``;
  on a broker that answers early (Apache Kafka, Confluent Cloud) it only adds cheap empty fetches.
  The wait grows while the broker answers fetches with nothing although records wait (Tansu does
  so deep in a backlog when the wait is shorter than its read: the worker then never moved
  again): ``stream_apps/fetch_wait.py``.
- **Leave the group on a clean stop, also in generation 0.** aiokafka sends LeaveGroup only
  when its generation is > 0 (Kafka's generations start at 1); the embedded broker's start at 0,
  so the first worker of a group never left it on SIGTERM: its successor then waited for the
  broker to expire it (a session timeout) before it got the partitions.
- **Remove a killed predecessor.** A SIGKILLed worker cannot leave; the broker keeps it (often
  as the group leader) until its session times out, and a successor that joins meanwhile is
  made a follower of a dead leader: its SyncGroup fails only after most of a session timeout
  and it has to join again. Each worker records its member id (with its pid) in its data dir;
  a worker that starts first sends LeaveGroup for the recorded members whose process is gone.
  Only members of dead processes on this host that used the same data dir are removed.
- **No fixed 1 s pause before the tables register** (Faust's TableManager sleeps 1 s on start
  in case tables are added late; ours are all declared before the worker starts).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any, ClassVar

from aiokafka import errors as kafka_errors
from aiokafka.protocol.group import LeaveGroupRequest
from faust.tables import TableManager as FaustTableManager
from faust.transport.drivers import TRANSPORTS
from faust.transport.drivers import aiokafka as driver

from instore.membership import MEMBERS_FILE, MemberRecord
from stream_apps.fetch_wait import AdaptiveFetchWait

log = logging.getLogger(__name__)

FETCH_WAIT_MS = 20
UNKNOWN_MEMBER_ID = ""


async def _leave_generation_zero(coordinator: Any) -> None:
    """aiokafka's ``_maybe_leave_group`` with ``generation >= 0`` as "joined" (not ``> 0``)."""
    if (coordinator.generation >= 0 and coordinator.member_id != UNKNOWN_MEMBER_ID
            and coordinator._group_instance_id is None):  # noqa: SLF001
        try:
            await coordinator._send_req(  # noqa: SLF001
                LeaveGroupRequest(coordinator.group_id, coordinator.member_id))
        except kafka_errors.KafkaError as exc:
            log.warning("leaving the consumer group failed: %s", exc)
        else:
            log.info("left consumer group %s", coordinator.group_id)
    coordinator.reset_generation()


class ConsumerThread(driver.AIOKafkaConsumerThread):
    @property
    def _members(self) -> MemberRecord:
        return MemberRecord(Path(self.app.conf.datadir) / MEMBERS_FILE)

    async def on_start(self) -> None:
        await super().on_start()  # creates and starts the aiokafka consumer (no join yet)
        consumer = self._consumer
        if consumer is None:
            return
        # Sets the fetcher's wait (FETCH_WAIT_MS near the end) before its first fetch, which
        # waits for the group assignment.
        self.fetch_wait = AdaptiveFetchWait(consumer._fetcher, FETCH_WAIT_MS,  # noqa: SLF001
                                            name="worker consumer")
        if self.app.client_only:
            return
        coordinator = consumer._coordinator  # noqa: SLF001
        if coordinator is None:
            return
        coordinator._maybe_leave_group = lambda: _leave_generation_zero(coordinator)  # noqa: SLF001
        await self._remove_dead_predecessors(coordinator)

    async def _remove_dead_predecessors(self, coordinator: Any) -> None:
        try:
            dead = self._members.dead()
        except OSError as exc:
            log.warning("cannot read the recorded group members: %s", exc)
            return
        if not dead:
            return
        try:
            await asyncio.wait_for(coordinator.ensure_coordinator_known(), timeout=10)
            for member_id in dead:
                resp = await coordinator._send_req(  # noqa: SLF001
                    LeaveGroupRequest(coordinator.group_id, member_id))
                log.info("removed the group member of a stopped worker (error code %s)",
                         getattr(resp, "error_code", "?"))
        except (kafka_errors.KafkaError, TimeoutError) as exc:
            log.warning("could not remove a stopped worker's group member: %s", exc)
            return
        with contextlib.suppress(OSError):
            self._members.forget(dead)

    async def on_partitions_assigned(self, assigned: Any, generation_id: int = 0) -> None:
        consumer = self._consumer
        if consumer is not None:
            member_id = consumer._coordinator.member_id  # noqa: SLF001
            if member_id:
                try:
                    self._members.set_mine(member_id)
                except OSError as exc:
                    log.warning("cannot record the group member id: %s", exc)
        await super().on_partitions_assigned(assigned, generation_id)


class Consumer(driver.Consumer):
    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(driver.Transport):
    Consumer: ClassVar[type] = Consumer


class TableManager(FaustTableManager):  # type: ignore[misc]
    """Faust's table manager without the fixed 1 s sleep before the tables register."""

    async def on_start(self) -> None:
        await asyncio.sleep(0)
        if not self.should_stop:
            await self._update_channels()
            await self.recovery.start()


def register(fetch_wait_ms: int) -> str:
    """Register the ``instore://`` scheme; returns it."""
    global FETCH_WAIT_MS  # noqa: PLW0603
    FETCH_WAIT_MS = fetch_wait_ms
    TRANSPORTS.aliases["instore"] = f"{__name__}:Transport"
    return "instore"
