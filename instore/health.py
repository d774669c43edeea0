"""`instore status`: can we reach the broker and Redis, do the topics exist, how far behind
is the worker."""

from __future__ import annotations

from typing import Any

from instore import topics as t
from instore.settings import Settings


def check(settings: Settings) -> dict[str, Any]:
    checks: dict[str, dict[str, Any]] = {}
    checks["broker"] = _broker(settings)
    checks["redis"] = _redis(settings)
    if checks["broker"]["ok"]:
        checks["worker_lag"] = _lag(settings)
    return {"ok": all(c["ok"] for c in checks.values()), "checks": checks}


def _broker(settings: Settings) -> dict[str, Any]:
    from confluent_kafka import KafkaException  # noqa: PLC0415

    from instore.kafka import make_admin  # noqa: PLC0415

    try:
        md = make_admin(settings).list_topics(timeout=3)
    except KafkaException as exc:
        return {"ok": False, "detail": f"{settings.bootstrap_servers}: {exc}"}
    missing = [topic.name for topic in t.ALL if topic.name not in md.topics]
    detail = f"{settings.bootstrap_servers}, {len(md.topics)} topics"
    if missing:
        detail += f", missing: {', '.join(missing)}"
    return {"ok": not missing, "detail": detail}


def _redis(settings: Settings) -> dict[str, Any]:
    import redis  # noqa: PLC0415

    try:
        client = redis.Redis.from_url(settings.redis_address, socket_timeout=2)
        client.ping()
    except redis.RedisError as exc:
        return {"ok": False, "detail": f"{type(exc).__name__}: {exc}"}
    return {"ok": True, "detail": "ping ok"}


def consumer_lag(settings: Settings, group_id: str, topic_names: list[str]) -> dict[str, int]:
    """Lag per topic of a consumer group (end offset - committed)."""
    from confluent_kafka import TopicPartition  # noqa: PLC0415

    from instore.kafka import make_consumer  # noqa: PLC0415

    consumer = make_consumer(settings, group_id=group_id)
    lags: dict[str, int] = {}
    try:
        md = consumer.list_topics(timeout=3)
        for name in topic_names:
            if name not in md.topics:
                continue
            tps = [TopicPartition(name, p) for p in md.topics[name].partitions]
            committed = consumer.committed(tps, timeout=3)
            total = 0
            for tp in committed:
                _low, high = consumer.get_watermark_offsets(TopicPartition(name, tp.partition), timeout=3)
                total += max(0, high - max(tp.offset, 0)) if tp.offset >= 0 else high
            lags[name] = total
    finally:
        consumer.close()
    return lags


def _lag(settings: Settings) -> dict[str, Any]:
    from confluent_kafka import KafkaException  # noqa: PLC0415

    try:
        lags = consumer_lag(settings, settings.app_id,
                            [t.CUSTOMERS_LOCATIONS.name, t.NEARBY_CUSTOMERS.name])
    except KafkaException as exc:
        return {"ok": False, "detail": str(exc)}
    return {"ok": True, "detail": lags}
