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
/healthz (API). The faults and their probes are in ``bench.soak_faults``; the subscribers and
the tail of `offers` in ``bench.soak_listeners``.

At the end it stops the shoppers, waits for the worker's and the sink's lag to reach zero,
and reconciles every offer seen on the `offers` topic with what the subscribers received:
``lost`` (produced, never received), ``duplicates`` (received more than once),
``consent_violations`` (received by a shopper who never opted in). It then scans every
service's log for secrets and for uid + position lines.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.processes import rss_mb
from bench.soak_faults import CLUSTER_FAULTS, FAULTS, Faults
from bench.soak_listeners import CANARY, OffersTail, Subscribers
from bench.stats import percentile
from instore import groups
from instore import results as results_log
from instore import topics as t
from instore.embedded import Stack, free_port
from instore.embedded.services import (
    child_env_for,
    isolated_settings,
    service_specs,
    wait_for_nodes,
)
from instore.health import consumer_lag, worker_topics
from instore.kafka import ensure_topics, make_producer, produce
from instore.logscan import ScanReport, log_files, scan, secrets_of
from instore.records import ShopperConsent, StoreProduct, now_ms
from instore.settings import Settings, get_settings
from producers.publish import publish_consents, publish_positions, publish_world, wait_for_worker
from producers.shoppers import walk_positions
from producers.world import build_world

SERVICES = ("broker", "redis", "worker", "hub", "sink", "api")
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
                wait_for_nodes(settings, data_dir, stack)
                ensure_topics(settings)
                topics_ready = True
            stack.start(spec)
    except BaseException:
        stack.stop()
        raise
    return stack


def run(*, minutes: float = 3.0, rate: float = 200.0, faults: bool = False, seed: int = 7,
        progress: Progress = lambda m: None, keep_dir: bool = False,
        drain_max_s: float = 120.0, results: Path | None = None, brokers: int = 1,
        only_faults: tuple[str, ...] | None = None) -> dict[str, Any]:
    """``brokers`` embedded Kafka nodes (3: replication factor 3, min.insync.replicas 2);
    ``only_faults`` narrows the faults to inject (of FAULTS, or CLUSTER_FAULTS on a cluster)."""
    soak = SoakRun(minutes=minutes, rate=rate, faults=faults, seed=seed, progress=progress,
                   brokers=brokers, only_faults=only_faults)
    fig = results_log.append("soak", soak.run(drain_max_s), path=results)
    if not keep_dir:
        shutil.rmtree(soak.data_dir, ignore_errors=True)
    else:
        fig["data_dir"] = str(soak.data_dir)
    return fig


