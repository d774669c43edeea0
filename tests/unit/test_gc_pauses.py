"""The worker's garbage-collection measurement and the freeze of what it loads at start."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Iterator

import pytest

from stream_apps.gc_pauses import GcPauses, LoopLag, freeze


@pytest.fixture
def unfrozen() -> Iterator[None]:
    yield
    gc.unfreeze()


def test_pauses_counts_collections_per_generation() -> None:
    pauses = GcPauses()
    pauses.install()
    pauses.install()  # once only
    try:
        gc.collect(0)
        gc.collect(2)
    finally:
        pauses.uninstall()
    report = pauses.report()
    assert report["gc0_collections"] >= 1
    assert report["gc2_collections"] >= 1
    assert report["gc2_pause_us"] >= 0
    assert report["gc2_max_pause_ms"] >= 0
    # the longest pauses are per report, the totals are not
    again = pauses.report()
    assert again["gc2_max_pause_ms"] == 0
    assert again["gc2_collections"] == report["gc2_collections"]
    gc.collect(2)
    assert pauses.report()["gc2_collections"] == report["gc2_collections"]  # uninstalled


def test_freeze_exempts_what_is_alive(unfrozen: None) -> None:
    loaded = [{"sku": i} for i in range(10_000)]
    frozen = freeze()
    assert frozen >= len(loaded)
    assert gc.get_freeze_count() == frozen
    # a collection no longer walks them: they are not in any collected generation
    walked = {id(o) for o in gc.get_objects(generation=2)}
    assert all(id(d) not in walked for d in loaded[:5])


def test_loop_lag_reports_percentiles_and_resets() -> None:
    lag = LoopLag()
    assert lag.report() == {"ticks": 0}
    for ms in [1] * 98 + [30, 50]:
        lag.observe(ms / 1000)
    report = lag.report()
    assert report["ticks"] == 100
    assert report["lag_p50_ms"] == 1
    assert report["lag_p99_ms"] == 30  # instore.stats.percentile: sorted[round(0.99 * 99)]
    assert report["lag_max_ms"] == 50
    assert report["late_over_20ms"] == 2
    assert lag.report() == {"ticks": 0}


def test_loop_lag_measures_a_held_loop() -> None:
    async def main() -> dict[str, float]:
        lag = LoopLag(tick_s=0.005)
        task = asyncio.ensure_future(lag.run())
        await asyncio.sleep(0.02)
        time.sleep(0.06)  # hold the loop
        await asyncio.sleep(0.02)
        task.cancel()
        return lag.report()

    report = asyncio.run(main())
    assert report["lag_max_ms"] >= 40
