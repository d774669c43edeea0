"""Every scenario file against the Faust engine: a real worker on the real embedded broker."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from instore.kafka import ensure_topics
from tests.conftest import child_env, instore_proc, make_settings
from tests.integration.scenario_runner import (
    Collector,
    check_dead_letters,
    check_distances,
    expected_nearby,
    expected_offers,
    got_nearby,
    got_offers,
    load_all,
    run_scenario,
    wait_for_probe,
)

pytestmark = pytest.mark.integration
SCENARIOS = load_all()
POLICY = SCENARIOS[0]["policy"]


@pytest.fixture(scope="module")
def engine(broker_factory, redis_url: str, tmp_path_factory) -> Iterator[tuple]:
    broker = broker_factory()
    settings = make_settings(broker.bootstrap, redis_url, **POLICY)
    ensure_topics(settings)
    log = tmp_path_factory.mktemp("faust") / "worker.log"
    env = child_env(settings, **{k.upper(): str(v) for k, v in POLICY.items()})
    worker = instore_proc(["worker"], env, log)
    assert wait_for_probe(settings), log.read_text()[-3000:]
    collector = Collector(settings)
    yield settings, collector, log
    collector.close()
    worker.terminate()
    try:
        worker.wait(20)
    except subprocess.TimeoutExpired:
        worker.kill()


@pytest.mark.parametrize("index", range(len(SCENARIOS)), ids=[s["name"] for s in SCENARIOS])
def test_scenario(engine, index: int) -> None:
    settings, collector, log = engine
    scenario = SCENARIOS[index]
    assert scenario["policy"] == POLICY, "one worker runs every scenario: same policy"
    out, _ = run_scenario(settings, collector, scenario, index)
    assert got_nearby(out) == expected_nearby(scenario, index), Path(log).read_text()[-3000:]
    check_distances(out)
    want = expected_offers(scenario, index)
    if want is not None:
        assert got_offers(out) == want
    check_dead_letters(scenario, out)


def test_records_carry_their_event_time(engine) -> None:
    """Every NEARBY row and offer the worker wrote (in the scenarios above) is stamped with its
    position's time, the ``ts`` in its value: windows downstream (ksqlDB) run on it."""
    _, collector, _ = engine
    collector.wait_idle(quiet_s=0.5)
    assert collector.stamps, "the scenarios above produced no rows"
    wrong = [s for s in collector.stamps if s[1] != s[2]]
    assert not wrong, wrong[:5]
