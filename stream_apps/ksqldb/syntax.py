"""ksqlDB's SQL: tokens and a recursive-descent parser, from text to the statements of
``statements`` (expressions: the nodes of ``nodes``); and the helpers that read statements as
text (``split_statements``, ``locate``).

Identifiers are upper-cased unless quoted with backticks (ksqlDB's rule). Errors carry the
``line L:C`` position of the offending token, like ksqlDB's ANTLR parser.

One file of about 1,000 lines on purpose: the grammar is one set of mutually recursive rules
(statement -> select -> expr -> or_ -> ... -> primary -> call -> expr), one method each, that
reads best top to bottom in one place, as ksqlDB's own grammar file does; split, each rule's
callers and callees would sit in other files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, NoReturn

from stream_apps.ksqldb.errors import ParseError
from stream_apps.ksqldb.nodes import (
    Array,
    Between,
    Bin,
    Call,
    Case,
    Cast,
    Col,
    Deref,
    Distinct,
    Expr,
    In,
    Index,
    IsNull,
    Lambda,
    Like,
    Lit,
    Map,
    Neg,
    Not,
    Star,
    Struct,
)
from stream_apps.ksqldb.sqltypes import BIGINT, BOOLEAN, DOUBLE, INT, STRING, SqlType
from stream_apps.ksqldb.statements import (
    ColumnDef,
    CreateAs,
    CreateSource,
    Describe,
    Drop,
    Explain,
    InsertInto,
    InsertValues,
    JoinClause,
    Query,
    Select,
    SelectItem,
    SetProperty,
    Show,
    SourceRef,
    Statement,
    Terminate,
    WindowSpec,
)

# ---------------------------------------------------------------------------------------------
# Tokens

_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<comment>--[^\n]*|/\*.*?\*/)
  | (?P<num>(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?)
  | (?P<str>'(?:[^']|'')*')
  | (?P<qid>`(?:[^`]|``)*`)
  | (?P<dqid>"(?:[^"]|"")*")
  | (?P<id>[A-Za-z_@$][A-Za-z0-9_@$]*)
  | (?P<op>->|=>|<=|>=|<>|!=|\|\||:=|[(),;.*+\-/%=<>\[\]{}:])
    """,
    re.VERBOSE | re.DOTALL,
)


@dataclass(frozen=True)
class Token:
    kind: str  # ID QID STR NUM OP EOF
    value: str
    pos: int
    line: int
    col: int

    def is_kw(self, *words: str) -> bool:
        return self.kind == "ID" and self.value in words

    def is_op(self, *ops: str) -> bool:
        return self.kind == "OP" and self.value in ops

    def show(self) -> str:
        return "<EOF>" if self.kind == "EOF" else self.value


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    line = 1
    line_start = 0
    n = len(text)
    while pos < n:
        m = _TOKEN_RE.match(text, pos)
        if m is None:
            msg = f"extraneous input '{text[pos]}'"
            raise ParseError(msg, line, pos - line_start)
        kind = m.lastgroup or ""
        raw = m.group()
        col = pos - line_start
        if kind == "id":
            tokens.append(Token("ID", raw.upper(), pos, line, col))
        elif kind == "qid":
            tokens.append(Token("QID", raw[1:-1].replace("``", "`"), pos, line, col))
        elif kind == "dqid":
            tokens.append(Token("QID", raw[1:-1].replace('""', '"'), pos, line, col))
        elif kind == "str":
            tokens.append(Token("STR", raw[1:-1].replace("''", "'"), pos, line, col))
        elif kind == "num":
            tokens.append(Token("NUM", raw, pos, line, col))
        elif kind == "op":
            tokens.append(Token("OP", raw, pos, line, col))
        newlines = raw.count("\n")
        if newlines:
            line += newlines
            line_start = pos + raw.rfind("\n") + 1
        pos = m.end()
    tokens.append(Token("EOF", "", n, line, n - line_start))
    return tokens


# ---------------------------------------------------------------------------------------------
# Types

_TYPE_ALIASES = {
    "STRING": STRING,
    "VARCHAR": STRING,
    "INT": INT,
    "INTEGER": INT,
    "BIGINT": BIGINT,
    "DOUBLE": DOUBLE,
    "BOOLEAN": BOOLEAN,
    "TIMESTAMP": SqlType("TIMESTAMP"),
    "DATE": SqlType("DATE"),
    "TIME": SqlType("TIME"),
    "BYTES": SqlType("BYTES"),
}

