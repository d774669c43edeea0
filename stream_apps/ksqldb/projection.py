"""The SELECT list of a plan: its output columns (``*`` expanded, each column named as ksqlDB
names it) and which of them are the output key (the GROUP BY or PARTITION BY expressions, the
join key, or the FROM source's key), with ksqlDB's checks and error messages."""

from __future__ import annotations

from stream_apps.ksqldb.coercion import coerce_comparisons
from stream_apps.ksqldb.column_names import AliasGenerator
from stream_apps.ksqldb.errors import StatementError, listed
from stream_apps.ksqldb.expressions import Compiler, is_table_function
from stream_apps.ksqldb.functions import AGGREGATES
from stream_apps.ksqldb.join_planning import JoinedSources, join_key_reader
from stream_apps.ksqldb.nodes import Call, Col, Deref, Expr, Lambda, Star, children, expr_sql
from stream_apps.ksqldb.plan import OutputColumn
from stream_apps.ksqldb.scope import PSEUDO, Scope
from stream_apps.ksqldb.statements import Select, SelectItem

SYSTEM_COLUMNS = ("ROWTIME", "ROWPARTITION", "ROWOFFSET", "WINDOWSTART", "WINDOWEND")


class Projection:
    """Plans the SELECT list of ``select`` over the sources ``joined``; ``compiler`` compiles
    the projection (aggregates allowed when the query aggregates)."""

    def __init__(
        self,
        select: Select,
        joined: JoinedSources,
        compiler: Compiler,
        *,
        persistent: bool,
        aggregate: bool,
        sink: str | None,
    ) -> None:
        self.select = select
        self.joined = joined
        self.compiler = compiler
        self.scope = joined.scope
        self.persistent = persistent
        self.aggregate = aggregate
        self.sink_sql = f"`{sink}`" if sink else "the output"
        self.aliasgen = AliasGenerator(joined.column_names)

    # -- columns --------------------------------------------------------------------------------
    def columns(self) -> list[OutputColumn]:
        columns: list[OutputColumn] = []
        for item in self.select.items:
            if isinstance(item.expr, Star):
                columns += self._star(item.expr)
                continue
            item.expr = coerce_comparisons(item.expr, self.compiler, self.scope, "SELECT")
            column = self._column(item)
            if any(c.name == column.name for c in columns):
                msg = f"Duplicate value columns found in schema: `{column.name}` {column.type}"
                raise StatementError(msg)
            columns.append(column)
        return columns

    def _star(self, e: Star) -> list[OutputColumn]:
        """``*`` (the join key first when it is synthetic) or ``alias.*``; in a join each
        column is named after its source (``L_ID``)."""
        joined, comp, scope = self.joined, self.compiler, self.scope
        out: list[OutputColumn] = []
        if joined.synthetic and e.qualifier is None and joined.key_slot is not None:
            name = joined.synth_name
            key_ref = Col(None, name)
            ty = scope.slots[joined.key_slot].columns[name]
            out.append(OutputColumn(name, ty, comp.compile(key_ref, scope), expr=key_ref))
        for si, slot in enumerate(scope.slots[: len(joined.sources)]):
            if e.qualifier is not None and e.qualifier not in (slot.alias, slot.source):
                continue
            src = joined.sources[si][1]
            for name, ty in src.columns.items():
                out_name = f"{slot.alias}_{name}" if joined.criteria else name
                col_ref = Col(slot.alias, name)
                out.append(OutputColumn(out_name, ty, comp.compile(col_ref, scope), expr=col_ref))
        return out

    def _column(self, item: SelectItem) -> OutputColumn:
        e = item.expr
        comp, scope = self.compiler, self.scope
        tf = is_table_function(e)
        if isinstance(e, Call) and tf:
            if self.aggregate:
                msg = "Table functions can not be used with aggregations."
                raise StatementError(msg)
            if len(e.args) != 1:
                msg = f"Function '{e.name}' expects one argument."
                raise StatementError(msg)
            fn = comp.compile(e.args[0], scope)
        else:
            fn = comp.compile(e, scope)
        ty = comp.infer(e, scope)
        name = self._name(item)
        _check_reserved_alias(item.alias, name, e, self.persistent)
        return OutputColumn(name, ty, fn, table_function=tf, expr=e)

    def _name(self, item: SelectItem) -> str:
        """The alias, else ksqlDB's name for the expression."""
        if item.alias:
            return item.alias
        joined = self.joined
        match item.expr:
            case Col(qualifier=q, name=column):
                # ksqlDB's AstSanitizer: in a join, a column whose name is in more than one
                # source (and every pseudo column) is named after its source, e.g. L_ID
                si, name, _ = self.scope.resolve(q, column)
                if joined.criteria and si < len(joined.sources) and (
                    name in joined.clash or name in PSEUDO
                ):
                    name = f"{self.scope.slots[si].alias}_{name}"
                return name
            case Deref(field=field):
                return self.aliasgen.for_field(field)
        return self.aliasgen.next("KSQL_COL")

    # -- the key --------------------------------------------------------------------------------
    def key_names(self, columns: list[OutputColumn]) -> list[str]:
        """The names of the key columns (marked ``is_key``), in the order of the key
        expressions. ``columns`` may gain the key column of ``SELECT * ... PARTITION BY``."""
        key_exprs, join_key = self._key_expressions(columns)
        names: list[str] = []
        if not (self.persistent or self.aggregate):
            return names
        for ke in key_exprs:
            hit = self._key_column(ke, columns)
            if hit is None:
                self._missing_key(ke, join_key)
                continue
            self._check_key_once(ke, columns)
            hit.is_key = True
            key_slot = self.joined.key_slot
            if join_key and key_slot is not None:
                # the key is the join key itself (not null when the column's side is missing)
                hit.fn = join_key_reader(key_slot)
            names.append(hit.name)
        return names

    @property
    def _fk_join(self) -> bool:
        joins = self.joined.joins
        return bool(joins) and joins[-1].foreign_key  # the last join keys the result

    def _key_expressions(self, columns: list[OutputColumn]) -> tuple[list[Expr], bool]:
        """What the output is keyed by, and whether that is the join key."""
        select, joined = self.select, self.joined
        if self.aggregate:
            return list(select.group_by), False
        if select.partition_by:
            return list(select.partition_by), False
        if joined.criteria and not self._fk_join:
            if joined.synthetic:
                return [Col(None, joined.synth_name)], True
            chosen = next(
                (v for v in joined.viable if any(self._selects(c, v) for c in columns)),
                joined.viable[0],
            )
            return [chosen], True
        return [Col(joined.aliases[0], n) for n, _ in joined.driver.key_columns], False

    def _selects(self, c: OutputColumn, e: Expr) -> bool:
        """Whether column ``c`` is expression ``e``."""
        return c.expr is not None and not c.table_function and self.scope.same(c.expr, e)

    def _key_column(self, ke: Expr, columns: list[OutputColumn]) -> OutputColumn | None:
        hit = next((c for c in columns if self._selects(c, ke)), None)
        if hit is None and self.select.partition_by and any(
            it.expr == Star(None) for it in self.select.items
        ):
            # SELECT * ... PARTITION BY x: the star covers the new key column too
            kname = (
                self.scope.resolve(ke.qualifier, ke.name)[1]
                if isinstance(ke, Col)
                else self.aliasgen.next("KSQL_COL")
            )
            comp = self.compiler
            hit = OutputColumn(
                kname, comp.infer(ke, self.scope), comp.compile(ke, self.scope), expr=ke
            )
            columns.insert(0, hit)
        return hit

    def _missing_key(self, ke: Expr, join_key: bool) -> None:
        """Refuse a projection without the key expression ``ke``, in ksqlDB's words."""
        joined, sink_sql = self.joined, self.sink_sql
        if self.aggregate or self.select.partition_by:
            clause = "GROUP BY" if self.aggregate else "PARTITION BY"
            msg = (
                f"Key missing from projection (ie, SELECT). The query used to build "
                f"{sink_sql} must include the {clause} expression {expr_sql(ke)} in "
                f"its projection (eg, SELECT {expr_sql(ke)}...)."
            )
            raise StatementError(msg)
        if joined.synthetic:
            synth = joined.synth_name
            msg = (
                "Key missing from projection (ie, SELECT). See "
                "https://cnfl.io/2LV7ouS.\nThe query used to build "
                f"{sink_sql} must include the join expression {synth} in its "
                f"projection (eg, SELECT {synth}...).\n{synth} was added as a "
                "synthetic key column because the join criteria did not match any "
                "source column. This expression must be included in the projection and "
                "may be aliased. "
            )
            raise StatementError(msg)
        if join_key:
            names = [expr_sql(v) for v in joined.viable]
            what = "join expression" + ("" if len(names) == 1 else "s")
            msg = (
                "Key missing from projection (ie, SELECT). \nThe query used to build "
                f"{sink_sql} must include the {what} {listed(names, 'or')} in its projection "
                f"(eg, SELECT {names[0]}...)."
            )
            raise StatementError(msg)
        key_cols = [n for n, _ in joined.driver.key_columns]
        many = len(key_cols) > 1
        if not self._fk_join and self.persistent:
            missing_sql = " and ".join(key_cols) if many else key_cols[0]
            msg = (
                f"Key{'s' if many else ''} missing from projection (ie, SELECT). \n"
                f"The query used to build {sink_sql} must include the key "
                f"column{'s' if many else ''} {missing_sql} in its projection "
                f"(eg, SELECT {', '.join(key_cols)}...)."
            )
            raise StatementError(msg)
        if self._fk_join:
            msg = (
                f"Primary key column{'s' if many else ''} missing from "
                f"projection (ie, SELECT). The query used to build {sink_sql} must "
                f"include the primary key column{'s' if many else ''} "
                f"{', '.join(key_cols)} of the left table {joined.aliases[0]} in its projection."
            )
            raise StatementError(msg)

    def _check_key_once(self, ke: Expr, columns: list[OutputColumn]) -> None:
        """A key column may be selected once (AS_VALUE copies it into the value)."""
        dups = [c.name for c in columns if self._selects(c, ke)]
        if len(dups) > 1 and isinstance(ke, Col):
            scope, joined = self.scope, self.joined
            si, kname, _ = scope.resolve(ke.qualifier, ke.name)
            internal = (
                f"{scope.slots[si].alias}_{kname}"
                if joined.criteria and si < len(joined.sources)
                else kname
            )
            msg = (
                f"The projection contains a key column (`{internal}`) more than once, "
                f"aliased as: {listed(sorted(dups), 'and')}.\nEach key column must "
                "only be in the projection once. If you intended to copy the key into the "
                "value, then consider using the AS_VALUE function to indicate which key "
                "reference should be copied."
            )
            raise StatementError(msg)


