"""`instore bench soak`: the embedded stack under load and faults, reconciled at the end.

A private stack on free loopback ports (the embedded Kafka broker, Redis append-only, the
Faust worker, the push hub and sink, the API), simulated shoppers walking at ``rate``
positions/s (4 in 5 opted in), and a subscriber on every shopper's channel of the local hub.
With ``faults`` it SIGKILLs (kill -9), in random order at random times, the worker, the sink,
Redis, the API and the broker (which the supervisor restarts on its data: topics, records and
committed offsets are kept), each once, one after another recovered.

Recovery of a fault = from the kill until the path it broke works end to end again: a probe
position comes back as a NEARBY row (worker, broker), a canary offer written to `offers`
reaches its subscriber through the sink and the hub (sink, Redis, broker), the API answers
/healthz (API).

At the end it stops the shoppers, waits for the worker's and the sink's lag to reach zero,
and reconciles every offer seen on the `offers` topic with what the subscribers received:
``lost`` (produced, never received), ``duplicates`` (received more than once),
``consent_violations`` (received by a shopper who never opted in). It then scans every
service's log for secrets and for uid + position lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, KafkaException, TopicPartition

from bench.channels import ChannelTasks
from bench.proximity import rss_mb
from bench.stats import percentile
from instore import groups
from instore import results as results_log
from instore import topics as t
from instore.embedded import Stack, free_port, port_open
from instore.embedded.services import child_env_for, isolated_settings, service_specs
from instore.health import consumer_lag, worker_topics
from instore.kafka import (
    ensure_topics,
    make_admin,
    make_consumer,
    make_producer,
    produce,
    wait_for_broker,
)
from instore.logscan import log_files, scan, secrets_of
from instore.records import CustomerLocation, Offer, ShopperConsent, now_ms
from instore.settings import Settings, get_settings
from mobile_push.local_hub.sse_client import SseParser
from producers.publish import publish_consents, publish_positions, publish_world, wait_for_worker
from producers.shoppers import walk_positions
from producers.world import build_world

RESULTS = Path(__file__).resolve().parent / "results" / "soak.jsonl"
SERVICES = ("broker", "redis", "worker", "hub", "sink", "api")
FAULTS = ("worker", "sink", "redis", "api", "broker")
# On a cluster (brokers > 1) the broker fault is "leader": kill -9 the node that leads
# partition 0 of customers_locations (the supervisor restarts it on its data).
CLUSTER_FAULTS = ("worker", "sink", "redis", "api", "leader")
CANARY = "canary-00001"
Progress = Callable[[str], None]


def start_soak_stack(settings: Settings, data_dir: Path, progress: Progress) -> Stack:
    env = child_env_for(settings, INSTORE_DATA_DIR=str(data_dir / "worker"),
                        WORKER_WEB_PORT=str(free_port()), INSTORE_ENV="development")
    stack = Stack(data_dir / "logs", env=env, on_event=lambda m: progress(f"stack: {m}"))
    try:
        topics_ready = False
        for spec in service_specs(settings, data_dir):
            base = spec.name.split("-")[0]
            if base not in SERVICES:
                continue
            if spec.name == "worker":  # its log then says when a restarted worker joined
                spec.argv = [*spec.argv, "--loglevel", "info"]
            if base not in ("broker", "redis") and not topics_ready:
                wait_for_broker(settings, timeout_s=120)
                ensure_topics(settings)
                topics_ready = True
            stack.start(spec)
    except BaseException:
        stack.stop()
        raise
    return stack


class Subscribers(ChannelTasks):
    """SSE subscribers on every shopper channel of the hub, in one asyncio thread; they
    reconnect if a stream drops. Records every (offer_id, channel uid) received."""

    def __init__(self, base: str, uids: list[str], token: str) -> None:
        self.base, self.uids, self.token = base, uids, token
        self.received: Counter[tuple[str, str]] = Counter()
        self.canary: dict[str, float] = {}
        self.attached: set[str] = set()
        self.reconnects = 0
        super().__init__(uids, "soak-subscribers")

    async def subscribe(self, client: httpx.AsyncClient, uid: str) -> None:
        url = f"{self.base}/channels/shopper:{uid}/stream"
        last_id: str | None = None
        while True:
            headers = {"Last-Event-ID": last_id} if last_id else {}
            try:
                async with client.stream("GET", url, params={"accessToken": self.token},
                                         headers=headers) as resp:
                    resp.raise_for_status()
                    parser = SseParser()
                    async for line in resp.aiter_lines():
                        if (ev := parser.feed(line)) is None:
                            continue
                        if ev.event == "attached":
                            self.attached.add(uid)
                        elif ev.event == "message":
                            self._message(uid, json.loads(ev.data))
                            last_id = ev.id or last_id
            except (httpx.HTTPError, OSError):
                pass
            self.reconnects += 1
            await asyncio.sleep(0.5)

    def _message(self, uid: str, msg: dict[str, Any]) -> None:
        offer_id = str(msg.get("id"))
        if uid == CANARY:
            self.canary.setdefault(offer_id, time.monotonic())
            return
        self.received[(offer_id, uid)] += 1


class OffersTail:
    """Every offer written to `offers` (the policy's output), across broker restarts."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.produced: dict[str, str] = {}
        self.last_new = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="soak-offers")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        consumer = make_consumer(self.settings, None,
                                 **{"topic.metadata.refresh.interval.ms": 2000})
        parts = t.partitions_of(t.OFFERS, self.settings.kafka_partitions)
        consumer.assign([TopicPartition(t.OFFERS.name, p, OFFSET_BEGINNING) for p in range(parts)])
        next_offset = dict.fromkeys(range(parts), 0)
        next_check = time.monotonic() + 2
        try:
            while not self._stop.is_set():
                for msg in consumer.consume(2000, 0.2):
                    if msg.error() is not None:
                        continue
                    partition, offset = msg.partition(), msg.offset()
                    assert partition is not None and offset is not None  # a consumed record
                    next_offset[partition] = offset + 1
                    value = msg.value()
                    if not value:
                        continue
                    with contextlib.suppress(ValueError):
                        offer = orjson.loads(value)
                        if offer["uid"] != CANARY and offer["offer_id"] not in self.produced:
                            self.produced[offer["offer_id"]] = offer["uid"]
                            self.last_new = time.monotonic()
                if time.monotonic() >= next_check:
                    next_check = time.monotonic() + 2
                    self._follow_recreated(consumer, next_offset)
        finally:
            consumer.close()

    @staticmethod
    def _follow_recreated(consumer: Any, next_offset: dict[int, int]) -> None:
        """After a broker restart the topic starts again at offset 0: read it from there."""
        for p, want in list(next_offset.items()):
            try:
                _low, high = consumer.get_watermark_offsets(TopicPartition(t.OFFERS.name, p),
                                                            timeout=2, cached=False)
            except KafkaException:
                continue
            if high < want:  # re-read everything: offers are counted once per offer_id
                consumer.assign([TopicPartition(t.OFFERS.name, q, OFFSET_BEGINNING)
                                 for q in next_offset])
                for q in next_offset:
                    next_offset[q] = 0
                return


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
        deadline = killed_at + timeout_s
        while not self._service_back(name) and time.monotonic() < deadline:
            time.sleep(0.1)
        checks_of: dict[str, list[Callable[[float], bool]]] = {
            "worker": [self._worker_ok], "broker": [self._worker_ok, self._push_ok],
            "leader": [self._worker_ok, self._push_ok],
            "sink": [self._push_ok], "redis": [self._push_ok], "api": [self._api_ok],
        }
        checks = checks_of[name]
        ok = all(check(deadline) for check in checks)
        took = round(time.monotonic() - killed_at, 2)
        phases = self.worker_phases() if name == "worker" else {}
        self.progress(f"fault: {name} {'recovered' if ok else 'NOT recovered'} in {took}s"
                      + (f" {phases}" if phases else ""))
        return {"service": name, "recovered": ok, "recovery_s": took} | (
            {"phases": phases} if phases else {})


