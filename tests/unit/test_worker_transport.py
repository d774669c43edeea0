"""The worker transport's record of its consumer-group members (used to remove the member of a
killed predecessor before joining) and its leave in generation 0."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

from aiokafka.protocol.group import LeaveGroupRequest

from stream_apps.transport import MemberRecord, _leave_generation_zero


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])  # noqa: S603
    proc.wait()
    return proc.pid


def test_dead_members_are_those_of_stopped_processes(tmp_path) -> None:
    record = MemberRecord(tmp_path / "members.json")
    assert record.dead() == []
    gone = _dead_pid()
    parent = os.getppid()  # alive, not us
    record.write({"m-gone": gone, "m-live": parent, "m-mine": os.getpid()})
    assert record.dead() == ["m-gone"]
    record.forget(["m-gone"])
    assert record.read() == {"m-live": parent, "m-mine": os.getpid()}


def test_set_mine_replaces_this_process_entry_and_drops_dead_ones(tmp_path) -> None:
    record = MemberRecord(tmp_path / "sub" / "members.json")
    record.write({"old-mine": os.getpid(), "m-gone": _dead_pid(), "m-live": os.getppid()})
    record.set_mine("new-mine")
    assert record.read() == {"m-live": os.getppid(), "new-mine": os.getpid()}


def test_unreadable_record_is_empty(tmp_path) -> None:
    path = tmp_path / "members.json"
    path.write_text("{not json")
    assert MemberRecord(path).read() == {}
    path.write_text('["a list"]')
    assert MemberRecord(path).read() == {}


class _Coordinator:
    group_id = "g"
    _group_instance_id = None

    def __init__(self, generation: int, member_id: str) -> None:
        self.generation, self.member_id = generation, member_id
        self.sent: list[object] = []

    async def _send_req(self, request: object) -> object:
        self.sent.append(request)
        return object()

    def reset_generation(self) -> None:
        self.generation, self.member_id = -1, ""


def test_leaves_in_generation_zero_but_not_before_joining() -> None:
    joined = _Coordinator(0, "member-1")
    asyncio.run(_leave_generation_zero(joined))
    assert len(joined.sent) == 1
    assert isinstance(joined.sent[0], LeaveGroupRequest)
    assert (joined.generation, joined.member_id) == (-1, "")

    never = _Coordinator(-1, "")
    asyncio.run(_leave_generation_zero(never))
    assert never.sent == []
