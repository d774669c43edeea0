"""`instore demo` as `make demo` runs it, but not on a terminal (as in CI or piped to a file):
it starts its own stack, walks shoppers, prints the page URLs and ends with offers made."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from instore.embedded.services import child_env_for, isolated_settings
from instore.settings import get_settings
from tests.conftest import ROOT

pytestmark = pytest.mark.integration


def test_demo_prints_the_pages_and_shows_offers() -> None:
    settings = isolated_settings(get_settings())
    # its own embedded stack on free ports: the ports, not an external broker's address
    env = {k: v for k, v in (os.environ | child_env_for(settings)).items()
           if k not in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL")}
    res = subprocess.run([sys.executable, "-m", "instore", "demo", "--seconds", "20", "--json"],
                         env=env, cwd=ROOT, capture_output=True, text=True, timeout=420,
                         check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    err = " ".join(res.stderr.split())
    for page in (f"http://{settings.host}:{settings.hub_port}/phone?uid=",
                 f"http://{settings.host}:{settings.hub_port}/kiosk?store=",
                 f"http://{settings.host}:{settings.api_port}/dashboard",
                 f"http://{settings.host}:{settings.api_port}/docs"):
        assert page in err, page
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["positions"] > 0
    assert summary["offers"] > 0, summary
    assert not alive(started_pids(res.stderr))  # its stack stopped with it


def started_pids(output: str) -> list[int]:
    """The pids of the services the demo started ("started worker (pid 123) ...")."""
    return [int(pid) for pid in re.findall(r"started [\w-]+ \(pid (\d+)\)", output)]


def alive(pids: list[int]) -> list[int]:
    return [pid for pid in pids if psutil.pid_exists(pid)
            and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_the_demo_and_its_stack(stop: signal.Signals, tmp_path: Path) -> None:
    """SIGTERM, and Ctrl-C's SIGINT also when the demo was started with SIGINT ignored (as a
    pytest-xdist worker passes it on: Python then raises no KeyboardInterrupt by itself)."""
    settings = isolated_settings(get_settings())
    env = {k: v for k, v in (os.environ | child_env_for(settings)).items()
           if k not in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL")}
    log = tmp_path / "demo.log"
    with log.open("ab") as out:
        demo = subprocess.Popen([sys.executable, "-m", "instore", "demo", "--seconds", "300"],
                                env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    pids: list[int] = []
    try:
        deadline = time.monotonic() + 300
        while "started api" not in log.read_text():
            assert demo.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        pids = started_pids(log.read_text())
        assert len(pids) >= 5 and not set(pids) - set(alive(pids))
        demo.send_signal(stop)
        demo.wait(90)
        assert not alive(pids), log.read_text()[-3000:]
        assert "Traceback" not in log.read_text()
    finally:
        if demo.poll() is None:
            demo.kill()
        for pid in alive(pids):  # whatever a failure left running
            os.killpg(pid, signal.SIGKILL)
