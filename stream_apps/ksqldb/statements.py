"""The statement AST the parser builds: one dataclass per kind of statement, and the parts of
a SELECT. Expressions in them are the nodes of ``nodes``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stream_apps.ksqldb.nodes import Expr
from stream_apps.ksqldb.sqltypes import SqlType


@dataclass
class SelectItem:
    expr: Expr
    alias: str | None


@dataclass
class SourceRef:
    name: str
    alias: str


@dataclass
class JoinClause:
    kind: str  # INNER LEFT RIGHT FULL
    source: SourceRef
    on: Expr
    within: tuple[int, int] | None = None  # (before_ms, after_ms)
    grace_ms: int | None = None


@dataclass
class WindowSpec:
    kind: str  # TUMBLING HOPPING SESSION
    size_ms: int
    advance_ms: int | None = None
    grace_ms: int | None = None
    retention_ms: int | None = None


@dataclass
class Select:
    items: list[SelectItem]
    source: SourceRef
    joins: list[JoinClause] = field(default_factory=list)
    where: Expr | None = None
    window: WindowSpec | None = None
    group_by: list[Expr] = field(default_factory=list)
    partition_by: list[Expr] = field(default_factory=list)
    having: Expr | None = None
    emit_changes: bool = False
    emit_final: bool = False
    limit: int | None = None


@dataclass
class ColumnDef:
    name: str
    type: SqlType
    key: bool = False  # KEY (stream) or PRIMARY KEY (table)
    headers: bool = False


@dataclass
class Statement:
    text: str = ""


@dataclass
class CreateSource(Statement):
    kind: str = "STREAM"  # STREAM | TABLE
    name: str = ""
    columns: list[ColumnDef] = field(default_factory=list)
    props: dict[str, Any] = field(default_factory=dict)
    if_not_exists: bool = False
    or_replace: bool = False
    source: bool = False  # CREATE SOURCE TABLE/STREAM: read-only, materialized


@dataclass
class CreateAs(Statement):
    kind: str = "STREAM"
    name: str = ""
    props: dict[str, Any] = field(default_factory=dict)
    select: Select | None = None
    if_not_exists: bool = False
    or_replace: bool = False


@dataclass
class InsertInto(Statement):
    target: str = ""
    select: Select | None = None
    query_id: str | None = None


@dataclass
class InsertValues(Statement):
    target: str = ""
    columns: list[str] = field(default_factory=list)
    values: list[Expr] = field(default_factory=list)


@dataclass
class Query(Statement):
    select: Select | None = None


@dataclass
class Show(Statement):
    what: str = ""  # STREAMS TABLES QUERIES TOPICS PROPERTIES FUNCTIONS TYPES
    extended: bool = False


@dataclass
class Describe(Statement):
    name: str = ""
    extended: bool = False
    function: bool = False


@dataclass
class Drop(Statement):
    kind: str = "STREAM"
    name: str = ""
    if_exists: bool = False
    delete_topic: bool = False


@dataclass
class Terminate(Statement):
    query_id: str = ""  # "ALL" for every query


@dataclass
class SetProperty(Statement):
    name: str = ""
    value: str | None = None  # None = UNSET


@dataclass
class Explain(Statement):
    query_id: str = ""
