"""Where a Faust worker restart spends its time on the embedded broker (a reproduction).

A private embedded Kafka broker and Redis, one supervised `instore worker`, positions produced
continuously on a promoted product (so every position is a NEARBY_CUSTOMERS row). Then, per
case (SIGTERM, SIGKILL), it kills the worker, lets the stack's supervisor restart it (its
backoff included) and measures, from the kill:

- ``exited``: the old process is gone; ``spawned``: the supervisor started the new one;
- ``started``: the new worker's ``worker started`` log line (its Faust app is running);
- ``joined``: aiokafka's ``Joined group`` line; ``assigned``: ``Setting newly assigned
  partitions`` (the group has given it its partitions); ``ready``: Faust's ``Worker ready``;
- ``first_row``: per partition of ``customers_locations``, the first NEARBY row of a position
  produced after the new process was spawned (events flow again on that partition).

- ``fresh_partition_s``: after the first restart, once events flow again, positions start on
  the last partition, which never had any (so no committed offset): seconds to its first row.

The broker's own log (group coordinator decisions included) is under ``kafka/node-1/logs``
(``--keep`` keeps the directory).

    python -m bench.restart_phases --cases SIGTERM,SIGKILL --json

The figures are appended to ``bench/results/restart.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka.partitioner import murmur2
from confluent_kafka import OFFSET_END, TopicPartition

from instore import results
from instore import topics as t
from instore.embedded import ServiceSpec, Stack, core_specs, free_port, instore_cmd
from instore.embedded.services import child_env_for, isolated_settings
from instore.kafka import ensure_topics, make_consumer, make_producer, produce, wait_for_broker
from instore.records import CustomerLocation, Promotion, ShopperConsent, StoreProduct, now_ms
from instore.settings import Settings, get_settings

PRODUCT = StoreProduct(sku=1, store_id="s1", segment="coffee", name="Beans", latitude=51.5,
                       longitude=-0.12, country="GB")
PATTERNS = {
    "started": "worker started: agents",
    "joining": "(Re-)joining group",
    "joined": "Joined group",
    "assigned": "Setting newly assigned partitions",
    "restoring": "Restoring state from changelog topics",
    "restored": "Done reading from changelog topics",
    "ready": "Worker ready",
}


def uid_for_partition(p: int, partitions: int, prefix: str = "rp") -> str:
    return next(u for u in (f"{prefix}-{i}" for i in range(10_000))
                if (murmur2(u.encode()) & 0x7FFFFFFF) % partitions == p)


@dataclass
class LogTail:
    """Lines of a log file as they appear, with the monotonic time they were seen."""

    path: Path
    lines: list[tuple[float, str]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        threading.Thread(target=self._run, daemon=True, name="log-tail").start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self.path.exists() and not self._stop.is_set():
            time.sleep(0.02)
        with self.path.open("r", errors="replace") as f:
            buf = ""
            while not self._stop.is_set():
                chunk = f.read()
                if not chunk:
                    time.sleep(0.02)
                    continue
                buf += chunk
                *done, buf = buf.split("\n")
                now = time.monotonic()
                self.lines.extend((now, line) for line in done)

    def first(self, needle: str, after: float, pid: int | None = None) -> float | None:
        for seen, line in list(self.lines):
            if seen >= after and needle in line and (pid is None or f"[{pid}]" in line):
                return seen
        return None


class Rows:
    """NEARBY_CUSTOMERS rows as they arrive: (monotonic time, uid, position ts)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.rows: list[tuple[float, str, int]] = []
        self._stop = threading.Event()
        self._ready = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._run, daemon=True, name="rows").start()
        self._ready.wait(15)

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        c = make_consumer(self.settings)
        parts = c.list_topics(timeout=10).topics[t.NEARBY_CUSTOMERS.name].partitions
        c.assign([TopicPartition(t.NEARBY_CUSTOMERS.name, p, OFFSET_END) for p in parts])
        self._ready.set()
        try:
            while not self._stop.is_set():
                for m in c.consume(1000, 0.05):
                    value = m.value()
                    if m.error() is None and value:
                        row = orjson.loads(value)
                        self.rows.append((time.monotonic(), row["uid"], int(row["ts"])))
        finally:
            c.close()

    def first(self, uid: str, min_ts: int) -> float | None:
        for seen, u, ts in list(self.rows):
            if u == uid and ts >= min_ts:
                return seen
        return None


