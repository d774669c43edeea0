"""BulkWrites against a real Redis: every write lands, across chunks, for each command the
serving flush uses, with the values redis-py would have sent one command at a time."""

from __future__ import annotations

import uuid

import redis

from stream_apps.bulk_writes import CHUNK, BulkWrites


def test_writes_across_chunks_land_as_single_commands_would(redis_url: str) -> None:
    rds = redis.Redis.from_url(redis_url)
    p = f"test:bulk:{uuid.uuid4().hex[:8]}"
    writes = BulkWrites()
    n = CHUNK + 7  # two script calls
    for i in range(n):
        writes.add("HINCRBY", f"{p}:h:{i % 3}", f"f{i % 5}", i)
    writes.add("HSET", f"{p}:pos", "u1", b'{"latitude":1.5}')
    writes.add("ZADD", f"{p}:live", 1700000000123, "u1")
    writes.add("ZINCRBY", f"{p}:dwell", 2.5, "store-001:42")
    writes.add("ZINCRBY", f"{p}:dwell", 0.25, "store-001:42")
    for v in (b"a", b"b", b"c"):  # one argument, then two, then three
        writes.add("LPUSH", f"{p}:list", v)
    writes.add("LTRIM", f"{p}:list", 0, 1)
    writes.add("SET", f"{p}:offer", b"{}", "EX", 300)
    title = '{"title":"Cr\u00e8me br\u00fbl\u00e9e \u2013 20 % off \U0001f36e","q":"\\\""}'
    writes.add("SET", f"{p}:text", title.encode())
    assert len(writes) == n + 10
    pipe = rds.pipeline(transaction=False)
    writes.queue(pipe)
    assert pipe.execute() == [CHUNK, n + 10 - CHUNK]

    expected: dict[tuple[str, str], int] = {}
    for i in range(n):
        k = (f"{p}:h:{i % 3}", f"f{i % 5}")
        expected[k] = expected.get(k, 0) + i
    for (key, field), total in expected.items():
        assert int(rds.hget(key, field)) == total
    assert rds.hget(f"{p}:pos", "u1") == b'{"latitude":1.5}'
    assert rds.zscore(f"{p}:live", "u1") == 1700000000123
    assert rds.zscore(f"{p}:dwell", "store-001:42") == 2.75
    assert rds.lrange(f"{p}:list", 0, -1) == [b"c", b"b"]
    assert rds.get(f"{p}:offer") == b"{}"
    assert 0 < rds.ttl(f"{p}:offer") <= 300
    assert rds.get(f"{p}:text").decode() == title  # UTF-8 and JSON escapes arrive unchanged
    rds.delete(*{k for k, _ in expected}, f"{p}:pos", f"{p}:live", f"{p}:dwell", f"{p}:list",
               f"{p}:offer", f"{p}:text")


def test_nothing_queued_sends_nothing(redis_url: str) -> None:
    rds = redis.Redis.from_url(redis_url)
    pipe = rds.pipeline(transaction=False)
    BulkWrites().queue(pipe)
    assert len(pipe) == 0
