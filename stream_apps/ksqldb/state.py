"""What the engine's statements change and its queries read: the metastore (streams and
tables by name), the persistent and transient queries, the command statuses and the server
properties, with the clients the statements use (topic admin, command topic, processing log)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from instore.settings import Settings
from stream_apps.ksqldb.broker import CommandTopic, TopicAdmin
from stream_apps.ksqldb.errors import StatementError
from stream_apps.ksqldb.metastore import Source
from stream_apps.ksqldb.processing_log import ProcessingLog
from stream_apps.ksqldb.runners import QueryRunner

DEFAULT_PROPERTIES = {
    "ksql.streams.auto.offset.reset": "latest",
    "ksql.service.id": "default_",
    "ksql.persistence.default.format.key": "KAFKA",
    "ksql.extension.dir": "ext",
    "ksql.streams.commit.interval.ms": "1000",
    # Kafka Streams threads per query; here processes, for per-record stream queries
    # (stream_apps/ksqldb/workers.py): Python runs one thread at a time
    "ksql.streams.num.stream.threads": str(min(2, os.cpu_count() or 1)),
}


def streams_property(props: dict[str, Any], *names: str) -> Any:
    """A request's property by name, with or without the ``ksql.streams.`` prefix."""
    for n in names:
        for k, v in props.items():
            if k.lower() in (n, f"ksql.streams.{n}"):
                return v
    return None


@dataclass
class EngineState:
    settings: Settings
    service_id: str
    admin: TopicAdmin
    commands: CommandTopic
    processing_log: ProcessingLog
    processing_log_topic: str
    sources: dict[str, Source] = field(default_factory=dict)
    queries: dict[str, QueryRunner] = field(default_factory=dict)
    transient: dict[str, QueryRunner] = field(default_factory=dict)
    command_status: dict[str, dict[str, str]] = field(default_factory=dict)
    properties: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_PROPERTIES))
    seq: int = 0  # the command sequence number of the last statement

    def lookup(self, name: str) -> Source:
        src = self.sources.get(name)
        if src is None:
            msg = f"{name} does not exist."
            raise StatementError(msg)
        return src

    def offset_reset(self, props: dict[str, Any]) -> str:
        v = (
            streams_property(props, "auto.offset.reset")
            or self.properties["ksql.streams.auto.offset.reset"]
        )
        return str(v).lower()

    def stream_threads(self, props: dict[str, Any]) -> int:
        return int(
            streams_property(props, "num.stream.threads")
            or self.properties["ksql.streams.num.stream.threads"]
        )

    def readers_writers(self, name: str) -> tuple[list[str], list[str]]:
        """The ids of the persistent queries reading, and writing, source ``name``."""
        readers, writers = [], []
        for qid, q in self.queries.items():
            if any(b.source.name == name for b in q.plan.bindings):
                readers.append(qid)
            if q.sink is not None and q.sink.name == name:
                writers.append(qid)
        return readers, writers
