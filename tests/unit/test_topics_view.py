"""`instore topics list|tail`: the pure parts (rows, where to start, how a record reads)."""

from __future__ import annotations

from instore import topics as t
from instore.topics_view import kind_of, record_view, start_offsets


def test_kinds_come_from_the_contract() -> None:
    assert kind_of(t.SHOPPER_CONSENTS.name) == "table"
    assert kind_of(t.CUSTOMERS_LOCATIONS.name) == "stream"
    assert kind_of("__consumer_offsets") == "internal"
    assert kind_of("instore-stream-policy-state-changelog") == "internal"
    assert kind_of("my_topic") == "other"


def test_start_at_the_last_records_or_the_beginning() -> None:
    assert start_offsets(0, 100, 10, from_beginning=False) == 90
    assert start_offsets(95, 100, 10, from_beginning=False) == 95  # fewer held than asked
    assert start_offsets(40, 100, 10, from_beginning=True) == 40


def test_a_record_reads_as_json_with_dead_letter_reasons_first() -> None:
    dead = record_view(t.DEAD_LETTERS.name, 0, 7, None,
                       b'{"source_topic": "customers_locations", "error": "latitude: > 90",'
                       b' "raw": "x"}', 1000)
    assert dead["reason"] == "latitude: > 90" and dead["key"] is None and dead["offset"] == 7
    plain = record_view(t.OFFERS.name, 1, 2, b"u1", b"not json", 5)
    assert plain["value"] == "not json" and plain["key"] == "u1"
    gone = record_view(t.SHOPPER_CONSENTS.name, 0, 3, b"u1", None, 6)
    assert gone["tombstone"] is True and gone["value"] is None
