"""Privacy finding 8: the cloud ACLs (terraform/contract.tf.json, generated from
``instore.commands.cloud.contract.WORKLOAD_ACCESS``) grant each workload every topic its code uses.

Each workload's code is read (ast): every contract topic it names (``t.OFFERS``, ...) must be
granted, READ or WRITE; topics it subscribes to must be granted READ. So a service that starts
reading a topic without a grant fails here, not in the cloud."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from instore import topics as t
from instore.commands.cloud.contract import WORKLOAD_ACCESS, contract_tf

ROOT = Path(__file__).resolve().parents[2]
CODE = {  # workload -> the code that runs under its credentials
    "stream_app": ["stream_apps/app.py", "stream_apps/views.py", "stream_apps/analytics.py",
                   "stream_apps/basket.py", "stream_apps/output.py",
                   "stream_apps/serving_writer.py"],
    "push_sink": ["mobile_push/sink.py", "mobile_push/routing.py", "mobile_push/consents.py",
                  "mobile_push/publisher.py", "mobile_push/backoff.py"],
    "edge": ["edge"],
    "api": ["api/routes", "api/tables.py", "api/services.py", "api/main.py"],
}
BY_ATTR = {name: topic for name, topic in vars(t).items() if isinstance(topic, t.Topic)}


def _files(paths: list[str]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        path = ROOT / p
        out += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return out


def _named_topics(paths: list[str]) -> set[str]:
    """Contract topics named as ``t.NAME`` / ``topics.NAME`` in the code."""
    found: set[str] = set()
    for path in _files(paths):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in BY_ATTR \
                    and isinstance(node.value, ast.Name) and node.value.id in ("t", "topics"):
                found.add(BY_ATTR[node.attr].name)
    return found


@pytest.mark.parametrize("workload", sorted(CODE))
def test_every_topic_a_workload_uses_is_granted(workload: str) -> None:
    access = contract_tf()["locals"]["workload_access"][workload]
    granted = set(access["read"]) | set(access["write"])
    missing = _named_topics(CODE[workload]) - granted
    assert not missing, f"{workload} uses {sorted(missing)} without an ACL"


def test_the_push_sink_may_read_what_it_subscribes_to() -> None:
    from mobile_push.sink import SUBSCRIBED

    read = {topic.name for topic in WORKLOAD_ACCESS["push_sink"]["read"]}
    assert {topic.name for topic in SUBSCRIBED} <= read
    assert t.SHOPPER_CONSENTS.name in read  # consent is checked before every push
