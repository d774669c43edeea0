"""Semantics cases (tests/ksql_cases/*.json, one file per feature) on the in-memory engine: the
same parser, planner and query core as the endpoint, topics replaced by lists.

A case: ``statements`` (run in order), ``inputs`` (records written to sources, in order;
``wall_clock_ms`` on an input: the clock pacing outer-join sweeps from that record on, fixed
otherwise as in Kafka Streams' TopologyTestDriver), ``outputs`` (per sink: the exact records
it wrote, in order; ``"<any>"`` matches any value),
``pull`` (pull queries and their rows), or ``error`` (the statement that must fail and a part
of its message). An input may name a ``topic`` instead of a ``source``, an output a topic
instead of a sink. A file may also hold cases in the shape of ksqlDB's own query-validation
tests (a ``tests`` list: inputs and outputs by topic, ``expectedException``), run as ksqlDB's
test driver runs them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from stream_apps.ksqldb.errors import KsqlError
from stream_apps.ksqldb.testing import MemoryEngine, qtt_formats, run_qtt_case, same_value

CASES_DIR = Path(__file__).resolve().parents[1] / "ksql_cases"


def _cases() -> list[Any]:
    out = []
    for path in sorted(CASES_DIR.glob("*.json")):
        doc = json.loads(path.read_text())
        for case in doc.get("cases", []):
            out.append(pytest.param(case, id=f"{path.stem}:{case['name']}"))
        for case in doc.get("tests", []):
            for fmt in qtt_formats(case):
                out.append(
                    pytest.param({"qtt": case, "format": fmt}, id=f"{path.stem}:{case['name']}")
                )
    return out


def _close(a: Any, b: Any) -> bool:
    return same_value(a, b)


def _shape(rec: dict[str, Any], expected: dict[str, Any]) -> dict[str, Any]:
    return {k: rec.get(k) for k in expected}


def test_case_files_exist() -> None:
    names = {p.stem for p in CASES_DIR.glob("*.json")}
    assert {"joins", "windows", "aggregates", "functions", "pull_queries", "errors",
            "processing_log"} <= names


@pytest.mark.parametrize("case", _cases())
def test_case(case: dict[str, Any]) -> None:
    if "qtt" in case:
        status, detail = run_qtt_case(case["qtt"], case["format"])
        if status == "skip":
            pytest.skip(detail)
        assert status == "pass", detail
        return
    engine = MemoryEngine()
    statements = case["statements"]
    err = case.get("error")
    for i, sql in enumerate(statements):
        if err is not None and i == err["statement"]:
            with pytest.raises(KsqlError) as info:
                engine.execute(sql)
            assert err["contains"] in info.value.message, info.value.message
            return
        engine.execute(sql)
    assert err is None, "the failing statement index is past the statements"
    for rec in case.get("inputs", []):
        engine.wall_clock_ms = rec.get("wall_clock_ms", engine.wall_clock_ms)
        if "topic" in rec:
            engine.insert_topic(
                rec["topic"], rec.get("key"), rec.get("value"), rec.get("timestamp", 0),
                rec.get("window"),
            )
            continue
        engine.insert(
            rec["source"],
            key=rec.get("key"),
            value=rec.get("value"),
            timestamp=rec.get("timestamp", 0),
            raw=rec.get("raw"),
            raw_key=rec.get("raw_key"),
        )
    for sink, expected in case.get("outputs", {}).items():
        records = engine.output(sink) if sink in engine.sources else engine.topic_output(sink)
        got = [_shape(r, e) for r, e in zip(records, expected, strict=False)]
        assert len(records) == len(expected), (
            f"{sink}: {len(records)} records, expected {len(expected)}: {records}"
        )
        assert _close(got, expected), f"{sink}:\n got {got}\nwant {expected}"
    for pq in case.get("pull", []):
        if "error" in pq:
            with pytest.raises(KsqlError) as info:
                engine.pull(pq["sql"])
            assert pq["error"] in info.value.message
            continue
        rows = engine.pull(pq["sql"])
        key = json.dumps
        assert _close(sorted(rows, key=key), sorted(pq["rows"], key=key)), rows
    if "processing_errors" in case:
        assert len(engine.processing_errors) == case["processing_errors"], engine.processing_errors
