"""`instore ksql shell` (driven through stdin) and `instore ksql query -f file.sql` against the
local ksqlDB-compatible endpoint on a module broker: statements over several lines, a pull
query's header and rows as a table, a push query's rows under its header line, ksqlDB's error
message with the shell going on, `exit`, and a file's statements in order (SET applied to the
rest, the first error stops it)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT, child_env
from tests.integration.api_harness import poll
from tests.integration.test_ksql_endpoint import Endpoint, _start

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def endpoint(broker_factory: Callable[[], Any], redis_url: str) -> Iterator[Endpoint]:
    broker, ep = _start(broker_factory, redis_url)
    for sql in (
        "CREATE STREAM SH_SALES (STORE STRING KEY, EUR INT) WITH (KAFKA_TOPIC='sh_sales', "
        "PARTITIONS=1, VALUE_FORMAT='JSON');",
        "CREATE TABLE SH_TOTALS AS SELECT STORE, COUNT(*) AS N, SUM(EUR) AS EUR "
        "FROM SH_SALES GROUP BY STORE;",
        "INSERT INTO SH_SALES (STORE, EUR) VALUES ('store-001', 5); "
        "INSERT INTO SH_SALES (STORE, EUR) VALUES ('store-001', 7); "
        "INSERT INTO SH_SALES (STORE, EUR) VALUES ('store-002', 3);",
    ):
        assert ep.ksql(sql, {"auto.offset.reset": "earliest"}).status_code == 200
    poll(lambda: sorted(pull(ep, "SELECT * FROM SH_TOTALS;")) ==
         [["store-001", 2, 12], ["store-002", 1, 3]], 30)
    yield ep
    ep.stop()
    broker.stop()


def pull(ep: Endpoint, sql: str) -> list[list[Any]]:
    res = httpx.post(f"{ep.url}/query-stream", json={"sql": sql}, timeout=30)
    return [r for r in map(json.loads, res.text.splitlines()[1:]) if isinstance(r, list)]


def ksql_cli(ep: Endpoint, args: list[str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = child_env(ep.settings, KSQLDB_URL=ep.url, COLUMNS="160")
    env.pop("TERM", None)
    return subprocess.run([sys.executable, "-m", "instore", "ksql", *args], input=stdin, env=env,
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)


def table_rows(stdout: str) -> list[list[str]]:
    """The cells of each line of the rich tables printed (header lines included)."""
    return [[c.strip() for c in line.strip().strip("┃│").split("┃" if "┃" in line else "│")]
            for line in stdout.splitlines() if re.match(r"^\s*[┃│]", line)]


def said(text: str) -> str:
    return " ".join(text.split())


def test_shell_runs_statements_until_exit(endpoint: Endpoint) -> None:
    bad = "SELEC * FROM SH_SALES;"
    bad_message = endpoint.ksql(bad).json()["message"]
    typed = "\n".join([
        "SHOW STREAMS;",
        "SELECT STORE, N,",  # a statement over three lines
        "  EUR FROM SH_TOTALS",
        "  WHERE STORE = 'store-001';",
        bad,  # ksqlDB's error; the shell goes on
        "SET 'auto.offset.reset'='earliest';",
        "SELECT STORE, EUR FROM SH_SALES EMIT CHANGES LIMIT 2; DESCRIBE SH_TOTALS;",
        "exit",
        "DROP TABLE SH_TOTALS;",  # after exit: never run
        "",
    ])
    res = ksql_cli(endpoint, ["shell"], typed)
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    rows = table_rows(res.stdout)
    assert ["SH_SALES", "sh_sales", "KAFKA", "JSON", "False"] in rows  # SHOW STREAMS
    pull_at = rows.index(["STORE", "N", "EUR"])  # the pull query's header, then its row
    assert rows[pull_at + 1] == ["store-001", "2", "12"]
    assert ["STORE", "", "EUR"] not in rows
    lines = res.stdout.splitlines()
    push_at = lines.index("STORE | EUR")  # the push query's header line, rows under it
    assert lines[push_at + 1: push_at + 3] == ["store-001 | 5", "store-001 | 7"]
    assert ["STORE (key)", "STRING"] in rows  # DESCRIBE, on the same line as the push query
    assert said(bad_message) in said(res.stderr)
    assert "query ended after 2 row(s)" in said(res.stderr)
    assert pull(endpoint, "SELECT * FROM SH_TOTALS WHERE STORE = 'store-002';") == [
        ["store-002", 1, 3]]  # the DROP after exit did not run


def test_shell_ctrl_d_leaves_and_an_unfinished_statement_is_not_run(endpoint: Endpoint) -> None:
    res = ksql_cli(endpoint, ["shell"], "SHOW TABLES;\nDROP TABLE SH_TOTALS\n")
    assert res.returncode == 0, res.stderr
    assert "SH_TOTALS" in res.stdout
    assert "not run (no closing ';'): DROP TABLE SH_TOTALS" in said(res.stderr)
    assert pull(endpoint, "SELECT * FROM SH_TOTALS WHERE STORE = 'store-002';")


def test_file_statements_run_in_order(endpoint: Endpoint, tmp_path: Path) -> None:
    script = tmp_path / "report.sql"
    script.write_text(
        "-- the stores' totals, then the first sales\n"
        "SELECT * FROM SH_TOTALS;\n"
        "SET 'auto.offset.reset'='earliest';\n"
        "SELECT STORE, EUR\n  FROM SH_SALES EMIT CHANGES LIMIT 3;\n")
    res = ksql_cli(endpoint, ["query", "-f", str(script)])
    assert res.returncode == 0, res.stderr
    rows = table_rows(res.stdout)
    at = rows.index(["STORE", "N", "EUR"])
    assert sorted(rows[at + 1: at + 3]) == [["store-001", "2", "12"], ["store-002", "1", "3"]]
    lines = res.stdout.splitlines()
    push_at = lines.index("STORE | EUR")
    assert lines[push_at + 1: push_at + 4] == ["store-001 | 5", "store-001 | 7", "store-002 | 3"]
    assert said(res.stderr).index("> SELECT * FROM SH_TOTALS;") < said(res.stderr).index(
        "> SELECT STORE, EUR ...")


def test_file_stops_at_the_first_error(endpoint: Endpoint, tmp_path: Path) -> None:
    script = tmp_path / "broken.sql"
    script.write_text("SHOW STREAMS;\nDESCRIBE NO_SUCH_TABLE;\nDROP TABLE SH_TOTALS;\n")
    res = ksql_cli(endpoint, ["query", "--file", str(script)])
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    assert said(endpoint.ksql("DESCRIBE NO_SUCH_TABLE;").json()["message"]) in said(res.stderr)
    assert "SH_SALES" in res.stdout  # the statement before the error ran
    assert pull(endpoint, "SELECT * FROM SH_TOTALS WHERE STORE = 'store-002';")  # not dropped


def test_ctrl_c_stops_a_push_query_and_the_shell_goes_on(endpoint: Endpoint,
                                                          tmp_path: Path) -> None:
    env = child_env(endpoint.settings, KSQLDB_URL=endpoint.url, COLUMNS="160")
    out = tmp_path / "shell.out"
    with out.open("wb") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "instore", "ksql", "shell"],
                                stdin=subprocess.PIPE, stdout=sink, stderr=subprocess.STDOUT,
                                env=env, cwd=ROOT, start_new_session=True)
    assert proc.stdin is not None
    try:
        proc.stdin.write(b"SELECT STORE, EUR FROM SH_SALES EMIT CHANGES;\n")
        proc.stdin.flush()
        poll(lambda: any(q.startswith("transient_SH_SALES") for q in endpoint.engine.transient))
        endpoint.ksql("INSERT INTO SH_SALES (STORE, EUR) VALUES ('store-009', 41);")
        poll(lambda: "store-009 | 41" in out.read_text())
        os.killpg(proc.pid, signal.SIGINT)
        poll(lambda: "query ended after 1 row(s)" in out.read_text())
        poll(lambda: not any(q.startswith("transient_SH_SALES")
                             for q in endpoint.engine.transient))
        proc.stdin.write(b"SHOW TABLES;\nexit\n")  # back at the prompt
        proc.stdin.close()
        assert proc.wait(60) == 0, out.read_text()
        assert "SH_TOTALS" in out.read_text().split("query ended after 1 row(s)")[1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
