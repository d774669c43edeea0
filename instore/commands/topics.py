"""`instore topics ...`: what the broker holds, the way users reach for kcat or `confluent kafka
topic consume`: the topics with their records and configs, and the records of one topic."""

from __future__ import annotations

import json
import sys
import time
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="The broker's topics and their records.", no_args_is_help=True)
err = Console(stderr=True)


def _fail(message: str) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}")
    return typer.Exit(1)


def _unreachable(settings: Any) -> str:
    hint = "start it with `instore up`" if settings.embedded_kafka else "check KAFKA_BOOTSTRAP_SERVERS"
    return f"no Kafka broker answers at {settings.bootstrap_servers}: {hint}"


@app.command("list")
def list_topics(
    as_json: Annotated[bool, typer.Option("--json", help="Last line: one JSON object.")] = False,
    internal: Annotated[bool, typer.Option("--internal", help="Also Kafka's and Faust's own "
                                           "topics (offsets, changelogs).")] = False,
) -> None:
    """Every topic: kind (contract stream/table), partitions, replicas, records held now,
    cleanup policy and retention."""
    from confluent_kafka import KafkaException, TopicPartition  # noqa: PLC0415
    from confluent_kafka.admin import ConfigResource  # noqa: PLC0415

    from instore.kafka import make_admin, make_consumer  # noqa: PLC0415
    from instore.settings import get_settings  # noqa: PLC0415
    from instore.topics_view import TopicRow, kind_of  # noqa: PLC0415

    settings = get_settings()
    try:
        md = make_admin(settings).list_topics(timeout=5)
    except KafkaException:
        raise _fail(_unreachable(settings)) from None
    names = sorted(n for n in md.topics if internal or kind_of(n) not in ("internal",))
    admin, consumer = make_admin(settings), make_consumer(settings)
    rows: list[TopicRow] = []
    try:
        futures = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, n) for n in names])
        configs = {res.name: {k: v.value for k, v in f.result().items()} for res, f in futures.items()}
        for name in names:
            parts = md.topics[name].partitions
            held = 0
            for p in parts:
                low, high = consumer.get_watermark_offsets(TopicPartition(name, p), timeout=5)
                held += max(0, high - low)
            cfg = configs.get(name, {})
            replicas = len(next(iter(parts.values())).replicas) if parts else 0
            retention = cfg.get("retention.ms")
            rows.append(TopicRow(name, kind_of(name), len(parts), replicas, held,
                                 cfg.get("cleanup.policy", "?"),
                                 int(retention) if retention not in (None, "-1") else None))
    except KafkaException as exc:
        msg = f"reading the topics failed: {exc}"
        raise _fail(msg) from None
    finally:
        consumer.close()
    if as_json:
        sys.stdout.write(json.dumps({"topics": [r.as_dict() for r in rows]}) + "\n")
        return
    table = Table("topic", "kind", "partitions", "replicas", "records", "cleanup", "retention")
    for r in rows:
        retention = "forever" if r.retention_ms is None else f"{r.retention_ms / 3_600_000:g} h"
        table.add_row(r.name, r.kind, str(r.partitions), str(r.replicas), f"{r.records:,}",
                      r.cleanup, retention if r.cleanup != "compact" else "compacted")
    Console().print(table)


@app.command("tail")
def tail(
    topic: Annotated[str, typer.Argument(help="A topic name (`instore topics list`).")],
    from_beginning: Annotated[bool, typer.Option("--from-beginning",
                                                 help="Start at the first record.")] = False,
    follow: Annotated[bool, typer.Option("--follow", "-f",
                                         help="Keep printing new records until Ctrl-C.")] = False,
    limit: Annotated[int, typer.Option(min=1, help="At most this many records (without "
                                       "--from-beginning: the last ones of each partition).")]
    = 10,
) -> None:
    """Print a topic's records as JSON, one per line: partition, offset, key, ts and the value
    (decoded; dead letters with their reason). Without --follow it stops at the end."""
    from confluent_kafka import KafkaException, TopicPartition  # noqa: PLC0415

    from instore.kafka import make_consumer  # noqa: PLC0415
    from instore.settings import get_settings  # noqa: PLC0415
    from instore.topics_view import record_view, start_offsets  # noqa: PLC0415

    settings = get_settings()
    consumer = make_consumer(settings)
    try:
        try:
            md = consumer.list_topics(topic, timeout=5)
        except KafkaException:
            raise _fail(_unreachable(settings)) from None
        meta = md.topics.get(topic)
        if meta is None or meta.error is not None or not meta.partitions:
            reason = f"no topic {topic!r} on {settings.bootstrap_servers}: see `instore topics list`"
            raise _fail(reason)
        ends: dict[int, int] = {}
        assign = []
        for p in sorted(meta.partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=5)
            ends[p] = high
            assign.append(TopicPartition(topic, p, start_offsets(low, high, limit, from_beginning)))
        consumer.assign(assign)
        left = {tp.partition for tp in assign if tp.offset < ends[tp.partition]}
        printed = 0
        idle_since = time.monotonic()
        while printed < limit and (follow or left):
            msg = consumer.poll(0.5)
            if msg is None:
                if not follow and time.monotonic() - idle_since > 10:
                    break  # records were promised by the watermarks but none came
                continue
            if msg.error() is not None:
                continue
            idle_since = time.monotonic()
            _kind, ts = msg.timestamp()
            partition, offset = msg.partition(), msg.offset()
            assert partition is not None and offset is not None  # a consumed record has both
            view = record_view(topic, partition, offset, msg.key(), msg.value(), ts)
            sys.stdout.write(json.dumps(view, ensure_ascii=False) + "\n")
            sys.stdout.flush()
            printed += 1
            if offset + 1 >= ends.get(partition, 0):
                left.discard(partition)
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
