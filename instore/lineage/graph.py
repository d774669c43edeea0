"""The lineage graph (pure): every contract topic, the sources, the worker's agents as the
settings run them, the running ksqlDB queries, the sinks, and a warning when NEARBY_CUSTOMERS
has no writer or more than one."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from instore import groups
from instore import topics as t
from instore.channels import kiosk_channel, shopper_channel
from instore.health import worker_agents
from instore.lineage.queries import Query
from instore.settings import Settings

NodeKind = Literal["source", "topic", "agent", "query", "sink"]

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
