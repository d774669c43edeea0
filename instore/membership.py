"""Consumer-group members of processes that died, and removing them from their group.

A SIGKILLed consumer cannot leave its group; the broker keeps it (often as the group's leader)
until its session times out, and a successor that joins meanwhile is made a follower of a dead
leader: its SyncGroup fails only after most of a session timeout and it has to join again. Each
process records its member id with its pid in its data dir (``MemberRecord``); a process that
starts sends LeaveGroup for the recorded members whose process is gone
(``leave_group_members``). Only members of dead processes on this host that used the same
record are removed. The Faust worker (``stream_apps.transport``) and the push sink use it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import ssl
from pathlib import Path
from typing import Any

from instore.settings import Settings

log = logging.getLogger(__name__)
MEMBERS_FILE = "group-members.json"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class MemberRecord:
    """``{member_id: pid}`` of one data dir's consumers, in a small JSON file (atomic writes)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> dict[str, int]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict):
            return {}
        return {str(k): int(v) for k, v in data.items() if isinstance(v, int)}

    def write(self, members: dict[str, int]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(members))
        tmp.replace(self.path)

    def dead(self) -> list[str]:
        """Member ids recorded by processes that no longer run (never this process)."""
        me = os.getpid()
        return [m for m, pid in self.read().items() if pid != me and not pid_alive(pid)]

    def set_mine(self, member_id: str) -> None:
        """Record this process's member id (replacing its older ones), dropping dead entries."""
        me = os.getpid()
        members = {m: pid for m, pid in self.read().items() if pid != me and pid_alive(pid)}
        members[member_id] = me
        self.write(members)

    def forget(self, member_ids: list[str]) -> None:
        members = self.read()
        for m in member_ids:
            members.pop(m, None)
        self.write(members)


def _client_kwargs(settings: Settings) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"bootstrap_servers": settings.bootstrap_servers.split(","),
                              "security_protocol": settings.kafka_security_protocol}
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        kwargs["ssl_context"] = ssl.create_default_context(cafile=settings.kafka_ssl_ca_location)
    if settings.kafka_security_protocol.startswith("SASL"):
        kwargs |= {"sasl_mechanism": settings.kafka_sasl_mechanism,
                   "sasl_plain_username": settings.kafka_sasl_username,
                   "sasl_plain_password": (settings.kafka_sasl_password.get_secret_value()
                                           if settings.kafka_sasl_password else None)}
    return kwargs


async def leave_group_members(settings: Settings, group_id: str, member_ids: list[str],
                              timeout_s: float = 10.0) -> int:
    """Send LeaveGroup for each member id; returns how many the coordinator accepted."""
    from aiokafka.client import AIOKafkaClient  # noqa: PLC0415
    from aiokafka.errors import KafkaError  # noqa: PLC0415
    from aiokafka.protocol.group import LeaveGroupRequest  # noqa: PLC0415

    client = AIOKafkaClient(**_client_kwargs(settings))
    removed = 0
    try:
        await asyncio.wait_for(client.bootstrap(), timeout_s)
        node = await asyncio.wait_for(client.coordinator_lookup(0, group_id), timeout_s)
        for member_id in member_ids:
            resp = await asyncio.wait_for(
                client.send(node, LeaveGroupRequest(group_id, member_id)), timeout_s)
            removed += getattr(resp, "error_code", 1) == 0
    except (KafkaError, OSError, TimeoutError) as exc:
        log.warning("could not remove a stopped consumer's group member: %s", exc)
    finally:
        await client.close()
    return removed


async def remove_dead_members(settings: Settings, group_id: str, record: MemberRecord) -> None:
    """Remove from ``group_id`` the recorded members whose process is gone."""
    try:
        dead = record.dead()
    except OSError as exc:
        log.warning("cannot read the recorded group members: %s", exc)
        return
    if not dead:
        return
    removed = await leave_group_members(settings, group_id, dead)
    log.info("removed %d group member(s) of stopped processes from %s", removed, group_id)
    try:
        record.forget(dead)
    except OSError as exc:
        log.warning("cannot update the recorded group members: %s", exc)
