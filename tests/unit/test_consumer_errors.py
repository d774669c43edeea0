"""What a consumer loop does with librdkafka's error events (instore.kafka.is_record)."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError

from instore.kafka import KafkaFatal, is_record


class _Event:
    def __init__(self, err: KafkaError | None) -> None:
        self._err = err

    def error(self) -> KafkaError | None:
        return self._err


def test_a_record_is_a_record_and_a_transient_error_is_skipped() -> None:
    assert is_record(_Event(None))
    assert not is_record(_Event(KafkaError(KafkaError._PARTITION_EOF)))
    assert not is_record(_Event(KafkaError(KafkaError._TRANSPORT, "broker down")))


def test_a_fatal_error_stops_the_loop() -> None:
    """A fenced static member (or any fatal error) cannot consume again: raised, so the
    service exits and its supervisor starts it afresh, rather than polling for ever."""
    fenced = KafkaError(KafkaError.FENCED_INSTANCE_ID, "fenced", fatal=True)
    with pytest.raises(KafkaFatal, match="cannot go on: fenced"):
        is_record(_Event(fenced))
    # what a consumer's poll hands over: the generic _FATAL code, without the fatal flag
    with pytest.raises(KafkaFatal, match="Static consumer fenced"):
        is_record(_Event(KafkaError(KafkaError._FATAL, "Fatal error: Static consumer fenced")))
