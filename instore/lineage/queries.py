"""The running ksqlDB persistent queries (pure), read from the ksqlDB REST API's answers to
``SHOW STREAMS; SHOW TABLES; SHOW QUERIES [EXTENDED];`` and ``EXPLAIN <id>;``: what each reads
and writes, as Kafka topics."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from instore import groups


@dataclass(frozen=True)
class Query:
    """A running ksqlDB persistent query: what it reads and writes (Kafka topics)."""

    id: str
    state: str
    statement: str
    source_topics: tuple[str, ...]
    sink_topics: tuple[str, ...]
    group: str


_TOPOLOGY_TOPICS = re.compile(r"Source:.*?\(topics: \[([^\]]*)\]\)")


def _entities_of(answer: Any, *types: str) -> list[dict[str, Any]]:
    if not isinstance(answer, list):
        return []
    return [e for e in answer if isinstance(e, dict) and e.get("@type") in types]


def source_topics(answer: Any) -> dict[str, str]:
    """Source name -> Kafka topic, from ``SHOW STREAMS;`` / ``SHOW TABLES;`` answers."""
    out: dict[str, str] = {}
    for entity in _entities_of(answer, "streams", "tables"):
        for item in entity.get("streams") or entity.get("tables") or []:
            if isinstance(item, dict) and item.get("name") and item.get("topic"):
                out[str(item["name"]).upper()] = str(item["topic"])
    return out


def listed_queries(answer: Any) -> list[dict[str, Any]]:
    """The persistent queries of a ``SHOW QUERIES [EXTENDED];`` answer (ksqlDB answers
    ``query_descriptions`` to EXTENDED, ``queries`` without it)."""
    out = []
    for entity in _entities_of(answer, "queries", "query_descriptions"):
        for item in entity.get("queries") or entity.get("queryDescriptions") or []:
            if isinstance(item, dict) and item.get("queryType", "PERSISTENT") == "PERSISTENT":
                out.append(item)
    return out


def query_id_of(item: Mapping[str, Any]) -> str:
    qid = item.get("id")
    if isinstance(qid, dict):  # older servers serialize a QueryId as {"id": ...}
        qid = qid.get("id")
    return str(qid or "")


def needs_explain(item: Mapping[str, Any]) -> bool:
    """``SHOW QUERIES`` (not EXTENDED) lists no sources: ``EXPLAIN <id>;`` tells them."""
    return "sources" not in item and "topology" not in item


def _state_of(item: Mapping[str, Any]) -> str:
    if item.get("state"):
        return str(item["state"])
    for key in ("statusCount", "ksqlHostQueryStatus"):
        value = item.get(key)
        if isinstance(value, dict) and value:
            return str(next(iter(value.keys() if key == "statusCount" else value.values())))
    return "UNKNOWN"


def parse_queries(listed: Iterable[Mapping[str, Any]], topics_of: Mapping[str, str],
                  service_id: str,
                  explained: Mapping[str, Mapping[str, Any]] | None = None) -> list[Query]:
    """``Query`` values from the listed queries, each completed by its EXPLAIN answer's
    ``queryDescription`` when given. Source and sink names are resolved to topics through
    ``topics_of`` (``source_topics``), else through the topology's source topics."""
    explained = explained or {}
    out = []
    for item in listed:
        qid = query_id_of(item)
        if not qid:
            continue
        desc: Mapping[str, Any] = {**item, **explained.get(qid, {})}
        topics: list[str] = []
        unresolved = False
        for name in desc.get("sources") or []:
            topic = topics_of.get(str(name).upper())
            if topic is None:
                unresolved = True
            else:
                topics.append(topic)
        if unresolved or not topics:
            for match in _TOPOLOGY_TOPICS.finditer(str(desc.get("topology") or "")):
                topics += [x.strip() for x in match.group(1).split(",") if x.strip()]
        sinks = [str(s) for s in desc.get("sinkKafkaTopics") or []]
        if not sinks:
            sinks = [topics_of.get(str(s).upper(), str(s)) for s in desc.get("sinks") or []]
        statement = desc.get("queryString") or desc.get("statementText") or ""
        out.append(Query(id=qid, state=_state_of(desc), statement=str(statement),
                         source_topics=tuple(dict.fromkeys(topics)),
                         sink_topics=tuple(dict.fromkeys(sinks)),
                         group=groups.ksqldb_query(service_id, qid)))
    return out
