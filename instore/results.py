"""Benchmark results: one JSON line per run in ``bench/results/<name>.jsonl``, each stamped with
the commit it was measured on and the broker it ran against (``instore bench report`` and
docs/benchmarks.md read them)."""

from __future__ import annotations

import json
import subprocess
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

from instore.settings import get_settings

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "bench" / "results"


@lru_cache(maxsize=1)
def commit() -> str | None:
    """The checked-out commit (short), with "+dirty" when tracked files other than the results
    themselves have changes; None outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, check=True,
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":!bench/results"], cwd=ROOT, check=True, capture_output=True,
                               text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


def stamp(fig: dict[str, Any], broker: str = "kafka") -> dict[str, Any]:
    """``fig`` with ``commit`` and ``broker`` ("kafka" for the embedded Apache Kafka)."""
    return fig | {"commit": commit(), "broker": broker}


def append(name: str, fig: dict[str, Any], broker: str = "kafka",
           path: Path | None = None) -> dict[str, Any]:
    """Stamp ``fig`` and append it to ``<name>.jsonl`` in ``bench/results/`` (or in
    ``INSTORE_BENCH_RESULTS_DIR``; or to ``path``)."""
    line = stamp(fig, broker)
    target = path or (get_settings().bench_results_dir or RESULTS_DIR) / f"{name}.jsonl"
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("a") as fh:
        fh.write(json.dumps(line) + "\n")
    return line


def time_left(done: float, total: float, started: float) -> str:
    """"about N s left" at the rate so far (``started``: a ``time.perf_counter()``), for the
    benchmarks' progress lines."""
    elapsed = time.perf_counter() - started
    if done <= 0 or elapsed <= 0:
        return "time left unknown"
    return f"about {max(0.0, (total - done) / (done / elapsed)):,.0f} s left"
