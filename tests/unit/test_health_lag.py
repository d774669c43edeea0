"""Readiness by lag: ready while no consumer is more than READY_MAX_LAG events behind; the
worker's lag is counted on the topics its configured agents read."""

from __future__ import annotations

from instore import health
from instore import topics as t
from instore.settings import Settings


def _settings(**kw) -> Settings:
    return Settings(_env_file=None, **kw)  # type: ignore[call-arg]


def test_not_ready_when_too_far_behind() -> None:
    s = _settings(ready_max_lag=100)
    assert health._within_lag(s, {"a": 100, "b": 0})["ok"] is True
    far = health._within_lag(s, {"a": 101, "b": 0})
    assert far["ok"] is False
    assert "more than 100 events behind on a" in far["reason"]


def test_worker_topics_follow_the_agents() -> None:
    assert health.worker_topics(_settings()) == [t.CUSTOMERS_LOCATIONS.name]
    assert health.worker_topics(_settings(worker_agents="policy")) == [t.NEARBY_CUSTOMERS.name]
    assert health.worker_topics(_settings(worker_agents="analytics,policy")) == \
        [t.NEARBY_CUSTOMERS.name]
