"""One statement run and its result printed: a table of a pull query's rows, a push query's
rows as they arrive (Ctrl-C, ``--limit`` or its LIMIT ends it), the entities of any other
statement (streams, tables, queries, topics, a description, a status); with ``as_json``, a JSON
line per row and one JSON object last."""

from __future__ import annotations

import json
import re
import sys
from typing import Any

from rich.table import Table

from instore.commands.ksql.client import KsqlCommandError, parse_line, run_ksql, split_schema
from instore.commands.ksql.output import console, out
from instore.commands.ksql.statements import classify


def render(columns: list[str], rows: list[list[Any]], title: str | None = None) -> Table:
    """A table of rows, a value as ksqlDB's CLI shows it."""
    table = Table(*columns, title=title)
    for row in rows:
        table.add_row(*(_cell(v) for v in row))
    return table


def _cell(v: Any) -> str:
    return "null" if v is None else json.dumps(v) if isinstance(v, dict | list) else str(v)


def run_statement(client: Any, text: str, props: dict[str, Any], *, limit: int | None = None,
                  as_json: bool = False) -> None:
    """Run one statement and print its result: a table with the result's columns (a push
    query's rows as they arrive, under a header line). Raises :class:`KsqlCommandError` with
    ksqlDB's message, :class:`KsqlUnavailable` when no endpoint answers."""
    is_select, push = classify(text)
    if not is_select:
        _print_entities(run_ksql(client, text, props), as_json)
        return
    _run_select(client, text, props, push, limit, as_json)


class _LimitReached(Exception):
    """--limit rows were printed."""


def _run_select(
    client: Any, text: str, props: dict[str, Any], push: bool, limit: int | None, as_json: bool
) -> None:
    from ksql.errors import KSQLError  # noqa: PLC0415

    names: list[str] = []
    rows: list[list[Any]] = []
    buf = ""
    count = 0
    try:
        for chunk in client.query(text, stream_properties=props):
            buf += chunk
            while "\n" in buf:
                line, buf = buf.split("\n", 1)
                item = parse_line(line)
                if item is None:
                    continue
                if "header" in item:
                    names = [c.split("`")[1] for c in split_schema(item["header"]["schema"])]
                    if push and not as_json:
                        out.print(" | ".join(names), style="bold", markup=False, highlight=False)
                    continue
                if "row" in item:
                    values = item["row"]["columns"]
                    count += 1
                    if as_json:
                        sys.stdout.write(json.dumps(dict(zip(names, values, strict=False))) + "\n")
                        sys.stdout.flush()
                    elif push:
                        out.print(" | ".join(_cell(v) for v in values), markup=False,
                                  highlight=False)
                    else:
                        rows.append(values)
                    if limit is not None and count >= limit:
                        raise _LimitReached
                elif "errorMessage" in item or "@type" in item:
                    err = item.get("errorMessage", item)
                    raise KsqlCommandError(str(err.get("message")))
        tail = parse_line(buf)
        if tail is not None and "@type" in tail:
            raise KsqlCommandError(str(tail.get("message")))
    except _LimitReached:
        pass
    except KeyboardInterrupt:  # Ctrl-C ends a push query; it cancels any other statement
        if not push:
            raise
    except (KSQLError, ValueError) as exc:
        raise _refusal(exc) from None
    if as_json:  # the last line, as every --json: one JSON object (the rows came before it)
        sys.stdout.write(json.dumps({"query": {"columns": names, "rows": count,
                                               "push": push}}) + "\n")
    if push:  # by Ctrl-C, --limit or its LIMIT
        console.print(f"[cyan]query ended[/] after {count} row(s)")
    elif not as_json:
        if names and (names[0] or rows):
            out.print(render(names, rows))
        console.print(f"{len(rows)} row(s)")


def _refusal(exc: Exception) -> KsqlCommandError:
    """ksqlDB's own message of a refused query (read from the JSON body the client quotes)."""
    msg = getattr(exc, "msg", None) or str(exc)
    m = re.search(r"HTTP error encountered: \d+: (.*)$", msg, re.S)
    if m:
        try:
            msg = json.loads(m.group(1)).get("message", msg)
        except json.JSONDecodeError:
            pass
    return KsqlCommandError(msg)


def _print_entities(entities: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps({"entities": entities}) + "\n")
        return
    for e in entities:
        kind = e.get("@type")
        if kind in ("streams", "tables"):
            items = e[kind]
            out.print(
                render(
                    ["name", "topic", "key format", "value format", "windowed"],
                    [
                        [i["name"], i["topic"], i["keyFormat"], i["valueFormat"], i["isWindowed"]]
                        for i in items
                    ],
                    kind,
                )
            )
        elif kind == "queries":
            out.print(
                render(
                    ["id", "state", "sinks"],
                    [[q["id"], q["state"], ",".join(q["sinks"])] for q in e["queries"]],
                    "queries",
                )
            )
        elif kind == "kafka_topics":
            out.print(
                render(
                    ["topic", "partitions"],
                    [[t["name"], len(t["replicaInfo"])] for t in e["topics"]],
                    "topics",
                )
            )
        elif kind == "sourceDescription":
            d = e["sourceDescription"]
            out.print(
                render(
                    ["field", "type"],
                    [
                        [
                            f["name"] + (" (key)" if f.get("type") == "KEY" else ""),
                            f["schema"]["type"],
                        ]
                        for f in d["fields"]
                    ],
                    f"{d['type']} {d['name']} (topic {d['topic']})",
                )
            )
        elif kind == "currentStatus":
            out.print(e["commandStatus"]["message"])
        else:
            out.print_json(json.dumps(e))
