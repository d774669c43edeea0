"""The local ksqlDB-compatible endpoint over HTTP on the real broker: the real `ksql` client
(ksql-python-ng), curl-style calls, ksqlDB-shaped errors, a failing persistent query, the
migrations tool, a restart, and the seed demo end to end with `instore produce seed-demo`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from instore.commands.ksql.client import KsqlCommandError, make_client
from instore.commands.ksql.migrations import applied_versions, migrate
from instore.embedded import free_port, port_open
from instore.kafka import ensure_topics, make_producer
from stream_apps.ksqldb.engine import Engine
from stream_apps.ksqldb.server import EndpointServer
from tests.conftest import child_env, instore_proc, make_settings
from tests.integration.test_ksql_scenarios import read_all

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


class Endpoint:
    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.engine = Engine(settings)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = EndpointServer(self.engine, "127.0.0.1", self.port)
        self.server.start()
        deadline = time.monotonic() + 20
        while not port_open("127.0.0.1", self.port):
            assert time.monotonic() < deadline, "endpoint did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.stop()
        self.engine.close()

    def ksql(self, sql: str, props: dict[str, Any] | None = None) -> httpx.Response:
        return httpx.post(
            f"{self.url}/ksql", json={"ksql": sql, "streamsProperties": props or {}}, timeout=60
        )


def _start(broker_factory: Callable[[], Any], redis_url: str) -> tuple[Any, Endpoint]:
    broker = broker_factory()
    settings = make_settings(broker.bootstrap, redis_url)
    ensure_topics(settings)
    return broker, Endpoint(settings)


@pytest.fixture(scope="module")
def endpoint(broker_factory: Callable[[], Any], redis_url: str) -> Iterator[Endpoint]:
    broker, ep = _start(broker_factory, redis_url)
    yield ep
    ep.stop()
    broker.stop()


def _wait(cond: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def test_info_healthcheck_status(endpoint: Endpoint) -> None:
    info = httpx.get(f"{endpoint.url}/info").json()
    assert info["KsqlServerInfo"]["version"].startswith("0.")
    assert info["KsqlServerInfo"]["serverStatus"] == "RUNNING"
    health = httpx.get(f"{endpoint.url}/healthcheck").json()
    assert health["isHealthy"] is True and health["details"]["kafka"]["isHealthy"] is True
    r = endpoint.ksql(
        "CREATE STREAM ST_S (K STRING KEY, V INT) WITH (KAFKA_TOPIC='st_s', "
        "PARTITIONS=1, VALUE_FORMAT='JSON');"
    )
    assert r.status_code == 200
    entity = r.json()[0]
    assert entity["@type"] == "currentStatus"
    assert entity["commandStatus"]["status"] == "SUCCESS"
    statuses = httpx.get(f"{endpoint.url}/status").json()["commandStatuses"]
    assert statuses[entity["commandId"]] == "SUCCESS"
    one = httpx.get(f"{endpoint.url}/status/stream/`ST_S`/create").json()
    assert one["status"] == "SUCCESS"


def test_ksql_client_ddl_insert_pull_and_push(endpoint: Endpoint) -> None:
    client = make_client(endpoint.settings, endpoint.url)
    assert client.get_ksql_version().startswith("0.")
    client.ksql(
        "CREATE STREAM CL_CLICKS (UID STRING KEY, PAGE STRING, MS INT) WITH "
        "(KAFKA_TOPIC='cl_clicks', PARTITIONS=2, VALUE_FORMAT='JSON');"
    )
    res = client.ksql(
        "CREATE TABLE CL_PER_USER AS SELECT UID, COUNT(*) AS N, SUM(MS) AS TOTAL "
        "FROM CL_CLICKS GROUP BY UID EMIT CHANGES;",
        stream_properties={"auto.offset.reset": "earliest"},
    )
    assert res[0]["commandStatus"]["queryId"].startswith("CTAS_CL_PER_USER")
    client.ksql(
        "INSERT INTO CL_CLICKS (UID, PAGE, MS) VALUES ('u1', 'home', 10);"
        "INSERT INTO CL_CLICKS (UID, PAGE, MS) VALUES ('u1', 'cart', 5);"
        "INSERT INTO CL_CLICKS (UID, PAGE, MS) VALUES ('u2', 'home', 7);"
    )

    def pull() -> dict[str, Any]:
        text = "".join(client.query("SELECT * FROM CL_PER_USER;"))
        rows = [item["row"]["columns"] for item in json.loads(text) if "row" in item]
        return {r[0]: r for r in rows} if len(rows) == 2 and {r[1] for r in rows} == {2, 1} else {}

    rows = _wait(pull)
    assert rows["u1"] == ["u1", 2, 15] and rows["u2"] == ["u2", 1, 7]

    # push query over /query (chunked JSON array) ends at LIMIT with a final message
    with httpx.stream(
        "POST",
        f"{endpoint.url}/query",
        timeout=30,
        json={
            "ksql": "SELECT UID, PAGE FROM CL_CLICKS EMIT CHANGES LIMIT 3;",
            "streamsProperties": {"auto.offset.reset": "earliest"},
        },
    ) as r:
        body = json.loads(r.read())
    assert "queryId" in body[0]["header"] and "`PAGE` STRING" in body[0]["header"]["schema"]
    assert sorted(tuple(b["row"]["columns"]) for b in body[1:4]) == [
        ("u1", "cart"),
        ("u1", "home"),
        ("u2", "home"),
    ]
    assert body[-1] == {"finalMessage": "Limit Reached"}

    # /query-stream, HTTP/1.1 delimited: a header line then one JSON array per row
    with httpx.stream(
        "POST",
        f"{endpoint.url}/query-stream",
        timeout=30,
        headers={"Accept": "application/vnd.ksqlapi.delimited.v1"},
        json={"sql": "SELECT * FROM CL_PER_USER WHERE UID = 'u2';", "properties": {}},
    ) as r:
        lines = [json.loads(line) for line in r.read().decode().splitlines() if line]
    assert lines[0]["columnNames"] == ["UID", "N", "TOTAL"]
    assert lines[0]["columnTypes"] == ["STRING", "BIGINT", "INTEGER"]
    assert lines[1:] == [["u2", 1, 7]]


def test_query_stream_over_http2(endpoint: Endpoint) -> None:
    endpoint.ksql("CREATE STREAM H2_S (K STRING KEY, V INT) WITH (KAFKA_TOPIC='h2_s', "
                  "PARTITIONS=1, VALUE_FORMAT='JSON');")
    endpoint.ksql("INSERT INTO H2_S (K, V) VALUES ('a', 1);"
                  "INSERT INTO H2_S (K, V) VALUES ('b', 2);")
    with httpx.Client(http2=True, http1=False) as h2:
        r = h2.post(f"{endpoint.url}/query-stream", timeout=30, json={
            "sql": "SELECT K, V FROM H2_S EMIT CHANGES LIMIT 2;",
            "properties": {"auto.offset.reset": "earliest"}})
        assert r.http_version == "HTTP/2"
        lines = [json.loads(x) for x in r.text.splitlines() if x]
    assert lines[0]["columnNames"] == ["K", "V"]
    assert sorted(lines[1:]) == [["a", 1], ["b", 2]]
    # the ksql client's HTTP/2 path (KSQLAPI.query(..., use_http2=True))
    client = make_client(endpoint.settings, endpoint.url)
    chunks = list(client.query("SELECT K, V FROM H2_S EMIT CHANGES LIMIT 2;", use_http2=True,
                               stream_properties={"auto.offset.reset": "earliest"}))
    body = [json.loads(x) for x in "".join(chunks).splitlines() if x]
    assert body[0]["columnNames"] == ["K", "V"] and len(body) == 3
    # /inserts-stream over HTTP/2, as KSQLAPI.inserts_stream sends it
    acks = client.inserts_stream("H2_S", [{"K": "c", "V": 3}, {"k": "d", "v": 4}, {"NOPE": 1}])
    assert [a["status"] for a in acks] == ["ok", "ok", "error"]
    rows = _wait(lambda: len(read_all(endpoint.settings, "h2_s")) == 4 and
                 read_all(endpoint.settings, "h2_s"))
    assert sorted(r["V"] for r in rows) == [1, 2, 3, 4]


def test_push_query_sees_new_rows_and_close_query(endpoint: Endpoint) -> None:
    endpoint.ksql(
        "CREATE STREAM PQ_S (K STRING KEY, V INT) WITH (KAFKA_TOPIC='pq_s', "
        "PARTITIONS=1, VALUE_FORMAT='JSON');"
    )
    got: list[Any] = []
    header: dict[str, Any] = {}

    def consume() -> None:
        with httpx.stream(
            "POST",
            f"{endpoint.url}/query-stream",
            timeout=60,
            json={
                "sql": "SELECT K, V * 2 AS D FROM PQ_S WHERE V > 0 EMIT CHANGES;",
                "properties": {},
            },
        ) as r:
            for line in r.iter_lines():
                if not line:
                    continue
                item = json.loads(line)
                if isinstance(item, dict):
                    header.update(item)
                else:
                    got.append(item)
                    return

    th = threading.Thread(target=consume, daemon=True)
    th.start()
    _wait(lambda: header.get("queryId"))
    time.sleep(0.5)
    endpoint.ksql(
        "INSERT INTO PQ_S (K, V) VALUES ('a', -1); INSERT INTO PQ_S (K, V) VALUES ('b', 4);"
    )
    th.join(30)
    assert got == [["b", 8]]
    qid = header["queryId"]
    r = httpx.post(f"{endpoint.url}/close-query", json={"queryId": qid})
    assert r.status_code in (200, 400)  # closed now, or already closed by the disconnect
    _wait(lambda: qid not in endpoint.engine.transient)
    r = httpx.post(f"{endpoint.url}/close-query", json={"queryId": "nope"})
    assert r.status_code == 400 and r.json()["@type"] == "generic_error"


def test_cli_push_query_ends_on_ctrl_c(endpoint: Endpoint, tmp_path: Path) -> None:
    endpoint.ksql("CREATE STREAM CLI_S (K STRING KEY, V INT) WITH (KAFKA_TOPIC='cli_s', "
                  "PARTITIONS=1, VALUE_FORMAT='JSON');")
    env = child_env(endpoint.settings, KSQLDB_URL=endpoint.url, COLUMNS="200")
    log = tmp_path / "push.log"
    proc = instore_proc(["ksql", "query", "SELECT K, V FROM CLI_S EMIT CHANGES"], env, log)
    try:
        _wait(lambda: any(q.startswith("transient_CLI_S") for q in endpoint.engine.transient))
        endpoint.ksql("INSERT INTO CLI_S (K, V) VALUES ('k1', 41);")
        _wait(lambda: "k1 | 41" in log.read_text())
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(30) == 0, log.read_text()
        assert "query ended after 1 row(s)" in log.read_text()
        _wait(lambda: not any(q.startswith("transient_CLI_S")
                              for q in endpoint.engine.transient))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_cli_json_rows_then_one_json_object(endpoint: Endpoint) -> None:
    """`instore ksql query --json`: a JSON object per row, then (as every --json) a last line
    that is one JSON object; a statement's answer is one object too."""
    endpoint.ksql("CREATE STREAM CLI_J (K STRING KEY, V INT) WITH (KAFKA_TOPIC='cli_j', "
                  "PARTITIONS=1, VALUE_FORMAT='JSON');")
    endpoint.ksql("INSERT INTO CLI_J (K, V) VALUES ('a', 1); INSERT INTO CLI_J (K, V) VALUES ('b', 2);")
    env = child_env(endpoint.settings, KSQLDB_URL=endpoint.url)
    done = subprocess.run(
        [sys.executable, "-m", "instore", "ksql", "query", "--json", "--earliest",
         "SELECT K, V FROM CLI_J EMIT CHANGES LIMIT 2;"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert lines[:-1] == [{"K": "a", "V": 1}, {"K": "b", "V": 2}]
    assert lines[-1] == {"query": {"columns": ["K", "V"], "rows": 2, "push": True}}
    shown = subprocess.run([sys.executable, "-m", "instore", "ksql", "query", "--json",
                            "SHOW STREAMS;"], env=env, cwd=ROOT, capture_output=True, text=True,
                           timeout=60, check=False)
    last = json.loads(shown.stdout.strip().splitlines()[-1])
    assert isinstance(last, dict) and last["entities"][0]["@type"] == "streams"


def test_errors_are_ksqldb_shaped(endpoint: Endpoint) -> None:
    r = endpoint.ksql(
        "CREATE STREAM BAD (K STRING KEY) WITH (KAFKA_TOPIC='bad', PARTITIONS=1, "
        "VALUE_FORMAT='JSON');\nSELEC * FROM BAD;"
    )
    assert r.status_code == 400
    body = r.json()
    assert body["@type"] == "statement_error" and body["error_code"] == 40001
    assert body["message"].startswith("line 2:0:")
    r = endpoint.ksql("SELECT * FROM BAD;")
    assert r.status_code == 400 and r.json()["error_code"] == 40002
    r = endpoint.ksql("DESCRIBE NOPE;")
    assert r.status_code == 400 and "NOPE" in r.json()["message"]
    assert r.json()["statementText"] == "DESCRIBE NOPE;"
    r = httpx.post(f"{endpoint.url}/ksql", content=b"{not json")
    assert r.status_code == 400 and r.json()["@type"] == "generic_error"
    r = httpx.post(f"{endpoint.url}/query", json={"ksql": "SELECT * FROM NOPE;"})
    assert r.status_code == 400 and r.json()["@type"] == "statement_error"
    assert r.json()["message"] == "Line: 1, Col: 14: NOPE does not exist."
    endpoint.ksql("CREATE STREAM BAD_SRC (K STRING KEY) WITH (KAFKA_TOPIC='bad_src', "
                  "PARTITIONS=1, VALUE_FORMAT='JSON');")
    r = endpoint.ksql("CREATE STREAM BAD2 AS SELECT K,\n  NOPE FROM BAD_SRC;")
    assert r.json()["message"] == "Line: 2, Col: 2: Column 'NOPE' cannot be resolved."
    from ksql.errors import KSQLError

    client = make_client(endpoint.settings, endpoint.url)
    with pytest.raises(KSQLError) as info:
        client.ksql(
            "CREATE TABLE T_NO_KEY (A STRING) WITH (KAFKA_TOPIC='x', PARTITIONS=1, "
            "VALUE_FORMAT='JSON');"
        )
    assert info.value.error_code == 40001 and "PRIMARY KEY" in info.value.msg


def test_show_describe_explain_terminate_drop(endpoint: Endpoint) -> None:
    assert endpoint.ksql("CREATE STREAM DD_S (K STRING KEY, V INT) WITH (KAFKA_TOPIC='dd_s', "
                         "PARTITIONS=2, VALUE_FORMAT='JSON');").status_code == 200
    r = endpoint.ksql("CREATE TABLE DD_T AS SELECT K, MAX(V) AS TOP FROM DD_S GROUP BY K;")
    qid = r.json()[0]["commandStatus"]["queryId"]
    streams = endpoint.ksql("LIST STREAMS;").json()[0]
    assert streams["@type"] == "streams"
    assert {"type": "STREAM", "name": "DD_S", "topic": "dd_s", "keyFormat": "KAFKA",
            "valueFormat": "JSON", "isWindowed": False} in streams["streams"]
    tables = endpoint.ksql("SHOW TABLES;").json()[0]["tables"]
    assert any(t["name"] == "DD_T" for t in tables)
    topics = endpoint.ksql("SHOW TOPICS;").json()[0]
    assert topics["@type"] == "kafka_topics"
    assert {"name": "dd_s", "replicaInfo": [1, 1]} in topics["topics"]
    desc = endpoint.ksql("DESCRIBE DD_T;").json()[0]["sourceDescription"]
    assert [f["name"] for f in desc["fields"]] == ["K", "TOP"]
    assert desc["fields"][0]["type"] == "KEY" and desc["writeQueries"][0]["id"] == qid
    assert endpoint.ksql(f"EXPLAIN {qid};").json()[0]["@type"] == "queryDescription"
    # a source that a query reads cannot be dropped
    r = endpoint.ksql("DROP STREAM DD_S;")
    assert r.status_code == 400 and "DD_T" in r.json()["message"]
    r = endpoint.ksql(f"TERMINATE {qid};")
    assert r.status_code == 200 and r.json()[0]["commandStatus"]["status"] == "SUCCESS"
    ids = [q["id"] for q in endpoint.ksql("SHOW QUERIES;").json()[0]["queries"]]
    assert qid not in ids
    assert endpoint.ksql("DROP TABLE DD_T;").status_code == 200
    assert endpoint.ksql("DROP STREAM DD_S DELETE TOPIC;").status_code == 200
    assert endpoint.ksql("DROP STREAM IF EXISTS DD_S;").status_code == 200
    r = endpoint.ksql("DESCRIBE DD_S;")
    assert r.status_code == 400 and r.json()["error_code"] == 40001
    r = endpoint.ksql("TERMINATE NO_SUCH_QUERY;")
    assert r.status_code == 400 and "NO_SUCH_QUERY" in r.json()["message"]


def test_failing_query_is_reported_and_others_keep_running(endpoint: Endpoint) -> None:
    endpoint.ksql(
        "CREATE STREAM FQ_IN (K STRING KEY, V INT) WITH (KAFKA_TOPIC='fq_in', "
        "PARTITIONS=1, VALUE_FORMAT='JSON');"
    )
    # a 2 MB value is more than the producer's message.max.bytes: producing it fails the query
    r1 = endpoint.ksql(
        "CREATE STREAM FQ_HUGE AS SELECT K, LPAD('x', 2000000, 'y') AS PAD FROM FQ_IN;",
        {"auto.offset.reset": "earliest"},
    )
    r2 = endpoint.ksql(
        "CREATE STREAM FQ_OK AS SELECT K, V + 1 AS W FROM FQ_IN;", {"auto.offset.reset": "earliest"}
    )
    assert r1.status_code == 200 and r2.status_code == 200
    endpoint.ksql("INSERT INTO FQ_IN (K, V) VALUES ('a', 1);")

    def states() -> dict[str, str]:
        qs = endpoint.ksql("SHOW QUERIES;").json()[0]["queries"]
        return {
            q["sinks"][0]: q["state"] for q in qs if q["sinks"] and q["sinks"][0].startswith("FQ_")
        }

    st = _wait(lambda: (s := states()).get("FQ_HUGE") == "ERROR" and s)
    assert st["FQ_OK"] == "RUNNING"
    endpoint.ksql("INSERT INTO FQ_IN (K, V) VALUES ('b', 2);")
    rows = _wait(
        lambda: (
            len(read_all(endpoint.settings, "FQ_OK")) == 2 and read_all(endpoint.settings, "FQ_OK")
        )
    )
    assert sorted(r["W"] for r in rows) == [2, 3]
    desc = endpoint.ksql("DESCRIBE FQ_HUGE EXTENDED;").json()[0]["sourceDescription"]
    assert desc["writeQueries"][0]["state"] == "ERROR"
    assert "queryErrors" in desc["writeQueries"][0]


def test_processing_log_records_bad_records_and_expression_errors(endpoint: Endpoint) -> None:
    """A record that cannot be read and a CAST that fails are entries of KSQL_PROCESSING_LOG
    (its topic default_ksql_processing_log); the query keeps running."""
    streams = endpoint.ksql("SHOW STREAMS;").json()[0]["streams"]
    assert any(s["name"] == "KSQL_PROCESSING_LOG" for s in streams)
    endpoint.ksql(
        "CREATE STREAM PL_IN (K STRING KEY, A STRING) WITH (KAFKA_TOPIC='pl_in', "
        "PARTITIONS=1, VALUE_FORMAT='JSON');"
    )
    r = endpoint.ksql(
        "CREATE STREAM PL_OUT AS SELECT K, CAST(A AS INT) AS I FROM PL_IN;",
        {"auto.offset.reset": "earliest"},
    )
    assert r.status_code == 200, r.text
    producer = make_producer(endpoint.settings)
    producer.produce("pl_in", key=b"a", value=b"{not json")
    producer.produce("pl_in", key=b"b", value=b'{"A": "twelve"}')
    producer.produce("pl_in", key=b"c", value=b'{"A": "12"}')
    producer.flush(10)
    rows = _wait(lambda: (rows := read_all(endpoint.settings, "PL_OUT")) and len(rows) == 2
                 and rows)
    assert sorted(rows, key=lambda x: str(x["I"])) == [{"I": 12}, {"I": None}]

    def entries() -> list[dict[str, Any]]:
        return [e for e in read_all(endpoint.settings, endpoint.engine.processing_log_topic)
                if ".CSAS_PL_OUT" in e["LOGGER"]]

    got = _wait(lambda: len(e := entries()) >= 2 and e)
    kinds = sorted(e["MESSAGE"]["TYPE"] for e in got)
    assert kinds == [0, 1]
    deser = next(e for e in got if e["MESSAGE"]["TYPE"] == 0)["MESSAGE"]["DESERIALIZATIONERROR"]
    assert deser["TARGET"] == "value" and deser["topic"] == "pl_in"
    assert deser["RECORDB64"] == "e25vdCBqc29u"  # the bytes that failed, Base64
    states = {q["sinks"][0]: q["state"] for q in endpoint.ksql("SHOW QUERIES;").json()[0]["queries"]
              if q["sinks"]}
    assert states["PL_OUT"] == "RUNNING"


def test_query_on_worker_processes_and_a_dead_worker(endpoint: Endpoint) -> None:
    """A per-record query over a 2-partition stream runs on 2 processes (rows from both
    partitions arrive); a worker that dies fails its query (ERROR), like a dead stream thread."""
    endpoint.ksql(
        "CREATE STREAM WK_IN (K STRING KEY, V INT) WITH (KAFKA_TOPIC='wk_in', "
        "PARTITIONS=2, VALUE_FORMAT='JSON');"
    )
    r = endpoint.ksql("CREATE STREAM WK_OUT AS SELECT K, V * 10 AS W FROM WK_IN;",
                      {"auto.offset.reset": "earliest"})
    assert r.status_code == 200, r.text
    runner = next(q for q in endpoint.engine.queries.values() if "WK_OUT" in q.id)
    _wait(lambda: runner.worker_count == 2)
    producer = make_producer(endpoint.settings)
    for i in range(20):
        producer.produce("wk_in", key=f"k{i}".encode(), value=json.dumps({"V": i}).encode())
    producer.flush(10)
    rows = _wait(lambda: len(r := read_all(endpoint.settings, "WK_OUT")) == 20 and r)
    assert sorted(x["W"] for x in rows) == [i * 10 for i in range(20)]
    assert _wait(lambda: runner.records_out == 20)
    runner._workers[0].proc.kill()
    state = _wait(lambda: runner.state == "ERROR" and runner.state)
    assert state == "ERROR" and "worker" in (runner.error or "")


def test_migrations_tool_records_history_like_ksql_migrations(
    endpoint: Endpoint, tmp_path: Path
) -> None:
    client = make_client(endpoint.settings, endpoint.url)
    migrations = tmp_path / "migrations"
    shutil.copytree(ROOT / "ksql" / "migrations", migrations)
    done = migrate(client, migrations)
    assert done == ["1", "2", "3", "4"]
    history = applied_versions(client)
    assert history["CURRENT"]["VERSION"] == "4" and history["CURRENT"]["STATE"] == "MIGRATED"
    assert history["2"]["PREVIOUS"] == "1" and history["1"]["PREVIOUS"] == "<none>"
    import hashlib

    first = migrations / "V000001__sources.sql"
    raw_md5 = hashlib.md5(first.read_bytes()).digest()
    assert history["1"]["CHECKSUM"] == raw_md5.decode("utf-8", errors="replace")
    assert history["1"]["ERROR_REASON"] == "N/A" and history["1"]["NAME"] == "sources"
    assert migrate(client, migrations) == []  # nothing pending
    # the CLI (a real child process) sees the same history
    env = child_env(endpoint.settings, KSQLDB_URL=endpoint.url)
    log = tmp_path / "status.log"
    proc = instore_proc(["ksql", "status", "--json", "--directory", str(migrations)], env, log)
    assert proc.wait(60) == 0, log.read_text()
    status = json.loads(log.read_text().strip().splitlines()[-1])
    assert status["current"] == "4"
    assert [m["state"] for m in status["migrations"]] == ["MIGRATED"] * 4
    # a new file is pending; an edited applied file is refused
    (migrations / "V000005__extra.sql").write_text(
        "CREATE STREAM MIG_EXTRA AS SELECT * FROM POSITIONS;\n"
    )
    assert migrate(client, migrations) == ["5"]
    first.write_text(first.read_text() + "\n-- edited\n")
    with pytest.raises(KsqlCommandError, match="changed after it was applied"):
        migrate(client, migrations)
    # restart: a new engine replays the command topic
    replayed = Engine(endpoint.settings)
    try:
        assert "NEARBY_CUSTOMERS" in replayed.sources and "MIG_EXTRA" in replayed.sources
        assert any(q.startswith("CTAS_PRODUCT_DWELL") for q in replayed.queries)
        # the migrations declare NEARBY_CUSTOMERS: no query of theirs writes it
        assert not [q for q in replayed.queries.values()
                    if q.sink is not None and q.sink.name == "NEARBY_CUSTOMERS"]
    finally:
        replayed.close()


def test_restart_resumes_persistent_queries(broker_factory: Callable[[], Any],
                                            redis_url: str) -> None:
    broker, ep = _start(broker_factory, redis_url)
    engine2 = None
    try:
        ep.ksql("CREATE STREAM RS_IN (K STRING KEY, V INT) WITH (KAFKA_TOPIC='rs_in', "
                "PARTITIONS=2, VALUE_FORMAT='JSON');")
        ep.ksql("CREATE STREAM RS_OUT AS SELECT K, V * 10 AS W FROM RS_IN;")
        ep.ksql("INSERT INTO RS_IN (K, V) VALUES ('a', 1);"
                "INSERT INTO RS_IN (K, V) VALUES ('b', 2);")
        # a second query that has processed nothing yet when the endpoint stops
        ep.ksql("CREATE STREAM RS_IN2 (K STRING KEY, V INT) WITH (KAFKA_TOPIC='rs_in2', "
                "PARTITIONS=1, VALUE_FORMAT='JSON');")
        ep.ksql("CREATE STREAM RS_OUT2 AS SELECT K, V FROM RS_IN2;")
        _wait(lambda: len(read_all(ep.settings, "RS_OUT")) == 2)
        assert ep.engine.wait_idle(30)  # offsets committed
        ep.stop()
        producer = make_producer(ep.settings)  # written while the endpoint is down
        producer.produce("rs_in2", key=b"z", value=b'{"V": 9}')
        producer.flush(10)
        engine2 = Engine(ep.settings)  # replays the command topic, resumes from the commits
        assert "RS_OUT" in engine2.sources and len(engine2.queries) == 2
        assert _wait(lambda: read_all(ep.settings, "RS_OUT2")) == [{"V": 9}]
        engine2.execute("INSERT INTO RS_IN (K, V) VALUES ('c', 3);")
        rows = _wait(lambda: (r := read_all(ep.settings, "RS_OUT")) and
                     {x["W"] for x in r} == {10, 20, 30} and r)
        assert sorted(x["W"] for x in rows) == [10, 20, 30]  # nothing lost, nothing redone
    finally:
        if engine2 is not None:
            engine2.close()
        else:
            ep.stop()
        broker.stop()


def _readme_queries() -> list[str]:
    """The analyst queries of docs/ksqldb.md (the README's analyst tour links there)."""
    text = (ROOT / "docs" / "ksqldb.md").read_text()
    section = text.split("## Analyst queries", 1)[1]
    block = section.split("```sql", 1)[1].split("```", 1)[0]
    return [line.strip() for line in block.splitlines() if line.strip()]


def test_readme_analyst_queries_run(endpoint: Endpoint) -> None:
    client = make_client(endpoint.settings, endpoint.url)
    migrate(client, ROOT / "ksql" / "migrations")  # no-op when already applied
    queries = _readme_queries()
    assert len(queries) >= 5
    for sql in queries:
        if "EMIT CHANGES" not in sql:
            r = httpx.post(f"{endpoint.url}/query", json={"ksql": sql}, timeout=30)
            assert r.status_code == 200, (sql, r.text)
            assert "header" in json.loads(r.text)[0]
            continue
        with httpx.stream("POST", f"{endpoint.url}/query", json={"ksql": sql}, timeout=30) as r:
            assert r.status_code == 200, (sql, r.read())
            first = next(r.iter_lines())
            assert json.loads(first.lstrip("["))["header"]["schema"]


def test_seed_demo_end_to_end(
    broker_factory: Callable[[], Any], redis_url: str, tmp_path: Path
) -> None:
    broker, ep = _start(broker_factory, redis_url)
    try:
        client = make_client(ep.settings, ep.url)
        assert migrate(client, ROOT / "ksql" / "seed_demo") == ["1", "2", "3"]
        env = child_env(ep.settings, KSQLDB_URL=ep.url)
        log = tmp_path / "seed.log"
        proc = instore_proc(["produce", "seed-demo", "--positions", "300"], env, log)
        assert proc.wait(120) == 0, log.read_text()
        assert ep.engine.wait_idle(90)
        rows = _wait(lambda: read_all(ep.settings, "NEARBY_CUSTOMERS"), timeout=60)
        assert rows and all(r["uid"] and r["pid"] for r in rows)
        assert all(r["distance_ft"] <= 100 for r in rows)
        valid = read_all(ep.settings, "VALID_PROMOTIONS")
        # keyed by the join key, SEGMENT (ksqlDB moves it out of the value)
        assert valid and all(v["PID"] and v["SKU"] and "SEGMENT" not in v for v in valid)
    finally:
        ep.stop()
        broker.stop()
