"""A short soak of the whole embedded stack (Kafka, Redis, worker, hub, sink, API)
with simulated shoppers and a subscriber on every shopper channel: every offer the policy
produced reached its subscriber exactly once, none reached a shopper without consent, every
service is still running, and no service log holds a secret or a uid next to a position.
The long run with faults is `instore bench soak --faults` (figures in docs/benchmarks.md)."""

from __future__ import annotations

import pytest

from bench import soak

pytestmark = pytest.mark.integration


def test_short_soak_reconciles_and_logs_are_clean(tmp_path) -> None:
    fig = soak.run(minutes=0.5, rate=40, faults=False, seed=3, drain_max_s=45,
                   results=tmp_path / "soak.jsonl")
    assert fig["positions_sent"] > 0
    assert fig["offers_produced"] > 0, fig
    assert fig["lost"] == 0, fig
    assert fig["duplicates"] == 0, fig
    assert fig["consent_violations"] == 0, fig
    assert fig["services_back"], fig
    assert fig["log_lines_scanned"] > 0
    assert fig["log_leaks"] == 0, fig["log_leak_kinds"]
