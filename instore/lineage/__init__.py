"""Stream lineage: how data flows from its sources through topics, Faust agents and ksqlDB
queries to more topics and the sinks (push, archive, Redis), with live rates and lag.

Layers, kept apart, one module each:

- ``graph`` (pure): ``build_graph`` draws the static flow from the topic contract
  (``instore.topics``) and the settings that decide which agents the worker runs and which
  engine writes NEARBY_CUSTOMERS, plus the running ksqlDB persistent queries given as plain
  ``Query`` values;
- ``queries`` (pure): ``parse_queries`` reads those ``Query`` values from the ksqlDB REST API's
  answers;
- ``live`` (pure): ``apply_live`` puts rates and lag on the graph from two ``Sample``s (end
  offsets per partition, committed offsets per consumer group, the serving counters);
- ``reading`` (I/O): ``read_ksqldb`` and ``read_sample`` ask ksqlDB and the broker; ``Lineage``
  keeps the previous sample in the process, caches the answer a few seconds and reports a part
  it could not read (``sources``) instead of failing.

Node ids: ``source:<name>``, ``topic:<topic>``, ``agent:<agent>``, ``query:<QUERY_ID>``,
``sink:<name>``. An edge is (from, to, topic); an edge into a consumer that commits to a group
carries the group, its lag (end offsets - committed, summed over partitions; a partition with
no commit counts whole, as ``instore status`` counts it) and its rate (committed offsets per
second); an edge into a topic carries the topic's rate (end offsets per second).
"""
