"""`instore status`: can we reach the broker and Redis, do the topics exist, how far behind
is the worker."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from instore import groups
from instore import topics as t
from instore.settings import Settings


def check(settings: Settings, data_dir: Path | None = None) -> dict[str, Any]:
    checks: dict[str, dict[str, Any]] = {}
    if data_dir is not None:
        checks["services"] = services_check(data_dir)
    checks["broker"] = _broker(settings, data_dir)
    checks["redis"] = _redis(settings)
    if checks["broker"]["ok"]:
        checks["worker_lag"] = _lag(settings)
        checks["sink_lag"] = sink_lag(settings)
    if checks["redis"]["ok"]:
        checks["data_quality"] = data_quality(settings)
    return summarize(checks)


# Checks that mark the stack degraded rather than not ready: bad data from a source does not
# make the services unable to serve.
DEGRADING = frozenset({"data_quality"})


def summarize(checks: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """``ok``: every check but the degrading ones passes; ``degraded``: a degrading one fails."""
    return {"ok": all(c["ok"] for name, c in checks.items() if name not in DEGRADING),
            "degraded": any(not c["ok"] for name, c in checks.items() if name in DEGRADING),
            "checks": checks}


def data_quality(settings: Settings) -> dict[str, Any]:
    """Dead letters per source topic against their thresholds over DQ_WINDOW_S (counted by the
    archiver), late and out-of-order positions."""
    import redis  # noqa: PLC0415

    from instore import quality  # noqa: PLC0415
    from instore.records import now_ms  # noqa: PLC0415

    try:
        client = redis.Redis.from_url(settings.redis_address, socket_timeout=2)
        report = quality.check(settings, client, now_ms())
    except redis.RedisError as exc:
        return {"ok": False, "detail": f"{type(exc).__name__}: {exc}"}
    shares = ", ".join(f"{topic} {e['dead_letter_share']:.1%} of {e['records']:,}"
                       for topic, e in sorted(report["topics"].items()) if e["dead_letters"])
    report["detail"] = report.get("reason") or (
        f"dead letters: {shares or 'none'}; late positions {report['late_positions']:,}, "
        f"out of order {report['out_of_order_positions']:,} (last {settings.dq_window_s // 60} min)")
    return report


def _broker(settings: Settings, data_dir: Path | None = None) -> dict[str, Any]:
    """The broker: address, brokers, topics; for the embedded one its version, data dir and
    disk used."""
    from confluent_kafka import KafkaException  # noqa: PLC0415

    from instore.embedded import kafka  # noqa: PLC0415
    from instore.kafka import make_admin  # noqa: PLC0415

    out: dict[str, Any] = {"address": settings.bootstrap_servers}
    if settings.embedded_kafka:
        out["version"] = f"Apache Kafka {kafka.KAFKA_VERSION} (embedded)"
        if data_dir is not None:
            out["data_dir"] = str(data_dir / "kafka")
            out["disk_bytes"] = kafka.disk_used(data_dir / "kafka")
    try:
        md = make_admin(settings).list_topics(timeout=3)
    except KafkaException as exc:
        hint = " (start it with `instore up`)" if settings.embedded_kafka else ""
        return out | {"ok": False, "detail": f"{settings.bootstrap_servers}: {exc}{hint}"}
    missing = [topic.name for topic in t.ALL if topic.name not in md.topics]
    out["brokers"] = len(md.brokers)
    detail = f"{settings.bootstrap_servers}, {len(md.brokers)} broker(s), {len(md.topics)} topics"
    if "version" in out:
        detail = f"{out['version']} at {detail}"
    if "disk_bytes" in out:
        detail += f", {out['data_dir']} {out['disk_bytes'] / 1e6:.1f} MB"
    if missing:
        detail += f", missing: {', '.join(missing)}"
    return out | {"ok": not missing, "detail": detail}


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


def worker_agents(settings: Settings) -> set[str]:
    """The agents a worker runs: those WORKER_AGENTS names, less ``proximity`` when
    NEARBY_ENGINE=ksqldb (ksqlDB writes NEARBY_CUSTOMERS then; one engine writes it)."""
    agents = settings.worker_agent_set
    if settings.nearby_engine == "ksqldb":
        agents.discard("proximity")
    return agents


def worker_topics(settings: Settings) -> list[str]:
    """The topics the worker's agents read (:func:`worker_agents`): positions when it computes
    NEARBY rows itself (and applies the policy to them in the same pass), NEARBY_CUSTOMERS
    when it applies the policy to rows another engine computed (WORKER_AGENTS without
    proximity, or NEARBY_ENGINE=ksqldb)."""
    agents = worker_agents(settings)
    topics = []
    if "proximity" in agents:
        topics.append(t.CUSTOMERS_LOCATIONS.name)
    elif agents & {"policy", "analytics"}:
        topics.append(t.NEARBY_CUSTOMERS.name)
    return topics


def _lag(settings: Settings) -> dict[str, Any]:
    from confluent_kafka import KafkaException  # noqa: PLC0415

    try:
        lags = consumer_lag(settings, settings.app_id, worker_topics(settings))
    except KafkaException as exc:
        return {"ok": False, "detail": str(exc)}
    return _within_lag(settings, lags)


def _within_lag(settings: Settings, lags: dict[str, int]) -> dict[str, Any]:
    """Ready while no topic is more than ``ready_max_lag`` events behind."""
    behind = {name: n for name, n in lags.items() if n > settings.ready_max_lag}
    out: dict[str, Any] = {"ok": not behind, "detail": lags}
    if behind:
        out["reason"] = (f"more than {settings.ready_max_lag:,} events behind on "
                         f"{', '.join(sorted(behind))}")
    return out


# The supervisor's view (`instore up` writes it, `instore status` reads it) -------------------

STATUS_FILE = "status.json"
STALE_AFTER_S = 10.0


def write_stack_status(data_dir: Path, services: list[dict[str, Any]], **extra: Any) -> None:
    """Atomically write what `instore up` knows: each service's state, pid and restarts."""
    data_dir.mkdir(parents=True, exist_ok=True)
    doc = {"updated_at": time.time(), "supervisor_pid": os.getpid(), "services": services} | extra
    tmp = data_dir / f".{STATUS_FILE}.tmp"
    tmp.write_text(json.dumps(doc, default=str))
    tmp.replace(data_dir / STATUS_FILE)


