"""The worker's garbage-collection measurement and the freeze of what it loads at start."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from stream_apps.gc_pauses import GcPauses, freeze


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
    # a collection no longer walks them: fewer objects tracked by the collector
    assert all(id(d) not in {id(o) for o in gc.get_objects(generation=2)} for d in loaded[:5])
