"""What the worker changes in Faust's stock aiokafka driver.

``TableManager`` is Faust's without its fixed 1 s sleep before the tables register (it waits in
case tables are added late; ours are all declared before the worker starts), so a restarted
worker starts recovering its tables at once.

``ConsumerThread`` gives aiokafka ``WORKER_FETCH_WAIT_MS`` as its fetch wait instead of Faust's
hard-coded 1.5 s: aiokafka keeps one fetch in flight per broker, and while a fetch for partitions
with nothing new (the quiet topics the worker also reads) waits at the broker, the partitions
the worker has just emptied cannot be fetched again.

``Consumer`` hands the records of the topics named in ``app.batch_handlers`` to their handler a
fetched batch at a time (one call per topic and fetch, its partitions together) instead of one
Faust event per record: Faust's per-record path (a task per record to race the flow control, the
conductor's decode and channel queue, the stream iterator) costs more than our whole proximity
rule. The handler hands the batch to the worker's proximity loop (a Faust task), which
acknowledges each record to the consumer when it is done with it, so Faust's offset
bookkeeping, commits, rebalances and seeks stay exactly Faust's. Every other topic (tables,
changelogs, the other agents) goes through the stock per-record path.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from faust.tables import TableManager as FaustTableManager
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message

from instore.settings import Settings

BatchHandler = Callable[[list[Message]], Awaitable[None]]


class TableManager(FaustTableManager):  # type: ignore[misc]
    """Faust's table manager without the fixed 1 s sleep before the tables register."""

    async def on_start(self) -> None:
        await asyncio.sleep(0)
        if not self.should_stop:
            await self._update_channels()
            await self.recovery.start()


class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):  # type: ignore[misc]
    """Faust's aiokafka consumer thread with the worker's fetch wait."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka reads it when it starts its fetcher (Faust passes a fixed 1500)
        consumer._fetch_max_wait_ms = getattr(self.app, "fetch_wait_ms", 1500)  # noqa: SLF001
        return consumer


class Consumer(faust_aiokafka.Consumer):  # type: ignore[misc]
    """Faust's aiokafka consumer, delivering whole fetched batches for some topics."""

    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _drain_messages(self, fetcher: Any) -> None:
        handlers: dict[str, BatchHandler] = getattr(self.app, "batch_handlers", {})
        if not handlers:
            await super()._drain_messages(fetcher)
            return
        callback = self.callback
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set  # noqa: SLF001 - Faust's own drain loop reads it so
        read_offset = self._read_offset
        acks_enabled_for = self.app.topics.acks_enabled_for
        to_message = self._to_message
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                self.diag.set_flag(CONSUMER_FETCHING)
                records, active = await self._wait_next_records(1.0)
                await self.sleep(0)
                if records is None or self.should_stop:
                    continue
                if not self.flow_active:  # fetched across a rebalance: read again from commits
                    await self.perform_seek()
                    continue
                generation = self.app.consumer_generation_id
                # a topic's partitions of this fetch, handed over together
                batches: dict[str, list[Message]] = {}
                ends: dict[TP, int] = {}
                for tp, recs in records.items():
                    if not self.flow_active or self.app.consumer_generation_id != generation:
                        break
                    if active is not None and tp not in active and \
                            tp not in self._buffered_partitions:
                        continue
                    self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
                    if tp.topic not in handlers:
                        for rec in recs:
                            await self._deliver(tp, to_message(tp, rec), callback)
                        continue
                    start = read_offset[tp]
                    msgs: list[Message] = [
                        to_message(tp, r) for r in recs if start is None or r.offset >= start
                    ]
                    if not msgs:
                        continue
                    if acks_enabled_for(tp.topic):
                        await self._add_gaps(tp, start, msgs)
                    batches.setdefault(tp.topic, []).extend(msgs)
                    ends[tp] = msgs[-1].offset
                for topic, msgs in batches.items():
                    if not self.flow_active or self.app.consumer_generation_id != generation:
                        break
                    await self.wait_first(handlers[topic](msgs), self.suspend_flow.wait())
                    for tp, end in ends.items():
                        if tp.topic == topic:
                            read_offset[tp] = end
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

    async def _deliver(self, tp: TP, message: Message, callback: Any) -> None:
        """The stock path for one record (Faust's ``_drain_messages`` body)."""
        r_offset = self._read_offset[tp]
        offset = message.offset
        if r_offset is not None and offset < r_offset:
            return
        if r_offset and offset - r_offset > 1 and self.app.topics.acks_enabled_for(tp.topic):
            await self._add_gap(tp, r_offset + 1, offset)
        if self._commit_every is not None and self._n_acked >= self._commit_every:
            self._n_acked = 0
            await self.commit()
        await self.wait_first(callback(message), self.suspend_flow.wait())
        self._read_offset[tp] = offset

    async def _add_gaps(self, tp: TP, start: int | None, msgs: list[Message]) -> None:
        """Offsets with no record (compaction, transaction markers) count as acknowledged, as
        Faust's per-record path records them."""
        prev = start
        for m in msgs:
            if prev and m.offset - prev > 1:
                await self._add_gap(tp, prev + 1, m.offset)
            prev = m.offset


class Transport(faust_aiokafka.Transport):  # type: ignore[misc]
    Consumer: ClassVar[Any] = Consumer


def broker_url(settings: Settings) -> str:
    """Faust's broker URL for the configured bootstrap servers (the aiokafka driver)."""
    return ";".join(f"kafka://{h.strip()}" for h in settings.bootstrap_servers.split(","))
