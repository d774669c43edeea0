"""The analyst's ksqlDB routes (`/ksql`, `/ksql/query`, `/ksql/sources`) on the real API,
against the local ksqlDB-compatible endpoint started in this process on a module broker:
who may call them, statements, a pull query, a push query ended by LIMIT, ksqlDB's errors as
ksqlDB reports them, the push-query slots, and an endpoint that does not answer."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.ksql_proxy import (
    MAX_PUSH_QUERIES,
    KsqlProxy,
    KsqlUnreachable,
    TooManyPushQueries,
    is_push,
)
from api.main import create_app
from instore.embedded import free_port
from tests.conftest import make_settings
from tests.integration.api_harness import ANALYST, MARKETER, clear_rate_limits, poll
from tests.integration.test_ksql_endpoint import Endpoint, _start

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def endpoint(broker_factory: Callable[[], Any], redis_url: str) -> Iterator[Endpoint]:
    broker, ep = _start(broker_factory, redis_url)
    yield ep
    ep.stop()
    broker.stop()


@pytest.fixture(scope="module")
def client(endpoint: Endpoint) -> Iterator[TestClient]:
    settings = make_settings(endpoint.settings.bootstrap_servers, endpoint.settings.redis_address,
                             ksqldb_url=endpoint.url)
    clear_rate_limits(settings)
    with TestClient(create_app(settings)) as c:
        yield c


def lines(client: TestClient, sql: str, **props: Any) -> tuple[int, list[dict[str, Any]]]:
    """POST /ksql/query and read every NDJSON line (the query must end: pull, or LIMIT)."""
    with client.stream("POST", "/ksql/query", headers=ANALYST,
                       json={"sql": sql, "properties": props}) as res:
        if res.status_code != 200:
            res.read()
            return res.status_code, [res.json()]
        assert res.headers["content-type"].startswith("application/x-ndjson")
        return 200, [json.loads(line) for line in res.iter_lines() if line.strip()]


def test_only_the_analyst_key_reaches_ksqldb(client: TestClient) -> None:
    calls = [("POST", "/ksql", {"ksql": "SHOW STREAMS;"}),
             ("POST", "/ksql/query", {"sql": "SELECT * FROM X;"}),
             ("GET", "/ksql/sources", None)]
    for method, path, body in calls:
        assert client.request(method, path, json=body).status_code == 401
        assert client.request(method, path, json=body, headers=MARKETER).status_code == 403
        assert client.request(method, path, json=body, headers=ANALYST).status_code not in (401,
                                                                                            403)
    page = client.get("/ksql/editor")
    assert page.status_code == 200 and "<textarea" in page.text


def test_statements_and_the_side_list(client: TestClient) -> None:
    res = client.post("/ksql", headers=ANALYST, json={
        "ksql": "CREATE STREAM API_CLICKS (UID STRING KEY, PAGE STRING, TAGS ARRAY<STRING>) "
                "WITH (KAFKA_TOPIC='api_clicks', PARTITIONS=1, VALUE_FORMAT='JSON');"})
    assert res.status_code == 200, res.text
    assert res.json()[0]["commandStatus"]["status"] == "SUCCESS"
    shown = client.post("/ksql", headers=ANALYST, json={"ksql": "SHOW STREAMS; SHOW TABLES;"})
    assert [e["@type"] for e in shown.json()] == ["streams", "tables"]
    assert "API_CLICKS" in {s["name"] for s in shown.json()[0]["streams"]}
    sources = {s["name"]: s for s in client.get("/ksql/sources", headers=ANALYST).json()}
    clicks = sources["API_CLICKS"]
    assert clicks["type"] == "STREAM" and clicks["topic"] == "api_clicks"
    assert clicks["columns"] == [{"name": "UID", "type": "STRING", "key": True},
                                 {"name": "PAGE", "type": "STRING", "key": False},
                                 {"name": "TAGS", "type": "ARRAY<STRING>", "key": False}]


def test_pull_query_rows_with_their_header(client: TestClient) -> None:
    for sql in (
        "CREATE STREAM API_VISITS (UID STRING KEY, MS INT) WITH (KAFKA_TOPIC='api_visits', "
        "PARTITIONS=1, VALUE_FORMAT='JSON');",
        "CREATE TABLE API_PER_UID AS SELECT UID, COUNT(*) AS N, SUM(MS) AS TOTAL FROM API_VISITS "
        "GROUP BY UID EMIT CHANGES;",
        "INSERT INTO API_VISITS (UID, MS) VALUES ('u1', 10); "
        "INSERT INTO API_VISITS (UID, MS) VALUES ('u1', 5); "
        "INSERT INTO API_VISITS (UID, MS) VALUES ('u2', 7);",
    ):
        res = client.post("/ksql", headers=ANALYST, json={
            "ksql": sql, "streamsProperties": {"auto.offset.reset": "earliest"}})
        assert res.status_code == 200, res.text

    def both() -> list[dict[str, Any]] | None:
        status, got = lines(client, "SELECT * FROM API_PER_UID;")
        assert status == 200, got
        rows = [item["row"] for item in got if "row" in item]
        return got if sorted(rows) == [["u1", 2, 15], ["u2", 1, 7]] else None

    got = poll(both, 30)
    assert got[0]["header"]["columnNames"] == ["UID", "N", "TOTAL"]
    assert got[0]["header"]["push"] is False
    assert got[-1] == {"end": {"rows": 2}}


def test_push_query_ends_at_limit(client: TestClient, endpoint: Endpoint) -> None:
    client.post("/ksql", headers=ANALYST, json={
        "ksql": "CREATE STREAM API_PUSH (K STRING KEY, V INT) WITH (KAFKA_TOPIC='api_push', "
                "PARTITIONS=1, VALUE_FORMAT='JSON');"})
    client.post("/ksql", headers=ANALYST, json={"ksql": " ".join(
        f"INSERT INTO API_PUSH (K, V) VALUES ('k{i}', {i});" for i in range(5))})
    status, got = lines(client, "SELECT K, V * 10 AS TEN FROM API_PUSH EMIT CHANGES LIMIT 3;",
                        **{"auto.offset.reset": "earliest"})
    assert status == 200, got
    assert got[0]["header"]["columnNames"] == ["K", "TEN"] and got[0]["header"]["push"] is True
    assert [item["row"] for item in got[1:-1]] == [["k0", 0], ["k1", 10], ["k2", 20]]
    assert got[-1] == {"end": {"rows": 3}}
    poll(lambda: not any(q.startswith("transient_API_PUSH") for q in endpoint.engine.transient))
    assert client.app.state.ksql_proxy.slots.used == 0  # type: ignore[attr-defined]


def test_errors_as_ksqldb_reports_them(client: TestClient) -> None:
    res = client.post("/ksql", headers=ANALYST, json={"ksql": "SELEC * FROM NOPE;"})
    assert res.status_code == 400
    body = res.json()
    assert body["@type"] == "statement_error" and body["error_code"] == 40001
    assert body["message"].startswith("line 1:0:")
    status, got = lines(client, "SELECT * FROM NO_SUCH_SOURCE EMIT CHANGES;")
    assert status == 400
    assert got[0]["message"] == "Line: 1, Col: 14: NO_SUCH_SOURCE does not exist."
    assert client.app.state.ksql_proxy.slots.used == 0  # type: ignore[attr-defined]
    res = client.post("/ksql", headers=ANALYST, json={"ksql": ""})
    assert res.status_code == 422


def test_push_slots_are_limited_and_given_back(client: TestClient, endpoint: Endpoint) -> None:
    slots = client.app.state.ksql_proxy.slots  # type: ignore[attr-defined]
    taken = [slots.take() for _ in range(MAX_PUSH_QUERIES)]
    try:
        assert all(taken)
        status, got = lines(client, "SELECT * FROM API_PUSH EMIT CHANGES LIMIT 1;")
        assert status == 429 and "stop one" in got[0]["detail"]
        status, got = lines(client, "SELECT * FROM API_PER_UID;")  # pull queries still run
        assert status == 200
    finally:
        for _ in taken:
            slots.give()

    async def two_pushes() -> None:
        proxy = KsqlProxy(endpoint.settings.model_copy(update={"ksqldb_url": endpoint.url}),
                          max_push=1)
        first = await proxy.open_query("SELECT * FROM API_PUSH EMIT CHANGES;")
        with pytest.raises(TooManyPushQueries):
            await proxy.open_query("SELECT * FROM API_PUSH EMIT CHANGES;")
        assert first.query_id in endpoint.engine.transient
        await first.aclose()  # what a caller going away does: /close-query, then disconnect
        assert first.query_id not in endpoint.engine.transient
        second = await proxy.open_query("SELECT * FROM API_PUSH EMIT CHANGES;")
        await second.aclose()
        assert proxy.slots.used == 0

    asyncio.run(two_pushes())


def test_an_endpoint_that_does_not_answer(endpoint: Endpoint) -> None:
    settings = endpoint.settings.model_copy(
        update={"ksqldb_url": f"http://127.0.0.1:{free_port()}"})
    proxy = KsqlProxy(settings)
    with pytest.raises(KsqlUnreachable, match="no ksqlDB endpoint answers at"):
        asyncio.run(proxy.execute("SHOW STREAMS;"))
    with pytest.raises(KsqlUnreachable):
        asyncio.run(proxy.open_query("SELECT * FROM X EMIT CHANGES;"))
    assert proxy.slots.used == 0


def test_push_is_told_from_pull() -> None:
    assert is_push("select * from s\n  emit   changes limit 3;")
    assert not is_push("SELECT 'EMIT CHANGES' AS X FROM T WHERE K = 'a';")
    assert not is_push("SELECT * FROM T -- EMIT CHANGES\n;")
    assert not is_push("SELECT `EMIT CHANGES` FROM T;")
