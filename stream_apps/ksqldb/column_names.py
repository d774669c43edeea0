"""ksqlDB's generated column names (``ColumnNames``)."""

from __future__ import annotations

import re

_NUMBERED = re.compile(r"(.*?)(?:_(\d+))?")


class AliasGenerator:
    """ksqlDB's generated column names (``ColumnNames``): ``KSQL_COL_n`` for unaliased
    expressions, a struct field's name for a dereference (``NAME``, ``NAME_1``, ...), never
    a number a source column already uses, and the synthetic join key ``ROWKEY`` (or
    ``ROWKEY_n``)."""

    def __init__(self, column_names: list[str]) -> None:
        self.used: dict[str, set[int]] = {}
        for name in column_names:
            m = _NUMBERED.fullmatch(name)
            assert m is not None
            self.used.setdefault(m[1], set()).add(int(m[2]) if m[2] else 0)
        self.next_index: dict[str, int] = {}

    def next(self, prefix: str) -> str:
        i = self.next_index.get(prefix, 0)
        used = self.used.get(prefix, set())
        while i in used:
            i += 1
        self.next_index[prefix] = i + 1
        if i == 0 and prefix != "KSQL_COL":
            return prefix
        return f"{prefix}_{i}"

    def for_field(self, field_name: str) -> str:
        m = _NUMBERED.fullmatch(field_name)
        assert m is not None
        return self.next(m[1])
