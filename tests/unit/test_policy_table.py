"""The policy table as the worker's processors write it: the store changes at once and each
change becomes the changelog record Faust restores the table from (JSON key and value, the
uid's partition, a tombstone for a deleted state)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import orjson

from stream_apps.policy_table import PolicyTable


class FakeTable(dict[str, Any]):
    """What PolicyTable uses of a Faust table: item access, ``data`` (its store), the key's
    changelog partition and the changelog topic."""

    def __init__(self) -> None:
        super().__init__()
        self.data = self
        self.changelog_topic = SimpleNamespace(get_topic_name=lambda: "app-policy-state-changelog")

    def partition_for_key(self, key: str) -> int:
        return len(key) % 3


def test_writes_go_to_the_store_and_become_changelog_records() -> None:
    table = FakeTable()
    policy = PolicyTable(table)
    state = {"near": {"p1": (1, 2)}, "last_offer": {"p1": 2}, "recent": [2]}
    policy["u1"] = state
    policy["u22"] = {"near": {}, "last_offer": {}, "recent": []}
    assert table["u1"] is state and policy.get("u1") is state and policy.get("nope") is None
    assert policy.topic == "app-policy-state-changelog"
    records = policy.take()
    assert [(p, orjson.loads(k)) for p, k, _ in records] == [(2, "u1"), (0, "u22")]
    assert orjson.loads(records[0][2] or b"") == {"near": {"p1": [1, 2]}, "last_offer": {"p1": 2},
                                                  "recent": [2]}
    assert policy.take() == []  # taken once


def test_a_deleted_state_is_a_tombstone() -> None:
    table = FakeTable()
    policy = PolicyTable(table)
    policy["u1"] = {"recent": [1]}
    assert policy.pop("u1", None) == {"recent": [1]}
    assert policy.pop("u1", None) is None  # already gone: nothing more to send
    assert "u1" not in table and len(policy) == 0 and list(policy) == []
    assert policy.take() == [(2, b'"u1"', b'{"recent":[1]}'), (2, b'"u1"', None)]
