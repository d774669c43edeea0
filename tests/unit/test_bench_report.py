"""`instore bench report`: tables from the results lines stamped with broker and commit."""

from __future__ import annotations

import json
from pathlib import Path

from bench.report import report, table
from instore import results


def test_only_stamped_runs_make_rows(tmp_path: Path) -> None:
    lines = [
        {"bench": "proximity", "events_per_s": 3000.0},  # before stamping: history, left out
        results.stamp({"bench": "proximity", "events_per_s": 2194.3, "p99_ms": 88.1}, "kafka"),
        {"bench": "proximity", "events_per_s": 1885.5, "commit": "abc", "broker": "tansu"},
    ]
    (tmp_path / "proximity.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    text = table("proximity", tmp_path)
    body = text.splitlines()[2:]
    assert len(body) == 2
    assert body[0].startswith("| kafka |") and "2,194.3" in body[0] and "88.1" in body[0]
    assert body[1].startswith("| tansu | `abc` |") and "1,885.5" in body[1]
    assert "3,000" not in text
    assert report(tmp_path).startswith("### proximity")
    assert table("soak", tmp_path) == ""


def test_time_left_at_the_rate_so_far() -> None:
    import time

    from instore.results import time_left

    started = time.perf_counter() - 10.0  # 10 s for the first quarter
    left = time_left(25, 100, started)  # 75 more at 2.5/s: 30 s (give or take the call)
    assert left.startswith("about ") and left.endswith(" s left")
    assert 29 <= float(left.split()[1].replace(",", "")) <= 31
    assert time_left(0, 100, started) == "time left unknown"
    assert time_left(100, 100, started) == "about 0 s left"
