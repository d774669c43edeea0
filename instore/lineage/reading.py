"""Reading the lineage (I/O): the running ksqlDB queries from its REST API, offsets and group
states from the broker, and ``Lineage``, the answer of one process (cached a few seconds, rates
from the previous sample, a part it could not read reported instead of failing)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from instore.errors import InstoreError
from instore.health import worker_agents
from instore.lineage.graph import build_graph
from instore.lineage.live import Sample, apply_live
from instore.lineage.queries import (
    Query,
    listed_queries,
    needs_explain,
    parse_queries,
    query_id_of,
    source_topics,
)
from instore.settings import Settings

CACHE_S = 3.0  # live figures are read at most this often
READ_TIMEOUT_S = 3.0


class LineageReadError(InstoreError):
    """ksqlDB or the broker could not be read (the message says which and why)."""


def _ksql(client: Any, statements: str) -> list[dict[str, Any]]:
    res = client.post("/ksql", json={"ksql": statements, "streamsProperties": {}})
    if res.status_code != 200:
        try:
            message = res.json().get("message", res.text)
        except ValueError:
            message = res.text
        msg = f"{statements.strip()} -> {res.status_code}: {str(message)[:200]}"
        raise LineageReadError(msg)
    body = res.json()
    return body if isinstance(body, list) else [body]


def read_ksqldb(settings: Settings, timeout_s: float = READ_TIMEOUT_S) -> list[Query]:
    """The running persistent queries, from ``GET /info`` (the service id), ``SHOW STREAMS;
    SHOW TABLES; SHOW QUERIES EXTENDED;`` and ``EXPLAIN <id>;`` where the list lacks sources."""
    import httpx  # noqa: PLC0415

    auth = None
    if settings.ksqldb_api_key and settings.ksqldb_api_secret:
        auth = (settings.ksqldb_api_key, settings.ksqldb_api_secret.get_secret_value())
    try:
        with httpx.Client(base_url=settings.ksqldb_address.rstrip("/"), auth=auth,
                          timeout=timeout_s,
                          headers={"Accept": "application/vnd.ksql.v1+json"}) as client:
            info = client.get("/info")
            info.raise_for_status()
            service_id = str(info.json().get("KsqlServerInfo", {}).get("ksqlServiceId")
                             or "default_")
            answer = _ksql(client, "SHOW STREAMS; SHOW TABLES; SHOW QUERIES EXTENDED;")
            listed = listed_queries(answer)
            explained = {}
            for item in listed:
                if needs_explain(item):
                    for entity in _ksql(client, f"EXPLAIN {query_id_of(item)};"):
                        if isinstance(entity.get("queryDescription"), dict):
                            explained[query_id_of(item)] = entity["queryDescription"]
    except httpx.HTTPError as exc:
        msg = f"{settings.ksqldb_address}: {type(exc).__name__}: {exc}"
        raise LineageReadError(msg) from None
    except (ValueError, TypeError, AttributeError) as exc:  # not JSON, or not ksqlDB's shape
        msg = f"{settings.ksqldb_address}: unreadable answer ({type(exc).__name__}: {exc})"
        raise LineageReadError(msg) from None
    return parse_queries(listed, source_topics(answer), service_id, explained)


def read_sample(admin: Any, topics: list[str], group_ids: list[str],
                timeout_s: float = READ_TIMEOUT_S) -> Sample:
    """End offsets of ``topics`` (those that exist), committed offsets and state of
    ``group_ids``, in a few admin requests."""
    from confluent_kafka import (  # noqa: PLC0415
        ConsumerGroupTopicPartitions,
        KafkaException,
        TopicPartition,
    )
    from confluent_kafka.admin import OffsetSpec  # noqa: PLC0415

    try:
        md = admin.list_topics(timeout=timeout_s)
        tps = [TopicPartition(name, p) for name in topics if name in md.topics
               for p in md.topics[name].partitions]
        ends: dict[str, dict[int, int]] = {name: {} for name in topics if name in md.topics}
        if tps:
            futures = admin.list_offsets({tp: OffsetSpec.latest() for tp in tps},
                                         request_timeout=timeout_s)
            for tp, future in futures.items():
                ends[tp.topic][tp.partition] = future.result().offset
        at = time.monotonic()
        committed: dict[str, dict[str, dict[int, int]]] = {}
        for group in group_ids:  # one group per request (the client's rule)
            future = admin.list_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(group)], request_timeout=timeout_s)[group]
            per_topic: dict[str, dict[int, int]] = {}
            for tp in future.result().topic_partitions or []:
                if tp.offset >= 0:
                    per_topic.setdefault(tp.topic, {})[tp.partition] = tp.offset
            committed[group] = per_topic
        states: dict[str, dict[str, Any]] = {}
        if group_ids:
            for group, future in admin.describe_consumer_groups(
                    group_ids, request_timeout=timeout_s).items():
                desc = future.result()
                states[group] = {"state": desc.state.name.lower(), "members": len(desc.members)}
    except KafkaException as exc:
        msg = f"{exc.args[0] if exc.args else exc}"
        raise LineageReadError(msg) from None
    return Sample(at_s=at, ends=ends, committed=committed, group_states=states)


class Lineage:
    """The lineage answer of one process: reads ksqlDB and the broker at most every
    ``cache_s``, keeps the previous sample for rates, reports what it could not read."""

    def __init__(self, settings: Settings, *, counters: Callable[[], Mapping[str, Any]] | None
                 = None, cache_s: float = CACHE_S) -> None:
        self.settings = settings
        self.cache_s = cache_s
        self._counters = counters
        self._lock = threading.Lock()
        self._admin: Any = None
        self._prev: Sample | None = None
        self._answer: dict[str, Any] | None = None
        self._answer_at = 0.0

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            if self._answer is None or time.monotonic() - self._answer_at >= self.cache_s:
                self._answer = self._read()
                self._answer_at = time.monotonic()
            return self._answer

    def _read(self) -> dict[str, Any]:
        sources: dict[str, dict[str, Any]] = {}
        queries: list[Query] | None = None
        try:
            queries = read_ksqldb(self.settings)
            sources["ksqldb"] = {"ok": True, "detail": f"{len(queries)} persistent "
                                 f"quer{'y' if len(queries) == 1 else 'ies'} at "
                                 f"{self.settings.ksqldb_address}"}
        except LineageReadError as exc:
            sources["ksqldb"] = {"ok": False, "detail": str(exc)}
        graph = build_graph(self.settings, queries)
        sample: Sample | None = None
        try:
            sample = read_sample(self.admin(), graph.topic_names(), graph.groups())
            sources["broker"] = {"ok": True, "detail": f"{self.settings.bootstrap_servers}: "
                                 f"{len(sample.ends)} topics, {len(sample.committed)} groups"}
        except LineageReadError as exc:
            sources["broker"] = {"ok": False,
                                 "detail": f"{self.settings.bootstrap_servers}: {exc}"}
        if self._counters is not None:
            counters = self._read_counters(self._counters, sources)
            if sample is not None:
                sample = replace(sample, counters=counters)
        interval = None
        if sample is not None:
            prev = self._prev
            apply_live(graph, prev, sample)
            if prev is not None:
                interval = round(sample.at_s - prev.at_s, 3)
            self._prev = sample
        return graph.to_json() | {"sampled_at": int(time.time() * 1000), "interval_s": interval,
                                  "sources": sources,
                                  "settings": {"nearby_engine": self.settings.nearby_engine,
                                               "worker_agents": sorted(
                                                   worker_agents(self.settings))}}

    @staticmethod
    def _read_counters(read: Callable[[], Mapping[str, Any]],
                       sources: dict[str, dict[str, Any]]) -> dict[str, int]:
        import redis  # noqa: PLC0415

        try:
            raw = read()
        except (redis.RedisError, OSError) as exc:
            sources["serving"] = {"ok": False, "detail": f"{type(exc).__name__}: {exc}"}
            return {}
        counters = {str(k): int(v) for k, v in raw.items() if str(v).lstrip("-").isdigit()}
        sources["serving"] = {"ok": True, "detail": f"{len(counters)} counters"}
        return counters

    def admin(self) -> Any:
        if self._admin is None:
            from instore.kafka import make_admin  # noqa: PLC0415

            self._admin = make_admin(self.settings)
        return self._admin
