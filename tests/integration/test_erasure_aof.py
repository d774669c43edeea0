"""Erasure reaches Redis' disk: the append-only file records every write, a deleted key's
value included, until it is rewritten. After the erasure's rewrite the file holds no trace of
the shopper (before it, it does: the test shows both)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import redis

from api.routes.shoppers import rewrite_append_only_file
from instore import serving
from instore.embedded import free_port, redis_argv
from tests.conftest import _wait_port, stop_process

pytestmark = pytest.mark.integration


@pytest.fixture
def aof_redis(tmp_path: Path) -> Iterator[tuple[redis.Redis, Path]]:
    port = free_port()
    proc = subprocess.Popen(redis_argv(port, tmp_path, appendonly=True),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    _wait_port(port, proc, "redis-server")
    r = redis.Redis(port=port, decode_responses=True)
    yield r, tmp_path
    r.close()
    stop_process(proc)


def _aof_bytes(data_dir: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(data_dir.rglob("*.aof*")) if p.is_file())


def test_rewrite_after_erasure_removes_the_shopper_from_the_aof(aof_redis) -> None:
    r, data_dir = aof_redis
    uid = "shopper-aof-7731"
    r.lpush(serving.offers_of(uid), orjson.dumps({"offer_id": "o1", "uid": uid}))
    r.set("instore:other", "kept")
    r.delete(serving.offers_of(uid))  # what erasure does in Redis
    r.execute_command("CONFIG", "SET", "appendfsync", "always")
    deadline = time.monotonic() + 10
    while uid.encode() not in _aof_bytes(data_dir):
        assert time.monotonic() < deadline, "the AOF never recorded the write"
        time.sleep(0.1)
    assert rewrite_append_only_file(r)
    deadline = time.monotonic() + 30
    while uid.encode() in _aof_bytes(data_dir) or int(
        r.info("persistence")["aof_rewrite_in_progress"]
    ):
        assert time.monotonic() < deadline, "the rewritten AOF still holds the shopper"
        time.sleep(0.2)
    assert b"kept" in _aof_bytes(data_dir)  # what is still there stays on disk


def test_no_rewrite_where_redis_keeps_no_aof(redis_url: str) -> None:
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        assert rewrite_append_only_file(r) is False
    finally:
        r.close()
