"""`instore ksql shell` and `instore ksql query -f`: how typed text becomes statements, the
client-side SET, query kinds, and an endpoint that does not answer (one sentence, exit 1)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from instore.commands.ksql.statements import classify, complete_statements, set_property
from instore.embedded import free_ports
from tests.conftest import ROOT


def test_statements_complete_at_their_semicolon() -> None:
    assert complete_statements("SHOW STREAMS\n") == ([], "SHOW STREAMS\n")
    assert complete_statements("SHOW STREAMS\n;\n") == (["SHOW STREAMS\n;"], "")
    done, rest = complete_statements("SHOW STREAMS; SELECT *\nFROM T")
    assert done == ["SHOW STREAMS;"] and rest == " SELECT *\nFROM T"
    # a ';' inside a string, a quoted name or a comment does not end a statement
    assert complete_statements("SELECT 'a;b' FROM T\n") == ([], "SELECT 'a;b' FROM T\n")
    assert complete_statements("SELECT `x;` FROM T -- done;\n") == (
        [], "SELECT `x;` FROM T -- done;\n")
    assert complete_statements("SELECT 'open;\n") == ([], "SELECT 'open;\n")  # quote still open
    assert complete_statements("SELECT 'open\n';\n") == (["SELECT 'open\n';"], "")
    assert complete_statements("-- a comment only\n") == ([], "")
    assert complete_statements("SELECT 1 FROM T; -- trailing\n") == (["SELECT 1 FROM T;"], "")
    assert complete_statements("LIST STREAMS; SHOW TABLES;\n") == (
        ["LIST STREAMS;", "SHOW TABLES;"], "")


def test_set_and_unset_are_client_side() -> None:
    props: dict[str, object] = {}
    assert set_property("SET 'auto.offset.reset'='earliest';", props)
    assert props == {"auto.offset.reset": "earliest"}
    assert set_property("unset 'auto.offset.reset';", props) and props == {}
    assert not set_property("SELECT * FROM SETTINGS;", props)


def test_query_kinds() -> None:
    assert classify("SELECT * FROM S EMIT CHANGES;") == (True, True)
    assert classify("SELECT * FROM T WHERE K = 'a';") == (True, False)
    assert classify("SHOW STREAMS;") == (False, False)
    assert classify("SELECT FROM WHERE EMIT CHANGES;") == (True, True)  # unparsable: by its words


def _run(args: list[str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = os.environ | {"KSQLDB_URL": f"http://127.0.0.1:{free_ports(1)}"}
    return subprocess.run([sys.executable, "-m", "instore", "ksql", *args], input=stdin,
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=60,
                          check=False)


def test_shell_and_file_without_an_endpoint(tmp_path: Path) -> None:
    script = tmp_path / "q.sql"
    script.write_text("SHOW STREAMS;\n")
    for args in (["shell"], ["query", "-f", str(script)]):
        res = _run(args, "SHOW STREAMS;\nexit\n")
        assert res.returncode == 1, res.stderr
        assert "Traceback" not in res.stderr
        assert res.stderr.startswith("error: no ksqlDB endpoint answers at"), res.stderr
        said = " ".join(res.stderr.split())  # one sentence, however the terminal wraps it
        assert said.count("error:") == 1 and said.endswith("or set KSQLDB_URL"), said


def test_query_needs_a_statement_or_a_file(tmp_path: Path) -> None:
    res = _run(["query"])
    assert res.returncode == 1 and "give a statement or --file" in res.stderr
    script = tmp_path / "q.sql"
    script.write_text("SHOW STREAMS;")
    res = _run(["query", "SHOW TABLES;", "-f", str(script)])
    assert res.returncode == 1 and "give a statement or --file" in res.stderr