class Positions:
    """Positions of one uid per partition, ``hz`` per uid; partitions join via ``enable``."""

    def __init__(self, settings: Settings, uids: list[str], hz: float) -> None:
        self.settings, self.uids, self.hz = settings, uids, hz
        self.enabled: set[str] = set()
        self._stop = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._run, daemon=True, name="positions").start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        producer = make_producer(self.settings)
        while not self._stop.is_set():
            for uid in list(self.enabled):
                produce(producer, t.CUSTOMERS_LOCATIONS, CustomerLocation(
                    uid=uid, store_id=PRODUCT.store_id, latitude=PRODUCT.latitude,
                    longitude=PRODUCT.longitude, ts=now_ms()))
            producer.poll(0)
            time.sleep(1.0 / self.hz)
        producer.flush(5)


class Load:
    """Opted-in shoppers standing at the promoted product, ``rate`` positions/s in all: NEARBY
    rows and policy state (so the table's changelog grows as in the soak)."""

    def __init__(self, settings: Settings, shoppers: int, rate: float) -> None:
        self.settings, self.rate = settings, rate
        self.uids = [f"load-{i:05d}" for i in range(shoppers)]
        self._stop = threading.Event()

    def start(self) -> None:
        producer = make_producer(self.settings)
        for uid in self.uids:
            produce(producer, t.SHOPPER_CONSENTS, ShopperConsent(uid=uid, opted_in=True,
                                                                 updated_at=now_ms()))
        producer.flush(10)
        threading.Thread(target=self._run, args=(producer,), daemon=True, name="load").start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self, producer: Any) -> None:
        i = 0
        tick = 0.05
        per_tick = max(1, round(self.rate * tick))
        while not self._stop.is_set():
            t0 = time.monotonic()
            for _ in range(per_tick):
                uid = self.uids[i % len(self.uids)]
                i += 1
                produce(producer, t.CUSTOMERS_LOCATIONS, CustomerLocation(
                    uid=uid, store_id=PRODUCT.store_id, latitude=PRODUCT.latitude,
                    longitude=PRODUCT.longitude, ts=now_ms()))
            producer.poll(0)
            time.sleep(max(0.0, tick - (time.monotonic() - t0)))
        producer.flush(5)


def _wait_all_flowing(rows: Rows, uids: list[str], timeout: float) -> bool:
    start_ms = now_ms()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(rows.first(u, start_ms) is not None for u in uids):
            return True
        time.sleep(0.1)
    return False


def _fresh_partition(rows: Rows, positions: Positions, uid: str, timeout_s: float) -> float | None:
    """Once the restarted worker flows: positions start on a partition that never had any (and
    so no committed offset); seconds until its first NEARBY row."""
    if uid in positions.enabled:
        return None
    start, start_ms = time.monotonic(), now_ms()
    positions.enabled.add(uid)
    while time.monotonic() - start < timeout_s:
        seen = rows.first(uid, start_ms)
        if seen is not None:
            return round(seen - start, 2)
        time.sleep(0.02)
    return None


def measure_case(how: str, stack: Stack, tail: LogTail, rows: Rows, positions: Positions,
                 uids: list[str], timeout_s: float, progress: Any,
                 healthy_restart: bool = True) -> dict[str, Any]:
    running = stack.services["worker"]
    old = running.proc
    if healthy_restart:  # the supervisor's delay after a long healthy run (as in the soak)
        running.started_at = min(running.started_at, time.monotonic() - 120)
    killed = time.monotonic()
    os.killpg(old.pid, getattr(signal, how))
    progress(f"{how} worker pid {old.pid}")
    exited = spawned = None
    spawned_ms = 0
    new_pid = None
    deadline = killed + timeout_s
    while time.monotonic() < deadline:
        if exited is None and old.poll() is not None:
            exited = time.monotonic()
        stack.supervise_once()
        if running.proc is not old and spawned is None:
            spawned, spawned_ms, new_pid = time.monotonic(), now_ms(), running.proc.pid
        if spawned is not None and all(rows.first(u, spawned_ms) for u in uids[:-1]):
            break
        time.sleep(0.02)

    def rel(x: float | None) -> float | None:
        return None if x is None else round(x - killed, 2)

    out: dict[str, Any] = {"case": how, "exited": rel(exited), "spawned": rel(spawned)}
    if spawned is not None:
        for name, needle in PATTERNS.items():
            out[name] = rel(tail.first(needle, spawned, new_pid))
        out["joins"] = sum(1 for s, line in tail.lines if s >= spawned and PATTERNS["joined"] in line)
        first = {p: rel(rows.first(u, spawned_ms)) for p, u in enumerate(uids[:-1])}
        out["first_row"] = first
        done = [v for v in first.values() if v is not None]
        out["all_flowing"] = max(done) if len(done) == len(first) else None
        out["fresh_partition_s"] = _fresh_partition(rows, positions, uids[-1], timeout_s)
        old_pid = old.pid
        out["left_group"] = any(("left consumer group" in line
                                 or "LeaveGroup request succeeded" in line)
                                and f"[{old_pid}]" in line for _s, line in tail.lines)
    progress(json.dumps(out))
    return out


