"""Ably capabilities: which operations a key or token may perform on which channels.

A capability is a JSON object ``{"<resource>": ["<op>", ...]}``. A resource is a channel name,
``*`` (every channel) or ``<namespace>:*`` (every channel whose name starts with
``<namespace>:``); an operation is ``publish``, ``subscribe``, ``history``, ``presence`` or
``*`` (all). Pure functions, no I/O.
"""

from __future__ import annotations

import json
from typing import Any

from instore.errors import InstoreError

OPERATIONS = frozenset({"publish", "subscribe", "history", "presence", "channel-metadata"})
ALL_OPS = "*"

Capability = dict[str, frozenset[str]]


class CapabilityError(InstoreError, ValueError):
    """A capability that is not a JSON object of resource -> list of operations."""


def parse(raw: str | dict[str, Any] | None) -> Capability:
    """JSON text or dict -> capability; ``None``/empty = no explicit request (``{}``)."""
    if raw is None or raw == "":
        return {}
    if isinstance(raw, str):
        try:
            data = json.loads(raw)
        except json.JSONDecodeError:
            msg = "capability is not valid JSON"
            raise CapabilityError(msg) from None
    else:
        data = raw
    if not isinstance(data, dict):
        msg = "capability must be a JSON object"
        raise CapabilityError(msg)
    out: Capability = {}
    for resource, ops in data.items():
        if not isinstance(resource, str) or not resource:
            msg = "capability resources must be non-empty strings"
            raise CapabilityError(msg)
        if isinstance(ops, str):
            ops = [ops]
        if not isinstance(ops, list) or not all(isinstance(o, str) for o in ops):
            msg = f"capability operations for {resource!r} must be a list of strings"
            raise CapabilityError(msg)
        unknown = [o for o in ops if o != ALL_OPS and o not in OPERATIONS]
        if unknown:
            msg = f"unknown capability operation {unknown[0]!r}"
            raise CapabilityError(msg)
        out[resource] = frozenset(ops)
    return out


def dumps(cap: Capability) -> str:
    """Canonical JSON text (sorted resources and operations), as tokens carry it."""
    return json.dumps({r: sorted(ops) for r, ops in sorted(cap.items())}, separators=(",", ":"))


def resource_matches(resource: str, channel: str) -> bool:
    if resource in (ALL_OPS, channel):
        return True
    if resource.endswith(":*"):
        return channel.startswith(resource[:-1])
    return False


def _covers(general: str, specific: str) -> bool:
    """Resource ``general`` includes every channel ``specific`` names."""
    if general == ALL_OPS or general == specific:
        return True
    if general.endswith(":*"):
        prefix = general[:-1]
        return specific.startswith(prefix)
    return False


def _ops_and(a: frozenset[str], b: frozenset[str]) -> frozenset[str]:
    if ALL_OPS in a:
        return b
    if ALL_OPS in b:
        return a
    return a & b


def intersect(requested: Capability, granted: Capability) -> Capability:
    """What a token may do: the requested capability limited to what the key grants.

    An empty request means "everything the key grants". Resources are kept at the more specific
    of the two names, so ``{"shopper:a": ["subscribe"]}`` under a key with ``{"*": ["*"]}`` stays
    ``{"shopper:a": ["subscribe"]}``.
    """
    if not requested:
        return dict(granted)
    out: dict[str, frozenset[str]] = {}
    for req_res, req_ops in requested.items():
        for key_res, key_ops in granted.items():
            if _covers(key_res, req_res):
                resource = req_res
            elif _covers(req_res, key_res):
                resource = key_res
            else:
                continue
            ops = _ops_and(req_ops, key_ops)
            if ops:
                out[resource] = out.get(resource, frozenset()) | ops
    return out


def allows(cap: Capability, channel: str, operation: str) -> bool:
    """True when ``cap`` permits ``operation`` on ``channel``."""
    for resource, ops in cap.items():
        if resource_matches(resource, channel) and (ALL_OPS in ops or operation in ops):
            return True
    return False