def check_grouped_projection(select: Select, columns: list[OutputColumn], scope: Scope) -> None:
    """Every non-aggregate part of the projection is made of GROUP BY expressions."""
    groups = list(select.group_by)

    def grouped(e: Expr) -> bool:
        if any(scope.same(e, g) for g in groups):
            return True
        match e:
            case Col(name=name):
                return name in ("WINDOWSTART", "WINDOWEND")
            case Call(name=name) if name in AGGREGATES:
                return True
            case Lambda():
                return True
        return all(grouped(x) for x in children(e))

    bad: list[str] = []
    for c in columns:
        e = c.expr
        if e is None or c.is_key or grouped(e):
            continue
        bad.append(c.name if isinstance(e, Col) else expr_sql(e))
    if bad:
        msg = (
            f"Non-aggregate SELECT expression(s) not part of GROUP BY: {', '.join(bad)}\n"  # noqa: S608
            "Either add the column(s) to the GROUP BY or remove them from the SELECT."
        )
        raise StatementError(msg)


def _check_reserved_alias(alias: str | None, name: str, e: Expr, persistent: bool) -> None:
    """ksqlDB's Analyzer: a system column name as an alias is refused; selected unaliased
    (SELECT ROWTIME ...) it is refused in a persistent query only."""
    for reserved in SYSTEM_COLUMNS:
        if name.upper() != reserved:
            continue
        if alias is not None and not (isinstance(e, Col) and e.name.upper() == reserved):
            msg = (
                f"`{reserved}` is a reserved column name. You cannot use it as an alias for a "
                "column."
            )
            raise StatementError(msg)
        if persistent:
            msg = f"Reserved column name in select: `{reserved}`. Please remove or alias the column."
            raise StatementError(msg)