def run(cases: list[str], *, partitions: int = 4, hz: float = 5.0, timeout_s: float = 90.0,
        settle_s: float = 3.0, load_shoppers: int = 0,
        load_rate: float = 0.0, warmup_s: float = 0.0,
        progress: Any = lambda m: None, keep_dir: bool = False) -> dict[str, Any]:
    settings = isolated_settings(get_settings(), kafka_partitions=partitions)
    data_dir = Path(tempfile.mkdtemp(prefix="instore-restart-"))
    env = child_env_for(settings, INSTORE_DATA_DIR=str(data_dir / "worker"),
                        WORKER_WEB_PORT=str(free_port()), INSTORE_ENV="development",
                        WORKER_AGENTS="proximity,policy,analytics")
    stack = Stack(data_dir / "logs", env=env, on_event=lambda m: progress(f"stack: {m}"))
    uids = [uid_for_partition(p, partitions) for p in range(partitions)]
    results: list[dict[str, Any]] = []
    tail = LogTail(data_dir / "logs" / "worker.log")
    rows = Rows(settings)
    positions = Positions(settings, uids, hz)
    load = Load(settings, load_shoppers, load_rate) if load_shoppers and load_rate else None
    t0 = time.monotonic()
    try:
        for spec in core_specs(settings, data_dir):
            stack.start(spec)
        wait_for_broker(settings)
        ensure_topics(settings)
        producer = make_producer(settings)
        produce(producer, t.STORES_PRODUCTS, PRODUCT)
        produce(producer, t.PRODUCTS_PROMOTIONS, Promotion(pid="p1", sku=1, title="10% off",
                                                           discount_pct=10))
        producer.flush(10)
        tail.start()
        stack.start(ServiceSpec("worker", instore_cmd("worker", "--loglevel", "info")))
        rows.start()
        positions.enabled.update(uids[:-1])
        positions.start()
        if not _wait_all_flowing(rows, uids[:-1], 120):
            progress("the first worker never produced rows")
        first_up = round(time.monotonic() - t0, 1)
        progress(f"worker flowing {first_up}s after start")
        if load is not None:
            load.start()
            progress(f"load: {load_rate:.0f} positions/s from {load_shoppers} shoppers; "
                     f"warming up {warmup_s:.0f}s")
            time.sleep(warmup_s)
        for how in cases:
            time.sleep(settle_s)  # past a commit interval
            results.append(measure_case(how, stack, tail, rows, positions, uids, timeout_s,
                                        progress))
    finally:
        if load is not None:
            load.stop()
        positions.stop()
        rows.stop()
        tail.stop()
        stack.stop()
    fig: dict[str, Any] = {"bench": "restart_phases", "partitions": partitions,
                           "load_rate": load_rate if load else 0, "warmup_s": warmup_s,
                           "first_start_s": first_up, "cases": results,
                           "load_avg_1m": round(os.getloadavg()[0], 2)}
    if keep_dir:
        fig["data_dir"] = str(data_dir)
    else:
        import shutil  # noqa: PLC0415

        shutil.rmtree(data_dir, ignore_errors=True)
    return fig


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="SIGTERM,SIGKILL")
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--timeout", type=float, default=90.0)
    ap.add_argument("--load-shoppers", type=int, default=0)
    ap.add_argument("--load-rate", type=float, default=0.0, help="background positions/s")
    ap.add_argument("--warmup", type=float, default=0.0, help="seconds of load before a kill")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    def progress(m: str) -> None:
        if not args.json or m.startswith("{"):
            sys.stderr.write(f"{time.strftime('%H:%M:%S')} {m}\n")

    fig = run([c.strip().upper() for c in args.cases.split(",") if c.strip()],
              partitions=args.partitions, timeout_s=args.timeout,
              load_shoppers=args.load_shoppers, load_rate=args.load_rate, warmup_s=args.warmup,
              progress=progress, keep_dir=args.keep)
    fig = results.append("restart", fig)
    sys.stdout.write(json.dumps(fig) + "\n")


if __name__ == "__main__":
    main()
