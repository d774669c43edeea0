"""The faults of `instore bench soak --faults`: SIGKILL a service (or, on a cluster, the node
leading partition 0 of customers_locations), then measure how long until the path it broke
works end to end again: a probe position comes back as a NEARBY row (worker, broker), a canary
offer reaches its subscriber through the sink and the hub (sink, Redis, broker), the API answers
/healthz (API)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
from confluent_kafka import OFFSET_END, KafkaException, TopicPartition

from bench.soak_listeners import CANARY, Subscribers
from instore import topics as t
from instore.embedded import Stack, port_open
from instore.kafka import make_admin, make_consumer, make_producer, produce
from instore.records import CustomerLocation, Offer, now_ms
from instore.settings import Settings

FAULTS = ("worker", "sink", "redis", "api", "broker")
# On a cluster (brokers > 1) the broker fault is "leader": kill -9 the node that leads
# partition 0 of customers_locations (the supervisor restarts it on its data).
CLUSTER_FAULTS = ("worker", "sink", "redis", "api", "leader")
Progress = Callable[[str], None]


class Faults:
    """Kills services and measures how long until the broken path works end to end again."""

    def __init__(self, settings: Settings, stack: Stack, subscribers: Subscribers,
                 probe_product: Any, progress: Progress) -> None:
        self.settings, self.stack, self.subs = settings, stack, subscribers
        self.product = probe_product
        self.progress = progress
        self.injected: list[dict[str, Any]] = []
        self.killed_wall: dict[str, float] = {}
        self.resolved: dict[str, str] = {}
        self.producer = make_producer(settings)

    def service_of(self, name: str) -> str:
        """The supervised service a fault hits ("leader": the node leading partition 0 of
        customers_locations, found with a metadata request when the fault is injected)."""
        if name != "leader":
            return name
        if name not in self.resolved:
            md = make_admin(self.settings).list_topics(t.CUSTOMERS_LOCATIONS.name, timeout=10)
            leader = md.topics[t.CUSTOMERS_LOCATIONS.name].partitions[0].leader
            self.resolved[name] = f"broker-{leader}"
        return self.resolved[name]

    def kill(self, name: str) -> None:
        service = self.service_of(name)
        running = self.stack.services[service]
        self.killed_wall[name] = time.time()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(running.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            running.proc.wait(10)  # dead before the recovery clock looks for it back
        self.progress(f"fault: SIGKILL {name} = {service} (pid {running.proc.pid})")

    def worker_phases(self) -> dict[str, float]:
        """Seconds from the worker's kill to each step of its successor's start, from the
        worker log (the soak runs it at log level info): spawned (its first line), joining,
        joined, ready (Faust's "Worker ready")."""
        running = self.stack.services["worker"]
        killed = self.killed_wall.get("worker")
        if killed is None or running.log_path is None or not running.log_path.exists():
            return {}
        marks = {"spawned": "", "joining": "(Re-)joining group", "joined": "Joined group",
                 "ready": "Worker ready"}
        tag = f"] [{running.proc.pid}] ["
        out: dict[str, float] = {}
        for line in running.log_path.read_text(errors="replace").splitlines():
            if tag not in line or not line.startswith("["):
                continue
            try:
                stamp = time.mktime(time.strptime(line[1:20], "%Y-%m-%d %H:%M:%S"))
                stamp += int(line[21:24]) / 1000
            except ValueError:
                continue
            for key, needle in marks.items():
                if key not in out and needle in line:
                    out[key] = round(stamp - killed, 2)
        return out

    def _service_back(self, name: str) -> bool:
        running = self.stack.services[self.service_of(name)]
        if running.proc.poll() is not None:
            return False
        spec = running.spec
        return spec.port is None or port_open(spec.host, spec.port)

    def _worker_ok(self, deadline: float) -> bool:
        """A position with a uid never used before comes back as a NEARBY row."""
        uid = f"probe-{uuid.uuid4().hex[:12]}"
        while time.monotonic() < deadline:
            try:  # the topics may not be back yet just after a broker restart
                return self._probe(uid, deadline)
            except (KeyError, KafkaException):
                time.sleep(0.5)
        return False

    def _probe(self, uid: str, deadline: float) -> bool:
        consumer = make_consumer(self.settings)
        try:
            parts = consumer.list_topics(timeout=5).topics[t.NEARBY_CUSTOMERS.name].partitions
            # From the end: the uid is new, so no older row can match (and probes repeat).
            consumer.assign([TopicPartition(t.NEARBY_CUSTOMERS.name, p, OFFSET_END)
                             for p in parts])
            key = uid.encode()
            while time.monotonic() < deadline:
                produce(self.producer, t.CUSTOMERS_LOCATIONS, CustomerLocation(
                    uid=uid, store_id=self.product.store_id, latitude=self.product.latitude,
                    longitude=self.product.longitude, ts=now_ms()))
                self.producer.flush(5)
                until = time.monotonic() + 1.0
                while time.monotonic() < until:
                    for msg in consumer.consume(5000, 0.1):
                        if msg.error() is None and msg.key() == key:
                            return True
            return False
        finally:
            consumer.close()

    def _push_ok(self, deadline: float) -> bool:
        offer_id = f"canary-{uuid.uuid4().hex[:16]}"
        ts = now_ms()
        offer = Offer(offer_id=offer_id, uid=CANARY, store_id=self.product.store_id, pid="canary",
                      sku=self.product.sku, title="canary", discount_pct=1, distance_ft=1.0,
                      ts=ts, expires_at=ts + 600_000)
        while time.monotonic() < deadline:
            produce(self.producer, t.OFFERS, offer)
            self.producer.flush(5)
            until = time.monotonic() + 3
            while time.monotonic() < until:
                if offer_id in self.subs.canary:
                    return True
                time.sleep(0.1)
        return False

    def _api_ok(self, deadline: float) -> bool:
        url = f"http://{self.settings.host}:{self.settings.api_port}/healthz"
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=2).status_code == 200:
                    return True
            time.sleep(0.2)
        return False

    def recover(self, name: str, killed_at: float, timeout_s: float = 120.0) -> dict[str, Any]:
        """Wait until the killed service runs again, then until each path it broke works end
        to end. ``steps``: seconds from the kill until the service was back and until each
        path worked (``rows``: a probe position came back as a NEARBY row; ``push``: a canary
        offer reached its subscriber; ``api``: the API answered)."""
        deadline = killed_at + timeout_s
        while not self._service_back(name) and time.monotonic() < deadline:
            time.sleep(0.1)
        steps = {"back": round(time.monotonic() - killed_at, 2)}
        checks_of: dict[str, list[tuple[str, Callable[[float], bool]]]] = {
            "worker": [("rows", self._worker_ok)],
            "broker": [("rows", self._worker_ok), ("push", self._push_ok)],
            "leader": [("rows", self._worker_ok), ("push", self._push_ok)],
            "sink": [("push", self._push_ok)], "redis": [("push", self._push_ok)],
            "api": [("api", self._api_ok)],
        }
        ok = True
        for step, check in checks_of[name]:
            ok = check(deadline)
            steps[step] = round(time.monotonic() - killed_at, 2)
            if not ok:
                break
        took = round(time.monotonic() - killed_at, 2)
        phases = self.worker_phases() if name == "worker" else {}
        self.progress(f"fault: {name} {'recovered' if ok else 'NOT recovered'} in {took}s "
                      f"{steps}" + (f" {phases}" if phases else ""))
        return {"service": name, "recovered": ok, "recovery_s": took, "steps": steps} | (
            {"phases": phases} if phases else {})
