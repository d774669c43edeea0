"""A compiled query plan: what the query core runs (inputs and their slots, joins, filter,
grouping, projection and output key), as the planner builds it from a SELECT."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stream_apps.ksqldb.expressions import Compiler
from stream_apps.ksqldb.metastore import Source
from stream_apps.ksqldb.nodes import Expr
from stream_apps.ksqldb.scope import Fn
from stream_apps.ksqldb.spatial import SpatialFilter
from stream_apps.ksqldb.sqltypes import SqlType
from stream_apps.ksqldb.statements import Select, WindowSpec


@dataclass
class Binding:
    slot: int
    source: Source
    alias: str
    role: str  # driver | table | stream2


@dataclass
class JoinOp:
    slot: int
    kind: str  # INNER | LEFT | RIGHT | FULL
    left_key: Fn  # over the row so far
    right_key: Fn | None = None  # stream-stream: the right row's key (evaluated on its slot)
    stream: bool = False
    before_ms: int = 0
    after_ms: int = 0
    grace_ms: int | None = None  # None: no GRACE PERIOD in the statement
    foreign_key: bool = False
    right_on: Expr | None = None  # the right side's expression of the ON clause


@dataclass
class OutputColumn:
    name: str
    type: SqlType
    fn: Fn
    is_key: bool = False
    table_function: bool = False
    expr: Expr | None = None


class ErrorRoute:
    """Where every expression of a plan reports a processing error (the runner points it at
    its processing log once the query runs)."""

    def __init__(self, target: Any = None) -> None:
        self.target = target

    def __call__(self, message: str) -> None:
        if self.target is not None:
            self.target(message)


@dataclass
class ExplodeColumn:
    """How one output column of a fused EXPLODE is computed: ``row`` once per input row
    (``fn(r)``), ``elem`` once per array element (``fn((*pad, x))``, cached by element),
    ``mixed`` per output row (``fn((*r, x))``), ``self`` the element itself, ``distance`` the
    value the spatial FILTER computed for the element."""

    index: int
    name: str
    kind: str
    fn: Fn | None = None


@dataclass
class ExplodePlan:
    """All table functions of the SELECT are ``EXPLODE(arr)`` or ``EXPLODE(TRANSFORM(arr, x =>
    ...))`` over one and the same ``arr``: the array is evaluated once per row and each output
    row is built from its element directly (no per-column lists to zip)."""

    array: Fn
    columns: list[ExplodeColumn]
    spatial: SpatialFilter | None
    width: int  # slots of a row before the lambda parameter


@dataclass
class Plan:
    select: Select
    bindings: list[Binding]
    joins: list[JoinOp]
    where: Fn | None
    columns: list[OutputColumn]
    key_names: list[str]
    kind: str  # stream | stream_agg | table | table_agg
    group_fns: list[Fn] = field(default_factory=list)
    aggs: list[Any] = field(default_factory=list)
    having: Fn | None = None
    window: WindowSpec | None = None
    compiler: Compiler | None = None
    explode: ExplodePlan | None = None
    errors: ErrorRoute | None = None
    synthetic_key: bool = False  # the join key is a synthetic column (FULL OUTER, expressions)
    key_slot: int | None = None  # joins: the row's last slot, {"ROWKEY": the join key}

    @property
    def output_kind(self) -> str:
        return "STREAM" if self.kind == "stream" else "TABLE"

    @property
    def has_table_function(self) -> bool:
        return any(c.table_function for c in self.columns)

    @property
    def key_columns(self) -> list[tuple[str, SqlType]]:
        """In the order of the key expressions (GROUP BY, PARTITION BY), not the projection's."""
        by_name = {c.name: c for c in self.columns if c.is_key}
        return [(n, by_name[n].type) for n in self.key_names if n in by_name]

    @property
    def value_columns(self) -> list[tuple[str, SqlType]]:
        return [(c.name, c.type) for c in self.columns if not c.is_key]
