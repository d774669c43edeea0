"""`instore produce ...` as a user runs it: "wrote N" and exit 0 only when the broker took every
record; one sentence and exit 1 when there is no broker, or when records were not delivered."""

from __future__ import annotations

import subprocess
import sys

import pytest
from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from instore import topics as t
from instore.embedded import free_ports
from instore.kafka import ensure_topics, make_consumer
from tests.conftest import ROOT, child_env, make_settings

pytestmark = pytest.mark.integration


def _instore(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "instore", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)


def test_kiosks_written_and_counted(broker_factory) -> None:
    broker = broker_factory()
    settings = make_settings(broker.bootstrap, "redis://127.0.0.1:1/0", kafka_partitions=2)
    ensure_topics(settings)
    res = _instore(child_env(settings), "produce", "kiosks", "--shoppers", "3")
    assert res.returncode == 0, res.stderr
    n = int(res.stderr.split("wrote ")[1].split()[0])
    consumer = make_consumer(settings)
    consumer.assign([TopicPartition(t.KIOSK_INTERACTIONS.name, p, OFFSET_BEGINNING)
                     for p in range(2)])
    got = 0
    for _ in range(50):
        got += sum(1 for m in consumer.consume(1000, 0.2) if not m.error())
        if got >= n:
            break
    consumer.close()
    assert got == n > 0


def test_no_broker_is_one_sentence_and_exit_1() -> None:
    settings = make_settings(f"127.0.0.1:{free_ports(1)}", "redis://127.0.0.1:1/0")
    res = _instore(child_env(settings), "produce", "kiosks")
    assert res.returncode == 1
    assert "wrote" not in res.stderr
    assert "Traceback" not in res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert lines[0].startswith("error: no Kafka broker answers at"), res.stderr
    assert "instore up" in res.stderr
