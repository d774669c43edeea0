"""Run ksqlDB's query-validation-test files (QTT, from a ksqlDB source checkout:
``ksqldb-functional-tests/src/test/resources/query-validation-tests/*.json``) against the local
engine and print how many cases agree. The files stay where they are: this repository carries
its own cases in ``tests/ksql_cases``; this is a measuring tool for the supported subset.

    python scripts/ksql_qtt.py ~/src/ksql/ksqldb-functional-tests/.../joins.json [-v] [--json]

A case is in the subset when its statements use JSON values (``{FORMAT}`` cases run with JSON)
and KAFKA/JSON keys; others are counted as skipped. A case agrees when every expected output
topic holds exactly the expected records (key, value, timestamp, window) in order, or, for an
``expectedException`` case, when one of the statements is refused.
"""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path
from typing import Any

import orjson
import typer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stream_apps.ksqldb.errors import KsqlError  # noqa: E402
from stream_apps.ksqldb.metastore import Source  # noqa: E402
from stream_apps.ksqldb.testing import MemoryEngine  # noqa: E402

_OTHER_FORMATS = re.compile(
    r"(VALUE_FORMAT|KEY_FORMAT|FORMAT)\s*=\s*'(AVRO|PROTOBUF|PROTOBUF_NOSR|DELIMITED|JSON_SR)'",
    re.I,
)


def _formats(case: dict[str, Any]) -> list[str | None]:
    fmts = case.get("format")
    if not fmts:
        return [None]
    return [f for f in fmts if f.upper() == "JSON"]


def _in_subset(statements: list[str]) -> bool:
    text = " ".join(statements)
    if _OTHER_FORMATS.search(text):
        return False
    return not re.search(r"VALUE_FORMAT\s*=\s*'KAFKA'", text, re.I)


def _by_topic(engine: MemoryEngine, topic: str) -> Source | None:
    found = [s for s in engine.sources.values() if s.topic.upper() == topic.upper()]
    return found[-1] if found else None


def _encode_key(src: Source | None, key: Any, window: dict[str, Any] | None) -> bytes | None:
    if key is None and window is None:
        return None
    if src is None:
        return orjson.dumps(key)
    if isinstance(key, dict) and len(src.key_columns) > 1:
        values = tuple(key.get(n) for n, _ in src.key_columns)
    else:
        values = (key,)
    wstart: Any = None
    if window is not None:
        wstart = (
            (window["start"], window["end"]) if window.get("type", "").lower() == "session"
            else window["start"]
        )
    return src.encode_key(values, wstart)


def _decode(src: Source, rec: dict[str, Any]) -> dict[str, Any]:
    key, ws = src.decode_key(rec["key"])
    if not key:
        k: Any = None
    elif len(key) == 1:
        k = key[0]
    else:
        k = {n: v for (n, _), v in zip(src.key_columns, key, strict=False)}
    out = {
        "key": k,
        "value": None if rec["value"] is None else orjson.loads(rec["value"]),
        "timestamp": rec["timestamp"],
    }
    if ws is not None and src.window is not None:
        start, end = src.window_bounds(ws)
        out["window"] = {"start": start, "end": end}
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return (
            isinstance(a, int | float) and isinstance(b, int | float)
            and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
        )
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _expected(rec: dict[str, Any]) -> dict[str, Any]:
    out = {"key": rec.get("key"), "value": rec.get("value")}
    if rec.get("timestamp") is not None:  # a case that gives no timestamp does not check it
        out["timestamp"] = rec["timestamp"]
    if "window" in rec:
        out["window"] = {"start": rec["window"]["start"], "end": rec["window"]["end"]}
    return out


def run_case(case: dict[str, Any], fmt: str | None) -> tuple[str, str]:
    """("pass" | "fail" | "skip", detail)."""
    statements = [s.replace("{FORMAT}", fmt or "JSON") for s in case["statements"]]
    if not _in_subset(statements):
        return "skip", "format outside JSON/KAFKA keys"
    engine = MemoryEngine()
    raised: str | None = None
    for sql in statements:
        try:
            engine.execute(sql)
        except KsqlError as exc:
            raised = exc.message
            break
        except Exception as exc:  # noqa: BLE001 - a crash is a disagreement, reported as such
            return "fail", f"crash in {sql!r}: {type(exc).__name__}: {exc}"
    if "expectedException" in case:
        if raised is not None:
            return "pass", f"refused: {raised}"
        return "fail", "accepted a statement ksqlDB refuses: " + str(case["expectedException"])
    if raised is not None:
        return "fail", f"refused: {raised}"
    try:
        for rec in case.get("inputs", []):
            src = _by_topic(engine, rec["topic"])
            kbytes = _encode_key(src, rec.get("key"), rec.get("window"))
            value = rec.get("value")
            vbytes = None if value is None else orjson.dumps(value)
            topic = src.topic if src is not None else rec["topic"]
            engine._deliver(topic, kbytes, vbytes, rec.get("timestamp", 0))
    except Exception as exc:  # noqa: BLE001
        return "fail", f"crash on input: {type(exc).__name__}: {exc}"
    expected: dict[str, list[dict[str, Any]]] = {}
    for rec in case.get("outputs", []):
        expected.setdefault(rec["topic"], []).append(_expected(rec))
    for topic, want in expected.items():
        src = _by_topic(engine, topic)
        if src is None:
            return "fail", f"no source writes {topic}"
        try:
            got = [_decode(src, r) for r in engine.topics.get(src.topic, [])]
        except Exception as exc:  # noqa: BLE001
            return "fail", f"{topic}: output does not decode: {exc}"
        got = [{k: g.get(k) for k in w} | {k: g[k] for k in g if k not in w and k != "timestamp"}
               for g, w in zip(got, want, strict=False)] + got[len(want):]
        if not (len(got) == len(want) and all(_same(g, w) for g, w in zip(got, want, strict=True))):
            return "fail", f"{topic}:\n  got  {got}\n  want {want}"
    return "pass", ""


def main(
    files: list[Path],
    verbose: bool = typer.Option(False, "-v", help="print each failing case and why"),
    as_json: bool = typer.Option(False, "--json", help="one JSON summary line per file"),
    only: str = typer.Option("", help="run only cases whose name contains this"),
) -> None:
    """Run ksqlDB QTT files against the local engine; print agreement per file."""
    totals = {"pass": 0, "fail": 0, "skip": 0}
    for path in files:
        counts = {"pass": 0, "fail": 0, "skip": 0}
        for case in json.loads(path.read_text())["tests"]:
            if only and only not in case["name"]:
                continue
            for fmt in _formats(case) or []:
                status, detail = run_case(case, fmt)
                counts[status] += 1
                if verbose and status == "fail":
                    typer.echo(f"FAIL {path.stem}: {case['name']}\n  {detail}")
        for k in totals:
            totals[k] += counts[k]
        ran = counts["pass"] + counts["fail"]
        if as_json:
            typer.echo(json.dumps({"file": path.name, **counts}))
        else:
            pct = 100 * counts["pass"] / ran if ran else 0.0
            typer.echo(f"{path.name}: {counts['pass']}/{ran} agree ({pct:.0f} %), "
                       f"{counts['skip']} outside the subset")
    ran = totals["pass"] + totals["fail"]
    if len(files) > 1 and not as_json:
        pct = 100 * totals["pass"] / ran if ran else 0.0
        typer.echo(f"all: {totals['pass']}/{ran} agree ({pct:.0f} %), {totals['skip']} skipped")


if __name__ == "__main__":
    typer.run(main)
