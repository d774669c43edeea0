"""`instore bench api`: request latency and throughput of the API's main paths on a fresh
embedded broker and Redis (started here on free loopback ports, stopped at the end).

Measured over real HTTP (uvicorn in this process, httpx clients on threads): consent writes
(acknowledged by the broker), promotion creates (validated against the catalog view), promotion
listing, Ably token requests and the floor map of a store with 1,000 products and 200 shoppers.
"""

from __future__ import annotations

import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson
import redis
import uvicorn

from bench.stats import percentile
from instore import serving
from instore.embedded import free_port, port_open, redis_argv
from instore.embedded.kafka import EmbeddedKafka
from instore.settings import DEV_KEYS, Settings

MARKETER = {"X-API-Key": DEV_KEYS["marketer"]}


def _wait_port(port: int, what: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not port_open("127.0.0.1", port):
        if time.monotonic() > deadline:
            msg = f"{what} did not listen on {port}"
            raise RuntimeError(msg)
        time.sleep(0.05)


def _measure(name: str, n: int, concurrency: int, call: Callable[[httpx.Client, int], int],
             base: str) -> dict[str, Any]:
    lat: list[float] = []
    errors = 0
    lock = threading.Lock()

    def one(i: int, client: httpx.Client) -> None:
        nonlocal errors
        t0 = time.perf_counter()
        status = call(client, i)
        dt = (time.perf_counter() - t0) * 1000
        with lock:
            lat.append(dt)
            if status >= 400:
                errors += 1

    clients = [httpx.Client(base_url=base, timeout=30) for _ in range(concurrency)]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(lambda i: one(i, clients[i % concurrency]), range(n)))
    wall = time.perf_counter() - t0
    for c in clients:
        c.close()
    lat.sort()
    return {"path": name, "requests": n, "concurrency": concurrency, "errors": errors,
            "req_per_s": round(n / wall, 1),
            "p50_ms": percentile(lat, 0.50, 2),
            "p99_ms": percentile(lat, 0.99, 2)}


def run_bench(requests: int = 300, concurrency: int = 8) -> dict[str, Any]:
    from api.main import create_app  # noqa: PLC0415

    redis_port, api_port = free_port(), free_port()
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmp:
        kafka = EmbeddedKafka(Path(tmp) / "kafka")
        try:
            kafka.start()
            procs.append(subprocess.Popen(redis_argv(redis_port, Path(tmp)),
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                          start_new_session=True))
            _wait_port(redis_port, "redis-server")
            settings = Settings(kafka_bootstrap_servers=kafka.bootstrap,  # type: ignore[call-arg]
                                redis_url=f"redis://127.0.0.1:{redis_port}/0", _env_file=None)
            server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1",
                                                   port=api_port, log_level="warning",
                                                   access_log=False))
            thread = threading.Thread(target=server.run, daemon=True)
            thread.start()
            _wait_port(api_port, "the API")
            base = f"http://127.0.0.1:{api_port}"
            return _run(base, settings, requests, concurrency) | {
                "requests_per_path": requests, "concurrency": concurrency}
        finally:
            if "server" in locals():
                server.should_exit = True
                thread.join(15)
            for p in procs:
                p.terminate()
                p.wait(10)
            kafka.stop()


def _run(base: str, settings: Settings, n: int, concurrency: int) -> dict[str, Any]:
    run = uuid.uuid4().hex[:6]
    store = f"bench-{run}"
    with httpx.Client(base_url=base, headers=MARKETER, timeout=60) as c:
        deadline = time.monotonic() + 60
        while c.get("/readyz").status_code != 200:
            if time.monotonic() > deadline:
                msg = "the API did not become ready"
                raise RuntimeError(msg)
            time.sleep(0.2)
        lines = ["sku,store_id,segment,name,latitude,longitude,country"]
        for i in range(1000):
            lines.append(f"{i},{store},seg{i % 20},product {i},{52.52 + (i // 40) * 2e-5:.6f},"
                         f"{13.405 + (i % 40) * 3e-5:.6f},DE")
        t0 = time.perf_counter()
        report = c.post("/products/bulk", files={"file": ("c.csv", "\n".join(lines))}).json()
        bulk_s = time.perf_counter() - t0
    rds = redis.Redis.from_url(settings.redis_address)
    now = int(time.time() * 1000)
    rds.hset(serving.store_positions(store), mapping={
        f"u{i}": orjson.dumps({"latitude": 52.52, "longitude": 13.405, "ts": now})
        for i in range(200)})
    rds.close()
    tokens: list[str] = []

    def consent(c: httpx.Client, i: int) -> int:
        res = c.post(f"/shoppers/b{run}-{i}/consent", json={"opted_in": True})
        if res.status_code == 200:
            tokens.append(res.json()["shopper_token"])
        return res.status_code

    def promo(c: httpx.Client, i: int) -> int:
        return c.post("/promotions", headers=MARKETER, json={
            "sku": i % 1000, "title": f"bench {i}", "discount_pct": 10}).status_code

    def list_promos(c: httpx.Client, _i: int) -> int:
        return c.get("/promotions", headers=MARKETER).status_code

    def ably(c: httpx.Client, i: int) -> int:
        tok = tokens[i % len(tokens)]
        uid = tok.rsplit(".", 2)[0]
        return c.post(f"/shoppers/{uid}/ably-token",
                      headers={"Authorization": f"Bearer {tok}"}).status_code

    def floor(c: httpx.Client, _i: int) -> int:
        return c.get(f"/stores/{store}/floor", headers=MARKETER).status_code

    results = [
        _measure("POST /shoppers/{uid}/consent", n, concurrency, consent, base),
        _measure("POST /promotions", n, concurrency, promo, base),
        _measure(f"GET /promotions ({n} promotions)", n, concurrency, list_promos, base),
        _measure("POST /shoppers/{uid}/ably-token", n, concurrency, ably, base),
        _measure("GET /stores/{id}/floor (1000 products, 200 shoppers)", max(20, n // 5),
                 concurrency, floor, base),
    ]
    return {"bulk_csv_1000_rows_s": round(bulk_s, 3), "bulk_accepted": report["accepted"],
            "paths": results}
