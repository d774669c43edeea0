"""The funnel's Lua script (stream_apps/funnel.py COUNT_REACHED) in a real Redis counts exactly
what the pure rule counts, over random event orders with redeliveries, and its counters never
contradict themselves after any prefix of the events."""

from __future__ import annotations

import uuid

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from instore import serving
from stream_apps.funnel import COUNT_REACHED, STAGES, funnel_of_events, script_args

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def rds(redis_url: str):
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    yield r
    r.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 4), st.sampled_from(STAGES)), max_size=40),
       st.randoms(use_true_random=False))
def test_script_counts_as_the_rule(rds, events, rnd):
    run = uuid.uuid4().hex[:8]
    events = events + [e for e in events if rnd.random() < 0.4]  # redeliveries
    rnd.shuffle(events)
    named = [(f"f-{run}-{i}", event) for i, event in events]
    promo, store = serving.promo_stats(f"p-{run}"), serving.store_stats(f"s-{run}")
    count = rds.register_script(COUNT_REACHED)
    for offer_id, event in named:
        keys, args = script_args(offer_id, event, [promo, store])
        count(keys=keys, args=args)
        got = rds.hgetall(promo)
        d, o, x = (int(got.get(serving.reached(s), 0)) for s in STAGES)
        assert d >= o >= x
    expected = funnel_of_events(named)
    for key in (promo, store):
        got = rds.hgetall(key)
        assert {s: int(got.get(serving.reached(s), 0)) for s in STAGES} == expected
    rds.delete(promo, store, *(k for o, _ in named for k in script_args(o, "redeemed", [])[0]))
