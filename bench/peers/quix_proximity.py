"""The proximity step on quix-streams: positions -> NEARBY rows, as the worker computes them.

``python -m bench.peers.quix_proximity --input TOPIC --output TOPIC`` (under .venv-quix's
interpreter: quix-streams pins an older confluent-kafka and pydantic than the project). One
``Application`` with its defaults: at-least-once, a checkpoint every 5 s (the producer flushed,
then the offsets committed). Raw bytes in and out; quix-streams hands the pipeline one message at
a time (it has no batched dataframe), so the pipeline does as little per row as it can:

    apply (decode + match, one call per position) -> set_timestamp (the position's ts, once per
    position) -> apply expand (one item per row) -> to_topic (key: the uid, value: the row bytes)

SIGTERM stops the application (quix-streams' own handler); the summary is logged on stop.
"""

from __future__ import annotations

import logging
from operator import itemgetter
from typing import Any

from quixstreams import Application
from quixstreams.kafka.configuration import ConnectionConfig
from quixstreams.models.serializers import Serializer

from bench.peers import Step, connection, input_config, load_catalog, output_config, parse_args, setup_logging
from instore.settings import get_settings

log = logging.getLogger("bench.peers.quix")


class RowBytes(Serializer):
    """The value of an output item ``(uid, row)``: the row bytes, as they are."""

    def __call__(self, value: tuple[bytes, bytes], ctx: Any) -> bytes:
        return value[1]


def main() -> None:
    args = parse_args(__doc__)
    setup_logging()
    settings = get_settings()
    step = Step(load_catalog(settings))
    app = Application(
        broker_address=ConnectionConfig.from_librdkafka_dict(connection(settings)),
        consumer_group=f"bench-peer-quix-{args.input}",
        auto_offset_reset="earliest",
        consumer_extra_config=input_config(settings),
        producer_extra_config=output_config(settings),
        state_dir=args.state_dir,
        auto_create_topics=False,  # the harness creates them, with the positions' partitions
        loglevel="WARNING",
    )
    positions = app.topic(args.input, key_deserializer="bytes", value_deserializer="bytes")
    nearby = app.topic(args.output, key_serializer="bytes", value_serializer=RowBytes())
    match = step.hits

    def proximity(value: bytes, key: Any, timestamp: int, headers: Any) -> tuple[int, list[Any]]:
        got = match(value, timestamp)
        if got is None:
            return timestamp, []
        uid, ts, hits = got
        return ts, [(uid, hit[4]) for hit in hits]

    sdf = app.dataframe(positions)
    sdf = sdf.apply(proximity, metadata=True)
    sdf = sdf.set_timestamp(lambda value, key, timestamp, headers: value[0])
    sdf = sdf.apply(itemgetter(1), expand=True)
    sdf.to_topic(nearby, key=itemgetter(0))
    log.info("quix-streams peer started: %s -> %s", args.input, args.output)
    try:
        app.run()
    finally:
        log.info("quix-streams peer stopped: %s", step.summary())


if __name__ == "__main__":
    main()
