"""The Faust ceiling: an agent on the same broker that only consumes and decodes positions.

Run as its own process by `instore bench proximity`; it reads ``customers_locations`` from the
beginning with the same batching as the proximity agent, and when it has seen ``--events``
records it writes {events, seconds, events_per_s} to ``--out`` and exits.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import faust

from instore import topics as t
from instore.records import CustomerLocation, RecordError, decode
from instore.settings import get_settings
from stream_apps import transport


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    settings = get_settings()
    app = faust.App(
        f"instore-ceiling-{os.getpid()}",
        broker=transport.broker_url(settings),
        store="memory://", key_serializer="raw", value_serializer="raw", web_enabled=False,
        datadir=str(args.out.parent / "ceiling-data"),  # not the current directory
        consumer_auto_offset_reset="earliest", broker_rebalance_timeout=3.0,
        broker_session_timeout=10.0, broker_heartbeat_interval=1.0,
        topic_partitions=settings.kafka_partitions,
    )
    topic = app.topic(t.CUSTOMERS_LOCATIONS.name, value_serializer="raw", key_serializer="raw")
    state = {"n": 0, "t0": 0.0}

    @app.task
    async def quiet_logs() -> None:
        # as in the worker: Faust leaves the root logger at DEBUG whatever `-l` says
        logging.getLogger().setLevel(logging.WARNING)

    @app.agent(topic)
    async def decode_only(stream: faust.StreamT) -> None:
        assert isinstance(stream, faust.Stream)  # take_events is on Stream, not StreamT
        async for events in stream.take_events(settings.worker_batch,
                                               within=settings.worker_batch_within_s):
            if not state["n"]:
                state["t0"] = time.perf_counter()
            for event in events:
                try:
                    decode(CustomerLocation, event.message.value)
                except RecordError:
                    pass
            state["n"] += len(events)
            if state["n"] >= args.events:
                dt = time.perf_counter() - state["t0"]
                args.out.write_text(json.dumps({"events": state["n"], "seconds": dt,
                                                "events_per_s": state["n"] / dt}))
                os._exit(0)

    sys.argv = [sys.argv[0], "worker", "-l", "warn", "--without-web"]
    app.main()


if __name__ == "__main__":
    main()
