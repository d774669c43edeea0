"""Many small Redis writes in one command: a Lua script applies writes given as KEYS (one key
per write) and one JSON argument (per write: the command and its other arguments, as text).

The worker's serving writes run to thousands a second (counters, live positions, dwell sums,
and six writes per offer). Sent as separate pipelined commands, redis-py spends ~25 us of the
worker's event loop on each (an asyncio read timeout and a reply to parse per command): at
2,000 positions/s that was a quarter of the loop, more than the proximity matching. One script
call per chunk has one reply; its arguments go as one JSON text (orjson, in C) rather than as
thousands of arguments redis-py would encode one by one in Python.

Each call names its keys (KEYS), as Redis asks of scripts (ACL key patterns and key-routing
proxies read them); a Redis Cluster would need the keys of a call to share a hash slot (the
serving store is one Redis).
"""

from __future__ import annotations

from typing import Any

import orjson

SCRIPT = """
local writes = cjson.decode(ARGV[1])
for i = 1, #KEYS do
  local w = writes[i]
  redis.call(w[1], KEYS[i], unpack(w, 2))
end
return #KEYS
"""
# Writes per call: Redis serves no other client while a script runs (a chunk takes ~1 ms).
CHUNK = 1000


def _text(arg: Any) -> str:
    """An argument as Redis receives it: text (bytes are UTF-8 JSON here; numbers exact)."""
    if isinstance(arg, str):
        return arg
    if isinstance(arg, bytes):
        return arg.decode()
    if isinstance(arg, float):
        return repr(arg)
    return str(arg)


class BulkWrites:
    """``CMD key arg...`` writes gathered for :meth:`queue`, applied in the order added.
    Arguments are str, int, float or UTF-8 bytes."""

    __slots__ = ("keys", "writes")

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.writes: list[list[str]] = []

    def add(self, command: str, key: str, *args: Any) -> None:
        self.keys.append(key)
        self.writes.append([command, *map(_text, args)])

    def __len__(self) -> int:
        return len(self.keys)

    def queue(self, pipe: Any) -> None:
        """Add the writes to a pipeline (sync or asyncio), a script call per chunk."""
        keys, writes = self.keys, self.writes
        for i in range(0, len(keys), CHUNK):
            chunk = keys[i:i + CHUNK]
            pipe.eval(SCRIPT, len(chunk), *chunk, orjson.dumps(writes[i:i + CHUNK]))
