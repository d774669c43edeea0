"""What the names of an expression refer to: a row is a tuple of slots, one dict per source of
the query (column -> value, with ROWTIME, ROWPARTITION, ROWOFFSET and the key columns), then the
values of lambda parameters; a ``Scope`` resolves ``qualifier.name`` to its slot and column."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from stream_apps.ksqldb.errors import StatementError
from stream_apps.ksqldb.nodes import Col, Expr, Lambda, children
from stream_apps.ksqldb.sqltypes import BIGINT, INT, UNKNOWN, SqlType

Fn = Callable[[tuple], Any]  # a compiled expression: its value for a row
PSEUDO = {"ROWTIME": BIGINT, "ROWPARTITION": INT, "ROWOFFSET": BIGINT}
WINDOW_COLS = {"WINDOWSTART": BIGINT, "WINDOWEND": BIGINT}


@dataclass
class Slot:
    alias: str
    source: str
    columns: dict[str, SqlType]


@dataclass
class Scope:
    slots: list[Slot]
    params: dict[str, int] = field(default_factory=dict)  # lambda parameter -> slot index
    param_types: dict[str, SqlType] = field(default_factory=dict)
    width: int = 0  # slots in use (sources + lambda params)

    def __post_init__(self) -> None:
        self.width = self.width or len(self.slots)

    def with_params(self, names: tuple[str, ...], types: list[SqlType]) -> Scope:
        params = dict(self.params)
        ptypes = dict(self.param_types)
        width = self.width
        for n, t in zip(names, types, strict=False):
            params[n] = width
            ptypes[n] = t
            width += 1
        return Scope(self.slots, params, ptypes, width)

    def resolve(self, qualifier: str | None, name: str) -> tuple[int, str, SqlType]:
        if qualifier is None and name in self.params:
            return self.params[name], "", self.param_types.get(name, UNKNOWN)
        if qualifier is not None:
            for i, s in enumerate(self.slots):
                if qualifier in (s.alias, s.source):
                    col = _find(s.columns, name)
                    if col is None:
                        if name in PSEUDO or name in WINDOW_COLS:
                            return i, name, PSEUDO.get(name) or WINDOW_COLS[name]
                        msg = f"Column '{qualifier}.{name}' cannot be resolved."
                        raise StatementError(msg)
                    return i, col, s.columns[col]
            msg = f"Source '{qualifier}' is not in the FROM clause of the query."
            raise StatementError(msg)
        hits = [(i, _find(s.columns, name)) for i, s in enumerate(self.slots)]
        hits = [(i, c) for i, c in hits if c is not None]
        if len(hits) > 1:
            msg = f"Column '{name}' is ambiguous. Could be any of: " + ", ".join(
                f"{self.slots[i].alias}.{c}" for i, c in hits
            )
            raise StatementError(msg)
        if hits:
            i, c = hits[0]
            assert c is not None
            return i, c, self.slots[i].columns[c]
        if name in PSEUDO or name in WINDOW_COLS:
            return 0, name, PSEUDO.get(name) or WINDOW_COLS[name]
        msg = f"Column '{name}' cannot be resolved."
        raise StatementError(msg)


    def same(self, a: Expr, b: Expr) -> bool:
        """Whether two expressions are the same: equal, or columns that resolve alike
        (``S.ID`` and ``ID``)."""
        if a == b:
            return True
        match a, b:
            case Col(qualifier=qa, name=na), Col(qualifier=qb, name=nb):
                try:
                    return self.resolve(qa, na)[:2] == self.resolve(qb, nb)[:2]
                except StatementError:
                    return False
        return False

    def slots_read(self, e: Expr) -> set[int]:
        """The slots whose columns ``e`` reads (an unresolvable column reads none)."""
        match e:
            case Col(qualifier=q, name=name):
                try:
                    return {self.resolve(q, name)[0]}
                except StatementError:
                    return set()
            case Lambda(params=params, body=body):
                return self.with_params(params, [BIGINT] * len(params)).slots_read(body)
        out: set[int] = set()
        for x in children(e):
            out |= self.slots_read(x)
        return out

def _find(columns: dict[str, SqlType], name: str) -> str | None:
    if name in columns:
        return name
    return None
