"""The proximity step on bytewax: positions -> NEARBY rows, as the worker computes them.

``python -m bench.peers.bytewax_proximity --input TOPIC --output TOPIC``. One worker (one
thread, as the Faust worker has one event loop), with recovery on so the Kafka connectors give
at-least-once: the input's offsets are snapshotted at the end of every epoch (5 s), the sink
flushes each batch it writes, and a resumed dataflow replays from the last snapshot.

Raw bytes in and out through ``bytewax.connectors.kafka``'s ``KafkaSource`` and ``KafkaSink``
used directly (the ``kop.input``/``kop.output`` wrappers add a Python call per message to split
errors and one per row to convert messages): the source hands over up to ``batch_size`` messages
per partition per poll, and ``flat_map_batch`` runs the step over a whole batch in one call.
Consumer errors arrive in the batch (``raise_on_errors=False``) and are counted and logged.

SIGTERM stops the dataflow like Ctrl-C (bytewax reports it with a panic message on stderr, then
"signal received"); the summary is logged on stop.
"""

from __future__ import annotations

import logging
import signal
from datetime import timedelta
from pathlib import Path
from typing import Any

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaError, KafkaSink, KafkaSinkMessage, KafkaSource
from bytewax.dataflow import Dataflow
from bytewax.errors import BytewaxRuntimeError
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.run import cli_main
from confluent_kafka import OFFSET_BEGINNING

from bench.peers import Step, connection, input_config, load_catalog, output_config, parse_args, setup_logging
from instore.settings import Settings, get_settings

log = logging.getLogger("bench.peers.bytewax")
EPOCH = timedelta(seconds=5)
BATCH = 1000  # messages per partition per poll: KafkaSource's default, its throughput setting


def build_flow(settings: Settings, step: Step, input_topic: str, output_topic: str) -> Dataflow:
    conn = connection(settings)
    brokers = conn.pop("bootstrap.servers").split(",")
    flow = Dataflow("bench_peer_proximity")
    positions = op.input("positions", flow, KafkaSource(
        brokers, [input_topic], tail=True, starting_offset=OFFSET_BEGINNING,
        add_config=conn | input_config(settings), batch_size=BATCH, raise_on_errors=False))
    match = step.hits

    def proximity(batch: list[Any]) -> list[KafkaSinkMessage[bytes, bytes]]:
        out: list[KafkaSinkMessage[bytes, bytes]] = []
        for msg in batch:
            if isinstance(msg, KafkaError):
                step.skipped["consumer_error"] += 1
                log.warning("consumer error: %s", msg.err)
                continue
            got = match(msg.value, msg.timestamp[1])
            if got is None:
                continue
            uid, ts, hits = got
            out += [KafkaSinkMessage(uid, hit[4], timestamp=ts) for hit in hits]
        return out

    rows = op.flat_map_batch("proximity", positions, proximity)
    op.output("nearby", rows, KafkaSink(brokers, output_topic, add_config=conn | output_config(settings)))
    return flow


def recovery(state_dir: Path) -> RecoveryConfig:
    db_dir = state_dir / "recovery"
    if not db_dir.exists():
        db_dir.mkdir(parents=True)
        init_db_dir(db_dir, 1)
    return RecoveryConfig(db_dir)


def main() -> None:
    args = parse_args(__doc__)
    setup_logging()
    settings = get_settings()
    step = Step(load_catalog(settings))
    flow = build_flow(settings, step, args.input, args.output)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop as on Ctrl-C
    log.info("bytewax peer started: %s -> %s", args.input, args.output)
    try:
        cli_main(flow, workers_per_process=1, epoch_interval=EPOCH,
                 recovery_config=recovery(args.state_dir))
    except BytewaxRuntimeError as exc:  # how bytewax ends on a signal ("signal received")
        if not isinstance(exc.__cause__, KeyboardInterrupt):
            raise
        log.info("bytewax peer: stop requested")
    finally:
        log.info("bytewax peer stopped: %s", step.summary())


if __name__ == "__main__":
    main()