# ---------------------------------------------------------------------------------------------
# Parser

_DURATION_MS = {
    "MILLISECOND": 1,
    "MILLISECONDS": 1,
    "SECOND": 1000,
    "SECONDS": 1000,
    "MINUTE": 60_000,
    "MINUTES": 60_000,
    "HOUR": 3_600_000,
    "HOURS": 3_600_000,
    "DAY": 86_400_000,
    "DAYS": 86_400_000,
}
_CLAUSE_END = {
    "FROM",
    "WHERE",
    "GROUP",
    "PARTITION",
    "HAVING",
    "EMIT",
    "LIMIT",
    "WINDOW",
    "JOIN",
    "LEFT",
    "RIGHT",
    "INNER",
    "FULL",
    "OUTER",
    "ON",
    "WITHIN",
    "AS",
}
_RESERVED_ALIAS = _CLAUSE_END | {"SELECT", "CROSS"}
_SHOWN = {
    "STREAMS",
    "TABLES",
    "QUERIES",
    "TOPICS",
    "PROPERTIES",
    "FUNCTIONS",
    "TYPES",
    "VARIABLES",
    "CONNECTORS",
}


class Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = tokenize(text)
        self.i = 0

    # -- token helpers ------------------------------------------------------------------------
    @property
    def tok(self) -> Token:
        return self.toks[self.i]

    def peek(self, k: int = 1) -> Token:
        return self.toks[min(self.i + k, len(self.toks) - 1)]

    def advance(self) -> Token:
        t = self.toks[self.i]
        if t.kind != "EOF":
            self.i += 1
        return t

    def fail(self, expecting: str, tok: Token | None = None) -> NoReturn:
        """Raise a ParseError at ``tok`` (default: the current token)."""
        t = tok or self.tok
        what = "mismatched input" if t.kind != "EOF" else "missing"
        shown = t.show()
        msg = f"{what} '{shown}' expecting {expecting}"
        raise ParseError(msg, t.line, t.col)

    def accept_kw(self, *words: str) -> bool:
        if self.tok.is_kw(*words):
            self.advance()
            return True
        return False

    def expect_kw(self, word: str) -> None:
        if not self.accept_kw(word):
            self.fail(f"'{word}'")

    def accept_op(self, op: str) -> bool:
        if self.tok.is_op(op):
            self.advance()
            return True
        return False

    def expect_op(self, op: str) -> None:
        if not self.accept_op(op):
            self.fail(f"'{op}'")

    def ident(self, what: str = "an identifier") -> str:
        t = self.tok
        if t.kind in ("ID", "QID"):
            self.advance()
            return t.value
        self.fail(what)

    def integer(self) -> int:
        t = self.tok
        if t.kind != "NUM" or not t.value.isdigit():
            self.fail("an integer")
        self.advance()
        return int(t.value)

    # -- statements ---------------------------------------------------------------------------
    def statements(self) -> list[Statement]:
        out: list[Statement] = []
        while self.tok.kind != "EOF":
            if self.accept_op(";"):
                continue
            start = self.tok.pos
            stmt = self.statement()
            if not self.tok.is_op(";") and self.tok.kind != "EOF":
                self.fail("';'")
            end = self.tok.pos + (1 if self.tok.is_op(";") else 0)
            stmt.text = self.text[start:end].strip()
            if not stmt.text.endswith(";"):
                stmt.text += ";"
            out.append(stmt)
            self.accept_op(";")
        return out

    def statement(self) -> Statement:
        t = self.tok
        if t.is_kw("CREATE"):
            return self.create()
        if t.is_kw("INSERT"):
            return self.insert()
        if t.is_kw("SELECT"):
            return Query(select=self.select())
        if t.is_kw("SHOW", "LIST"):
            return self.show()
        if t.is_kw("DESCRIBE"):
            return self.describe()
        if t.is_kw("DROP"):
            return self.drop()
        if t.is_kw("TERMINATE"):
            self.advance()
            return Terminate(query_id=self.ident("a query id or ALL"))
        if t.is_kw("SET", "UNSET"):
            return self.set_property()
        if t.is_kw("EXPLAIN"):
            self.advance()
            return Explain(query_id=self.ident("a query id"))
        self.fail(
            "CREATE, INSERT, SELECT, SHOW, LIST, DESCRIBE, DROP, TERMINATE, SET, UNSET, EXPLAIN"
        )

    def show(self) -> Statement:
        self.advance()
        what = self.ident("STREAMS, TABLES, QUERIES, TOPICS, PROPERTIES or FUNCTIONS")
        if what == "ALL" and self.tok.is_kw("TOPICS"):
            what = self.ident()
        extended = self.accept_kw("EXTENDED")
        if what not in _SHOWN:
            self.fail(
                "STREAMS, TABLES, QUERIES, TOPICS, PROPERTIES or FUNCTIONS",
                self.toks[self.i - 1],
            )
        return Show(what=what, extended=extended)

    def describe(self) -> Statement:
        self.advance()
        if self.accept_kw("FUNCTION"):
            return Describe(name=self.ident(), function=True)
        if self.tok.is_kw("STREAMS", "TABLES"):
            what = self.ident()
            return Show(what=what, extended=self.accept_kw("EXTENDED"))
        name = self.ident("a source name")
        return Describe(name=name, extended=self.accept_kw("EXTENDED"))

    def drop(self) -> Statement:
        self.advance()
        kind = self.ident("STREAM or TABLE")
        if kind not in ("STREAM", "TABLE"):
            self.fail("STREAM or TABLE", self.toks[self.i - 1])
        if_exists = False
        if self.accept_kw("IF"):
            self.expect_kw("EXISTS")
            if_exists = True
        name = self.ident("a source name")
        delete_topic = False
        if self.accept_kw("DELETE"):
            self.expect_kw("TOPIC")
            delete_topic = True
        return Drop(kind=kind, name=name, if_exists=if_exists, delete_topic=delete_topic)

    def set_property(self) -> Statement:
        """SET 'name' = 'value' or UNSET 'name'."""
        unset = self.advance().value == "UNSET"
        prop = self.tok
        if prop.kind != "STR":
            self.fail("a quoted property name")
        self.advance()
        if unset:
            return SetProperty(name=prop.value, value=None)
        self.expect_op("=")
        val = self.tok
        if val.kind != "STR":
            self.fail("a quoted value")
        self.advance()
        return SetProperty(name=prop.value, value=val.value)

    def props(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if not self.accept_kw("WITH"):
            return out
        self.expect_op("(")
        while True:
            name = self.ident("a property name")
            self.expect_op("=")
            v = self.tok
            if v.kind == "STR":
                out[name.upper()] = v.value
            elif v.kind == "NUM":
                out[name.upper()] = int(v.value) if v.value.isdigit() else float(v.value)
            elif v.kind == "ID" and v.value in ("TRUE", "FALSE"):
                out[name.upper()] = v.value == "TRUE"
            else:
                self.fail("a literal")
            self.advance()
            if self.accept_op(")"):
                return out
            self.expect_op(",")

    def create(self) -> Statement:
        self.expect_kw("CREATE")
        or_replace = False
        if self.accept_kw("OR"):
            self.expect_kw("REPLACE")
            or_replace = True
        source = self.accept_kw("SOURCE")
        kind = self.ident("STREAM or TABLE")
        if kind not in ("STREAM", "TABLE"):
            self.fail("STREAM or TABLE", self.toks[self.i - 1])
        if_not_exists = False
        if self.accept_kw("IF"):
            self.expect_kw("NOT")
            self.expect_kw("EXISTS")
            if_not_exists = True
        name = self.ident("a source name")
        columns: list[ColumnDef] = []
        if self.accept_op("("):
            while True:
                cname = self.ident("a column name")
                ctype = self.type_()
                key = False
                headers = False
                if self.accept_kw("PRIMARY"):
                    self.expect_kw("KEY")
                    key = True
                elif self.accept_kw("KEY"):
                    key = True
                elif self.accept_kw("HEADERS"):
                    headers = True
                columns.append(ColumnDef(cname, ctype, key, headers))
                if self.accept_op(")"):
                    break
                self.expect_op(",")
        props = self.props()
        if self.accept_kw("AS"):
            if columns:
                self.fail("';'", self.toks[self.i - 1])
            select = self.select()
            return CreateAs(
                kind=kind,
                name=name,
                props=props,
                select=select,
                if_not_exists=if_not_exists,
                or_replace=or_replace,
            )
        return CreateSource(
            kind=kind,
            name=name,
            columns=columns,
            props=props,
            if_not_exists=if_not_exists,
            or_replace=or_replace,
            source=source,
        )

    def insert(self) -> Statement:
        self.expect_kw("INSERT")
        self.expect_kw("INTO")
        target = self.ident("a stream name")
        columns: list[str] = []
        if self.tok.is_op("("):
            self.advance()
            while True:
                columns.append(self.ident("a column name"))
                if self.accept_op(")"):
                    break
                self.expect_op(",")
        if self.accept_kw("VALUES"):
            self.expect_op("(")
            values = [self.expr()]
            while self.accept_op(","):
                values.append(self.expr())
            self.expect_op(")")
            return InsertValues(target=target, columns=columns, values=values)
        query_id = None
        if self.accept_kw("WITH"):
            self.expect_op("(")
            self.ident()
            self.expect_op("=")
            query_id = self.tok.value
            self.advance()
            self.expect_op(")")
        return InsertInto(target=target, select=self.select(), query_id=query_id)

    def type_(self) -> SqlType:
        name = self.ident("a type")
        if name == "ARRAY":
            self.expect_op("<")
            item = self.type_()
            self.expect_op(">")
            return SqlType("ARRAY", (item,))
        if name == "MAP":
            self.expect_op("<")
            k = self.type_()
            self.expect_op(",")
            v = self.type_()
            self.expect_op(">")
            return SqlType("MAP", (k, v))
        if name == "STRUCT":
            self.expect_op("<")
            fields: list[tuple[str, SqlType]] = []
            if not self.tok.is_op(">"):
                while True:
                    fname = self.ident("a field name")
                    fields.append((fname, self.type_()))
                    if not self.accept_op(","):
                        break
            self.expect_op(">")
            return SqlType("STRUCT", tuple(fields))
        if name == "DECIMAL":
            self.expect_op("(")
            p = self.integer()
            self.expect_op(",")
            s = self.integer()
            self.expect_op(")")
            return SqlType("DECIMAL", (p, s))
        if name in _TYPE_ALIASES:
            return _TYPE_ALIASES[name]
        self.fail("a type", self.toks[self.i - 1])

    # -- SELECT -------------------------------------------------------------------------------
    def duration(self) -> int:
        n = self.integer()
        unit = self.ident("a time unit")
        if unit not in _DURATION_MS:
            self.fail("a time unit", self.toks[self.i - 1])
        return n * _DURATION_MS[unit]

    def source_ref(self) -> SourceRef:
        name = self.ident("a source name")
        alias = name
        if self.accept_kw("AS"):
            alias = self.ident("an alias")
        elif self.tok.kind == "QID" or (
            self.tok.kind == "ID" and self.tok.value not in _RESERVED_ALIAS
        ):
            alias = self.ident()
        return SourceRef(name, alias)

    def select(self) -> Select:
        self.expect_kw("SELECT")
        items = [self.select_item()]
        while self.accept_op(","):
            items.append(self.select_item())
        self.expect_kw("FROM")
        sel = Select(items=items, source=self.source_ref())
        while (join := self.join()) is not None:
            sel.joins.append(join)
        if self.accept_kw("WINDOW"):
            sel.window = self.window()
        if self.accept_kw("WHERE"):
            sel.where = self.expr()
        if sel.window is None and self.accept_kw("WINDOW"):
            sel.window = self.window()
        if self.accept_kw("GROUP"):
            self.expect_kw("BY")
            sel.group_by = self.expr_list()
        if self.accept_kw("PARTITION"):
            self.expect_kw("BY")
            sel.partition_by = self.expr_list()
        if self.accept_kw("HAVING"):
            sel.having = self.expr()
        if self.accept_kw("EMIT"):
            if self.accept_kw("CHANGES"):
                sel.emit_changes = True
            elif self.accept_kw("FINAL"):
                sel.emit_final = True
            else:
                self.fail("CHANGES or FINAL")
        if self.accept_kw("LIMIT"):
            sel.limit = self.integer()
        return sel

    def select_item(self) -> SelectItem:
        if self.tok.is_op("*"):
            self.advance()
            return SelectItem(Star(None), None)
        if self.tok.kind in ("ID", "QID") and self.peek().is_op(".") and self.peek(2).is_op("*"):
            q = self.ident()
            self.advance()
            self.advance()
            return SelectItem(Star(q), None)
        e = self.expr()
        alias = None
        if self.accept_kw("AS"):
            alias = self.ident("an alias")
        elif self.tok.kind == "QID" or (
            self.tok.kind == "ID" and self.tok.value not in _RESERVED_ALIAS
        ):
            alias = self.ident()
        return SelectItem(e, alias)

    def join(self) -> JoinClause | None:
        """``[INNER | LEFT | RIGHT | FULL [OUTER]] JOIN source [WITHIN ...] ON expr``, or
        None when no join follows."""
        kind = None
        if self.accept_kw("JOIN"):
            kind = "INNER"
        elif self.tok.is_kw("INNER", "LEFT", "RIGHT", "FULL"):
            kind = self.advance().value
            self.accept_kw("OUTER")
            self.expect_kw("JOIN")
        if kind is None:
            return None
        src = self.source_ref()
        within = None
        grace = None
        if self.accept_kw("WITHIN"):
            if self.accept_op("("):
                before = self.duration()
                self.expect_op(",")
                after = self.duration()
                self.expect_op(")")
                within = (before, after)
            else:
                d = self.duration()
                within = (d, d)
            if self.accept_kw("GRACE"):
                self.expect_kw("PERIOD")
                grace = self.duration()
        self.expect_kw("ON")
        return JoinClause(kind, src, self.expr(), within, grace)

    def window(self) -> WindowSpec:
        kind = self.ident("TUMBLING, HOPPING or SESSION")
        if kind not in ("TUMBLING", "HOPPING", "SESSION"):
            self.fail("TUMBLING, HOPPING or SESSION", self.toks[self.i - 1])
        self.expect_op("(")
        spec = WindowSpec(kind, 0)
        if kind == "SESSION":
            spec.size_ms = self.duration()
        while not self.accept_op(")"):
            self.accept_op(",")
            word = self.ident("SIZE, ADVANCE BY, RETENTION or GRACE PERIOD")
            if word == "SIZE":
                spec.size_ms = self.duration()
            elif word == "ADVANCE":
                self.expect_kw("BY")
                spec.advance_ms = self.duration()
            elif word == "RETENTION":
                spec.retention_ms = self.duration()
            elif word == "GRACE":
                self.expect_kw("PERIOD")
                spec.grace_ms = self.duration()
            else:
                self.fail("SIZE, ADVANCE BY, RETENTION or GRACE PERIOD", self.toks[self.i - 1])
        if kind == "HOPPING" and spec.advance_ms is None:
            self.fail("ADVANCE BY")
        if spec.size_ms <= 0:
            self.fail("SIZE")
        return spec

    def expr_list(self) -> list[Expr]:
        paren = self.tok.is_op("(") and self._paren_list_ahead()
        if paren:
            self.advance()
        out = [self.expr()]
        while self.accept_op(","):
            out.append(self.expr())
        if paren:
            self.expect_op(")")
        return out

    def _paren_list_ahead(self) -> bool:
        depth = 0
        for t in self.toks[self.i :]:
            if t.is_op("("):
                depth += 1
            elif t.is_op(")"):
                depth -= 1
                if depth == 0:
                    return False
            elif t.is_op(",") and depth == 1:
                return True
            elif t.kind == "EOF":
                return False
        return False

    # -- expressions (precedence climbing) ---------------------------------------------------
    def expr(self) -> Expr:
        return self.or_()

    def or_(self) -> Expr:
        e = self.and_()
        while self.accept_kw("OR"):
            e = Bin("OR", e, self.and_())
        return e

    def and_(self) -> Expr:
        e = self.not_()
        while self.accept_kw("AND"):
            e = Bin("AND", e, self.not_())
        return e

    def not_(self) -> Expr:
        if self.accept_kw("NOT"):
            return Not(self.not_())
        return self.predicate()

    def predicate(self) -> Expr:
        e = self.additive()
        while True:
            t = self.tok
            if t.is_op("=", "<>", "!=", "<", "<=", ">", ">="):
                self.advance()
                op = "<>" if t.value == "!=" else t.value
                e = Bin(op, e, self.additive())
                continue
            if t.is_kw("IS"):
                self.advance()
                neg = self.accept_kw("NOT")
                if self.accept_kw("NULL"):
                    e = IsNull(e, neg)
                    continue
                if self.accept_kw("DISTINCT"):
                    self.expect_kw("FROM")
                    e = Distinct(e, self.additive(), neg)
                    continue
                self.fail("NULL")
            neg = False
            if t.is_kw("NOT") and self.peek().is_kw("BETWEEN", "IN", "LIKE"):
                self.advance()
                neg = True
                t = self.tok
            if t.is_kw("BETWEEN"):
                self.advance()
                lo = self.additive()
                self.expect_kw("AND")
                e = Between(e, lo, self.additive(), neg)
                continue
            if t.is_kw("IN"):
                self.advance()
                self.expect_op("(")
                items = [self.expr()]
                while self.accept_op(","):
                    items.append(self.expr())
                self.expect_op(")")
                e = In(e, tuple(items), neg)
                continue
            if t.is_kw("LIKE"):
                self.advance()
                e = Like(e, self.additive(), neg)
                continue
            return e

    def additive(self) -> Expr:
        e = self.multiplicative()
        while self.tok.is_op("+", "-", "||"):
            op = self.advance().value
            e = Bin(op, e, self.multiplicative())
        return e

    def multiplicative(self) -> Expr:
        e = self.unary()
        while self.tok.is_op("*", "/", "%"):
            op = self.advance().value
            e = Bin(op, e, self.unary())
        return e

    def unary(self) -> Expr:
        if self.accept_op("-"):
            inner = self.unary()
            match inner:
                case Lit(value=int() | float() as v) if not isinstance(v, bool):
                    return Lit(-v)
            return Neg(inner)
        if self.accept_op("+"):
            return self.unary()
        return self.postfix()

    def postfix(self) -> Expr:
        e = self.primary()
        while True:
            if self.accept_op("->"):
                e = Deref(e, self.ident("a field name"))
            elif self.accept_op("["):
                idx = self.expr()
                self.expect_op("]")
                e = Index(e, idx)
            else:
                return e

    def _lambda_ahead(self) -> bool:
        t = self.tok
        if t.kind in ("ID", "QID") and self.peek().is_op("=>"):
            return True
        if t.is_op("("):
            j = self.i + 1
            while self.toks[j].kind in ("ID", "QID"):
                if self.toks[j + 1].is_op(","):
                    j += 2
                    continue
                return self.toks[j + 1].is_op(")") and self.toks[j + 2].is_op("=>")
        return False

    def lambda_(self) -> Expr:
        params: list[str] = []
        if self.accept_op("("):
            while True:
                params.append(self.ident())
                if self.accept_op(")"):
                    break
                self.expect_op(",")
        else:
            params.append(self.ident())
        self.expect_op("=>")
        return Lambda(tuple(params), self.expr())

    def primary(self) -> Expr:
        t = self.tok
        if t.kind == "NUM":
            self.advance()
            return Lit(int(t.value)) if re.fullmatch(r"\d+", t.value) else Lit(float(t.value))
        if t.kind == "STR":
            self.advance()
            return Lit(t.value)
        if t.is_op("("):
            if self._lambda_ahead():
                return self.lambda_()
            self.advance()
            e = self.expr()
            self.expect_op(")")
            return e
        if t.kind == "QID":
            if self.peek().is_op("=>"):
                return self.lambda_()
            self.advance()
            return self._column_rest(t.value)
        if t.kind != "ID":
            self.fail("an expression")
        return self.word()

    def word(self) -> Expr:
        """What starts with a word: a lambda, TRUE/FALSE/NULL, CASE, CAST, a STRUCT, ARRAY or
        MAP constructor, a function call or a column."""
        word = self.tok.value
        if self.peek().is_op("=>"):
            return self.lambda_()
        if word in ("TRUE", "FALSE"):
            self.advance()
            return Lit(word == "TRUE")
        if word == "NULL":
            self.advance()
            return Lit(None)
        if word == "CASE":
            return self.case()
        if word == "CAST" and self.peek().is_op("("):
            return self.cast()
        if word == "STRUCT" and self.peek().is_op("("):
            return self.struct()
        if word == "ARRAY" and self.peek().is_op("["):
            return self.array()
        if word == "MAP" and self.peek().is_op("("):
            return self.map_()
        if word in ("SELECT", "FROM", "WHERE") or word in _CLAUSE_END - {"LEFT", "RIGHT"}:
            self.fail("an expression")
        self.advance()
        if self.tok.is_op("("):
            return self.call(word)
        return self._column_rest(word)

    def cast(self) -> Expr:
        self.advance()
        self.advance()
        e = self.expr()
        self.expect_kw("AS")
        ty = self.type_()
        self.expect_op(")")
        return Cast(e, ty)

    def struct(self) -> Expr:
        self.advance()
        self.advance()
        fields: list[tuple[str, Expr]] = []
        if not self.tok.is_op(")"):
            while True:
                fname = self.ident("a field name")
                if not self.accept_op(":="):
                    self.fail("':='")
                fields.append((fname, self.expr()))
                if not self.accept_op(","):
                    break
        self.expect_op(")")
        return Struct(tuple(fields))

    def array(self) -> Expr:
        self.advance()
        self.advance()
        items: list[Expr] = []
        if not self.tok.is_op("]"):
            items.append(self.expr())
            while self.accept_op(","):
                items.append(self.expr())
        self.expect_op("]")
        return Array(tuple(items))

    def map_(self) -> Expr:
        self.advance()
        self.advance()
        pairs: list[tuple[Expr, Expr]] = []
        if not self.tok.is_op(")"):
            while True:
                k = self.expr()
                self.expect_op(":=")
                pairs.append((k, self.expr()))
                if not self.accept_op(","):
                    break
        self.expect_op(")")
        return Map(tuple(pairs))

    def _column_rest(self, first: str) -> Expr:
        if self.tok.is_op(".") and self.peek().kind in ("ID", "QID"):
            self.advance()
            name = self.ident()
            return Col(first, name)
        return Col(None, first)

    def call(self, name: str) -> Expr:
        self.expect_op("(")
        args: list[Expr] = []
        distinct = False
        if self.accept_op(")"):
            return Call(name, (), False)
        if self.tok.is_op("*") and self.peek().is_op(")"):
            self.advance()
            self.advance()
            return Call(name, (Star(None),), False)
        if self.accept_kw("DISTINCT"):
            distinct = True
        while True:
            if self._lambda_ahead():
                args.append(self.lambda_())
            else:
                args.append(self.expr())
            if self.accept_op(")"):
                return Call(name, tuple(args), distinct)
            self.expect_op(",")

    def case(self) -> Expr:
        self.expect_kw("CASE")
        operand = None
        if not self.tok.is_kw("WHEN"):
            operand = self.expr()
        whens: list[tuple[Expr, Expr]] = []
        while self.accept_kw("WHEN"):
            w = self.expr()
            self.expect_kw("THEN")
            whens.append((w, self.expr()))
        if not whens:
            self.fail("WHEN")
        default = None
        if self.accept_kw("ELSE"):
            default = self.expr()
        self.expect_kw("END")
        return Case(operand, tuple(whens), default)


def parse(text: str) -> list[Statement]:
    """Parse one or more statements separated by ';'."""
    return Parser(text).statements()


def parse_expression(text: str) -> Expr:
    p = Parser(text)
    e = p.expr()
    if p.tok.kind != "EOF":
        p.fail("<EOF>")
    return e


_NAMED_IN_ERROR = re.compile(
    r"^(?:Column '(?:(?P<q>[^'.]+)\.)?(?P<c>[^']+)' cannot be resolved|"
    r"(?P<s>\S+) does not exist\.|Can't find any functions with the name '(?P<f>[^']+)'|"
    r"Source '(?P<a>[^']+)' is not in the FROM clause)"
)


def locate(message: str, text: str) -> str:
    """Prefix a semantic error with ``Line: L, Col: C:`` of the name it is about (ksqlDB's
    form), found in the statement's tokens; unchanged when the name is not found."""
    m = _NAMED_IN_ERROR.match(message)
    if m is None or message.startswith("Line: "):
        return message
    name = m.group("c") or m.group("s") or m.group("f") or m.group("a")
    try:
        toks = tokenize(text)
    except ParseError:
        return message
    for i, t in enumerate(toks):
        if t.kind not in ("ID", "QID") or t.value != name:
            continue
        if m.group("q"):
            prev = toks[i - 2] if i >= 2 else None
            if prev is None or prev.value != m.group("q") or not toks[i - 1].is_op("."):
                continue
            t = prev
        return f"Line: {t.line}, Col: {t.col}: {message}"
    return message


def split_statements(text: str) -> list[str]:
    """Statement texts (with their ';'), split at top-level semicolons."""
    out: list[str] = []
    start = 0
    for t in tokenize(text):
        if t.is_op(";"):
            piece = text[start : t.pos + 1].strip()
            if piece != ";":
                out.append(piece)
            start = t.pos + 1
    rest = text[start:].strip()
    if rest and tokenize(rest)[0].kind != "EOF":
        out.append(rest + ";")
    return out
