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


def test_a_node_maps_the_class_archive_only_when_there_and_not_while_recording(
        tmp_path: Path) -> None:
    java = tmp_path / "jdk" / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text("#!/bin/sh\n")
    libs = tmp_path / "libs"
    libs.mkdir()
    node = kafka.cluster_nodes(tmp_path, [(9092, 9093)])[0]
    assert not any("SharedArchiveFile" in a for a in node.argv(str(java), libs))
    archive = kafka.class_archive(libs, str(java))
    assert archive.parent == libs and archive.suffix == ".jsa"
    archive.write_bytes(b"cds")
    argv = node.argv(str(java), libs)
    assert f"-XX:SharedArchiveFile={archive}" in argv
    assert argv.index(f"-XX:SharedArchiveFile={archive}") < argv.index("kafka.Kafka")
    node.jvm_flags = (f"-XX:ArchiveClassesAtExit={tmp_path / 'new.jsa'}",)
    assert not any("SharedArchiveFile" in a for a in node.argv(str(java), libs))
    # another JDK (another binary) gets its own archive: one JVM build cannot map another's
    other = tmp_path / "jdk2" / "bin" / "java"
    other.parent.mkdir(parents=True)
    other.write_text("#!/bin/sh\n# another build\n")
    assert kafka.class_archive(libs, str(other)) != archive


def test_a_restarted_node_registers_within_a_few_heartbeats() -> None:
    props = kafka.cluster_nodes(Path("/x"), [(9092, 9093)])[0].properties()
    session, beat = int(props["broker.session.timeout.ms"]), int(props["broker.heartbeat.interval.ms"])
    assert session <= 2000 and session >= 4 * beat