class SoakRun:
    """One soak: its settings, world and shoppers, what it started, and what it saw."""

    def __init__(self, *, minutes: float, rate: float, faults: bool, seed: int,
                 progress: Progress, brokers: int, only_faults: tuple[str, ...] | None) -> None:
        self.minutes, self.rate, self.faults, self.seed = minutes, rate, faults, seed
        self.progress, self.brokers, self.only_faults = progress, brokers, only_faults
        self.settings = isolated_settings(get_settings(), dwell_s=2.0, cooldown_s=900.0,
                                          cap_per_hour=50, kafka_partitions=4,
                                          kafka_brokers=brokers,
                                          kafka_replication_factor=min(brokers, 3))
        self.data_dir = Path(tempfile.mkdtemp(prefix="instore-soak-"))
        self.rng = random.Random(seed)
        self.shoppers = max(10, int(rate / 2))
        self.world = build_world(stores=2, products=300, promoted=24, seed=seed)
        self.uids = [f"shopper-{i + 1:05d}" for i in range(self.shoppers)]
        self.opted = {u for i, u in enumerate(self.uids) if i % 5 != 4}
        self.stop = threading.Event()
        self.subs: Subscribers | None = None
        self.tail: OffersTail | None = None
        self.token = ""
        self.sent = Counter[str]()
        self.fault_log: list[dict[str, Any]] = []
        self.injected: list[str] = []

    def run(self, drain_max_s: float) -> dict[str, Any]:
        """Start the stack, walk the shoppers (with the faults), drain, stop; the figures."""
        self.progress(f"data dir {self.data_dir}; {self.shoppers} shoppers at {self.rate:.0f} "
                      f"positions/s for {self.minutes} min, faults {'on' if self.faults else 'off'}")
        stack = start_soak_stack(self.settings, self.data_dir, self.progress)
        started = time.monotonic()
        try:
            promoted = self._seed_topics()
            subs, tail = self._listen()
            run_s = self.minutes * 60
            end = time.monotonic() + run_s
            sender = self._walk(run_s)
            injector = Faults(self.settings, stack, subs, promoted, self.progress)
            self._walk_with_faults(stack, injector, self._fault_plan(), run_s, end)
            self.stop.set()
            sender.join(10)
            self.progress("shoppers stopped; waiting for the pipeline to drain")
            lag = _drain(self.settings, stack, tail, subs, drain_max_s)
            status = stack.status()
            broker_rss = rss_mb(stack, "broker")
        finally:
            self._close(stack)
        return self._figures(lag, status, broker_rss, started)

    def _seed_topics(self) -> StoreProduct:
        """The catalog, the consents (the canary's too); returns the promoted product the
        worker is probed with."""
        producer = make_producer(self.settings)
        publish_world(producer, self.world.products, self.world.promotions)
        publish_consents(producer, sorted(self.opted))
        produce(producer, t.SHOPPER_CONSENTS, ShopperConsent(uid=CANARY, opted_in=True,
                                                             updated_at=now_ms()))
        producer.flush(10)
        promoted = next(p for p in self.world.products if p.sku == self.world.promotions[0].sku)
        if not wait_for_worker(self.settings, promoted, 180):
            self.progress("the worker has not answered after 180 s; soaking anyway")
        return promoted

    def _listen(self) -> tuple[Subscribers, OffersTail]:
        """A subscriber on every shopper's channel (and the canary's), then the tail of
        `offers`."""
        from mobile_push.local_hub.tokens import ApiKey, TokenAuthority  # noqa: PLC0415

        key = ApiKey.parse(self.settings.ably_key)
        self.token = TokenAuthority([key]).issue(key, {"shopper:*": frozenset({"subscribe"})},
                                                 "soak", 3 * 3_600_000, now_ms())["token"]
        self.subs = subs = Subscribers(f"http://{self.settings.host}:{self.settings.hub_port}",
                                       [*self.uids, CANARY], self.token)
        subs.start()
        deadline = time.monotonic() + 60
        while len(subs.attached) < len(subs.uids) and time.monotonic() < deadline:
            time.sleep(0.2)
        self.progress(f"{len(subs.attached)}/{len(subs.uids)} subscribers attached")
        self.tail = tail = OffersTail(self.settings)
        tail.start()
        return subs, tail

    def _walk(self, run_s: float) -> threading.Thread:
        """The shoppers' positions, in real time, from a thread (until ``stop``)."""
        # Enough shelf stops to keep every shopper walking for the whole run (a stop is at
        # least 5 s); the walks are planned up front, so not more (10,000 stops x 1,000
        # shoppers took minutes and gigabytes before the first position).
        walks = walk_positions(self.world, shoppers=self.shoppers, hz=2.0, seed=self.seed,
                               stagger_s=5.0, visits=int(run_s / 5) + 5, start_anywhere=True)
        sender = threading.Thread(target=publish_positions,
                                  args=(make_producer(self.settings), walks),
                                  kwargs={"realtime": True,
                                          "stop": self.stop.is_set,
                                          "on_sent": lambda _p: self.sent.update(positions=1)},
                                  daemon=True)
        sender.start()
        return sender

    def _fault_plan(self) -> list[str]:
        if not self.faults:
            return []
        plan = list(self.only_faults or (FAULTS if self.brokers == 1 else CLUSTER_FAULTS))
        self.rng.shuffle(plan)
        return plan

    def _walk_with_faults(self, stack: Stack, injector: Faults, plan: list[str], run_s: float,
                          end: float) -> None:
        """Supervise the stack until ``end`` and every fault is injected and measured: one
        fault at a time, spread over the first 80 % of the run."""
        assert self.subs is not None and self.tail is not None
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
                self.injected.append(name)
                recovering = threading.Thread(target=self._measure,
                                              args=(injector, name, killed_at), daemon=True)
                recovering.start()
                next_at = killed_at + gap * self.rng.uniform(0.7, 1.3)
            if time.monotonic() - last_report > 15:
                last_report = time.monotonic()
                left = max(0.0, end - time.monotonic())
                self.progress(f"{self.sent['positions']:,} positions, {len(self.tail.produced)} "
                              f"offers produced, {sum(self.subs.received.values())} received; "
                              f"walking {left:,.0f} s more")
            time.sleep(0.2)

    def _measure(self, injector: Faults, name: str, killed_at: float) -> None:
        try:
            self.fault_log.append(injector.recover(name, killed_at))
        except Exception as exc:  # noqa: BLE001 - a probe that broke is a failure
            self.progress(f"fault: {name} recovery probe failed: {exc!r}")
            self.fault_log.append({"service": name, "recovered": False,
                                   "recovery_s": round(time.monotonic() - killed_at, 2)})

    def _close(self, stack: Stack) -> None:
        self.stop.set()
        if self.tail is not None:
            self.tail.stop()
        if self.subs is not None:
            self.subs.stop()
        stack.stop()

    def _scan_logs(self) -> ScanReport:
        secrets = secrets_of(self.settings)
        if self.subs:
            secrets = secrets | {"subscriber token": self.token}
        return scan(log_files(self.data_dir / "logs"), secrets, [*self.uids, CANARY])

    def _figures(self, lag: dict[str, int], status: list[dict[str, object]],
                 broker_rss: float | None, started: float) -> dict[str, Any]:
        produced = dict(self.tail.produced) if self.tail else {}
        received = self.subs.received if self.subs else Counter()
        got_ids = Counter[str]()
        for (offer_id, _uid), n in received.items():
            got_ids[offer_id] += n
        lost = sorted(set(produced) - set(got_ids))
        fault_log = self.fault_log
        recoveries = [f["recovery_s"] for f in fault_log]
        logs = self._scan_logs()
        sent = self.sent["positions"]
        fig: dict[str, Any] = {
            "bench": "soak", "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "minutes": self.minutes, "rate": self.rate, "shoppers": self.shoppers,
            "positions_sent": sent,
            "positions_per_s": round(sent / max(1.0, self.minutes * 60), 1),
            "offers_produced": len(produced), "offers_received": len(got_ids),
            "lost": len(lost), "duplicates": sum(n - 1 for n in got_ids.values() if n > 1),
            "consent_violations": sum(1 for (_oid, uid) in received if uid not in self.opted),
            "faults_injected": len(self.injected),
            "faults": [f"{f['service']}:{f['recovery_s']}s{'' if f['recovered'] else ' NOT'}"
                       for f in fault_log],
            "worker_restart_phases_s": next((f["phases"] for f in fault_log
                                             if f["service"] == "worker" and "phases" in f), None),
            "recovery_steps_s": {f["service"]: f.get("steps") for f in fault_log},
            "faults_recovered": sum(1 for f in fault_log if f["recovered"]),
            "recovery_p99_s": percentile(recoveries, 0.99, 2),
            "recovery_max_s": max(recoveries) if recoveries else None,
            "services_back": all(s["state"] == "running" for s in status),
            "restarts": {str(s["name"]): s["restarts"] for s in status if s["restarts"]},
            "final_lag": lag, "subscriber_reconnects": self.subs.reconnects if self.subs else 0,
            "log_lines_scanned": logs.lines, "log_leaks": len(logs.findings),
            "log_leak_kinds": sorted({f"{f.kind}:{Path(f.path).name}" for f in logs.findings}),
            "wall_s": round(time.monotonic() - started, 1), "cpus": os.cpu_count(),
            "load_avg_1m": round(os.getloadavg()[0], 2), "brokers": self.brokers,
            "broker_rss_mb": broker_rss,
        }
        if lost:
            fig["lost_sample"] = lost[:5]
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
