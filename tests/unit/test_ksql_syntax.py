"""The SQL parser and expression compiler: every migration file parses, errors carry
line:column, and the grid-indexed FILTER returns exactly what the plain FILTER returns."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_apps.ksqldb import syntax as sx
from stream_apps.ksqldb.errors import ParseError
from stream_apps.ksqldb.expressions import Compiler, Scope, Slot
from stream_apps.ksqldb.syntax import DOUBLE, SqlType, parse, parse_expression, split_statements

ROOT = Path(__file__).resolve().parents[2]
SQL_FILES = sorted((ROOT / "ksql").glob("*/*.sql"))


def test_ksql_dir_holds_sql_only() -> None:
    files = [p for p in (ROOT / "ksql").rglob("*") if p.is_file()]
    assert files and all(p.suffix == ".sql" for p in files)
    assert not (ROOT / "ksql" / "__init__.py").exists()


@pytest.mark.parametrize("path", SQL_FILES, ids=[p.name for p in SQL_FILES])
def test_no_semicolon_in_comments(path: Path) -> None:
    # ksql-migrations splits a file on ';' before parsing: a ';' in a comment would break it
    for line in path.read_text().splitlines():
        assert ";" not in line.partition("--")[2], line


@pytest.mark.parametrize("path", SQL_FILES, ids=[p.name for p in SQL_FILES])
def test_migration_files_parse(path: Path) -> None:
    stmts = parse(path.read_text())
    assert stmts
    assert all(s.text.endswith(";") for s in stmts)
    assert len(split_statements(path.read_text())) == len(stmts)


def test_statement_kinds() -> None:
    stmts = parse(
        "CREATE OR REPLACE STREAM IF NOT EXISTS A (K STRING KEY, `v` ARRAY<STRUCT<X INT>>) "
        "WITH (KAFKA_TOPIC='a', PARTITIONS=2, VALUE_FORMAT='JSON');"
        "INSERT INTO A (K) VALUES ('x'); SHOW STREAMS; LIST QUERIES; DESCRIBE A EXTENDED;"
        "DROP STREAM IF EXISTS A DELETE TOPIC; TERMINATE ALL; SET 'auto.offset.reset'='earliest';"
    )
    kinds = [type(s).__name__ for s in stmts]
    assert kinds == ["CreateSource", "InsertValues", "Show", "Show", "Describe", "Drop",
                     "Terminate", "SetProperty"]
    create = stmts[0]
    assert isinstance(create, sx.CreateSource)
    assert create.columns[1].name == "v"  # backticks keep case
    assert str(create.columns[1].type) == "ARRAY<STRUCT<`X` INTEGER>>"
    assert create.props == {"KAFKA_TOPIC": "a", "PARTITIONS": 2, "VALUE_FORMAT": "JSON"}


def test_select_clauses() -> None:
    (q,) = parse("SELECT a.x, COUNT(*) AS n FROM s a LEFT JOIN t b WITHIN (1 SECOND, 2 MINUTES) "
                 "GRACE PERIOD 3 SECONDS ON a.k = b.k WINDOW HOPPING (SIZE 1 HOUR, ADVANCE BY "
                 "10 MINUTES) WHERE a.x > 1 GROUP BY a.x HAVING COUNT(*) > 2 EMIT CHANGES "
                 "LIMIT 5;")
    assert isinstance(q, sx.Query) and q.select is not None
    s = q.select
    assert s.joins[0].kind == "LEFT" and s.joins[0].within == (1000, 120_000)
    assert s.joins[0].grace_ms == 3000
    assert s.window is not None and s.window.advance_ms == 600_000
    assert s.emit_changes and s.limit == 5


@pytest.mark.parametrize(("sql", "where"), [
    ("SELECT * FORM S;", "line 1:9:"),
    ("CREATE STREAM S (K STRING KEY,\n  V INTEGR) WITH (KAFKA_TOPIC='s');", "line 2:4:"),
    ("SELECT * FROM S WHERE;", "line 1:21:"),
    ("SELECT 'unterminated FROM S;", "line 1:7:"),
])
def test_parse_errors_carry_the_position(sql: str, where: str) -> None:
    with pytest.raises(ParseError) as info:
        parse(sql)
    assert info.value.message.startswith(where), info.value.message


def _eval(expr: str, row: dict[str, object] | None = None) -> object:
    cols = {k: DOUBLE for k in (row or {})}
    comp = Compiler(Scope([Slot("S", "S", cols)]))
    return comp.compile(parse_expression(expr))(((row or {}),))


def test_three_valued_logic_and_nulls() -> None:
    assert _eval("NULL AND FALSE") is False
    assert _eval("NULL AND TRUE") is None
    assert _eval("NULL OR TRUE") is True
    assert _eval("NOT (1 > NULL)") is None
    assert _eval("CAST('12' AS INT) + 1") == 13
    assert _eval("7 / 2") == 3 and _eval("7.0 / 2") == 3.5
    assert _eval("CASE WHEN NULL THEN 1 ELSE 2 END") == 2
    assert _eval("'a' + 'b'") == "ab"


PAIR = SqlType("ARRAY", (SqlType("STRUCT", (("LAT", DOUBLE), ("LON", DOUBLE), ("R", DOUBLE))),))


def _filters(sql: str) -> tuple[object, object]:
    scope = Scope([Slot("P", "P", {"LAT": DOUBLE, "LON": DOUBLE, "PAIRS": PAIR})])
    expr = parse_expression(sql)
    fast = Compiler(scope).compile(expr)
    plain = Compiler(scope)
    plain._spatial_filter = lambda *a: None  # type: ignore[method-assign]
    return fast, plain.compile(expr)


point = st.tuples(st.floats(-0.001, 0.001), st.floats(-0.001, 0.001))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(point, st.sampled_from([10.0, 25.0, 50.0, 100.0, None])), max_size=40),
       point)
def test_grid_filter_equals_plain_filter(pairs: list, at: tuple[float, float]) -> None:
    fast, plain = _filters("FILTER(PAIRS, x => GEO_DISTANCE(LAT, LON, x->LAT, x->LON, 'km') "
                           "* 3280.8399 <= x->R AND x->R > 10)")
    base = (51.5, -0.12)
    arr = [{"LAT": base[0] + dy, "LON": base[1] + dx, "R": r} for (dy, dx), r in pairs]
    row = ({"LAT": base[0] + at[0], "LON": base[1] + at[1], "PAIRS": arr},)
    assert fast(row) == plain(row)


def test_grid_filter_is_exact_at_the_radius() -> None:
    fast, plain = _filters("FILTER(PAIRS, x => GEO_DISTANCE(LAT, LON, x->LAT, x->LON, 'km') "
                           "* 3280.8399 <= x->R)")
    from instore.geo import distance_ft

    d = distance_ft(51.5, -0.12, 51.5002, -0.12)
    arr = [{"LAT": 51.5, "LON": -0.12, "R": d}, {"LAT": 51.5, "LON": -0.12,
                                                  "R": math.nextafter(d, 0)}]
    row = ({"LAT": 51.5002, "LON": -0.12, "PAIRS": arr},)
    assert fast(row) == plain(row) == [arr[0]]
    bad = ({"LAT": 95.0, "LON": -0.12, "PAIRS": arr},)  # out of range: null, no match
    assert fast(bad) == plain(bad) == []
