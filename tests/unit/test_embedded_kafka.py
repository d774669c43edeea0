"""The embedded Kafka's pure parts: cluster ids, node configs, the pinned version."""

from __future__ import annotations

import re
from pathlib import Path

from instore.embedded import kafka


def test_cluster_ids_are_kafka_uuids_a_command_line_takes() -> None:
    ids = {kafka.new_cluster_id() for _ in range(5000)}  # ~1 in 64 would start with "-"
    assert len(ids) == 5000
    for cid in ids:
        assert re.fullmatch(r"[A-Za-z0-9_-]{22}", cid) and not cid.startswith("-")


def test_a_cluster_shares_one_quorum_and_each_node_its_own_ports(tmp_path: Path) -> None:
    nodes = kafka.cluster_nodes(tmp_path, [(9092, 9093), (9094, 9095), (9096, 9097)])
    props = [n.properties(replicas=3) for n in nodes]
    voters = "1@127.0.0.1:9093,2@127.0.0.1:9095,3@127.0.0.1:9097"
    assert all(p["controller.quorum.voters"] == voters for p in props)
    assert [p["node.id"] for p in props] == ["1", "2", "3"]
    assert props[1]["listeners"] == "PLAINTEXT://127.0.0.1:9094,CONTROLLER://127.0.0.1:9095"
    assert props[0]["offsets.topic.replication.factor"] == "3"
    assert props[0]["min.insync.replicas"] == "2"
    single = kafka.cluster_nodes(tmp_path, [(9092, 9093)])[0].properties()
    assert single["offsets.topic.replication.factor"] == "1"
    assert single["min.insync.replicas"] == "1"


def test_the_pom_pins_the_version_the_code_expects() -> None:
    pom = kafka.POM.read_text()
    assert f"<kafka.version>{kafka.KAFKA_VERSION}</kafka.version>" in pom
