"""The worker's pauses (event loop lag, garbage collection): measured, and kept out of the
latency tail.

CPython's cyclic collector stops the event loop while it walks the objects of the generation it
collects; a full (generation 2) collection walks every object the worker holds (the catalog and
promotion views, the spatial index, the policy state), which at 100,000 products takes tens of
milliseconds: a position that arrives meanwhile waits that long. ``freeze()`` moves what the
worker loaded at start (the views) into the permanent generation, which collections skip
(CPython's ``gc.freeze``, meant for exactly this); ``GcPauses`` records how long collections
take, per generation, for the worker's totals.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections import Counter
from typing import Any

from instore.stats import percentile


class GcPauses:
    """Counts collections and their pause time per generation (``gc.callbacks``)."""

    def __init__(self) -> None:
        self._started = 0.0
        self.totals: Counter[str] = Counter()
        self.max_ms = [0.0, 0.0, 0.0]

    def install(self) -> None:
        if self._callback not in gc.callbacks:
            gc.callbacks.append(self._callback)

    def uninstall(self) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        ms = (time.perf_counter() - self._started) * 1000
        gen = int(info.get("generation", 0))
        self.totals[f"gc{gen}_collections"] += 1
        self.totals[f"gc{gen}_pause_us"] += int(ms * 1000)
        self.max_ms[gen] = max(self.max_ms[gen], ms)

    def report(self) -> dict[str, float]:
        """Totals so far and the longest pause per generation since the last report."""
        out: dict[str, float] = dict(self.totals)
        for gen, ms in enumerate(self.max_ms):
            out[f"gc{gen}_max_pause_ms"] = round(ms, 2)
        self.max_ms = [0.0, 0.0, 0.0]
        return out


def freeze() -> int:
    """Collect once, then exempt every object alive now from later collections; returns how
    many objects were frozen. Call when the long-lived state (the views) has loaded."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


class LoopLag:
    """How late the event loop wakes a task that sleeps ``tick_s``: every position that arrives
    while the loop is held (a long batch, a collection, a blocking call) waits that long."""

    def __init__(self, tick_s: float = 0.01) -> None:
        self.tick_s = tick_s
        self._lags: list[float] = []

    def observe(self, lag_s: float) -> None:
        self._lags.append(lag_s)

    async def run(self) -> None:
        while True:
            t0 = time.perf_counter()
            await asyncio.sleep(self.tick_s)
            self.observe(time.perf_counter() - t0 - self.tick_s)

    def report(self) -> dict[str, float | None]:
        """Median, p99 and longest lag (ms) since the last report, and how many ticks were
        late by more than 20 ms."""
        lags, self._lags = sorted(self._lags), []
        if not lags:
            return {"ticks": 0}
        ms = [x * 1000 for x in lags]
        return {"ticks": len(lags), "lag_p50_ms": percentile(ms, 0.50, 2),
                "lag_p99_ms": percentile(ms, 0.99, 2), "lag_max_ms": round(ms[-1], 2),
                "late_over_20ms": sum(1 for x in lags if x > 0.02)}
