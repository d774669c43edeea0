"""The worker's policy table as the processors write it: straight into the Faust table's store,
each change kept as a changelog record that the agent sends with the batch's other outputs.

Through Faust (``table[uid] = state``) every write went out on Faust's own producer: a pending
message, a future, a serializer lookup and aiokafka's accumulator, all in the event loop, and
not tied to the batch it belongs to. When every shopper of a busy second earns an offer, that
was most of what a new shopper's first position cost. Here the record goes on the worker's
librdkafka output with the rows and offers of its batch, so it is acknowledged with them before
the batch's input offsets are committed. The changelog is the one Faust restores the table from
(same topic, the partition ``UidTable.partition_for_key`` gives, JSON key and value as the
table's schema reads them; a deleted state is a tombstone), so a restarted worker recovers it
as before.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any

import orjson

# (changelog partition, key, value or None for a tombstone)
ChangelogRecord = tuple[int, bytes, bytes | None]


class PolicyTable(MutableMapping[str, Any]):
    """A Faust table (``UidTable``) read as usual, written to its store directly; the changes
    since the last :meth:`take` are changelog records to send."""

    def __init__(self, table: Any) -> None:
        self.table = table
        self.topic: str = table.changelog_topic.get_topic_name()
        self.pending: list[ChangelogRecord] = []

    def __getitem__(self, key: str) -> Any:
        return self.table[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.table.get(key, default)

    def __setitem__(self, key: str, value: Any) -> None:
        self.table.data[key] = value
        self.pending.append((self.table.partition_for_key(key), orjson.dumps(key),
                             orjson.dumps(value)))

    def __delitem__(self, key: str) -> None:
        del self.table.data[key]
        self.pending.append((self.table.partition_for_key(key), orjson.dumps(key), None))

    def __iter__(self) -> Iterator[str]:
        return iter(self.table.data)

    def __len__(self) -> int:
        return len(self.table.data)

    def take(self) -> list[ChangelogRecord]:
        """The changelog records of the writes since the last call."""
        pending, self.pending = self.pending, []
        return pending
