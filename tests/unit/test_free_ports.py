"""Free loopback ports for tests, benchmarks and private stacks: below the kernel's ephemeral
range (no outgoing connection can take one meanwhile), never the same one twice in a process,
consecutive when asked, and within INSTORE_PORT_RANGE when set."""

from __future__ import annotations

import socket

import pytest

from instore import embedded
from instore.embedded import free_port, free_ports, port_range


def test_ports_are_below_the_ephemeral_range_and_never_repeat() -> None:
    ports = [free_port() for _ in range(500)]
    assert len(set(ports)) == 500
    lo, hi = port_range()
    assert all(lo <= p <= hi < 32768 for p in ports)


def test_a_bound_port_is_skipped_and_runs_are_consecutive(monkeypatch: pytest.MonkeyPatch) -> None:
    # ten ports nothing else of this process will be handed (other test processes have their
    # own INSTORE_PORT_RANGE), free when they were handed out
    base = free_ports(10)
    monkeypatch.setenv("INSTORE_PORT_RANGE", f"{base}-{base + 9}")
    monkeypatch.setattr(embedded, "_port_cursor", [0])
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", base + 1))
        first = free_ports(2)
        assert first == base + 2  # base and base + 1 are not free as a pair
        assert free_port() == base + 4


def test_the_range_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSTORE_PORT_RANGE", "26000-26100")
    assert port_range() == (26000, 26100)
    assert 26000 <= free_port() <= 26100
    for bad in ("nonsense", "70000-80000", "500-600", "30000-20000"):
        monkeypatch.setenv("INSTORE_PORT_RANGE", bad)
        assert port_range() == embedded.DEFAULT_PORT_RANGE


def test_a_full_range_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    base = free_ports(2)
    monkeypatch.setenv("INSTORE_PORT_RANGE", f"{base}-{base + 1}")
    with socket.socket() as a, socket.socket() as b:
        a.bind(("127.0.0.1", base))
        b.bind(("127.0.0.1", base + 1))
        with pytest.raises(embedded.StackError, match="no 1 consecutive free ports"):
            free_port()
