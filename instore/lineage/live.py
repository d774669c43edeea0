"""Live figures on the lineage graph (pure): topic rates, consumer groups' lag and rates, and
the serving counters' rates, from two ``Sample``s of what the broker said."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from instore.lineage.graph import REDIS, Graph

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
