"""ksqlDB's processing log: what goes wrong with one record is logged, the query keeps going.

A record that cannot be deserialized, or an expression that fails on a row (a bad CAST, an
out-of-range GEO_DISTANCE, an integer division by zero), is written as one structured entry to
the processing-log topic (``<service id>ksql_processing_log``), readable as the stream
``KSQL_PROCESSING_LOG``, the way ksqlDB writes it (docs: reference/processing-log):

    LOGGER  processing.<query id>.KsqlTopic.Source.deserializer | processing.<query id>.Project
    LEVEL   ERROR
    TIME    epoch ms when it was logged
    MESSAGE {TYPE: 0 deserialization | 1 record processing | 2 production | 3 serialization,
             DESERIALIZATIONERROR {target, errorMessage, recordB64, cause, topic},
             RECORDPROCESSINGERROR {errorMessage, record, cause}, PRODUCTIONERROR {...}, ...}

Row data is left out (ksqlDB's default, ``ksql.logging.processing.rows.include=false``): the
record of a processing error is null; a deserialization error carries the raw bytes in Base64,
as ksqlDB does, since they are what failed.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson

log = logging.getLogger(__name__)

STREAM = "KSQL_PROCESSING_LOG"
DESERIALIZATION_ERROR = 0
RECORD_PROCESSING_ERROR = 1
PRODUCTION_ERROR = 2
SERIALIZATION_ERROR = 3


def topic_name(service_id: str = "default_") -> str:
    return f"{service_id}ksql_processing_log"


def create_statement(topic: str) -> str:
    """The DDL of the log stream (ksqlDB's documented schema; field names as it writes them)."""
    return (
        f"CREATE STREAM {STREAM} (LOGGER STRING, LEVEL STRING, `TIME` BIGINT, MESSAGE STRUCT<"
        "`TYPE` INTEGER, "
        "DESERIALIZATIONERROR STRUCT<TARGET STRING, ERRORMESSAGE STRING, RECORDB64 STRING, "
        "CAUSE ARRAY<STRING>, `topic` STRING>, "
        "RECORDPROCESSINGERROR STRUCT<ERRORMESSAGE STRING, RECORD STRING, CAUSE ARRAY<STRING>>, "
        "PRODUCTIONERROR STRUCT<ERRORMESSAGE STRING>, "
        "SERIALIZATIONERROR STRUCT<TARGET STRING, ERRORMESSAGE STRING, RECORD STRING, "
        "CAUSE ARRAY<STRING>, `topic` STRING>, "
        "KAFKASTREAMSTHREADERROR STRUCT<ERRORMESSAGE STRING, THREADNAME STRING, "
        "CAUSE ARRAY<STRING>>>) "
        f"WITH (KAFKA_TOPIC='{topic}', VALUE_FORMAT='JSON');"
    )


def _entry(logger: str, message: dict[str, Any], now_ms: int) -> dict[str, Any]:
    msg = {
        "TYPE": message.pop("TYPE"),
        "DESERIALIZATIONERROR": None,
        "RECORDPROCESSINGERROR": None,
        "PRODUCTIONERROR": None,
        "SERIALIZATIONERROR": None,
        "KAFKASTREAMSTHREADERROR": None,
    }
    msg.update(message)
    return {"LOGGER": logger, "LEVEL": "ERROR", "TIME": now_ms, "MESSAGE": msg}


def deserialization_entry(
    query_id: str, topic: str, target: str, error: str, raw: bytes | None, now_ms: int
) -> dict[str, Any]:
    return _entry(
        f"processing.{query_id}.KsqlTopic.Source.deserializer",
        {
            "TYPE": DESERIALIZATION_ERROR,
            "DESERIALIZATIONERROR": {
                "TARGET": target,
                "ERRORMESSAGE": error,
                "RECORDB64": None if raw is None else base64.b64encode(raw).decode("ascii"),
                "CAUSE": [],
                "topic": topic,
            },
        },
        now_ms,
    )


def processing_entry(query_id: str, error: str, now_ms: int) -> dict[str, Any]:
    return _entry(
        f"processing.{query_id}.Project",
        {
            "TYPE": RECORD_PROCESSING_ERROR,
            "RECORDPROCESSINGERROR": {"ERRORMESSAGE": error, "RECORD": None, "CAUSE": []},
        },
        now_ms,
    )


def production_entry(query_id: str, error: str, now_ms: int) -> dict[str, Any]:
    return _entry(
        f"processing.{query_id}.sink",
        {"TYPE": PRODUCTION_ERROR, "PRODUCTIONERROR": {"ERRORMESSAGE": error}},
        now_ms,
    )


Writer = Callable[[bytes, int], None]  # (JSON value, timestamp ms)


class ProcessingLog:
    """Writes entries through ``writer`` (the engine's producer, or a list in tests); a burst of
    errors is bounded to ``max_per_s`` entries per second per query (the rest are counted)."""

    def __init__(self, writer: Writer | None, *, max_per_s: int = 1000,
                 clock: Callable[[], float] = time.time) -> None:
        self.writer = writer
        self.max_per_s = max_per_s
        self.clock = clock
        self.dropped = 0
        self._window: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()

    def _admit(self, query_id: str, now_s: float) -> bool:
        sec = int(now_s)
        with self._lock:
            start, n = self._window.get(query_id, (sec, 0))
            if start != sec:
                start, n = sec, 0
            if n >= self.max_per_s:
                self.dropped += 1
                return False
            self._window[query_id] = (start, n + 1)
            return True

    def _write(self, query_id: str, make: Callable[[int], dict[str, Any]]) -> None:
        if self.writer is None:
            return
        now = self.clock()
        if not self._admit(query_id, now):
            return
        now_ms = int(now * 1000)
        try:
            self.writer(orjson.dumps(make(now_ms)), now_ms)
        except Exception:  # the log must never take the query down
            log.exception("could not write a processing log entry for query %s", query_id)

    def deserialization(
        self, query_id: str, topic: str, target: str, error: str, raw: bytes | None
    ) -> None:
        self._write(query_id, lambda t: deserialization_entry(query_id, topic, target, error,
                                                              raw, t))

    def processing(self, query_id: str, error: str) -> None:
        self._write(query_id, lambda t: processing_entry(query_id, error, t))

    def production(self, query_id: str, error: str) -> None:
        self._write(query_id, lambda t: production_entry(query_id, error, t))
