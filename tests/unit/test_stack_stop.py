"""Stopping the embedded stack: the parts together, then the infrastructure they use, one at a
time; a part that ignores SIGTERM is killed and the stop goes on."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from instore.embedded import ServiceSpec, Stack

# Writes "<name> started" once its handler is set, then "<name> stopped" on SIGTERM; with
# "stubborn", it ignores SIGTERM (SIGKILL ends it, and it writes nothing more).
CHILD = """
import signal, sys, time
name, log, stubborn = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
def stopped(*_):
    with open(log, "a") as f:
        f.write(name + " stopped\\n")
    sys.exit(0)
signal.signal(signal.SIGTERM, signal.SIG_IGN if stubborn else stopped)
with open(log, "a") as f:
    f.write(name + " started\\n")
while True:
    time.sleep(0.05)
"""


def spec(name: str, log: Path, infrastructure: bool = False, stubborn: bool = False) -> ServiceSpec:
    return ServiceSpec(name, [sys.executable, "-c", CHILD, name, str(log), "1" if stubborn else "0"],
                       infrastructure=infrastructure)


def wait_started(log: Path, n: int) -> None:
    """Until ``n`` children have their SIGTERM handler set (each says so in ``log``)."""
    for _ in range(600):
        if log.exists() and log.read_text().count("started") >= n:
            return
        time.sleep(0.05)
    raise AssertionError(f"{n} children did not start: {log.read_text() if log.exists() else ''}")


def test_parts_stop_before_the_infrastructure_and_a_stubborn_part_is_killed(tmp_path: Path) -> None:
    log = tmp_path / "events.log"
    events: list[str] = []
    stack = Stack(tmp_path / "logs", on_event=events.append)
    for s in (spec("broker", log, infrastructure=True), spec("redis", log, infrastructure=True),
              spec("worker", log), spec("stubborn", log, stubborn=True), spec("api", log)):
        stack.start(s)
    procs = {name: running.proc for name, running in stack.services.items()}
    wait_started(log, 5)
    stack.stop(timeout_s=1.0)
    lines = log.read_text().splitlines()
    stopped = [line.split()[0] for line in lines if line.endswith("stopped")]
    # the parts first (in any order: together), then Redis, then the broker
    assert set(stopped[:2]) == {"worker", "api"} and stopped[2:] == ["redis", "broker"]
    assert "stubborn stopped" not in lines  # it ignored SIGTERM ...
    assert all(p.poll() is not None for p in procs.values())  # ... and was killed all the same
    assert stack.services == {}
    assert [e for e in events if e.startswith("stopped")][-2:] == ["stopped redis", "stopped broker"]


def test_stop_services_stops_only_those(tmp_path: Path) -> None:
    log = tmp_path / "events.log"
    stack = Stack(tmp_path / "logs", on_event=lambda _m: None)
    stack.start(spec("broker", log, infrastructure=True))
    stack.start(spec("worker-1", log))
    wait_started(log, 2)
    stack.stop_services(["worker-1", "not-there"], timeout_s=5.0)
    assert list(stack.services) == ["broker"]
    stack.stop(timeout_s=5.0)
    assert log.read_text().count("stopped") == 2
