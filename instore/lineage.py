"""Stream lineage: how data flows from its sources through topics, Faust agents and ksqlDB
queries to more topics and the sinks (push, archive, Redis), with live rates and lag.

Three layers, kept apart:

- the graph (pure): ``build_graph`` draws the static flow from the topic contract
  (``instore.topics``) and the settings that decide which agents the worker runs and which
  engine writes NEARBY_CUSTOMERS, plus the running ksqlDB persistent queries given as plain
  ``Query`` values (``parse_queries`` reads them from the ksqlDB REST API's answers);
- live figures (pure): ``apply_live`` puts rates and lag on the graph from two ``Sample``s
  (end offsets per partition, committed offsets per consumer group, the serving counters);
- reading (I/O): ``read_ksqldb`` and ``read_sample`` ask ksqlDB and the broker; ``Lineage``
  keeps the previous sample in the process, caches the answer a few seconds and reports a part
  it could not read (``sources``) instead of failing.

Node ids: ``source:<name>``, ``topic:<topic>``, ``agent:<agent>``, ``query:<QUERY_ID>``,
``sink:<name>``. An edge is (from, to, topic); an edge into a consumer that commits to a group
carries the group, its lag (end offsets - committed, summed over partitions; a partition with
no commit counts whole, as ``instore status`` counts it) and its rate (committed offsets per
second); an edge into a topic carries the topic's rate (end offsets per second).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from instore import groups
from instore import topics as t
from instore.channels import kiosk_channel, shopper_channel
from instore.errors import InstoreError
from instore.health import worker_agents
from instore.settings import Settings

NodeKind = Literal["source", "topic", "agent", "query", "sink"]
CACHE_S = 3.0  # live figures are read at most this often
READ_TIMEOUT_S = 3.0

WORKER_AGENTS = ("proximity", "policy", "analytics")
# What the worker's replicated views read (stream_apps/views.py: no group, nothing committed).
VIEW_TOPICS = (t.STORES_PRODUCTS, t.PRODUCTS_PROMOTIONS, t.SHOPPER_CONSENTS)
# Who writes what from outside the stream apps (producers/, edge/, api/routes/).
SOURCES: dict[str, tuple[str, tuple[t.Topic, ...]]] = {
    "edge": ("edge / simulators", (t.CUSTOMERS_LOCATIONS, t.KIOSK_INTERACTIONS)),
    "api": ("API", (t.PRODUCTS_PROMOTIONS, t.STORES_PRODUCTS, t.SHOPPER_CONSENTS,
                    t.KIOSK_INTERACTIONS, t.OFFER_EVENTS)),
}
REDIS = "sink:redis"


def topic_id(name: str) -> str:
    return f"topic:{name}"


@dataclass
class Node:
    id: str
    kind: NodeKind
    label: str
    attrs: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "label": self.label, **self.attrs}


@dataclass
class Edge:
    src: str
    dst: str
    topic: str | None
    group: str | None = None  # the consumer group the reader at ``dst`` commits to
    rate_per_s: float | None = None
    lag: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"from": self.src, "to": self.dst, "topic": self.topic, "group": self.group,
                "rate_per_s": self.rate_per_s, "lag": self.lag}


@dataclass
class Graph:
    nodes: dict[str, Node] = field(default_factory=dict)
    edges: list[Edge] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def node(self, node_id: str, kind: NodeKind, label: str, **attrs: Any) -> Node:
        if node_id not in self.nodes:
            self.nodes[node_id] = Node(node_id, kind, label, dict(attrs))
        return self.nodes[node_id]

    def topic(self, name: str) -> str:
        """The topic's node (one outside the contract, e.g. a ksqlDB query's sink, is added
        with ``contract: false``); returns its id."""
        contract = t.BY_NAME.get(name)
        if contract is None:
            self.node(topic_id(name), "topic", name, contract=False)
        else:
            self.node(topic_id(name), "topic", name, contract=True, table=contract.compacted,
                      description=contract.description)
        return topic_id(name)

    def reads(self, reader: str, topic: t.Topic | str, group: str | None) -> None:
        name = topic if isinstance(topic, str) else topic.name
        self.edges.append(Edge(self.topic(name), reader, name, group))

    def writes(self, writer: str, topic: t.Topic | str) -> None:
        name = topic if isinstance(topic, str) else topic.name
        self.edges.append(Edge(writer, self.topic(name), name))

    def topic_names(self) -> list[str]:
        return sorted(n.label for n in self.nodes.values() if n.kind == "topic")

    def groups(self) -> list[str]:
        return sorted({e.group for e in self.edges if e.group is not None})

    def writers_of(self, topic: str) -> list[str]:
        return [e.src for e in self.edges if e.dst == topic_id(topic)]

    def to_json(self) -> dict[str, Any]:
        return {"nodes": [n.to_json() for n in self.nodes.values()],
                "edges": [e.to_json() for e in self.edges],
                "warnings": list(self.warnings)}


# The ksqlDB side -------------------------------------------------------------------------------

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


# The graph -----------------------------------------------------------------------------------

def _worker(g: Graph, settings: Settings) -> None:
    agents = worker_agents(settings) & set(WORKER_AGENTS)
    group = groups.worker(settings)
    common = {"engine": "faust", "group": group}
    policy_inline = {"proximity", "policy"} <= agents
    dwell_inline = {"proximity", "analytics"} <= agents
    if "proximity" in agents:
        inline = [name for name, yes in (("policy", policy_inline),
                                         ("analytics dwell", dwell_inline)) if yes]
        label = "proximity" + (f" (+ {', '.join(inline)})" if inline else "")
        node = g.node("agent:proximity", "agent", label, inline=inline, **common).id
        g.reads(node, t.CUSTOMERS_LOCATIONS, group)
        for topic in VIEW_TOPICS:
            g.reads(node, topic, None)
        g.writes(node, t.NEARBY_CUSTOMERS)
        if policy_inline:
            g.writes(node, t.OFFERS)
        g.writes(node, t.DEAD_LETTERS)
        g.edges.append(Edge(node, REDIS, None))
    if "policy" in agents and not policy_inline:
        node = g.node("agent:policy", "agent", "policy", **common).id
        g.reads(node, t.NEARBY_CUSTOMERS, group)
        g.reads(node, t.SHOPPER_CONSENTS, None)
        g.writes(node, t.OFFERS)
        g.writes(node, t.DEAD_LETTERS)
        g.edges.append(Edge(node, REDIS, None))
    if "analytics" in agents:
        node = g.node("agent:analytics", "agent", "analytics", **common).id
        if not dwell_inline:
            g.reads(node, t.NEARBY_CUSTOMERS, group)
        g.reads(node, t.OFFER_EVENTS, group)
        g.edges.append(Edge(node, REDIS, None))


def _sinks(g: Graph) -> None:
    push = g.node("sink:push", "sink", "push sink → Ably channels", group=groups.PUSH_SINK,
                  channels=[shopper_channel("{uid}"), kiosk_channel("{store_id}", "{kiosk_id}")]).id
    g.reads(push, t.OFFERS, groups.PUSH_SINK)
    g.reads(push, t.KIOSK_INTERACTIONS, groups.PUSH_SINK)
    g.reads(push, t.SHOPPER_CONSENTS, None)  # its own consent reader, from the start
    g.writes(push, t.OFFER_EVENTS)
    g.writes(push, t.DEAD_LETTERS)
    g.edges.append(Edge(push, REDIS, None))
    from instore.archive import DATASETS  # noqa: PLC0415 (pyarrow: only when drawn)

    archive = g.node("sink:archive", "sink", "archiver → Parquet archive",
                     group=groups.ARCHIVER).id
    for dataset in DATASETS:  # what the archiver reads (stream_apps/archive)
        g.reads(archive, dataset.topic, groups.ARCHIVER)


def build_graph(settings: Settings, queries: list[Query] | None = None) -> Graph:
    """The flow graph: every contract topic, the sources, the worker's agents (as the settings
    run them), the ksqlDB ``queries`` (``None``: ksqlDB could not be read), the sinks."""
    g = Graph()
    for topic in t.ALL:
        g.topic(topic.name)
    for name, (label, written) in SOURCES.items():
        node = g.node(f"source:{name}", "source", label).id
        for topic in written:
            g.writes(node, topic)
    g.node(REDIS, "sink", "Redis serving store")
    g.edges.append(Edge("source:api", REDIS, None))
    _worker(g, settings)
    for q in queries or []:
        node = g.node(f"query:{q.id}", "query", q.id, engine="ksqldb", state=q.state,
                      group=q.group, statement=q.statement).id
        for name in q.source_topics:
            g.reads(node, name, q.group)
        for name in q.sink_topics:
            g.writes(node, name)
    _sinks(g)
    _check_nearby_writers(g, settings, queries)
    return g


def _check_nearby_writers(g: Graph, settings: Settings, queries: list[Query] | None) -> None:
    nearby = t.NEARBY_CUSTOMERS.name
    by_query = [q.id for q in queries or [] if nearby in q.sink_topics]
    if settings.nearby_engine == "ksqldb" and not by_query:
        label = "ksqlDB (not read)" if queries is None else "ksqlDB query (not running)"
        node = g.node("query:nearby-expected", "query", label, engine="ksqldb", state="UNKNOWN"
                      if queries is None else "NOT_RUNNING").id
        g.writes(node, t.NEARBY_CUSTOMERS)
        if queries is not None:
            g.warnings.append(f"NEARBY_ENGINE=ksqldb but no running ksqlDB query writes {nearby}"
                              " (run `instore ksql migrate`)")
    if len(g.writers_of(nearby)) > 1:
        g.warnings.append(f"{nearby} has {len(g.writers_of(nearby))} writers "
                          f"({', '.join(g.writers_of(nearby))}): one engine should write it "
                          f"(NEARBY_ENGINE={settings.nearby_engine})")


# Live figures ---------------------------------------------------------------------------------

Offsets = Mapping[str, Mapping[int, int]]  # topic -> partition -> offset


@dataclass(frozen=True)
class Sample:
    """What the broker (and the serving store) said at one moment (``at_s``: monotonic)."""

    at_s: float
    ends: Offsets
    committed: Mapping[str, Offsets] = field(default_factory=dict)  # group -> offsets
    counters: Mapping[str, int] = field(default_factory=dict)
    group_states: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


def _delta_rate(before: Mapping[int, int], after: Mapping[int, int], dt: float) -> float:
    moved = sum(max(0, after[p] - before[p]) for p in after.keys() & before.keys())
    return moved / dt


def topic_rates(prev: Sample | None, cur: Sample) -> dict[str, float | None]:
    """Records per second appended to each topic between two samples (None: no earlier
    sample of it)."""
    dt = cur.at_s - prev.at_s if prev is not None else 0.0
    out: dict[str, float | None] = {}
    for topic, ends in cur.ends.items():
        before = prev.ends.get(topic) if prev is not None else None
        out[topic] = _delta_rate(before, ends, dt) if before is not None and dt > 0 else None
    return out


def group_lag(ends: Mapping[int, int], committed: Mapping[int, int] | None) -> int:
    """Records a group has yet to read on a topic: end - committed per partition, the whole
    partition where it committed nothing (as ``instore.health.consumer_lag`` counts)."""
    committed = committed or {}
    return sum(max(0, end - committed[p]) if committed.get(p, -1) >= 0 else end
               for p, end in ends.items())


def group_rate(prev: Sample | None, cur: Sample, group: str, topic: str) -> float | None:
    """Records per second the group committed on the topic between two samples (None: the
    group's offsets were not read both times)."""
    if (prev is None or cur.at_s <= prev.at_s or group not in prev.committed
            or group not in cur.committed):
        return None
    return _delta_rate(prev.committed[group].get(topic, {}), cur.committed[group].get(topic, {}),
                       cur.at_s - prev.at_s)


def counter_rates(prev: Sample | None, cur: Sample) -> dict[str, float]:
    if prev is None or cur.at_s <= prev.at_s:
        return {}
    dt = cur.at_s - prev.at_s
    return {k: max(0, v - prev.counters[k]) / dt for k, v in cur.counters.items()
            if k in prev.counters}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def apply_live(g: Graph, prev: Sample | None, cur: Sample) -> None:
    """Put the live figures on the graph: per topic node its partitions, end offset and rate;
    per edge its rate and, for a consumer edge with a group, the lag; per group's node the
    group's state; on the Redis node the serving counters and their rates."""
    rates = topic_rates(prev, cur)
    for node in g.nodes.values():
        if node.kind != "topic":
            continue
        ends = cur.ends.get(node.label)
        node.attrs["exists"] = ends is not None
        if ends is not None:
            node.attrs |= {"partitions": len(ends), "end_offset": sum(ends.values()),
                           "rate_per_s": _round(rates.get(node.label))}
    for edge in g.edges:
        if edge.topic is None or edge.topic not in cur.ends:
            continue
        if edge.group is None:
            edge.rate_per_s = _round(rates.get(edge.topic))
            continue
        edge.lag = group_lag(cur.ends[edge.topic], cur.committed.get(edge.group, {}).get(edge.topic))
        edge.rate_per_s = _round(group_rate(prev, cur, edge.group, edge.topic))
    for node in g.nodes.values():
        group = node.attrs.get("group")
        if group is not None and group in cur.group_states:
            node.attrs["group_state"] = dict(cur.group_states[group])
    if REDIS in g.nodes and cur.counters:
        g.nodes[REDIS].attrs["counters"] = dict(cur.counters)
        g.nodes[REDIS].attrs["counter_rates"] = {k: _round(v) for k, v in
                                                 counter_rates(prev, cur).items()}


# Reading (I/O) --------------------------------------------------------------------------------

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
