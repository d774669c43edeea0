"""Many small Redis writes in one command: a Lua script applies writes given as KEYS (one key
per write) and ARGV (per write: the command, how many arguments follow, the arguments).

The worker's serving writes run to thousands a second (counters, live positions, dwell sums,
and six writes per offer). Sent as separate pipelined commands, redis-py spends ~25 us of the
worker's event loop on each (an asyncio read timeout and a reply to parse per command): at
2,000 positions/s that was a quarter of the loop, more than the proximity matching. One script
call per chunk has one reply.

Each call names its keys (KEYS), so a key-routing proxy can place it; a Redis Cluster would
need the keys of a call to share a hash slot (the serving store is one Redis).
"""

from __future__ import annotations

from typing import Any

SCRIPT = """
local a = 1
for i = 1, #KEYS do
  local n = tonumber(ARGV[a + 1])
  redis.call(ARGV[a], KEYS[i], unpack(ARGV, a + 2, a + 1 + n))
  a = a + 2 + n
end
return #KEYS
"""
# Writes per call: Redis serves no other client while a script runs (a chunk takes ~1 ms).
CHUNK = 1000


class BulkWrites:
    """``CMD key arg...`` writes gathered for :meth:`queue`, applied in the order added."""

    __slots__ = ("args", "keys", "starts")

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.args: list[Any] = []
        self.starts: list[int] = []  # where each write's ARGV begins

    def add(self, command: str, key: str, *args: Any) -> None:
        self.keys.append(key)
        self.starts.append(len(self.args))
        self.args += (command, len(args), *args)

    def __len__(self) -> int:
        return len(self.keys)

    def queue(self, pipe: Any) -> None:
        """Add the writes to a pipeline (sync or asyncio), a script call per chunk."""
        keys, args, starts = self.keys, self.args, self.starts
        for i in range(0, len(keys), CHUNK):
            chunk = keys[i:i + CHUNK]
            end = starts[i + CHUNK] if i + CHUNK < len(keys) else len(args)
            pipe.eval(SCRIPT, len(chunk), *chunk, *args[starts[i]:end])
