"""`instore topics list` and `instore topics tail` against the real broker, as a user runs them
(a child process: exit codes, the JSON line, one sentence when something is wrong)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from instore import topics as t
from instore.kafka import ensure_topics, make_producer, produce
from tests.conftest import ROOT, child_env, make_settings

pytestmark = pytest.mark.integration


def _instore(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "instore", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def env(broker_factory) -> dict[str, str]:
    broker = broker_factory()
    settings = make_settings(broker.bootstrap, "redis://127.0.0.1:1/0", kafka_partitions=2)
    ensure_topics(settings)
    producer = make_producer(settings)
    for i in range(5):
        produce(producer, t.OFFER_EVENTS, json.dumps({"n": i}).encode(), key=f"k{i}")
    produce(producer, t.DEAD_LETTERS, json.dumps({"source_topic": "customers_locations",
                                                  "partition": 0, "offset": 3,
                                                  "error": "latitude: must be <= 90",
                                                  "raw": "{}"}).encode())
    assert producer.flush(20) == 0
    return child_env(settings)


def test_list_shows_the_contract_topics_with_their_records(env: dict[str, str]) -> None:
    res = _instore(env, "topics", "list", "--json")
    assert res.returncode == 0, res.stderr
    rows = {r["name"]: r for r in json.loads(res.stdout.strip().splitlines()[-1])["topics"]}
    assert set(rows) >= {topic.name for topic in t.ALL}
    assert rows[t.OFFER_EVENTS.name]["records"] == 5
    assert rows[t.SHOPPER_CONSENTS.name]["kind"] == "table"
    assert rows[t.SHOPPER_CONSENTS.name]["cleanup"] == "compact"
    assert rows[t.CUSTOMERS_LOCATIONS.name]["retention_ms"] == 24 * 3600 * 1000


def test_tail_prints_records_and_dead_letter_reasons(env: dict[str, str]) -> None:
    res = _instore(env, "topics", "tail", t.OFFER_EVENTS.name, "--from-beginning", "--limit", "50")
    assert res.returncode == 0, res.stderr
    values = sorted(json.loads(line)["value"]["n"] for line in res.stdout.splitlines())
    assert values == [0, 1, 2, 3, 4]
    last = _instore(env, "topics", "tail", t.OFFER_EVENTS.name, "--limit", "2")
    assert len(last.stdout.splitlines()) == 2
    dead = _instore(env, "topics", "tail", t.DEAD_LETTERS.name, "--from-beginning")
    assert json.loads(dead.stdout.splitlines()[0])["reason"] == "latitude: must be <= 90"


def test_unknown_topic_and_missing_broker_say_so_in_one_sentence(env: dict[str, str]) -> None:
    res = _instore(env, "topics", "tail", "no_such_topic")
    assert res.returncode == 1 and "no topic 'no_such_topic'" in res.stderr
    assert "Traceback" not in res.stderr
    down = env | {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9"}
    res = _instore(down, "topics", "list")
    assert res.returncode == 1 and "no Kafka broker answers at 127.0.0.1:9" in res.stderr
    assert "Traceback" not in res.stderr