def read_stack_status(data_dir: Path) -> dict[str, Any] | None:
    """The last status `instore up` wrote, marked stale when it stopped writing."""
    path = data_dir / STATUS_FILE
    try:
        doc: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    doc["stale"] = time.time() - float(doc.get("updated_at", 0)) > STALE_AFTER_S
    return doc


def services_check(data_dir: Path) -> dict[str, Any]:
    doc = read_stack_status(data_dir)
    if doc is None:
        return {"ok": False, "detail": f"no `instore up` status under {data_dir}"}
    if doc["stale"]:
        return {"ok": False, "detail": "`instore up` is not running (status is stale)",
                "services": doc.get("services", [])}
    services = doc.get("services", [])
    down = [s["name"] for s in services if s.get("state") != "running"]
    restarts = sum(int(s.get("restarts", 0)) for s in services)
    detail = f"{len(services) - len(down)}/{len(services)} running, {restarts} restarts"
    if down:
        detail += f"; down: {', '.join(down)}"
    return {"ok": not down, "detail": detail, "services": services}


def sink_lag(settings: Settings) -> dict[str, Any]:
    from confluent_kafka import KafkaException  # noqa: PLC0415

    try:
        lags = consumer_lag(settings, groups.PUSH_SINK, [t.OFFERS.name])
    except KafkaException as exc:
        return {"ok": False, "detail": str(exc)}
    return _within_lag(settings, lags)