def run(*, minutes: float = 3.0, rate: float = 200.0, faults: bool = False, seed: int = 7,
        progress: Progress = lambda m: None, keep_dir: bool = False,
        drain_max_s: float = 120.0, results: Path = RESULTS, brokers: int = 1,
        only_faults: tuple[str, ...] | None = None) -> dict[str, Any]:
    """``brokers`` embedded Kafka nodes (3: replication factor 3, min.insync.replicas 2);
    ``only_faults`` narrows the faults to inject (of FAULTS, or CLUSTER_FAULTS on a cluster)."""
    settings = isolated_settings(get_settings(), dwell_s=2.0, cooldown_s=900.0, cap_per_hour=50,
                                 kafka_partitions=4, kafka_brokers=brokers,
                                 kafka_replication_factor=min(brokers, 3))
    data_dir = Path(tempfile.mkdtemp(prefix="instore-soak-"))
    rng = random.Random(seed)
    shoppers = max(10, int(rate / 2))
    world = build_world(stores=2, products=300, promoted=24, seed=seed)
    uids = [f"shopper-{i + 1:05d}" for i in range(shoppers)]
    opted = {u for i, u in enumerate(uids) if i % 5 != 4}
    progress(f"data dir {data_dir}; {shoppers} shoppers at {rate:.0f} positions/s for "
             f"{minutes} min, faults {'on' if faults else 'off'}")
    stack = start_soak_stack(settings, data_dir, progress)
    stop = threading.Event()
    subs: Subscribers | None = None
    tail: OffersTail | None = None
    sent = Counter[str]()
    fault_log: list[dict[str, Any]] = []
    injected: list[str] = []
    broker_rss: float | None = None
    started = time.monotonic()
    try:
        producer = make_producer(settings)
        publish_world(producer, world.products, world.promotions)
        publish_consents(producer, sorted(opted))
        produce(producer, t.SHOPPER_CONSENTS, ShopperConsent(uid=CANARY, opted_in=True,
                                                             updated_at=now_ms()))
        producer.flush(10)
        promoted = next(p for p in world.products if p.sku == world.promotions[0].sku)
        if not wait_for_worker(settings, promoted, 180):
            progress("the worker has not answered after 180 s; soaking anyway")

        from mobile_push.local_hub.tokens import ApiKey, TokenAuthority  # noqa: PLC0415

        key = ApiKey.parse(settings.ably_key)
        token = TokenAuthority([key]).issue(key, {"shopper:*": frozenset({"subscribe"})},
                                            "soak", 3 * 3_600_000, now_ms())["token"]
        subs = Subscribers(f"http://{settings.host}:{settings.hub_port}", [*uids, CANARY], token)
        subs.start()
        deadline = time.monotonic() + 60
        while len(subs.attached) < len(subs.uids) and time.monotonic() < deadline:
            time.sleep(0.2)
        progress(f"{len(subs.attached)}/{len(subs.uids)} subscribers attached")
        tail = OffersTail(settings)
        tail.start()

        run_s = minutes * 60
        end = time.monotonic() + run_s
        # Enough shelf stops to keep every shopper walking for the whole run (a stop is at
        # least 5 s); the walks are planned up front, so not more (10,000 stops x 1,000
        # shoppers took minutes and gigabytes before the first position).
        walks = walk_positions(world, shoppers=shoppers, hz=2.0, seed=seed, stagger_s=5.0,
                               visits=int(run_s / 5) + 5, start_anywhere=True)
        sender = threading.Thread(target=publish_positions, args=(make_producer(settings), walks),
                                  kwargs={"realtime": True,
                                          "stop": stop.is_set,
                                          "on_sent": lambda _p: sent.update(positions=1)},
                                  daemon=True)
        sender.start()

        injector = Faults(settings, stack, subs, promoted, progress)
        plan: list[str] = []
        if faults:
            plan = list(only_faults or (FAULTS if brokers == 1 else CLUSTER_FAULTS))
            rng.shuffle(plan)
        gap = run_s * 0.8 / max(1, len(plan))
        next_at = time.monotonic() + min(20.0, run_s * 0.1)
        recovering: threading.Thread | None = None
        last_report = time.monotonic()
        while time.monotonic() < end or plan or (recovering is not None
                                                 and recovering.is_alive()):
            stack.supervise_once()
            if plan and time.monotonic() >= next_at and (recovering is None
                                                         or not recovering.is_alive()):
                name = plan.pop(0)
                killed_at = time.monotonic()
                injector.kill(name)
                injected.append(name)

                def _measure(name: str = name, killed_at: float = killed_at) -> None:
                    try:
                        fault_log.append(injector.recover(name, killed_at))
                    except Exception as exc:  # noqa: BLE001 - a probe that broke is a failure
                        progress(f"fault: {name} recovery probe failed: {exc!r}")
                        fault_log.append({"service": name, "recovered": False,
                                          "recovery_s": round(time.monotonic() - killed_at, 2)})

                recovering = threading.Thread(target=_measure, daemon=True)
                recovering.start()
                next_at = killed_at + gap * rng.uniform(0.7, 1.3)
            if time.monotonic() - last_report > 15:
                last_report = time.monotonic()
                left = max(0.0, end - time.monotonic())
                progress(f"{sent['positions']:,} positions, {len(tail.produced)} offers produced, "
                         f"{sum(subs.received.values())} received; walking {left:,.0f} s more")
            time.sleep(0.2)
        stop.set()
        sender.join(10)
        progress("shoppers stopped; waiting for the pipeline to drain")
        lag = _drain(settings, stack, tail, subs, drain_max_s)
        status = stack.status()
        broker_rss = rss_mb(stack, "broker")
    finally:
        stop.set()
        if tail is not None:
            tail.stop()
        if subs is not None:
            subs.stop()
        stack.stop()
    produced = dict(tail.produced) if tail else {}
    received = subs.received if subs else Counter()
    got_ids = Counter[str]()
    for (offer_id, _uid), n in received.items():
        got_ids[offer_id] += n
    lost = sorted(set(produced) - set(got_ids))
    violations = sum(1 for (_oid, uid) in received if uid not in opted)
    recoveries = [f["recovery_s"] for f in fault_log]
    secrets = secrets_of(settings) | {"subscriber token": token} if subs else secrets_of(settings)
    logs = scan(log_files(data_dir / "logs"), secrets, [*uids, CANARY])
    fig: dict[str, Any] = {
        "bench": "soak", "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "minutes": minutes, "rate": rate, "shoppers": shoppers,
        "positions_sent": sent["positions"],
        "positions_per_s": round(sent["positions"] / max(1.0, minutes * 60), 1),
        "offers_produced": len(produced), "offers_received": len(got_ids),
        "lost": len(lost), "duplicates": sum(n - 1 for n in got_ids.values() if n > 1),
        "consent_violations": violations,
        "faults_injected": len(injected),
        "faults": [f"{f['service']}:{f['recovery_s']}s{'' if f['recovered'] else ' NOT'}"
                   for f in fault_log],
        "worker_restart_phases_s": next((f["phases"] for f in fault_log
                                         if f["service"] == "worker" and "phases" in f), None),
        "faults_recovered": sum(1 for f in fault_log if f["recovered"]),
        "recovery_p99_s": percentile(recoveries, 0.99, 2),
        "recovery_max_s": max(recoveries) if recoveries else None,
        "services_back": all(s["state"] == "running" for s in status),
        "restarts": {str(s["name"]): s["restarts"] for s in status if s["restarts"]},
        "final_lag": lag, "subscriber_reconnects": subs.reconnects if subs else 0,
        "log_lines_scanned": logs.lines, "log_leaks": len(logs.findings),
        "log_leak_kinds": sorted({f"{f.kind}:{Path(f.path).name}" for f in logs.findings}),
        "wall_s": round(time.monotonic() - started, 1), "cpus": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2), "brokers": brokers,
        "broker_rss_mb": broker_rss,
    }
    if lost:
        fig["lost_sample"] = lost[:5]
    fig = results_log.append("soak", fig, path=results)
    if not keep_dir:
        import shutil  # noqa: PLC0415

        shutil.rmtree(data_dir, ignore_errors=True)
    else:
        fig["data_dir"] = str(data_dir)
    return fig


def _drain(settings: Settings, stack: Stack, tail: OffersTail, subs: Subscribers,
           max_s: float = 120.0) -> dict[str, int]:
    """Until the worker's and the sink's lag are zero and nothing new arrives for 5 s."""
    deadline = time.monotonic() + max_s
    lag: dict[str, int] = {}
    last_received = sum(subs.received.values())
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        stack.supervise_once()
        try:
            lag = consumer_lag(settings, groups.worker(settings), worker_topics(settings))
            lag |= {f"sink:{k}": v for k, v in consumer_lag(settings, groups.PUSH_SINK,
                                                             [t.OFFERS.name]).items()}
        except Exception:  # noqa: BLE001 - a broker that is still coming back
            lag = {"unknown": -1}
        received = sum(subs.received.values())
        if received != last_received:
            last_received, quiet_since = received, time.monotonic()
        idle = time.monotonic() - max(quiet_since, tail.last_new)
        if lag and all(v == 0 for v in lag.values()) and idle > 5:
            break
        time.sleep(1.0)
    return lag
