"""`instore up` with NEARBY_ENGINE=ksqldb: the stack applies the ksqlDB migrations and starts
ksqlDB's writer of NEARBY_CUSTOMERS itself, so that one engine writes the rows from the start."""

from __future__ import annotations

from pathlib import Path

import pytest

from instore.commands.ksql.client import make_client
from instore.commands.ksql.migrations import nearby_writers
from instore.embedded.services import isolated_settings, start_stack
from instore.settings import Settings

pytestmark = pytest.mark.integration


def test_up_with_ksqldb_engine_starts_the_writer(tmp_path: Path) -> None:
    settings = isolated_settings(Settings(_env_file=None), nearby_engine="ksqldb",  # type: ignore[call-arg]
                                 kafka_heap_mb=256, kafka_jvm_flags="-XX:TieredStopAtLevel=1")
    events: list[str] = []
    stack = start_stack(settings, tmp_path, only={"broker", "redis", "ksql"},
                        on_event=events.append)
    try:
        writers = nearby_writers(make_client(settings))
        assert len(writers) == 1, writers
        assert any("NEARBY_ENGINE=ksqldb" in e for e in events)
    finally:
        stack.stop()
