"""The README's tours run as written: the engineer's `instore up` line (a 3-node cluster) on
free ports, then each tour's bash block verbatim (only the API's port and the data dir
substituted), every line succeeding. Two engineer lines run differently: `instore bench
proximity --json` runs on a small world (the full run takes minutes), its figures written to a
temporary directory; `instore cloud up` needs a Confluent Cloud account, so its flags are
checked here and tests/unit/test_cloud_cli.py runs it against a stand-in terraform."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from instore.embedded import free_port
from tests.conftest import ROOT, stop_process

pytestmark = pytest.mark.integration
README = (ROOT / "README.md").read_text()


def tour(name: str) -> str:
    """The bash block under the README's ``**<name>**`` tour heading."""
    section = README.split(f"**{name}**", 1)[1]
    return section.split("```bash\n", 1)[1].split("```", 1)[0]


def tour_lines(name: str) -> list[str]:
    """The tour's commands, one per line, without their comments."""
    lines = [re.split(r"\s+#", line)[0].strip() for line in tour(name).splitlines()]
    return [line for line in lines if line]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    data = tmp_path_factory.mktemp("tour-data")
    ports = {name: str(free_port()) for name in
             ("API_PORT", "HUB_PORT", "REDIS_PORT", "KSQL_PORT", "WORKER_WEB_PORT")}
    ports["BROKER_PORT"] = str(free_port())
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("KAFKA_", "REDIS_URL", "KSQLDB_", "ARCHIVE_", "INSTORE_"))}
    env |= ports | {"INSTORE_DATA_DIR": str(data), "PYTHONUNBUFFERED": "1",
                    "KAFKA_HEAP_MB": "256", "KAFKA_JVM_FLAGS": "-XX:TieredStopAtLevel=1",
                    "ARCHIVE_FLUSH_S": "1",  # the analyst's tour reads what was just written
                    "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    log = (data / "up.log").open("ab")
    up = next(line for line in tour_lines("Engineer") if line.startswith("instore up "))
    argv = up.replace("./instore-data", str(data)).split()
    proc = subprocess.Popen([sys.executable, "-m", "instore", *argv[1:]], env=env, cwd=data,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    api = f"http://127.0.0.1:{ports['API_PORT']}"
    try:
        deadline = time.monotonic() + 240
        while True:
            assert proc.poll() is None, (data / "up.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "instore up did not bring the API up"
            try:
                if httpx.get(f"{api}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        yield {"env": env, "api": api, "data": data, "cwd": data}
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            stop_process(proc)


def run_block(stack: dict[str, Any], block: str) -> subprocess.CompletedProcess[str]:
    script = block.replace("http://127.0.0.1:8080", stack["api"])
    script = script.replace("./instore-data", str(stack["data"]))
    return subprocess.run(["bash", "-euo", "pipefail", "-c", script], env=stack["env"],
                          cwd=stack["cwd"], capture_output=True, text=True, timeout=300,
                          check=False)


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, f"{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    return done.stdout


def test_marketer_tour(stack: dict[str, Any]) -> None:
    (stack["cwd"] / "catalog.csv").write_text(
        "store_id,sku,name,segment,latitude,longitude\n"
        "store-001,401,espresso beans,coffee,51.5001,-0.1001\n")
    out = ok(run_block(stack, tour("Marketer")))
    assert '"title":"30% off item 42"' in out
    assert '"rows":1,"accepted":1,"rejected":0' in out.replace(" ", "")


def test_shopper_tour(stack: dict[str, Any]) -> None:
    out = ok(run_block(stack, tour("Shopper")))
    assert "erased_now" in out and "/phone?uid=shopper-00001#token=" in out


def test_analyst_tour(stack: dict[str, Any]) -> None:
    # the marketer's tour wrote the catalog: once it is archived, the store has a report
    deadline = time.monotonic() + 60
    while not list((stack["data"] / "archive" / "products").rglob("*.parquet")):
        assert time.monotonic() < deadline, "the archiver wrote nothing"
        time.sleep(0.5)
    out = ok(run_block(stack, tour("Analyst")))
    assert '"nodes"' in out  # the lineage answer


def test_engineer_tour(stack: dict[str, Any], tmp_path: Path) -> None:
    lines = tour_lines("Engineer")
    assert lines[0].startswith("instore up --brokers 3")  # the stack the tours run on
    status = ok(run_block(stack, "instore status --json --data-dir ./instore-data"))
    assert json.loads(status.strip().splitlines()[-1])["checks"]["broker"]["brokers"] == 3
    for line in lines[1:]:
        if line.startswith("instore cloud up"):  # an account: tests/unit/test_cloud_cli.py
            flags = [w for w in line.split() if w.startswith("--")]
            helped = ok(run_block(stack, line.split(" --")[0] + " --help"))
            for flag in flags:
                assert flag in helped, (line, flag)
        elif line.startswith("instore bench proximity"):
            bench(stack, line, tmp_path)
        elif line.startswith("instore edge run"):  # runs until Ctrl-C
            proc = subprocess.Popen(["bash", "-c", f"exec {line} --quiet"], env=stack["env"],
                                    cwd=stack["cwd"], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, start_new_session=True)
            time.sleep(8)
            assert proc.poll() is None, proc.communicate()[1][-2000:]
            proc.send_signal(signal.SIGINT)
            _out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0 and "Traceback" not in err, err[-2000:]
        else:
            ok(run_block(stack, line))


def bench(stack: dict[str, Any], line: str, tmp_path: Path) -> None:
    """The benchmark as the README gives it, on a small world and a short latency run."""
    small = " --stores 2 --products 300 --promoted 10 --events 3000 --latency-seconds 2 --no-ceiling"
    small += " --warmup 1000 --warmup-seconds 0"
    leftovers = proximity_dirs()
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", line + small],
                          env=stack["env"] | {"INSTORE_BENCH_RESULTS_DIR": str(tmp_path)},
                          cwd=stack["cwd"], capture_output=True, text=True, timeout=600,
                          check=False)
    fig = json.loads(ok(done).strip().splitlines()[-1])
    assert fig["events"] == 3000 and fig["events_per_s"] > 0 and fig["nearby_rows"] > 0
    assert fig["p99_ms"] > 0 and fig["offer_p99_ms"] > 0
    recorded = [json.loads(x) for x in (tmp_path / "proximity.jsonl").read_text().splitlines()]
    assert recorded[-1]["events_per_s"] == fig["events_per_s"] and recorded[-1]["broker"] == "kafka"
    # its private stack's data (gigabytes in a full run) is gone
    assert proximity_dirs() <= leftovers


def proximity_dirs() -> set[Path]:
    """The temporary dirs of `instore bench proximity` runs (mkdtemp's 8 characters after the
    prefix; the other benchmarks' prefixes go on with their name)."""
    return {p for p in Path(tempfile.gettempdir()).glob("instore-bench-*")
            if re.fullmatch(r"instore-bench-[a-z0-9_]{8}", p.name)}
