"""Commands pointed at nothing: one sentence on stderr, exit 1, no traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from instore.embedded import free_ports
from tests.conftest import ROOT


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run([sys.executable, "-m", "instore", *args], env=os.environ | env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("args", [["ksql", "status"], ["ksql", "migrate"], ["ksql", "info"],
                                  ["ksql", "query", "SHOW STREAMS;"],
                                  ["ksql", "query", "SELECT * FROM nearby_customers;"]])
def test_ksql_without_an_endpoint(args: list[str]) -> None:
    res = _run({"KSQLDB_URL": f"http://127.0.0.1:{free_ports(1)}"}, *args)
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr
    assert res.stderr.startswith("error: no ksqlDB endpoint answers at"), res.stderr
    assert "instore ksql serve" in " ".join(res.stderr.split())


def test_status_with_nothing_running_says_how_to_start(tmp_path) -> None:
    port = free_ports(2)
    res = _run({"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}", "REDIS_URL":
                f"redis://127.0.0.1:{port + 1}/0", "INSTORE_DATA_DIR": str(tmp_path)},
               "status", "--data-dir", str(tmp_path))
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    assert "nothing is running: start the stack with `instore up`" in " ".join(res.stderr.split())


@pytest.mark.parametrize("args", [["--faults", "--only", "printer"], ["--only", "broker"]])
def test_soak_only_takes_known_faults_with_faults(args: list[str]) -> None:
    """`instore bench soak --only` names faults of the list and needs --faults: anything else is
    one sentence before a stack starts."""
    res = _run({}, "bench", "soak", *args)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert "--only takes faults of worker, sink, redis, api, broker" in " ".join(res.stderr.split())
