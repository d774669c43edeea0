"""What `instore up` writes each loop and `instore status` reads: services, restarts, staleness."""

from __future__ import annotations

import json
import time
from pathlib import Path

from instore.health import STATUS_FILE, read_stack_status, services_check, write_stack_status


def row(name: str, state: str = "running", restarts: int = 0) -> dict[str, object]:
    return {"name": name, "pid": 1, "state": state, "restarts": restarts, "url": None}


def test_status_round_trip_and_restarts(tmp_path: Path) -> None:
    write_stack_status(tmp_path, [row("broker"), row("worker", restarts=2), row("sink")])
    doc = read_stack_status(tmp_path)
    assert doc is not None and not doc["stale"]
    check = services_check(tmp_path)
    assert check["ok"] and check["detail"] == "3/3 running, 2 restarts"


def test_a_service_down_or_a_stale_supervisor_is_not_ok(tmp_path: Path) -> None:
    write_stack_status(tmp_path, [row("broker"), row("worker", state="exited(-9)", restarts=1)])
    check = services_check(tmp_path)
    assert not check["ok"] and "down: worker" in check["detail"]
    doc = json.loads((tmp_path / STATUS_FILE).read_text())
    doc["updated_at"] = time.time() - 60
    (tmp_path / STATUS_FILE).write_text(json.dumps(doc))
    assert "not running" in services_check(tmp_path)["detail"]
    assert not services_check(tmp_path / "nowhere")["ok"]
