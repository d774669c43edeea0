"""The analytics agents' minute buckets expire (a day) even when a bucket is written once: the
EXPIRE follows the write that creates the key (on a missing key it would do nothing)."""

from __future__ import annotations

import uuid

import redis

from stream_apps.analytics import BUCKET_TTL_S, queue_sums


def test_a_bucket_written_once_still_expires(redis_url: str) -> None:
    rds = redis.Redis.from_url(redis_url)
    prefix = f"test:bucket:{uuid.uuid4().hex[:8]}"

    def key_of(bucket: int) -> str:
        return f"{prefix}:{bucket}"

    pipe = rds.pipeline(transaction=False)
    queue_sums(pipe, {(7, "store-001:42"): 2.5}, key_of)
    pipe.execute()
    assert rds.zscore(key_of(7), "store-001:42") == 2.5
    assert 0 < rds.ttl(key_of(7)) <= BUCKET_TTL_S
    rds.delete(key_of(7))
