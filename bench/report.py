"""`instore bench report`: Markdown tables made from ``bench/results/*.jsonl``.

One table per benchmark, one row per run stamped with the broker it ran on (the lines written
before runs were stamped are left out: they are the history in docs/benchmarks.md), oldest
first, with the commit each was measured on. docs/benchmarks.md quotes its output.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from instore.results import RESULTS_DIR

Column = tuple[str, Callable[[dict[str, Any]], Any]]


def _get(key: str) -> Callable[[dict[str, Any]], Any]:
    return lambda d: d.get(key)


def _cases(field: str) -> Callable[[dict[str, Any]], Any]:
    return lambda d: ", ".join(f"{c['case']} {c.get(field)}" for c in d.get("cases", []))


COLUMNS: dict[str, list[Column]] = {
    "proximity": [
        ("positions/s", _get("events_per_s")),
        ("Faust ceiling/s", _get("faust_ceiling_events_per_s")),
        ("ratio", _get("ratio_to_ceiling")),
        ("worker us/position", _get("worker_cpu_us_per_position")),
        ("broker us/position", _get("broker_cpu_us_per_position")),
        ("latency rate/s", _get("latency_rate_per_s")),
        ("row p99 ms", _get("p99_ms")),
        ("offer p99 ms", _get("offer_p99_ms")),
        ("rule us/position", _get("match_us_per_position")),
    ],
    "soak": [
        ("minutes", _get("minutes")),
        ("rate/s", _get("rate")),
        ("brokers", lambda d: d.get("brokers", 1)),
        ("offers produced/received", lambda d: f"{d['offers_produced']}/{d['offers_received']}"),
        ("lost", _get("lost")),
        ("duplicates", _get("duplicates")),
        ("consent violations", _get("consent_violations")),
        ("faults (recovery s)", lambda d: ", ".join(d.get("faults", []))),
        ("recovery p99 s", _get("recovery_p99_s")),
        ("broker RSS MB", _get("broker_rss_mb")),
    ],
    "archive": [
        ("records", _get("archived")),
        ("records/s", _get("records_per_s")),
        ("files", _get("files")),
        ("bytes/record", _get("bytes_per_record")),
        ("count query ms", _get("count_query_ms")),
        ("dwell query ms", _get("dwell_query_ms")),
    ],
    "restart": [
        ("first start s", _get("first_start_s")),
        ("every partition flowing s", _cases("all_flowing")),
        ("joined s", _cases("joined")),
    ],
}


def rows(name: str, results_dir: Path = RESULTS_DIR) -> list[dict[str, Any]]:
    path = results_dir / f"{name}.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if isinstance(data, dict) and "broker" in data:
            out.append(data)
    return out


def table(name: str, results_dir: Path = RESULTS_DIR) -> str:
    """A Markdown table of ``name``'s stamped runs ("" when there are none)."""
    columns = COLUMNS.get(name, [])
    data = rows(name, results_dir)
    if not data:
        return ""
    head = ["broker", "commit", *(c[0] for c in columns)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for d in data:
        cells = [str(d.get("broker")), f"`{d.get('commit')}`",
                 *(_fmt(fn(d)) for _h, fn in columns)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 10 else f"{value:,.3g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def report(results_dir: Path = RESULTS_DIR) -> str:
    parts = []
    for name in COLUMNS:
        text = table(name, results_dir)
        if text:
            parts.append(f"### {name}\n\n{text}\n")
    return "\n".join(parts)
