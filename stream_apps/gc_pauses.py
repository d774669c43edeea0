"""The worker's garbage-collector pauses: measured, and kept out of the latency tail.

CPython's cyclic collector stops the event loop while it walks the objects of the generation it
collects; a full (generation 2) collection walks every object the worker holds (the catalog and
promotion views, the spatial index, the policy state), which at 100,000 products takes tens of
milliseconds: a position that arrives meanwhile waits that long. ``freeze()`` moves what the
worker loaded at start (the views) into the permanent generation, which collections skip
(CPython's ``gc.freeze``, meant for exactly this); ``GcPauses`` records how long collections
take, per generation, for the worker's totals.
"""

from __future__ import annotations

import gc
import time
from collections import Counter
from typing import Any


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
