"""GET /lineage on the real broker, Redis and the local ksqlDB-compatible endpoint: who may
read it, the whole contract in the graph, live rates from positions produced, a running
ksqlDB query with its source and sink edges and its group's lag, and an answer that survives a
ksqlDB and a broker it cannot reach."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from instore import groups
from instore import topics as t
from instore.embedded import free_port, port_open
from instore.kafka import ensure_topics
from instore.lineage.reading import Lineage
from instore.settings import Settings
from stream_apps.ksqldb.engine import Engine
from stream_apps.ksqldb.server import EndpointServer
from tests.conftest import make_settings
from tests.integration.api_harness import (
    ANALYST,
    KIOSK,
    OPS,
    PositionFeed,
    clear_rate_limits,
    poll,
    unique,
)

pytestmark = pytest.mark.integration

CL = t.CUSTOMERS_LOCATIONS.name


@pytest.fixture(scope="module")
def stack(broker_factory: Callable[[], Any], redis_url: str) -> Iterator[dict[str, Any]]:
    """Its own broker (the ksqlDB endpoint's command topic is per cluster), the local
    ksqlDB-compatible endpoint, and the API against both."""
    broker = broker_factory()
    port = free_port()
    settings = make_settings(broker.bootstrap, redis_url, ksqldb_url=f"http://127.0.0.1:{port}")
    ensure_topics(settings)
    engine = Engine(settings)
    server = EndpointServer(engine, "127.0.0.1", port)
    server.start()
    poll(lambda: port_open("127.0.0.1", port), 20)
    clear_rate_limits(settings)
    try:
        with TestClient(create_app(settings)) as client:
            yield {"settings": settings, "client": client, "ksql": settings.ksqldb_address}
    finally:
        server.stop()
        engine.close()


def ksql(base: str, statement: str) -> list[dict[str, Any]]:
    res = httpx.post(f"{base}/ksql", json={"ksql": statement, "streamsProperties": {
        "auto.offset.reset": "earliest"}}, timeout=60)
    assert res.status_code == 200, res.text
    return res.json()  # type: ignore[no-any-return]


def edge(graph: dict[str, Any], src: str, dst: str) -> dict[str, Any] | None:
    return next((e for e in graph["edges"] if e["from"] == src and e["to"] == dst), None)


def test_lineage_needs_an_analyst_marketer_or_ops_key(stack):
    client = stack["client"]
    assert client.get("/lineage").status_code == 401
    assert client.get("/lineage", headers=KIOSK).status_code == 403
    for headers in (ANALYST, OPS):
        res = client.get("/lineage", headers=headers)
        assert res.status_code == 200, res.text
    graph = res.json()
    ids = {n["id"] for n in graph["nodes"]}
    assert {f"topic:{topic.name}" for topic in t.ALL} <= ids
    assert {"agent:proximity", "sink:push", "sink:archive", "sink:redis"} <= ids
    assert graph["sources"]["broker"]["ok"] is True, graph["sources"]
    assert graph["sources"]["ksqldb"]["ok"] is True, graph["sources"]
    push = edge(graph, f"topic:{t.OFFERS.name}", "sink:push")
    assert push is not None and push["group"] == groups.PUSH_SINK
    assert isinstance(push["lag"], int)  # read from the broker (no commit: the whole topic)


def test_positions_show_as_a_rate_on_their_edge(stack):
    client = stack["client"]
    feed = PositionFeed(stack["settings"], "lineage-store", 52.52, 13.405, every_s=0.05)
    feed.uids.extend(unique("lineage") for _ in range(5))
    feed.start()
    try:
        def rate() -> float | None:
            graph = client.get("/lineage", headers=ANALYST).json()
            found = edge(graph, "source:edge", f"topic:{CL}")
            assert found is not None
            topic = next(n for n in graph["nodes"] if n["id"] == f"topic:{CL}")
            assert topic["exists"] is True
            time.sleep(0.5)
            return found["rate_per_s"] if found["rate_per_s"] else None

        assert poll(rate, timeout_s=60) > 0
    finally:
        feed.stop()


def test_a_running_ksqldb_query_is_a_node_with_its_edges_and_lag(stack):
    client, base = stack["client"], stack["ksql"]
    ksql(base, f"CREATE STREAM LIN_POSITIONS (uid STRING KEY, store_id STRING, latitude DOUBLE, "
               f"longitude DOUBLE, ts BIGINT) WITH (KAFKA_TOPIC='{CL}', VALUE_FORMAT='JSON');")
    created = ksql(base, "CREATE STREAM LIN_STORES AS SELECT uid, store_id FROM LIN_POSITIONS "
                         "EMIT CHANGES;")
    query_id = created[0]["commandStatus"]["queryId"]
    feed = PositionFeed(stack["settings"], "lineage-ksql", 52.52, 13.405, every_s=0.1)
    feed.uids.append(unique("lineage"))
    feed.start()
    try:
        def graph_with_query() -> dict[str, Any] | None:
            graph = client.get("/lineage", headers=ANALYST).json()
            return graph if any(n["id"] == f"query:{query_id}" for n in graph["nodes"]) else None

        graph = poll(graph_with_query, timeout_s=30, step_s=0.5)
    finally:
        feed.stop()
    node = next(n for n in graph["nodes"] if n["id"] == f"query:{query_id}")
    assert node["kind"] == "query" and node["state"] == "RUNNING"
    assert node["group"] == groups.ksqldb_query("default_", query_id)
    reads = edge(graph, f"topic:{CL}", f"query:{query_id}")
    writes = edge(graph, f"query:{query_id}", "topic:LIN_STORES")
    assert reads is not None and reads["group"] == node["group"]
    assert writes is not None
    assert any(n["id"] == "topic:LIN_STORES" and n["contract"] is False for n in graph["nodes"])

    def caught_up() -> bool:
        graph = client.get("/lineage", headers=ANALYST).json()
        found = edge(graph, f"topic:{CL}", f"query:{query_id}")
        time.sleep(0.5)
        return found is not None and found["lag"] == 0

    # the feed stopped: the query reads to the end and commits, so its lag reaches 0
    assert poll(caught_up, timeout_s=60)


def test_an_unreachable_ksqldb_and_broker_leave_the_static_graph(redis_url):
    dead_kafka, dead_ksql = free_port(), free_port()
    settings: Settings = make_settings(f"127.0.0.1:{dead_kafka}", redis_url,
                                       ksqldb_url=f"http://127.0.0.1:{dead_ksql}",
                                       nearby_engine="ksqldb")
    answer = Lineage(settings).snapshot()
    assert answer["sources"]["ksqldb"]["ok"] is False
    assert f"127.0.0.1:{dead_ksql}" in answer["sources"]["ksqldb"]["detail"]
    assert answer["sources"]["broker"]["ok"] is False
    ids = {n["id"] for n in answer["nodes"]}
    assert {f"topic:{topic.name}" for topic in t.ALL} <= ids
    assert all(e["rate_per_s"] is None and e["lag"] is None for e in answer["edges"])
    # NEARBY_ENGINE=ksqldb: the writer of NEARBY_CUSTOMERS is ksqlDB, unread
    writers = [e["from"] for e in answer["edges"] if e["to"] == f"topic:{t.NEARBY_CUSTOMERS.name}"]
    assert writers == ["query:nearby-expected"]
