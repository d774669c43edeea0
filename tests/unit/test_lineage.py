"""The lineage graph on plain data: who writes NEARBY_CUSTOMERS under each engine, ksqlDB
queries from the REST API's answers, the whole contract in every graph, rates and lag from
offset samples."""

from __future__ import annotations

import pytest

from instore import groups
from instore import topics as t
from instore.lineage.graph import Graph, build_graph, topic_id
from instore.lineage.live import Sample, apply_live, group_lag, topic_rates
from instore.lineage.queries import Query, listed_queries, needs_explain, parse_queries, source_topics
from instore.settings import Settings

NEARBY = t.NEARBY_CUSTOMERS.name
CL = t.CUSTOMERS_LOCATIONS.name


def settings(**kw: object) -> Settings:
    return Settings(_env_file=None, **kw)  # type: ignore[call-arg]


def writers(graph: Graph, topic: str) -> list[str]:
    return sorted(e.src for e in graph.edges if e.dst == topic_id(topic))


def readers(graph: Graph, topic: str) -> dict[str, str | None]:
    return {e.dst: e.group for e in graph.edges if e.src == topic_id(topic)}


# What the local ksqlDB-compatible endpoint answers (stream_apps/ksqldb/entities.py) ---------
SHOW_SOURCES = [
    {"@type": "streams", "streams": [
        {"type": "STREAM", "name": "CUSTOMERS_LOCATIONS", "topic": CL},
        {"type": "STREAM", "name": "NEARBY_CUSTOMERS", "topic": NEARBY}]},
    {"@type": "tables", "tables": [
        {"type": "TABLE", "name": "PROMOTED_PRODUCTS", "topic": "PROMOTED_PRODUCTS"}]},
]
LOCAL_QUERIES = [{"@type": "queries", "queries": [
    {"queryString": "INSERT INTO NEARBY_CUSTOMERS SELECT ...", "id": "INSERTQUERY_7",
     "sinks": ["NEARBY_CUSTOMERS"], "sinkKafkaTopics": [NEARBY],
     "sources": ["CUSTOMERS_LOCATIONS", "PROMOTED_PRODUCTS"], "statusCount": {"RUNNING": 1},
     "queryType": "PERSISTENT", "state": "RUNNING"},
    {"queryString": "SELECT * FROM CUSTOMERS_LOCATIONS EMIT CHANGES;", "id": "transient_1",
     "sinks": [], "sinkKafkaTopics": [], "statusCount": {"RUNNING": 1}, "queryType": "PUSH",
     "state": "RUNNING"},
]}]
# What ksqlDB answers to SHOW QUERIES EXTENDED (a QueryDescription per query)
KSQLDB_EXTENDED = [{"@type": "query_descriptions", "queryDescriptions": [
    {"id": "CTAS_PROMOTED_PRODUCTS_3", "statementText": "CREATE TABLE PROMOTED_PRODUCTS AS ...",
     "sources": ["PRODUCTS", "PROMOTIONS"], "sinks": ["PROMOTED_PRODUCTS"],
     "topology": "Topologies:\n   Sub-topology: 0\n    Source: KSTREAM-SOURCE-0000000000 "
                 "(topics: [stores_products])\n    Source: KSTREAM-SOURCE-0000000003 "
                 "(topics: [products_promotions])\n",
     "queryType": "PERSISTENT", "ksqlHostQueryStatus": {"ksqldb:8088": "RUNNING"}},
]}]


def local_queries() -> list[Query]:
    listed = listed_queries(LOCAL_QUERIES)
    return parse_queries(listed, source_topics(SHOW_SOURCES), "default_")


def test_faust_engine_the_proximity_agent_writes_nearby():
    g = build_graph(settings(nearby_engine="faust"), [])
    assert writers(g, NEARBY) == ["agent:proximity"]
    assert readers(g, CL)["agent:proximity"] == "instore-stream"
    # the policy and dwell run inline: nobody in the worker reads NEARBY_CUSTOMERS back
    assert set(readers(g, NEARBY)) == {"sink:archive"}
    assert writers(g, t.OFFERS.name) == ["agent:proximity"]
    assert not g.warnings


def test_ksqldb_engine_a_query_writes_nearby_and_the_worker_reads_it():
    g = build_graph(settings(nearby_engine="ksqldb", app_id="w1"), local_queries())
    assert writers(g, NEARBY) == ["query:INSERTQUERY_7"]
    assert "agent:proximity" not in g.nodes
    assert readers(g, NEARBY) == {"agent:policy": "w1", "agent:analytics": "w1",
                                  "sink:archive": groups.ARCHIVER}
    assert writers(g, t.OFFERS.name) == ["agent:policy"]
    assert not g.warnings


def test_ksqldb_engine_without_a_running_query_says_so():
    unread = build_graph(settings(nearby_engine="ksqldb"), None)
    assert writers(unread, NEARBY) == ["query:nearby-expected"]
    assert unread.nodes["query:nearby-expected"].attrs["state"] == "UNKNOWN"
    none_running = build_graph(settings(nearby_engine="ksqldb"), [])
    assert writers(none_running, NEARBY) == ["query:nearby-expected"]
    assert any("no running ksqlDB query writes" in w for w in none_running.warnings)


def test_two_writers_of_nearby_are_warned_about():
    g = build_graph(settings(nearby_engine="faust"), local_queries())
    assert writers(g, NEARBY) == ["agent:proximity", "query:INSERTQUERY_7"]
    assert any("2 writers" in w for w in g.warnings)


