"""Three embedded Kafka nodes (replication factor 3, min.insync.replicas 2, idempotent producers
with acks=all): the node leading partition 0 of customers_locations is killed with kill -9 while
shoppers walk at 1,000 positions/s. Every offer the policy produced reaches its subscriber once
(none lost, none shown twice), the worker, the sink and the API keep going, and the supervisor
brings the killed node back on its data. The same run is `instore bench soak --brokers 3
--faults` (figures in docs/benchmarks.md)."""

from __future__ import annotations

import pytest

from bench import soak

pytestmark = pytest.mark.integration


def test_killing_the_partition_leader_loses_nothing(tmp_path) -> None:
    fig = soak.run(minutes=0.6, rate=1000, faults=True, only_faults=("leader",), brokers=3,
                   seed=5, drain_max_s=90, results=tmp_path / "soak.jsonl")
    assert fig["brokers"] == 3
    assert fig["faults_injected"] == 1 and fig["faults_recovered"] == 1, fig["faults"]
    assert fig["offers_produced"] > 0, fig
    assert fig["lost"] == 0, fig.get("lost_sample")
    assert fig["duplicates"] == 0, fig
    assert fig["consent_violations"] == 0, fig
    assert fig["services_back"], fig
    assert any(name.startswith("broker-") for name in fig["restarts"]), fig["restarts"]
    assert fig["final_lag"] and all(v == 0 for v in fig["final_lag"].values()), fig["final_lag"]
