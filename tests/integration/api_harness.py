"""Fixtures shared by the API's integration tests: the app on the real broker and Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from api.main import create_app
from instore import serving
from instore.settings import DEV_KEYS, Settings
from tests.conftest import child_env, make_settings

MARKETER = {"X-API-Key": DEV_KEYS["marketer"]}
ANALYST = {"X-API-Key": DEV_KEYS["analyst"]}
OPS = {"X-API-Key": DEV_KEYS["ops"]}
KIOSK = {"X-API-Key": DEV_KEYS["kiosk"]}
CASHIER = {"X-API-Key": DEV_KEYS["cashier"]}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def redeem_at_till(client: TestClient, uid: str, token: str, offer_id: str,
                   store_id: str) -> Any:
    """What a till does: the shopper's phone shows the offer's code (their own token), the
    cashier sends it. Returns the till's answer."""
    shown = client.get(f"/shoppers/{uid}/offers/{offer_id}/code", headers=bearer(token))
    assert shown.status_code == 200, shown.text
    return client.post("/redemptions", json={"code": shown.json()["code"], "store_id": store_id},
                       headers=CASHIER)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def poll(check: Callable[[], Any], timeout_s: float = 45.0, step_s: float = 0.1) -> Any:
    """Wait for behaviour: return the first truthy result of ``check`` or fail."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(step_s)
    raise AssertionError(f"condition not met in {timeout_s}s (last: {last!r})")


@pytest.fixture(scope="module")
def api_settings(kafka_bootstrap: str, redis_url: str) -> Settings:
    return make_settings(kafka_bootstrap, redis_url)


def clear_rate_limits(settings: Settings) -> None:
    """Fresh rate-limit budgets (they live in Redis, shared by every API on it)."""
    r = redis.Redis.from_url(settings.redis_address)
    try:
        keys = list(r.scan_iter(f"{serving.RATE_LIMITS_PREFIX}*"))
        if keys:
            r.delete(*keys)
    finally:
        r.close()


@pytest.fixture(scope="module")
def client(api_settings: Settings) -> Iterator[TestClient]:
    clear_rate_limits(api_settings)
    with TestClient(create_app(api_settings)) as c:
        assert c.app.state.services.tables.wait_caught_up(30)  # type: ignore[attr-defined]
        yield c


@pytest.fixture(scope="module")
def rds(redis_url: str) -> Iterator[redis.Redis]:
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    yield r
    r.close()


def stop_proc(proc: subprocess.Popen[bytes]) -> None:
    """Stop a child we started (its own process group), politely then firmly."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def faust_web_env() -> dict[str, str]:
    """Faust's worker always serves its web view: give it a free loopback port (6066 may be
    taken by another worker running on this machine)."""
    from instore.embedded import free_port

    return {"FAUST_WEB_PORT": str(free_port()), "FAUST_WEB_BIND": "127.0.0.1"}


WORKER_POLICY = {"DWELL_S": "0", "COOLDOWN_S": "1", "CAP_PER_HOUR": "100000"}


@pytest.fixture(scope="module")
def worker(api_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The Faust worker (`instore worker`) as a child, with its own consumer group and a policy
    that offers again every second (so a missing offer means the policy said no)."""
    workdir = tmp_path_factory.mktemp("worker")  # Faust keeps its data dir in the cwd
    log_path = workdir / "worker.log"
    env = child_env(api_settings, INSTORE_APP_ID=unique("api-test-worker"), INSTORE_DATA_DIR=str(workdir),
                    **WORKER_POLICY, **faust_web_env())
    with log_path.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "instore", "worker", "--loglevel", "warn"],
                                env=env, stdout=out, stderr=subprocess.STDOUT, cwd=workdir,
                                start_new_session=True)
    yield log_path
    stop_proc(proc)


class PositionFeed:
    """Produces positions for some shoppers every ``every_s`` on a thread, until stopped."""

    def __init__(self, settings: Settings, store_id: str, lat: float, lon: float,
                 every_s: float = 0.2) -> None:
        from instore.kafka import make_producer

        self._producer = make_producer(settings)
        self.uids: list[str] = []
        self._where = (store_id, lat, lon)
        self._every = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> PositionFeed:
        self._thread.start()
        return self

    def _run(self) -> None:
        from instore import records as r
        from instore import topics as t
        from instore.kafka import produce

        store_id, lat, lon = self._where
        while not self._stop.is_set():
            ts = r.now_ms()
            for uid in list(self.uids):
                rec = r.CustomerLocation(uid=uid, store_id=store_id, latitude=lat, longitude=lon,
                                         ts=ts, source="sim")
                produce(self._producer, t.CUSTOMERS_LOCATIONS, rec, timestamp_ms=ts)
            self._producer.poll(0)
            self._stop.wait(self._every)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._producer.flush(10)