def test_a_listed_query_is_a_node_with_its_source_and_sink_edges():
    queries = local_queries()
    assert [q.id for q in queries] == ["INSERTQUERY_7"]  # the push query is not a flow
    g = build_graph(settings(nearby_engine="ksqldb"), queries)
    node = g.nodes["query:INSERTQUERY_7"]
    assert node.kind == "query" and node.attrs["state"] == "RUNNING"
    group = "_confluent-ksql-default_query_INSERTQUERY_7"
    assert node.attrs["group"] == group
    assert readers(g, CL)["query:INSERTQUERY_7"] == group
    assert readers(g, "PROMOTED_PRODUCTS") == {"query:INSERTQUERY_7": group}
    assert g.nodes["topic:PROMOTED_PRODUCTS"].attrs["contract"] is False


def test_ksqldb_query_descriptions_resolve_sources_by_name_or_topology():
    listed = listed_queries(KSQLDB_EXTENDED)
    # PRODUCTS and PROMOTIONS are not in the SHOW answer: the topology names their topics
    [q] = parse_queries(listed, source_topics(SHOW_SOURCES), "pksqlc-abc12")
    assert q.source_topics == (t.STORES_PRODUCTS.name, t.PRODUCTS_PROMOTIONS.name)
    assert q.sink_topics == ("PROMOTED_PRODUCTS",)
    assert q.state == "RUNNING"
    assert q.group == "_confluent-ksql-pksqlc-abc12query_CTAS_PROMOTED_PRODUCTS_3"


def test_queries_listed_without_sources_are_completed_by_explain():
    listed = [{"id": "CSAS_X_1", "queryString": "CREATE STREAM X AS ...", "sinks": ["X"],
               "sinkKafkaTopics": ["x"], "queryType": "PERSISTENT", "state": "RUNNING"}]
    assert needs_explain(listed[0])
    explained = {"CSAS_X_1": {"sources": ["NEARBY_CUSTOMERS"], "sinks": ["X"]}}
    [q] = parse_queries(listed, source_topics(SHOW_SOURCES), "default_", explained)
    assert q.source_topics == (NEARBY,) and q.sink_topics == ("x",)


@pytest.mark.parametrize("engine", ["faust", "ksqldb"])
@pytest.mark.parametrize("agents", ["proximity,policy,analytics", "proximity", "policy",
                                    "analytics", ""])
def test_every_contract_topic_is_a_node_and_every_edge_joins_nodes(engine, agents):
    for queries in (None, [], local_queries()):
        g = build_graph(settings(nearby_engine=engine, worker_agents=agents), queries)
        for topic in t.ALL:
            node = g.nodes[topic_id(topic.name)]
            assert node.kind == "topic" and node.attrs["contract"] is True
        assert all(e.src in g.nodes and e.dst in g.nodes for e in g.edges)
        doc = g.to_json()
        assert {n["id"] for n in doc["nodes"]} == set(g.nodes)
        assert all(set(e) >= {"from", "to", "topic", "rate_per_s", "lag"} for e in doc["edges"])


def test_rates_from_two_offset_samples():
    first = Sample(at_s=100.0, ends={CL: {0: 100, 1: 50}, NEARBY: {0: 7}})
    second = Sample(at_s=104.0, ends={CL: {0: 140, 1: 90}, NEARBY: {0: 7},
                                          t.OFFERS.name: {0: 3}})
    assert topic_rates(None, first) == {CL: None, NEARBY: None}
    assert topic_rates(first, second) == {CL: 20.0, NEARBY: 0.0, t.OFFERS.name: None}


def test_live_figures_on_the_edges():
    s = settings(nearby_engine="faust", app_id="w1")
    ends1 = {topic.name: {0: 0, 1: 0} for topic in t.ALL}
    ends2 = {topic.name: {0: 0, 1: 0} for topic in t.ALL}
    ends1[CL], ends2[CL] = {0: 100, 1: 100}, {0: 130, 1: 110}
    first = Sample(at_s=10.0, ends=ends1, committed={"w1": {CL: {0: 90, 1: 100}}},
                       counters={"positions": 1000})
    second = Sample(at_s=12.0, ends=ends2, committed={"w1": {CL: {0: 120}}},
                        counters={"positions": 1040},
                        group_states={"w1": {"state": "stable", "members": 1}})
    g = build_graph(s, [])
    apply_live(g, None, first)
    produced = next(e for e in g.edges if e.src == "source:edge" and e.topic == CL)
    assert produced.rate_per_s is None  # one sample: no rate yet
    apply_live(g, first, second)
    assert produced.rate_per_s == 20.0  # (30 + 10) records in 2 s
    consumed = next(e for e in g.edges if e.dst == "agent:proximity" and e.topic == CL)
    # partition 0: 130 - 120; partition 1 has no commit now: all 110 of it
    assert consumed.lag == 10 + 110
    assert consumed.rate_per_s == 15.0  # committed 90 -> 120 on partition 0 in 2 s
    view = next(e for e in g.edges if e.dst == "agent:proximity"
                and e.topic == t.STORES_PRODUCTS.name)
    assert view.group is None and view.lag is None and view.rate_per_s == 0.0
    archived = next(e for e in g.edges if e.dst == "sink:archive" and e.topic == CL)
    assert archived.lag == 240 and archived.rate_per_s is None  # its group was never read
    assert g.nodes["agent:proximity"].attrs["group_state"] == {"state": "stable", "members": 1}
    assert g.nodes[topic_id(CL)].attrs["end_offset"] == 240
    assert g.nodes["sink:redis"].attrs["counter_rates"] == {"positions": 20.0}


def test_lag_counts_an_uncommitted_partition_whole():
    assert group_lag({0: 10, 1: 5}, {0: 4}) == 6 + 5
    assert group_lag({0: 10}, None) == 10
    assert group_lag({0: 10}, {0: 12}) == 0
