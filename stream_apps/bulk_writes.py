"""Many small Redis writes in one command: a Lua script applies ``CMD key arg arg`` writes
(HINCRBY, HSET, ZADD, ZINCRBY) given as KEYS and ARGV.

The worker's serving flush carries thousands of counter and position writes a second. Sent as
separate pipelined commands, redis-py spends ~25 us of the worker's event loop on each (an
asyncio read timeout and a reply to parse per command): at 2,000 positions/s that was a
quarter of the loop, more than the proximity matching. One script call per chunk has one reply.

Each call names its keys (KEYS), so a key-routing proxy can place it; a Redis Cluster would
need the keys of a call to share a hash slot (the serving store is one Redis).
"""

from __future__ import annotations

from typing import Any

# ARGV holds three values per key: the command, then its two arguments.
SCRIPT = """
for i = 1, #KEYS do
  redis.call(ARGV[3 * i - 2], KEYS[i], ARGV[3 * i - 1], ARGV[3 * i])
end
return #KEYS
"""
# Writes per call: Redis serves no other client while a script runs (a chunk takes ~1 ms).
CHUNK = 1000


class BulkWrites:
    """``CMD key arg arg`` writes gathered for :meth:`queue`."""

    __slots__ = ("args", "keys")

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.args: list[Any] = []

    def add(self, command: str, key: str, first: Any, second: Any) -> None:
        self.keys.append(key)
        self.args += (command, first, second)

    def __len__(self) -> int:
        return len(self.keys)

    def queue(self, pipe: Any) -> None:
        """Add the writes to a pipeline (sync or asyncio), a script call per chunk."""
        keys, args = self.keys, self.args
        for i in range(0, len(keys), CHUNK):
            chunk = keys[i:i + CHUNK]
            pipe.eval(SCRIPT, len(chunk), *chunk, *args[3 * i:3 * (i + len(chunk))])
