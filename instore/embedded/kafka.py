"""The embedded Apache Kafka broker: KRaft nodes from Maven Central jars, on loopback.

``install`` resolves the pinned Kafka version and a logging binding into a cache folder with
``mvn dependency:copy-dependencies`` (``pom.xml`` beside this file). ``KafkaNode`` is one
combined broker+controller: its ``server.properties``, its storage formatted once with
``kafka.tools.StorageTool`` (so a data dir keeps topics, records and committed offsets across
restarts), and the ``java ... kafka.Kafka`` command line. ``cluster_nodes`` lays out one or
three nodes with a static controller quorum; ``metadata_ready`` is the readiness check (a
metadata request that lists every broker), never a sleep.

Settings are for a 2-core laptop: small heap, few threads, one partition per internal topic,
no initial rebalance delay, a log cleaner that wakes every second (compacted topics set their
own lag bounds, see instore/topics.py), and retention checks every 30 s.

``build_class_archive`` (run by ``instore broker install``) records the classes a broker loads
into a JVM class-data archive (AppCDS) beside the jars; every node started afterwards maps it
instead of loading and verifying those classes again: a start or restart takes about half the
time and CPU. Without the archive a node starts the same way, only slower.

This stays one file (just over 500 lines): installing, configuring and running the broker share
the pinned version, the jars' folder and the class-data archive, and the CLI, the stack and the
tests use them together as ``instore.embedded.kafka``.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from instore.embedded.errors import StackError

log = logging.getLogger(__name__)

KAFKA_VERSION = "4.1.1"
HERE = Path(__file__).resolve().parent
POM = HERE / "pom.xml"
LOG4J2_CONFIG = HERE / "log4j2.properties"
COMPLETE_MARK = ".complete"
MIN_JAVA = 17
# The JIT's first tier only: a third less CPU to start a node and half when idle, at the price
# of peak speed (KAFKA_JVM_FLAGS; the tests use it, benchmarks must not).
QUICK_START = ("-XX:TieredStopAtLevel=1",)


class BrokerSetupError(StackError):
    """The broker cannot be installed or started; the message says what to run."""


# --- install -------------------------------------------------------------------------------

def default_libs_dir() -> Path:
    """``~/.cache/instore/kafka-<version>`` (the per-user cache directory)."""
    from platformdirs import user_cache_dir  # noqa: PLC0415

    return Path(user_cache_dir("instore", appauthor=False)) / f"kafka-{KAFKA_VERSION}"


def java_binary(java_home: Path | None = None) -> str:
    """The ``java`` to run: ``$JAVA_HOME/bin/java`` when set, else the one on PATH; >= 17."""
    java = str(java_home / "bin" / "java") if java_home else shutil.which("java")
    if not java or not Path(java).exists():
        msg = (f"Java {MIN_JAVA} or newer is needed for the embedded Kafka broker and none was "
               "found: run `make setup` (it installs openjdk-17-jre-headless) or set JAVA_HOME")
        raise BrokerSetupError(msg)
    major = java_major(java)
    if major < MIN_JAVA:
        msg = (f"{java} is Java {major}; the embedded Kafka broker needs Java {MIN_JAVA} or newer: "
               "run `make setup` or set JAVA_HOME to a newer JDK")
        raise BrokerSetupError(msg)
    return java


def java_major(java: str) -> int:
    out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30, check=False)
    found = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not found:
        return 0
    major = int(found.group(1))
    return int(found.group(2) or 0) if major == 1 else major  # "1.8.0" is Java 8


def installed(libs_dir: Path) -> bool:
    mark = libs_dir / COMPLETE_MARK
    return mark.exists() and mark.read_text().strip() == KAFKA_VERSION


def install(libs_dir: Path, on_line: Callable[[str], None] | None = None) -> Path:
    """Resolve the broker's jars into ``libs_dir`` (idempotent: quick when already there)."""
    if installed(libs_dir):
        return libs_dir
    mvn = shutil.which("mvn")
    if mvn is None:
        msg = "Maven is needed to fetch the Kafka broker's jars: run `make setup` (it installs maven)"
        raise BrokerSetupError(msg)
    libs_dir.mkdir(parents=True, exist_ok=True)
    argv = [mvn, "-B", "-ntp", "-f", str(POM), "dependency:copy-dependencies",
            f"-DoutputDirectory={libs_dir}", "-DincludeScope=runtime",
            f"-Dkafka.version={KAFKA_VERSION}"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    tail: list[str] = []
    for line in proc.stdout:
        tail = (tail + [line.rstrip()])[-15:]
        if on_line is not None:
            on_line(line.rstrip())
    if proc.wait() != 0:
        msg = "mvn could not resolve the Kafka jars:\n" + "\n".join(tail)
        raise BrokerSetupError(msg)
    if not any(libs_dir.glob(f"kafka_2.13-{KAFKA_VERSION}.jar")):
        msg = f"mvn finished but {libs_dir} has no kafka_2.13-{KAFKA_VERSION}.jar"
        raise BrokerSetupError(msg)
    (libs_dir / COMPLETE_MARK).write_text(KAFKA_VERSION)
    return libs_dir


def require_installed(libs_dir: Path) -> Path:
    if not installed(libs_dir):
        msg = (f"the Kafka {KAFKA_VERSION} jars are not in {libs_dir}: run `make setup` "
               "(or `instore broker install`)")
        raise BrokerSetupError(msg)
    return libs_dir


def class_archive(libs_dir: Path, java: str) -> Path:
    """Where the class-data archive for these jars and this ``java`` lives (it exists only once
    ``build_class_archive`` made it). An archive only fits the JVM build that wrote it, so the
    name carries the java binary's identity (its resolved path, size and time)."""
    binary = Path(java).resolve()
    stat = binary.stat() if binary.exists() else None
    ident = f"{binary}|{stat.st_size if stat else 0}|{stat.st_mtime_ns if stat else 0}"
    return libs_dir / f"classes-{hashlib.sha256(ident.encode()).hexdigest()[:16]}.jsa"


def build_class_archive(libs_dir: Path, java_home: Path | None = None,
                        timeout_s: float = 120.0) -> Path:
    """Start a throw-away node that records the classes it loads, make it create a topic, take
    records and serve a consumer group, and stop it cleanly (the JVM writes the archive at
    exit). Idempotent: quick when the archive is there."""
    java = java_binary(java_home)
    target = class_archive(require_installed(libs_dir), java)
    if target.exists():
        return target
    with tempfile.TemporaryDirectory(prefix="instore-cds-") as tmp:
        recorded = Path(tmp) / "classes.jsa"
        node = EmbeddedKafka(Path(tmp) / "kafka", libs_dir=libs_dir, java_home=java_home,
                             jvm_flags=(f"-XX:ArchiveClassesAtExit={recorded}",))
        node.start(timeout_s)
        try:
            _exercise(node.bootstrap, timeout_s)
        finally:
            node.stop()
        if not recorded.exists():
            msg = f"{java} wrote no class-data archive (see {node.nodes[0].logs}/stdout.log)"
            raise BrokerSetupError(msg)
        partial = target.with_suffix(".partial")
        shutil.copyfile(recorded, partial)
        os.replace(partial, target)
    return target


def _exercise(bootstrap: str, timeout_s: float) -> None:
    """What every broker of the stack does soon after it starts: a topic, records, a group."""
    from confluent_kafka import Consumer, KafkaException, Producer  # noqa: PLC0415
    from confluent_kafka.admin import AdminClient, NewTopic  # noqa: PLC0415

    quiet = _quiet_client(bootstrap)
    topic = "instore-class-archive"
    admin = AdminClient(quiet)
    try:
        admin.create_topics([NewTopic(topic, 2, 1)])[topic].result(timeout_s)
    except KafkaException as exc:
        msg = f"the class-archive broker at {bootstrap} did not create a topic: {exc}"
        raise BrokerSetupError(msg) from None
    producer = Producer({**quiet, "enable.idempotence": True, "acks": "all"})
    for i in range(100):
        producer.produce(topic, key=str(i).encode(), value=b"x" * 100)
    producer.flush(timeout_s)
    consumer = Consumer({**quiet, "group.id": "instore-class-archive",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    seen, deadline = 0, time.monotonic() + timeout_s
    try:
        while seen < 100 and time.monotonic() < deadline:
            seen += sum(1 for m in consumer.consume(100, 0.5) if m.error() is None)
        consumer.commit(asynchronous=False)
    finally:
        consumer.close()


# --- one node ------------------------------------------------------------------------------

def new_cluster_id() -> str:
    """What ``kafka-storage random-uuid`` prints: base64url of 16 random bytes, no padding, and
    (as Kafka's ``Uuid.randomUuid``) never starting with "-", which a command line would take
    for an option (``format -t -abc...`` fails)."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


@dataclass
class TlsListener:
    """An SSL (or SASL_SSL with PLAIN) listener: PEM key (PKCS#8) + certificate chain."""

    port: int
    keystore_pem: Path  # private key then certificate chain, one file
    sasl_users: Mapping[str, str] | None = None  # SASL_SSL with PLAIN when given

    @property
    def name(self) -> str:
        return "SASL_SSL" if self.sasl_users else "SSL"


@dataclass
class KafkaNode:
    node_id: int
    port: int
    controller_port: int
    data_dir: Path  # this node's folder: server.properties, kafka-data/, logs/
    voters: str = ""  # controller.quorum.voters; filled in by cluster_nodes
    host: str = "127.0.0.1"
    heap_mb: int = 512
    tls: list[TlsListener] = field(default_factory=list)
    overrides: dict[str, str] = field(default_factory=dict)
    jvm_flags: tuple[str, ...] = ()

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "kafka-data"

    @property
    def logs(self) -> Path:
        return self.data_dir / "logs"

    @property
    def config_path(self) -> Path:
        return self.data_dir / "server.properties"

    def properties(self, replicas: int = 1) -> dict[str, str]:
        listeners = [f"PLAINTEXT://{self.host}:{self.port}"]
        listeners += [f"{tls.name}://{self.host}:{tls.port}" for tls in self.tls]
        internal = min(replicas, 3)
        props = {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            "controller.quorum.voters": self.voters or f"{self.node_id}@{self.host}:{self.controller_port}",
            "listeners": ",".join([*listeners, f"CONTROLLER://{self.host}:{self.controller_port}"]),
            "advertised.listeners": ",".join(listeners),
            "inter.broker.listener.name": "PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map":
                "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_SSL:SASL_SSL",
            "log.dirs": str(self.log_dir),
            "num.partitions": "1",
            "default.replication.factor": str(internal),
            "min.insync.replicas": str(max(1, internal - 1)),
            "offsets.topic.replication.factor": str(internal),
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.replication.factor": str(internal),
            "transaction.state.log.min.isr": str(max(1, internal - 1)),
            "transaction.state.log.num.partitions": "1",
            "share.coordinator.state.topic.replication.factor": str(internal),
            "share.coordinator.state.topic.min.isr": str(max(1, internal - 1)),
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "false",
            # A 2-core laptop: few threads, a small cleaner buffer.
            "num.network.threads": "2",
            "num.io.threads": "2",
            "background.threads": "2",
            "num.replica.fetchers": "1",
            "group.coordinator.threads": "1",
            "share.coordinator.threads": "1",
            "num.recovery.threads.per.data.dir": "1",
            "log.cleaner.threads": "1",
            "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),
            "log.cleaner.backoff.ms": "1000",
            "log.retention.check.interval.ms": "30000",
            # Consumers that died without leaving are dropped after their session timeout;
            # allow the short ones tests and the embedded stack use.
            "group.min.session.timeout.ms": "1000",
            # A node restarted after kill -9 registers again only once its old session is over
            # (9 s by default, counted from the controller's start): the heartbeat goes to a
            # controller on loopback, often in the same process, so 2 s are four heartbeats.
            "broker.session.timeout.ms": "2000",
            "broker.heartbeat.interval.ms": "500",
        }
        for tls in self.tls:
            prefix = f"listener.name.{tls.name.lower()}."
            props[prefix + "ssl.keystore.type"] = "PEM"
            props[prefix + "ssl.keystore.location"] = str(tls.keystore_pem)
            if tls.sasl_users:
                users = " ".join(f'user_{u}="{p}"' for u, p in tls.sasl_users.items())
                admin_user, admin_pass = next(iter(tls.sasl_users.items()))
                props["sasl.enabled.mechanisms"] = "PLAIN"
                props[prefix + "plain.sasl.jaas.config"] = (
                    "org.apache.kafka.common.security.plain.PlainLoginModule required "
                    f'username="{admin_user}" password="{admin_pass}" {users};')
        props.update(self.overrides)
        return props

    def write_config(self, replicas: int = 1) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        body = "".join(f"{k}={v}\n" for k, v in self.properties(replicas).items())
        self.config_path.write_text("# written by instore.embedded.kafka at every start\n" + body)
        return self.config_path

    def formatted(self) -> bool:
        return (self.log_dir / "meta.properties").exists()

    def java_argv(self, java: str, libs_dir: Path, main: str) -> list[str]:
        archive = class_archive(libs_dir, java)
        recording = any(f.startswith("-XX:ArchiveClassesAtExit") for f in self.jvm_flags)
        cds = [f"-XX:SharedArchiveFile={archive}"] if archive.exists() and not recording else []
        return [
            java, *self.jvm_flags, *cds, f"-Xms{min(self.heap_mb, 256)}m", f"-Xmx{self.heap_mb}m",
            "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={LOG4J2_CONFIG}", f"-Dkafka.logs.dir={self.logs}",
            "-cp", f"{libs_dir}/*", main,
        ]

    def format_argv(self, java: str, libs_dir: Path, cluster_id: str) -> list[str]:
        return [*self.java_argv(java, libs_dir, "kafka.tools.StorageTool"),
                "format", "-t", cluster_id, "-c", str(self.config_path), "--ignore-formatted"]

    def argv(self, java: str, libs_dir: Path) -> list[str]:
        return [*self.java_argv(java, libs_dir, "kafka.Kafka"), str(self.config_path)]


def cluster_nodes(root: Path, ports: Sequence[tuple[int, int]], *, heap_mb: int = 512,
                  host: str = "127.0.0.1") -> list[KafkaNode]:
    """One node per (port, controller port) under ``root/node-<id>``, one static quorum."""
    voters = ",".join(f"{i}@{host}:{cport}" for i, (_p, cport) in enumerate(ports, start=1))
    return [KafkaNode(i, port, cport, root / f"node-{i}", voters=voters, host=host, heap_mb=heap_mb)
            for i, (port, cport) in enumerate(ports, start=1)]


def cluster_id_of(root: Path) -> str:
    """The cluster id kept in ``root/cluster.id`` (made once; every node is formatted with it)."""
    path = root / "cluster.id"
    if path.exists():
        return path.read_text().strip()
    root.mkdir(parents=True, exist_ok=True)
    cid = new_cluster_id()
    path.write_text(cid)
    return cid


def prepare(nodes: Sequence[KafkaNode], root: Path, java: str, libs_dir: Path) -> None:
    """Write every node's config and format the storage of those never formatted (in parallel)."""
    cid = cluster_id_of(root)
    replicas = len(nodes)
    procs = []
    for node in nodes:
        node.write_config(replicas)
        if not node.formatted():
            procs.append((node, subprocess.Popen(node.format_argv(java, libs_dir, cid),
                                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT)))
    for node, proc in procs:
        out, _ = proc.communicate(timeout=120)
        if proc.returncode != 0:
            text = out.decode(errors="replace").strip().splitlines()[-5:]
            msg = f"formatting Kafka storage of node {node.node_id} failed: {' | '.join(text)}"
            raise BrokerSetupError(msg)


# --- readiness and facts -------------------------------------------------------------------

def _quiet_client(bootstrap: str) -> dict[str, Any]:
    """A librdkafka client of the broker's own checks: its log lines go to Python logging, and
    none while the broker is still coming up."""
    return {"bootstrap.servers": bootstrap, "logger": logging.getLogger("librdkafka"),
            "log_level": 0}


def metadata_ready(bootstrap: str, brokers: int = 1, timeout_s: float = 60.0,
                   alive: Callable[[], bool] | None = None, **client: object) -> None:
    """Wait until a metadata request to ``bootstrap`` lists ``brokers`` brokers."""
    from confluent_kafka import KafkaException  # noqa: PLC0415
    from confluent_kafka.admin import AdminClient  # noqa: PLC0415

    admin = AdminClient(_quiet_client(bootstrap) | client)
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            msg = f"the Kafka broker at {bootstrap} exited while starting"
            raise BrokerSetupError(msg)
        try:
            md = admin.list_topics(timeout=1)
            if len(md.brokers) >= brokers:
                return
            last = f"{len(md.brokers)} of {brokers} brokers registered"
        except KafkaException as exc:
            last = str(exc)
        time.sleep(0.1)
    msg = f"the Kafka broker at {bootstrap} did not answer a metadata request in {timeout_s:.0f}s ({last})"
    raise BrokerSetupError(msg)


def disk_used(path: Path) -> int:
    """Bytes under ``path`` (0 when it does not exist)."""
    if not path.exists():
        return 0
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# --- a broker (or cluster) owned by one process: tests and benchmarks ----------------------

class EmbeddedKafka:
    """Start, stop, kill and restart embedded nodes from Python (pytest fixtures, benchmarks).

    ``instore up`` runs the same nodes under its supervisor instead (``instore.embedded``).
    Everything lives under ``root``: a second ``EmbeddedKafka`` on the same root and ports finds
    the records, topics and offsets of the first. ``jvm_flags`` go to every node's JVM (the
    tests give ``QUICK_START``).
    """

    def __init__(self, root: Path, *, brokers: int = 1,
                 ports: Sequence[tuple[int, int]] | None = None, heap_mb: int = 384,
                 libs_dir: Path | None = None, java_home: Path | None = None,
                 overrides: Mapping[str, str] | None = None,
                 tls: Sequence[TlsListener] = (), jvm_flags: Sequence[str] = ()) -> None:
        from instore.embedded import free_port  # noqa: PLC0415

        self.root = root
        ports = list(ports or [(free_port(), free_port()) for _ in range(brokers)])
        self.nodes = cluster_nodes(root, ports, heap_mb=heap_mb)
        for node in self.nodes:
            node.overrides.update(overrides or {})
            node.jvm_flags = tuple(jvm_flags)
        if tls:
            self.nodes[0].tls = list(tls)
        self.libs_dir = require_installed(libs_dir or default_libs_dir())
        self.java = java_binary(java_home)
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def bootstrap(self) -> str:
        return ",".join(node.bootstrap for node in self.nodes)

    def node(self, node_id: int) -> KafkaNode:
        return self.nodes[node_id - 1]

    def running(self, node_id: int) -> bool:
        proc = self.procs.get(node_id)
        return proc is not None and proc.poll() is None

    def start(self, timeout_s: float = 120.0) -> EmbeddedKafka:
        """Start every node that is not running and wait until all are registered."""
        prepare(self.nodes, self.root, self.java, self.libs_dir)
        for node in self.nodes:
            if not self.running(node.node_id):
                self._spawn(node)
        self.wait_ready(timeout_s)
        return self

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        live = [n for n in self.nodes if self.running(n.node_id)]
        metadata_ready(",".join(n.bootstrap for n in live), brokers=len(live), timeout_s=timeout_s,
                       alive=lambda: all(self.running(n.node_id) for n in live))

    def start_node(self, node_id: int, timeout_s: float = 120.0) -> None:
        node = self.node(node_id)
        self._spawn(node)
        metadata_ready(node.bootstrap, brokers=len(self.nodes), timeout_s=timeout_s,
                       alive=lambda: self.running(node_id))

    def _spawn(self, node: KafkaNode) -> None:
        node.logs.mkdir(parents=True, exist_ok=True)
        with (node.logs / "stdout.log").open("ab") as out:
            self.procs[node.node_id] = subprocess.Popen(
                node.argv(self.java, self.libs_dir), stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True)

    def stop(self, node_id: int | None = None, timeout_s: float = 30.0) -> None:
        """SIGTERM (a clean shutdown), then SIGKILL after ``timeout_s``."""
        from instore.embedded import _terminate  # noqa: PLC0415

        for nid in [node_id] if node_id else list(self.procs):
            if nid in self.procs:
                _terminate([self.procs[nid]], timeout_s)

    def kill(self, node_id: int) -> None:
        """kill -9 one node (no clean shutdown)."""
        proc = self.procs.get(node_id)
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)

    def __enter__(self) -> EmbeddedKafka:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
