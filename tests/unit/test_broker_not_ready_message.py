"""When the embedded broker does not answer, the stack's error ends with what each node logged
last (its data dir may be a temporary one, gone by the time anyone looks)."""

from __future__ import annotations

from pathlib import Path

from instore.embedded.services import _last_problem


def test_the_last_error_or_warning_of_the_server_log(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_text("[2026-12-07 01:56:01,000] INFO starting (kafka.Kafka)\n"
                   "[2026-12-07 01:56:02,000] WARN slow disk (kafka.log)\n"
                   "[2026-12-07 01:56:03,000] ERROR Address already in use (kafka.network)\n"
                   "[2026-12-07 01:56:04,000] INFO shutting down (kafka.Kafka)\n")
    assert _last_problem(log, tmp_path / "out.log").endswith("Address already in use (kafka.network)")


def test_the_process_output_when_the_server_log_says_nothing_wrong(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_text("[2026-12-07 01:56:01,000] INFO starting (kafka.Kafka)\n")
    out = tmp_path / "broker.log"
    out.write_text("Error occurred during initialization of VM\nCould not reserve heap\n\n")
    assert _last_problem(log, out) == "Could not reserve heap"


def test_nothing_logged(tmp_path: Path) -> None:
    assert _last_problem(tmp_path / "server.log", None) == "nothing logged"
